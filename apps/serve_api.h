// The OpenAI HTTP API as nibble serve speaks it: request bodies of
// /v1/completions and /v1/chat/completions checked and turned into a
// CompletionRequest, and the JSON of responses, stream chunks and errors.
// Pure JSON <-> structs: no sockets, no model.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "apps/request_json.h"
#include "engine/scheduler.h"
#include "tokenizer/chat_template.h"

namespace nibble::app {

// An error answer: HTTP status and OpenAI's {"error": {...}} fields.
struct ApiError {
    int status = 400;
    std::string message;
    std::string type = "invalid_request_error";
    std::string param;  // the offending field; empty: none
    std::string code;   // empty: null
};
std::string error_json(const ApiError& error);

struct CompletionRequest {
    bool chat = false;
    std::string prompt;                 // /v1/completions
    std::vector<ChatMessage> messages;  // /v1/chat/completions
    RequestSpec options;                // max_tokens, temperature, top_p, ... , stop
    bool stream = false;
    bool ignore_eos = false;  // llama.cpp's extension: keep going after end-of-sequence
    bool include_usage =
        true;  // stream_options.include_usage (default on: usage in the last chunk)
    // -1: no logprobs; otherwise the number of most likely tokens to list with
    // each token (chat: logprobs true and top_logprobs; completions: logprobs N).
    int logprobs = -1;
};

struct ParsedCompletion {
    std::optional<CompletionRequest> request;
    ApiError error;  // when request is empty
};

// Checks a body: valid JSON, an object, "prompt" (a string) or "messages" (an
// array of {"role": system|user|assistant|developer, "content": string or
// text parts}), "n" 1, "stream" a boolean, "logprobs" and "top_logprobs" in
// range, and the sampling options of apps/request_json.h under OpenAI's
// names (max_tokens or max_completion_tokens, temperature, top_p, top_k,
// min_p, seed, stop), and llama.cpp's "ignore_eos". Unknown fields are ignored.
ParsedCompletion parse_completion_request(std::string_view body, bool chat);

// Identifies a response: "chatcmpl-..." or "cmpl-...", the model name, the
// creation time (seconds since 1970).
struct ResponseHeader {
    std::string id;
    std::string model;
    long long created = 0;
    bool chat = false;
};

// One generated token for logprobs: its text and log-probability and the
// most likely alternatives.
struct TokenLogprobs {
    std::string text;
    float logprob = 0.0f;
    std::vector<std::pair<std::string, float>> top;
};

struct Usage {
    int prompt_tokens = 0;
    int completion_tokens = 0;
    int cached_tokens = 0;  // prompt tokens whose KV cache was reused
};

// "stop" or "length" (EOS, a stop string and the template's end of turn are
// "stop"; the token limit or the context "length").
const char* openai_finish_reason(FinishReason reason);

// The whole answer (stream false).
std::string completion_json(const ResponseHeader& h, const std::string& text, FinishReason reason,
                            const Usage& usage, const std::vector<TokenLogprobs>* logprobs);

// One server-sent event's JSON (stream true): a piece of text (with its
// tokens' logprobs), or the last chunk with the finish reason and usage.
std::string chunk_json(const ResponseHeader& h, const std::string& text, bool first,
                       const std::vector<TokenLogprobs>* logprobs);
std::string final_chunk_json(const ResponseHeader& h, FinishReason reason, const Usage* usage);

std::string models_json(const std::string& model, long long created);

}  // namespace nibble::app

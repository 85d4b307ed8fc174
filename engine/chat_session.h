// A conversation with a chat model on top of the scheduler: each turn's new
// text (the end of the previous answer, the user's message, the assistant
// header) is evaluated as one batch on top of the KV cache of the conversation
// so far. When the context would overflow, the oldest turns are dropped (the
// system prompt stays) and the KV cache is rebuilt for what is kept. No
// terminal I/O: text goes to a callback.
#pragma once
#include <atomic>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/scheduler.h"
#include "tokenizer/chat_template.h"

namespace nibble {

struct ChatOptions {
    ChatTemplate chat_template = ChatTemplate::plain;
    std::string system;  // empty: none
    SamplerParams sampling;
    int n_predict = -1;  // per answer; -1: until EOS, an end-of-turn marker or the context
    bool ignore_eos = false;
};

struct TurnStats {
    int n_prompt_evaluated = 0;  // new tokens computed for this turn
    int n_prompt_reused = 0;     // tokens whose KV was kept
    int n_answer = 0;
    double prompt_seconds = 0.0, answer_seconds = 0.0;
    FinishReason reason = FinishReason::length;
    bool context_full = false;  // the answer stopped at the end of the context
    int dropped_turns = 0;      // oldest turns dropped before this one
    double prompt_tokens_per_second() const {
        return prompt_seconds > 0 ? n_prompt_evaluated / prompt_seconds : 0.0;
    }
    double answer_tokens_per_second() const {
        return answer_seconds > 0 ? n_answer / answer_seconds : 0.0;
    }
};

class ChatSession {
  public:
    // Uses KV slot(s) of `state`; state and tokenizer must outlive the session.
    ChatSession(InferenceState& state, const Tokenizer& tokenizer, ChatOptions options);

    // Adds the user's message and writes the answer through on_text as it is
    // generated. Setting `interrupt` (e.g. from a SIGINT handler) ends the
    // answer early (reason cancelled); what was written stays in the
    // conversation. Throws std::invalid_argument when the message cannot fit
    // in the context even with every earlier turn dropped.
    TurnStats turn(const std::string& user, const std::function<void(std::string_view)>& on_text,
                   const std::atomic<bool>& interrupt);

    // Forgets the conversation (the system prompt stays).
    void reset();

    const std::vector<ChatMessage>& messages() const { return messages_; }
    // The conversation as tokens (BOS first): the prompt of the next turn starts with them.
    const std::vector<int32_t>& tokens() const { return tokens_; }
    const ChatOptions& options() const { return options_; }

    // Template text -> tokens with the special tokens it writes ("<s>", "</s>",
    // "<|im_start|>", "<|eot_id|>", "<start_of_turn>", ...) as single ids,
    // everything between them encoded normally (Tokenizer::encode_template).
    std::vector<int32_t> tokenize(std::string_view text) const;
    // The same for a rendered conversation from byte `from` on, where the
    // messages' contents are user text: never read as special tokens.
    std::vector<int32_t> tokenize(const RenderedChat& rendered, size_t from = 0) const;

  private:
    void rebuild_tokens();
    void add_bos(std::vector<int32_t>& tokens) const;
    void drop_oldest_turn();

    InferenceState* state_;
    const Tokenizer* tokenizer_;
    ChatOptions options_;
    Scheduler scheduler_;
    std::vector<ChatMessage> messages_;
    std::vector<int32_t> tokens_;
    int turns_ = 0;
};

}  // namespace nibble

// Perplexity protocols. Every protocol is a list of windows, each run from a
// fresh context: feed inputs[i] at position i, and score positions
// i >= first_scored with -log softmax(logits_i)[targets[i]];
// ppl = exp(total NLL / scored tokens).
//
//   documents (the protocol of shared/data/reference/stories260K_ppl.json): one
//     window per document, BOS then its ids, every token scored;
//   strided windows over the whole text as one token stream: windows of `ctx`
//     tokens starting every `stride` tokens, each fed BOS first and scoring
//     the tokens the previous window did not (stride == ctx: non-overlapping
//     windows scoring every token, the papers' protocol);
//   llama.cpp's: non-overlapping chunks of `ctx` tokens whose first token is
//     replaced by BOS, scoring only the second half (positions ctx/2 .. ctx-2),
//     so every scored token has at least ctx/2 tokens of context.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/forward.h"
#include "models/documents.h"

namespace nibble {

struct PerplexityResult {
    int documents = 0;  // windows
    int64_t scored_tokens = 0;
    int truncated_documents = 0;
    double total_nll = 0.0;
    double mean_nll() const { return scored_tokens > 0 ? total_nll / double(scored_tokens) : 0.0; }
    double perplexity() const;
};

struct ScoredWindow {
    std::vector<int32_t> inputs;   // fed at positions 0, 1, ...
    std::vector<int32_t> targets;  // targets[i]: the token after position i
    int first_scored = 0;
};

// One window per document (ids without BOS), cut to context - 1 ids;
// *truncated counts the documents that were cut.
std::vector<ScoredWindow> document_windows(const std::vector<std::vector<int32_t>>& docs,
                                           int32_t bos_id, int context, int* truncated = nullptr);
// Windows of ctx tokens every stride tokens (1 <= stride <= ctx) over a token stream.
std::vector<ScoredWindow> strided_windows(const std::vector<int32_t>& stream, int32_t bos_id,
                                          int ctx, int stride);
// llama.cpp's chunks (the tail shorter than ctx is dropped, as llama.cpp does).
std::vector<ScoredWindow> llamacpp_windows(const std::vector<int32_t>& stream, int32_t bos_id,
                                           int ctx);

// Called for each scored position in order: its logits (vocab floats) and target.
using ScoreVisitor = std::function<void(const float* logits, int32_t target)>;

// Runs every window (slot 0 of state, reused) and returns the NLL totals.
// progress(done, total, result so far) after each window.
PerplexityResult score_windows(
    InferenceState& state, const std::vector<ScoredWindow>& windows,
    const ScoreVisitor& visit = nullptr,
    const std::function<void(int done, int total, const PerplexityResult& so_far)>& progress =
        nullptr);

// -log softmax(logits)[target], in double.
double token_nll(const float* logits, int vocab, int32_t target);

// The documents protocol: scores each document's ids (no BOS; at most
// context - 1 of them are kept).
PerplexityResult perplexity(InferenceState& state, const std::vector<std::vector<int32_t>>& docs,
                            int32_t bos_id,
                            const std::function<void(int done, int total)>& progress = nullptr);

}  // namespace nibble

// Perplexity over documents, each scored from a fresh context:
// feed BOS at position 0 and ids[j-1] at position j, score ids[j] with
// -log softmax(logits)[ids[j]]; ppl = exp(total NLL / scored tokens).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/forward.h"

namespace nibble {

struct PerplexityResult {
    int documents = 0;
    int64_t scored_tokens = 0;
    int truncated_documents = 0;
    double total_nll = 0.0;
    double mean_nll() const { return scored_tokens > 0 ? total_nll / double(scored_tokens) : 0.0; }
    double perplexity() const;
};

// Splits a corpus into documents: on "<|endoftext|>" when the text has it,
// otherwise on every single '\n' that has no '\n' right before or after it
// (blank lines separate paragraphs inside a document). CRLF becomes LF; each
// document is stripped and empty ones are dropped.
std::vector<std::string> split_documents(const std::string& corpus);

// Scores each document's ids (no BOS; at most context - 1 of them are kept).
// state must have at least one sequence slot; slot 0 is reused per document.
PerplexityResult perplexity(InferenceState& state, const std::vector<std::vector<int32_t>>& docs,
                            int32_t bos_id,
                            const std::function<void(int done, int total)>& progress = nullptr);

}  // namespace nibble

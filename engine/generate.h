// Text generation for one prompt, streaming text as it is produced: one request
// run to completion on a Scheduler (any KV slot of the state).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/forward.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "tokenizer/tokenizer.h"

namespace nibble {

struct GenerationResult {
    std::vector<int32_t> tokens;  // prompt followed by the generated tokens
    int n_prompt = 0;
    int n_generated = 0;
    int n_decode_evals = 0;  // single-token forward passes timed in generation_seconds
    double prompt_seconds = 0.0;
    double generation_seconds = 0.0;
    FinishReason finish_reason = FinishReason::length;
    double prompt_tokens_per_second() const {
        return prompt_seconds > 0 ? n_prompt / prompt_seconds : 0.0;
    }
    double generation_tokens_per_second() const {
        return generation_seconds > 0 ? n_decode_evals / generation_seconds : 0.0;
    }
};

// Feeds `prompt` (which should start with BOS) from position 0, then samples
// up to n_predict tokens, stopping at EOS or BOS or when the context is full.
// on_text receives each new piece of text, the decoded prompt first. Throws
// std::invalid_argument when the prompt does not fit in the context.
GenerationResult generate(InferenceState& state, const Tokenizer& tokenizer,
                          const std::vector<int32_t>& prompt, int n_predict,
                          const SamplerParams& sampling,
                          const std::function<void(const std::string&)>& on_text);

}  // namespace nibble

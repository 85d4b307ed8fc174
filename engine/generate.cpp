// Single-prompt generation as one scheduler request.
#include "engine/generate.h"

#include <stdexcept>

namespace nibble {

GenerationResult generate(InferenceState& state, const Tokenizer& tokenizer,
                          const std::vector<int32_t>& prompt, int n_predict,
                          const SamplerParams& sampling,
                          const std::function<void(const std::string&)>& on_text) {
    if (n_predict < 0) throw std::invalid_argument("n_predict must be >= 0");
    SchedulerOptions options;
    options.reuse_prefix = false;  // a fresh state: nothing to reuse
    options.max_batch_tokens = state.options().max_batch;
    Scheduler scheduler(state, tokenizer, options);
    Request request;
    request.prompt = prompt;
    request.sampling = sampling;
    request.n_predict = n_predict;
    std::string text;
    request.on_token = [&](const TokenEvent& e) {
        text.assign(e.text);
        if (!text.empty()) on_text(text);
    };
    GenerationResult result;
    request.on_finish = [&](const FinishEvent& e) {
        result.tokens.assign(e.tokens.begin(), e.tokens.end());
        result.n_prompt = e.n_prompt;
        result.n_generated = e.n_generated;
        result.n_decode_evals = e.n_decode_evals;
        result.prompt_seconds = e.prompt_seconds;
        result.generation_seconds = e.generation_seconds;
        result.finish_reason = e.reason;
    };
    scheduler.submit(std::move(request));  // validates the prompt
    StreamDecoder stream(tokenizer);
    std::string prompt_text;
    for (int32_t id : prompt) prompt_text += stream.push(id);
    if (!prompt_text.empty()) on_text(prompt_text);
    scheduler.run();
    return result;
}

}  // namespace nibble

// Single-sequence generation loop.
#include "engine/generate.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

namespace nibble {

namespace {
double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

GenerationResult generate(InferenceState& state, const Tokenizer& tokenizer,
                          const std::vector<int32_t>& prompt, int n_predict, Sampler& sampler,
                          const std::function<void(const std::string&)>& on_text) {
    const int context = state.context();
    const int vocab = state.model().config.vocab_size;
    if (prompt.empty()) throw std::invalid_argument("the prompt has no tokens");
    if (int(prompt.size()) > context) {
        throw std::invalid_argument("the prompt has " + std::to_string(prompt.size()) +
                                    " tokens, more than the context of " + std::to_string(context));
    }
    GenerationResult result;
    result.tokens.reserve(prompt.size() + size_t(std::max(n_predict, 0)));
    result.tokens = prompt;
    result.n_prompt = int(prompt.size());
    StreamDecoder stream(tokenizer);
    std::string text;
    for (int32_t id : prompt) text += stream.push(id);
    if (!text.empty()) on_text(text);

    // Prompt: batches of max_batch tokens, logits only for the last one.
    const auto prompt_start = std::chrono::steady_clock::now();
    std::vector<BatchToken> batch(size_t(state.options().max_batch));
    const float* logits = nullptr;
    for (size_t start = 0; start < prompt.size(); start += batch.size()) {
        const size_t count = std::min(batch.size(), prompt.size() - start);
        for (size_t i = 0; i < count; ++i) {
            const size_t pos = start + i;
            batch[i] = {prompt[pos], int32_t(pos), 0, pos + 1 == prompt.size()};
        }
        logits = state.forward(std::span(batch.data(), count));
    }
    result.prompt_seconds = seconds_since(prompt_start);

    // Decoding: one token per forward call.
    std::vector<float> logits_copy(static_cast<size_t>(vocab));
    const auto gen_start = std::chrono::steady_clock::now();
    for (int i = 0; i < n_predict && int(result.tokens.size()) < context; ++i) {
        std::copy(logits, logits + vocab, logits_copy.begin());
        const int32_t next = sampler.sample(logits_copy.data(), result.tokens);
        if (next == tokenizer.eos_id() || next == tokenizer.bos_id()) break;
        result.tokens.push_back(next);
        ++result.n_generated;
        const std::string piece = stream.push(next);
        if (!piece.empty()) on_text(piece);
        const int pos = int(result.tokens.size()) - 1;
        if (pos >= context) break;
        BatchToken tok{next, pos, 0, true};
        logits = state.forward(std::span(&tok, 1));
        ++result.n_decode_evals;
    }
    result.generation_seconds = seconds_since(gen_start);
    const std::string tail = stream.flush();  // an incomplete UTF-8 character, if any
    if (!tail.empty()) on_text(tail);
    return result;
}

}  // namespace nibble

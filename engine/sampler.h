// Choosing the next token from logits: greedy, or llama.cpp's default chain
// (repetition penalty -> top-k -> top-p -> min-p -> temperature -> random draw).
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace nibble {

// Defaults are llama.cpp's.
struct SamplerParams {
    float temperature = 0.8f;     // <= 0: greedy (argmax, ties to the lowest id)
    int top_k = 40;               // <= 0: off
    float top_p = 0.95f;          // >= 1: off
    float min_p = 0.05f;          // <= 0: off
    float repeat_penalty = 1.0f;  // 1: off
    int repeat_last_n = 64;
    uint64_t seed = 0;
};

class Sampler {
  public:
    Sampler(const SamplerParams& params, int vocab_size);
    // Picks a token; `logits` (vocab_size) is modified by the penalty.
    // `history` holds the sequence so far (prompt and generated tokens).
    int32_t sample(float* logits, std::span<const int32_t> history);
    const SamplerParams& params() const { return params_; }

  private:
    struct Candidate {
        float logit;
        int32_t id;
    };
    SamplerParams params_;
    int vocab_size_;
    std::mt19937_64 rng_;
    std::vector<Candidate> candidates_;  // preallocated: sampling allocates nothing
    std::vector<uint8_t> penalised_;
};

// argmax with ties going to the lowest id
int32_t argmax(const float* logits, int n);

}  // namespace nibble

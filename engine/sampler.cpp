// Sampling chain; every buffer is allocated once in the constructor.
#include "engine/sampler.h"

#include <algorithm>
#include <cmath>

namespace nibble {

int32_t argmax(const float* logits, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; ++i) {
        if (logits[i] > logits[best]) best = i;
    }
    return best;
}

Sampler::Sampler(const SamplerParams& params, int vocab_size)
    : params_(params), vocab_size_(vocab_size), rng_(params.seed) {
    candidates_.reserve(size_t(vocab_size));
    penalised_.assign(size_t(vocab_size), 0);
}

int32_t Sampler::sample(float* logits, std::span<const int32_t> history) {
    // Repetition penalty (CTRL / llama.cpp): divide positive logits by the
    // penalty, multiply negative ones, once per distinct recent token.
    if (params_.repeat_penalty != 1.0f && params_.repeat_last_n != 0) {
        const size_t n_last = params_.repeat_last_n < 0
                                  ? history.size()
                                  : std::min(history.size(), size_t(params_.repeat_last_n));
        const auto recent = history.subspan(history.size() - n_last);
        for (int32_t id : recent) {
            if (id < 0 || id >= vocab_size_ || penalised_[size_t(id)]) continue;
            penalised_[size_t(id)] = 1;
            float& l = logits[id];
            l = l > 0 ? l / params_.repeat_penalty : l * params_.repeat_penalty;
        }
        for (int32_t id : recent) {
            if (id >= 0 && id < vocab_size_) penalised_[size_t(id)] = 0;
        }
    }
    if (params_.temperature <= 0.0f) return argmax(logits, vocab_size_);

    candidates_.clear();
    for (int i = 0; i < vocab_size_; ++i) candidates_.push_back({logits[i], i});
    auto by_logit = [](const Candidate& a, const Candidate& b) {
        return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
    };
    // No full sort of a 150k vocabulary per token: top-k sorts only its k
    // (partial_sort); without top-k, min-p's cut (known from the best logit) is
    // taken by one partition, and top-p sorts a growing prefix until it holds
    // mass p. The kept tokens are always a prefix of the order by logit.
    size_t n = candidates_.size();
    if (params_.top_k > 0 && size_t(params_.top_k) < n) {
        n = size_t(params_.top_k);
        std::partial_sort(candidates_.begin(), candidates_.begin() + long(n), candidates_.end(),
                          by_logit);
    } else {
        const auto best = std::min_element(candidates_.begin(), candidates_.end(), by_logit);
        std::iter_swap(candidates_.begin(), best);
    }
    // Probabilities at temperature 1 for top-p and min-p (over the top-k).
    const float max_logit = candidates_[0].logit;
    double total = 0.0;
    const bool use_top_p = params_.top_p < 1.0f;
    if (use_top_p) {
        for (size_t i = 0; i < n; ++i) total += std::exp(double(candidates_[i].logit - max_logit));
    }
    const bool sorted = params_.top_k > 0 && size_t(params_.top_k) < candidates_.size();
    if (!sorted && params_.min_p > 0.0f) {  // min-p's tokens to the front (a prefix)
        const float threshold = max_logit + std::log(params_.min_p);
        n = size_t(std::partition(candidates_.begin() + 1, candidates_.begin() + long(n),
                                  [&](const Candidate& c) { return c.logit >= threshold; }) -
                   candidates_.begin());
    }
    // top-p: smallest prefix whose probability mass reaches p.
    if (use_top_p) {
        size_t ordered = sorted ? n : 1, i = 0;
        double cumulative = 0.0;
        for (;;) {
            for (; i < ordered; ++i) {
                cumulative += std::exp(double(candidates_[i].logit - max_logit)) / total;
                if (cumulative >= params_.top_p) break;
            }
            if (i < ordered || ordered == n) break;
            const size_t more = std::min(n, std::max<size_t>(256, ordered * 4));
            std::partial_sort(candidates_.begin() + long(ordered), candidates_.begin() + long(more),
                              candidates_.begin() + long(n), by_logit);
            ordered = more;
        }
        n = std::min(n, i + 1);
    }
    // min-p: drop tokens less likely than min_p times the most likely one
    // (after the partition above every kept token passes already).
    if (params_.min_p > 0.0f) {
        const float threshold = max_logit + std::log(params_.min_p);
        size_t keep = 1;
        while (keep < n && candidates_[keep].logit >= threshold) ++keep;
        n = keep;
    }
    // Temperature, softmax, and a draw.
    double sum = 0.0;
    for (size_t i = 0; i < n; ++i) {
        sum += std::exp(double(candidates_[i].logit - max_logit) / params_.temperature);
    }
    const double r = std::uniform_real_distribution<double>(0.0, sum)(rng_);
    double acc = 0.0;
    for (size_t i = 0; i < n; ++i) {
        acc += std::exp(double(candidates_[i].logit - max_logit) / params_.temperature);
        if (r < acc) return candidates_[i].id;
    }
    return candidates_[n - 1].id;
}

}  // namespace nibble

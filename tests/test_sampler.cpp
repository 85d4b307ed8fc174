// The sampling chain on hand-made logits: greedy and ties, repetition penalty,
// seeds, and the distribution of many draws for top-k, top-p, min-p and the
// temperature, checked against the softmax of the kept tokens with a chi-square
// bound (fixed seeds, so the outcome is deterministic; the bound is the 0.1%
// quantile, so a correct sampler passes it for almost every seed).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "engine/sampler.h"

using namespace nibble;

namespace {

constexpr int kDraws = 20000;

// Logits whose softmax at temperature 1 is {0.5, 0.3, 0.15, 0.05}.
std::vector<float> four_token_logits() {
    return {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
}

// Every filter off: a plain softmax draw at `temperature`.
SamplerParams plain(float temperature, uint64_t seed) {
    SamplerParams sp;
    sp.temperature = temperature;
    sp.top_k = 0;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    sp.seed = seed;
    return sp;
}

// How often each id comes out of kDraws draws.
std::vector<int> draw_counts(const SamplerParams& sp, const std::vector<float>& logits) {
    Sampler s(sp, int(logits.size()));
    std::vector<int> counts(logits.size(), 0);
    int out_of_range = 0;
    for (int i = 0; i < kDraws; ++i) {
        auto l = logits;
        const int32_t id = s.sample(l.data(), {});
        if (id < 0 || size_t(id) >= logits.size()) {
            ++out_of_range;
        } else {
            ++counts[size_t(id)];
        }
    }
    CHECK(out_of_range == 0);
    return counts;
}

// softmax(logits / temperature) over the ids in `kept`, zero elsewhere.
std::vector<double> expected_probs(const std::vector<float>& logits, float temperature,
                                   const std::set<int>& kept) {
    std::vector<double> p(logits.size(), 0.0);
    double sum = 0.0;
    for (int id : kept) {
        p[size_t(id)] = std::exp(double(logits[size_t(id)]) / temperature);
        sum += p[size_t(id)];
    }
    for (double& v : p) v /= sum;
    return p;
}

// 0.1% upper quantiles of the chi-square distribution, by degrees of freedom.
double chi_square_bound(size_t degrees_of_freedom) {
    static const double quantile[] = {0.0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46};
    REQUIRE(degrees_of_freedom >= 1);
    REQUIRE(degrees_of_freedom < std::size(quantile));
    return quantile[degrees_of_freedom];
}

// The counts follow `probs`: ids of probability 0 never come out, and Pearson's
// chi-square over the others stays under the 0.1% bound.
void check_distribution(const std::vector<int>& counts, const std::vector<double>& probs) {
    double chi2 = 0.0;
    size_t categories = 0;
    for (size_t id = 0; id < counts.size(); ++id) {
        CAPTURE(id);
        CAPTURE(counts[id]);
        if (probs[id] == 0.0) {
            CHECK(counts[id] == 0);
            continue;
        }
        const double expected = probs[id] * kDraws;
        chi2 += (counts[id] - expected) * (counts[id] - expected) / expected;
        ++categories;
    }
    CAPTURE(chi2);
    CHECK(chi2 < chi_square_bound(categories - 1));
}

}  // namespace

TEST_CASE("sampling: greedy, seeds, top-k 1 and repetition penalty") {
    std::vector<float> logits = {1.0f, 3.0f, 3.0f, -2.0f, 0.5f};
    CHECK(argmax(logits.data(), 5) == 1);  // ties go to the lowest id
    SamplerParams greedy;
    greedy.temperature = 0.0f;
    Sampler g(greedy, 5);
    auto copy = logits;
    CHECK(g.sample(copy.data(), {}) == 1);
    // repetition penalty pushes a repeated token below its tie partner
    SamplerParams penal = greedy;
    penal.repeat_penalty = 1.5f;
    Sampler p(penal, 5);
    copy = logits;
    const std::vector<int32_t> history = {1};
    CHECK(p.sample(copy.data(), history) == 2);
    CHECK(copy[1] == doctest::Approx(2.0f));
    // same seed, same sequence; different seed, different sequence
    auto draw = [&](uint64_t seed) {
        Sampler s(plain(1.5f, seed), 5);
        std::vector<int32_t> out;
        for (int i = 0; i < 64; ++i) {
            auto l = logits;
            out.push_back(s.sample(l.data(), {}));
        }
        return out;
    };
    CHECK(draw(7) == draw(7));
    CHECK(draw(7) != draw(8));
    // top-k 1 is greedy whatever the temperature: always id 1, the lowest of the tied best
    SamplerParams k1;
    k1.top_k = 1;
    k1.temperature = 5.0f;
    Sampler s1(k1, 5);
    for (int i = 0; i < 20; ++i) {
        auto l = logits;
        CHECK(s1.sample(l.data(), {}) == 1);
    }
}

TEST_CASE("temperature: draws follow softmax(logits / T)") {
    const std::vector<float> logits = {1.0f, 3.0f, 3.0f, -2.0f, 0.5f};
    const std::set<int> all = {0, 1, 2, 3, 4};
    for (float t : {0.5f, 1.0f, 1.5f, 3.0f}) {
        CAPTURE(t);
        check_distribution(draw_counts(plain(t, 21), logits), expected_probs(logits, t, all));
    }
}

TEST_CASE("top-k: draws follow the softmax of the k largest logits") {
    const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 1.5f, 1.0f};
    SamplerParams sp = plain(1.0f, 5);
    sp.top_k = 3;
    check_distribution(draw_counts(sp, logits), expected_probs(logits, 1.0f, {1, 3, 4}));
}

TEST_CASE("top-p: draws come from the smallest prefix whose mass reaches p") {
    const std::vector<float> logits = four_token_logits();  // {0.5, 0.3, 0.15, 0.05}
    struct Case {
        float top_p;
        std::set<int> kept;
    };
    // 0.6: 0.5 < 0.6 <= 0.8, two tokens; 0.9: 0.8 < 0.9 <= 0.95, three; 0.4: one.
    for (const Case& c : {Case{0.6f, {0, 1}}, Case{0.9f, {0, 1, 2}}, Case{0.4f, {0}}}) {
        CAPTURE(c.top_p);
        SamplerParams sp = plain(1.0f, 3);
        sp.top_p = c.top_p;
        const auto counts = draw_counts(sp, logits);
        if (c.kept.size() == 1) {
            CHECK(counts[0] == kDraws);
        } else {
            check_distribution(counts, expected_probs(logits, 1.0f, c.kept));
        }
    }
    // Applied before the temperature: a hot draw still never leaves the prefix.
    SamplerParams hot = plain(4.0f, 4);
    hot.top_p = 0.6f;
    check_distribution(draw_counts(hot, logits), expected_probs(logits, 4.0f, {0, 1}));
}

TEST_CASE("min-p: draws drop tokens less likely than min_p times the best") {
    const std::vector<float> logits = four_token_logits();  // {0.5, 0.3, 0.15, 0.05}
    struct Case {
        float min_p;
        std::set<int> kept;
    };
    // thresholds 0.5 * min_p: 0.2 -> 0.1 drops 0.05; 0.5 -> 0.25 keeps 0.5 and 0.3.
    for (const Case& c : {Case{0.2f, {0, 1, 2}}, Case{0.5f, {0, 1}}}) {
        CAPTURE(c.min_p);
        SamplerParams sp = plain(1.0f, 9);
        sp.min_p = c.min_p;
        check_distribution(draw_counts(sp, logits), expected_probs(logits, 1.0f, c.kept));
    }
    // min-p 1 keeps only the most likely token, whatever the temperature.
    SamplerParams best = plain(5.0f, 10);
    best.min_p = 1.0f;
    CHECK(draw_counts(best, logits)[0] == kDraws);
}

TEST_CASE("a 150k vocabulary: top-p and min-p keep the prefix a full sort gives") {
    // Slowly falling logits in shuffled order: top-p 0.5 keeps thousands of
    // tokens (beyond the first partially sorted block), min-p a few hundred.
    const int vocab = 150000;
    std::vector<float> logits(static_cast<size_t>(vocab));
    std::mt19937 rng(3);
    std::vector<int> rank(static_cast<size_t>(vocab));
    std::iota(rank.begin(), rank.end(), 0);
    std::shuffle(rank.begin(), rank.end(), rng);
    for (int id = 0; id < vocab; ++id) logits[size_t(id)] = -0.0005f * float(rank[size_t(id)]);
    // The kept set by a full sort: ranks below the cut.
    auto top_p_cut = [&](double p) {
        double total = 0.0, cumulative = 0.0;
        for (int r = 0; r < vocab; ++r) total += std::exp(-0.0005 * r);
        for (int r = 0; r < vocab; ++r) {
            cumulative += std::exp(-0.0005 * r) / total;
            if (cumulative >= p) return r + 1;
        }
        return vocab;
    };
    struct Case {
        float top_p, min_p;
        int cut;
    };
    // min-p 0.9: exp(-0.0005 r) >= 0.9 for r <= 210.
    for (const Case& c : {Case{0.5f, 0.0f, top_p_cut(0.5)}, Case{1.0f, 0.9f, 211}}) {
        CAPTURE(c.top_p);
        SamplerParams sp = plain(1.0f, 21);
        sp.top_p = c.top_p;
        sp.min_p = c.min_p;
        Sampler s(sp, vocab);
        int highest_rank = 0;
        for (int i = 0; i < 3000; ++i) {
            auto l = logits;
            const int32_t id = s.sample(l.data(), {});
            REQUIRE(id >= 0);
            REQUIRE(id < vocab);
            highest_rank = std::max(highest_rank, rank[size_t(id)]);
        }
        CAPTURE(c.cut);
        CHECK(highest_rank < c.cut);
        CHECK(highest_rank > c.cut * 9 / 10);  // the whole prefix is drawn from
    }
}

// Quantizer round trips: per-weight error bounds for every format, group size
// and scale rule; group-size monotonicity; f32/f16; bad input.
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <stdexcept>
#include <string>

#include "kernels/fp16.h"
#include "kernels/quant_stats.h"
#include "kernels/quantize_group.h"
#include "tests/quant_test_util.h"

using namespace nibble;
using namespace quant_test;

namespace {

const WeightFormat kGrouped[] = {WeightFormat::q8, WeightFormat::q4, WeightFormat::q4a,
                                 WeightFormat::nf4};
const int kGroups[] = {32, 64, 128, 256};

// Largest clipping (distance outside the representable interval, in units of
// |d|) a rule may cause, without double quantization:
//  - search: the quantizer's limit (kMaxClip, kNf4MaxClip);
//  - q4 largest-magnitude -> -8: m lands on -8 (up to fp16 rounding of d = m/-8,
//    relative 2^-11) and the opposite extreme can be |m| = 8|d|(1 + 2^-11),
//    beyond the top code 7 by |d|(1 + 8 * 2^-11);
//  - the other simple rules map the extreme onto the end code up to the fp16
//    rounding of the parameters (relative 2^-11): q4 7 * 2^-11, q8 127 * 2^-11,
//    nf4 2^-11 in units of |d|, all below the half step; q4a min/max clips by
//    at most the fp16 rounding of the minimum and of 15d, 2^-11 * (|min| + 15|d|),
//    also below half a step for groups spanning zero like the test data.
double clip_limit(WeightFormat f, ScaleRule rule) {
    if (rule == ScaleRule::search) return f == WeightFormat::nf4 ? kNf4MaxClip : kMaxClip;
    if (rule == ScaleRule::q4_minus8 && f == WeightFormat::q4) return 1.0 + 8.0 / 2048.0;
    return half_step(f);
}

// Checks every weight of w against the bound of its group's decoded parameters.
void check_bounds(const std::vector<float>& w, const PackedLayout& l, ScaleRule rule) {
    const std::vector<uint8_t> blob = quantize_matrix(w.data(), l, QuantizeOptions{rule});
    const MatrixView view{l, blob.data()};
    const std::vector<float> out = dequantize_all(view);
    int64_t bad = 0, bad_clip = 0;
    for (int64_t r = 0; r < l.rows; ++r) {
        for (int64_t c = 0; c < l.cols; ++c) {
            const size_t i = size_t(r * l.cols + c);
            const Params p = params_at(view, r, c);
            double clip;
            const double bound = error_bound(l.format, p, w[i], clip);
            if (!(std::fabs(double(w[i]) - double(out[i])) <= bound)) ++bad;
            if (clip > clip_limit(l.format, rule) * std::fabs(p.d) * (1 + 1e-6) + 1e-30) ++bad_clip;
        }
    }
    CHECK(bad == 0);
    CHECK(bad_clip == 0);
}

}  // namespace

TEST_CASE("every weight is within its format's bound (Gaussian and heavy-tailed, tail groups)") {
    // 1000 columns: a short final group at every group size.
    const std::vector<float> data[] = {gaussian(48, 1000, 1), heavy_tailed(48, 1000, 2)};
    for (const auto& w : data) {
        for (WeightFormat f : kGrouped) {
            for (int g : kGroups) {
                for (ScaleRule rule :
                     {ScaleRule::search, ScaleRule::simple, ScaleRule::q4_minus8}) {
                    CAPTURE(std::string(format_name(f)));
                    CAPTURE(g);
                    CAPTURE(int(rule));
                    check_bounds(w, make_layout(f, 48, 1000, g), rule);
                }
            }
        }
    }
}

TEST_CASE("smaller groups never give a larger MSE") {
    const std::vector<float> data[] = {gaussian(64, 1024, 3), heavy_tailed(64, 1024, 4)};
    for (const auto& w : data) {
        for (WeightFormat f : kGrouped) {
            for (ScaleRule rule : {ScaleRule::search, ScaleRule::simple}) {
                double previous = 0.0;
                for (int g : kGroups) {
                    CAPTURE(std::string(format_name(f)));
                    CAPTURE(g);
                    const double e = quantized_mse(w, make_layout(f, 64, 1024, g), rule);
                    CHECK(e >= previous);
                    previous = e;
                }
            }
        }
    }
}

TEST_CASE("the search is never worse than the simple rules, group by group") {
    // The search evaluates the simple rules among its candidates, with the same
    // fp16 parameters and nearest codes as the stored blob, and keeps the least
    // squared error, so it cannot lose on any single group.
    const int64_t rows = 16, cols = 500;  // a short final group at every size
    const std::vector<float> w = heavy_tailed(rows, cols, 5);
    for (WeightFormat f : kGrouped) {
        for (int g : kGroups) {
            CAPTURE(std::string(format_name(f)));
            CAPTURE(g);
            const PackedLayout l = make_layout(f, rows, cols, g);
            std::vector<float> out[3];
            const ScaleRule rules[3] = {ScaleRule::search, ScaleRule::simple, ScaleRule::q4_minus8};
            for (int k = 0; k < 3; ++k) {
                const std::vector<uint8_t> blob =
                    quantize_matrix(w.data(), l, QuantizeOptions{rules[k]});
                out[k] = dequantize_all(MatrixView{l, blob.data()});
            }
            int64_t worse = 0;
            for (int64_t r = 0; r < rows; ++r) {
                for (int64_t c0 = 0; c0 < cols; c0 += g) {
                    double sse[3] = {};
                    for (int64_t c = c0; c < std::min(cols, c0 + g); ++c) {
                        const size_t i = size_t(r * cols + c);
                        for (int k = 0; k < 3; ++k) {
                            sse[k] += (double(w[i]) - out[k][i]) * (double(w[i]) - out[k][i]);
                        }
                    }
                    worse += sse[0] > std::min(sse[1], sse[2]) * (1 + 1e-9) + 1e-12;
                }
            }
            CHECK(worse == 0);
        }
    }
}

TEST_CASE("f32 is exact and f16 rounds to nearest") {
    const std::vector<float> w = heavy_tailed(7, 33, 6);
    const PackedLayout l32 = make_layout(WeightFormat::f32, 7, 33);
    CHECK(dequantize_all(MatrixView{l32, quantize_matrix(w.data(), l32).data()}) == w);
    const PackedLayout l16 = make_layout(WeightFormat::f16, 7, 33);
    const std::vector<uint8_t> blob = quantize_matrix(w.data(), l16);
    const std::vector<float> out = dequantize_all(MatrixView{l16, blob.data()});
    for (size_t i = 0; i < w.size(); ++i) CHECK(out[i] == round_to_fp16(w[i]));
}

TEST_CASE("quantization_error reports MSE, relative RMS and max error") {
    const std::vector<float> w = gaussian(32, 256, 7);
    const PackedLayout l = make_layout(WeightFormat::q4, 32, 256, 64);
    const std::vector<uint8_t> blob = quantize_matrix(w.data(), l);
    const std::vector<float> out = dequantize_all(MatrixView{l, blob.data()});
    double err2 = 0, ref2 = 0, max_abs = 0;
    for (size_t i = 0; i < w.size(); ++i) {
        const double e = double(w[i]) - double(out[i]);
        err2 += e * e;
        ref2 += double(w[i]) * double(w[i]);
        max_abs = std::max(max_abs, std::fabs(e));
    }
    const QuantError q = quantization_error(w.data(), MatrixView{l, blob.data()});
    CHECK(q.mse == doctest::Approx(err2 / double(w.size())).epsilon(1e-12));
    CHECK(q.rel_rms == doctest::Approx(std::sqrt(err2 / ref2)).epsilon(1e-12));
    CHECK(q.max_abs == max_abs);
    CHECK(q.rel_rms > 0.05);  // 4-bit error on N(0,1) is ~0.09 relative RMS
    CHECK(q.rel_rms < 0.12);
}

TEST_CASE("bad input throws") {
    std::vector<float> w = gaussian(4, 64, 8);
    const PackedLayout l = make_layout(WeightFormat::q4, 4, 64, 32);
    w[70] = NAN;
    CHECK_THROWS_AS(quantize_matrix(w.data(), l), std::runtime_error);
    w[70] = INFINITY;
    CHECK_THROWS_AS(quantize_matrix(w.data(), l), std::runtime_error);
    w[70] = 1e7f;  // scale ~1e6 does not fit in fp16
    CHECK_THROWS_AS(quantize_matrix(w.data(), l), std::runtime_error);
    // With double quantization the scales are stored as fp32 block parameters.
    CHECK_NOTHROW(quantize_matrix(w.data(), make_layout(WeightFormat::q4, 4, 64, 32, true)));
    CHECK_THROWS_AS(quantize_matrix(w.data(), make_layout(WeightFormat::f16, 4, 64)),
                    std::runtime_error);
}

TEST_CASE("iq4nl: weights on the IQ4_NL grid come back exactly; others within 14|d|") {
    // Each group: fp16 scale d, random codes with code 0 (-127 d, the largest
    // magnitude) present, so the fit must pick d itself and every code.
    const int64_t rows = 8, cols = 256;
    std::mt19937 rng(17);
    std::uniform_int_distribution<int> code(0, 15);
    std::uniform_real_distribution<float> scale(0.001f, 0.1f);
    std::vector<float> w(size_t(rows * cols));
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t g = 0; g < cols / 32; ++g) {
            const float d = round_to_fp16(scale(rng)) * (g % 2 == 0 ? 1.0f : -1.0f);
            for (int64_t j = 0; j < 32; ++j) {
                const int q = j == (r + g) % 32 ? 0 : code(rng);
                w[size_t(r * cols + g * 32 + j)] = d * kIq4nlCodebook[q];
            }
        }
    }
    const PackedLayout l = make_layout(WeightFormat::iq4nl, rows, cols, 32);
    std::vector<uint8_t> blob = quantize_matrix(w.data(), l);
    std::vector<float> out = dequantize_all(MatrixView{l, blob.data()});
    int64_t mismatches = 0;
    for (size_t i = 0; i < w.size(); ++i) mismatches += out[i] != w[i];
    CHECK(mismatches == 0);

    // Arbitrary data: |error| <= 14|d| (the clipped end 113..127; half the
    // widest gap is 12|d|).
    const std::vector<float> data[] = {gaussian(16, 1000, 7), heavy_tailed(16, 1000, 8)};
    for (const auto& x : data) {
        for (int g : kGroups) {
            const PackedLayout lx = make_layout(WeightFormat::iq4nl, 16, 1000, g);
            blob = quantize_matrix(x.data(), lx);
            const MatrixView view{lx, blob.data()};
            out = dequantize_all(view);
            int64_t bad = 0;
            for (int64_t r = 0; r < 16; ++r) {
                for (int64_t c = 0; c < 1000; ++c) {
                    const size_t i = size_t(r * 1000 + c);
                    const double d = std::fabs(double(params_at(view, r, c).d));
                    bad += !(std::fabs(double(x[i]) - double(out[i])) <= 14.0 * d * (1 + 1e-6));
                }
            }
            CAPTURE(g);
            CHECK(bad == 0);
        }
    }
}

TEST_CASE("q4k: codes nearest for the K-coded parameters; error close to q4a g32") {
    // q4k fits each group as q4a, then codes the eight scales (and minimums) of
    // 256 columns as 6-bit multiples of an fp16 d (dmin): a group's scale moves
    // by at most d/2 and its minimum by dmin/2, so beyond q4a's clipping limit
    // (kMaxClip scales) a weight can lose 15 d/2 + dmin/2 more.
    const std::vector<float> data[] = {gaussian(16, 1024, 11), heavy_tailed(16, 1024, 12)};
    for (const auto& x : data) {
        const PackedLayout l = make_layout(WeightFormat::q4k, 16, 1024, 32);
        CHECK(l.bits_per_weight() == 4.5);
        const std::vector<uint8_t> blob = quantize_matrix(x.data(), l);
        const MatrixView view{l, blob.data()};
        const std::vector<float> out = dequantize_all(view);
        int64_t bad = 0;
        for (int64_t r = 0; r < 16; ++r) {
            for (int64_t c = 0; c < 1024; ++c) {
                const uint8_t* sb = blob.data() + l.scales_offset + 16 * size_t(r * 4 + c / 256);
                uint16_t h[2];
                std::memcpy(h, sb, 4);
                const double d = fp16_to_fp32(h[0]), dmin = fp16_to_fp32(h[1]);
                const double s = std::fabs(double(params_at(view, r, c).d));
                const double bound = 0.5 * s + kMaxClip * (s + d / 2) + 7.5 * d + 0.5 * dmin;
                const size_t i = size_t(r * 1024 + c);
                bad += !(std::fabs(double(x[i]) - double(out[i])) <= bound * (1 + 1e-6));
            }
        }
        CHECK(bad == 0);
        const PackedLayout la = make_layout(WeightFormat::q4a, 16, 1024, 32);
        const std::vector<uint8_t> blob_a = quantize_matrix(x.data(), la);
        const double e_k = quantization_error(x.data(), view).rel_rms;
        const double e_a = quantization_error(x.data(), MatrixView{la, blob_a.data()}).rel_rms;
        MESSAGE("rel rms q4k " << e_k << ", q4a g32 " << e_a);
        CHECK(e_k <= 1.1 * e_a);
    }
    // Shapes q4k cannot hold.
    CHECK_THROWS_AS(make_layout(WeightFormat::q4k, 4, 1000, 32), std::invalid_argument);
    CHECK_THROWS_AS(make_layout(WeightFormat::q4k, 4, 1024, 64), std::invalid_argument);
}

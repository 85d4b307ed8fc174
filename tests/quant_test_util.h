// Shared helpers of the quantizer tests: test matrices, dequantization of a whole
// blob, stored group parameters and the per-weight error bound of each format.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/codebooks.h"
#include "kernels/formats.h"
#include "kernels/group_params.h"
#include "kernels/matmul.h"
#include "kernels/quantize.h"

namespace quant_test {

using namespace nibble;

inline std::vector<float> gaussian(int64_t rows, int64_t cols, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> w(size_t(rows * cols));
    for (float& v : w) v = normal(rng);
    return w;
}

// Student-t with 3 degrees of freedom, and every 97th column (3 of 256, offset 5)
// scaled by 25: outlier channels as seen in LLM activations-weights.
inline std::vector<float> heavy_tailed(int64_t rows, int64_t cols, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::student_t_distribution<float> student(3.0f);
    std::vector<float> w(size_t(rows * cols));
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
            w[size_t(r * cols + c)] = student(rng) * (c % 97 == 5 ? 25.0f : 1.0f);
        }
    }
    return w;
}

inline std::vector<float> dequantize_all(const MatrixView& view) {
    const PackedLayout& l = view.layout;
    std::vector<float> out(size_t(l.rows * l.cols));
    for (int64_t r = 0; r < l.rows; ++r) dequantize_row(view, r, out.data() + r * l.cols);
    return out;
}

inline double mse(const std::vector<float>& a, const std::vector<float>& b) {
    double s = 0.0;
    for (size_t i = 0; i < a.size(); ++i) {
        const double e = double(a[i]) - double(b[i]);
        s += e * e;
    }
    return s / double(a.size());
}

inline double quantized_mse(const std::vector<float>& w, const PackedLayout& l,
                            ScaleRule rule = ScaleRule::search) {
    const std::vector<uint8_t> blob = quantize_matrix(w.data(), l, QuantizeOptions{rule});
    return mse(w, dequantize_all(MatrixView{l, blob.data()}));
}

// Decoded parameters of the group holding (row, col).
struct Params {
    float d = 0.0f, m = 0.0f;
};
inline Params params_at(const MatrixView& v, int64_t row, int64_t col) {
    const int64_t gi = row * v.layout.groups_per_row + col / v.layout.group_size;
    Params p;
    p.d = group_param(v, GroupStream::scales, gi);
    if (v.layout.format == WeightFormat::q4a) p.m = group_param(v, GroupStream::mins, gi);
    return p;
}

// Representable interval [lo, hi] of a group with parameters p.
inline void interval(WeightFormat f, Params p, float& lo, float& hi) {
    switch (f) {
        case WeightFormat::q8:
            lo = -127.0f * std::fabs(p.d), hi = 127.0f * std::fabs(p.d);
            break;
        case WeightFormat::q4:
            lo = p.d > 0 ? -8.0f * p.d : 7.0f * p.d, hi = p.d > 0 ? 7.0f * p.d : -8.0f * p.d;
            break;
        case WeightFormat::q4a:
            lo = std::min(p.m, p.m + 15.0f * p.d), hi = std::max(p.m, p.m + 15.0f * p.d);
            break;
        default:
            lo = -std::fabs(p.d), hi = std::fabs(p.d);
            break;  // nf4
    }
}

// Largest distance from a point inside the interval to its nearest representable
// value, in units of |d|: half a step (1/2) for the uniform grids; for nf4 half
// the largest gap of the code book, (1 - 0.7229568) / 2 = 0.1385.
inline double half_step(WeightFormat f) {
    if (f != WeightFormat::nf4) return 0.5;
    double gap = 0.0;
    for (int i = 0; i < 15; ++i) gap = std::max(gap, double(kNf4Codebook[i + 1] - kNf4Codebook[i]));
    return gap / 2.0;
}

// Per-weight bound given the decoded parameters of the weight's group:
//   inside the interval:  |w - w'| <= half_step * |d|
//   outside it:           |w - w'| =  distance to the interval (the end code)
// plus float rounding of the dequantization (a few ulps of the operands).
// `clip` receives the distance outside the interval.
inline double error_bound(WeightFormat f, Params p, float w, double& clip) {
    float lo, hi;
    interval(f, p, lo, hi);
    clip = std::max({0.0, double(lo) - w, double(w) - double(hi)});
    const double rounding = 1e-6 * (std::fabs(w) + 128.0 * std::fabs(p.d) + std::fabs(p.m)) + 1e-30;
    return (clip > 0 ? clip : half_step(f) * std::fabs(p.d)) + rounding;
}

}  // namespace quant_test

// Per-group parameter choice and nearest-code selection for the quantizer.
//
// A group is n <= group_size real weights (a short final group has fewer; its
// padding is not part of the fit). Every fit returns real-valued parameters; the
// candidates are compared by the squared error they give once the parameters are
// rounded to fp16 (their stored precision without double quantization) and every
// weight takes its nearest code.
//
// Clipping limit: the search never accepts a candidate under which some weight
// lies more than kMaxClip*|d| outside the representable interval (q4: d*[-8, 7],
// q4a: [m, m + 15d], q8: d*[-127, 127]) or, for nf4, more than kNf4MaxClip*|d|
// outside [-d, d]. So each weight's error is at most max(half a step, that
// limit) -- the bound the tests check.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/codebooks.h"
#include "kernels/quantize.h"

namespace nibble {

inline constexpr float kMaxClip = 2.0f;      // q4 / q4a / q8, in units of |d|
inline constexpr float kNf4MaxClip = 0.25f;  // nf4, in units of |d|

struct GroupFit {
    float scale = 0.0f;
    float min = 0.0f;  // q4a only
};

GroupFit fit_q8_group(const float* w, int n);
GroupFit fit_q4_group(const float* w, int n, ScaleRule rule);
GroupFit fit_q4a_group(const float* w, int n, ScaleRule rule);
GroupFit fit_nf4_group(const float* w, int n, ScaleRule rule);
// iq4nl (llama.cpp's IQ4_NL table -127..113; the format exists for GGUF
// IQ4_NL/IQ4_XS import): the value of largest |w| maps to -127 or to 113,
// whichever gives the smaller squared error, for every rule. Each weight's
// error is at most 14|d| (the clipped end 113..127) and at most 12|d| (half the
// widest gap) when it maps to 113.
GroupFit fit_iq4nl_group(const float* w, int n);
// q4k: the q4a fit, whose scale must be >= 0 and minimum <= 0 for Q4_K's coding
// (otherwise d = max(w, 0) / 15, m = 0); the caller codes them per 256 columns.
GroupFit fit_q4k_group(const float* w, int n, ScaleRule rule);
// The fit of `format` (its FormatTraits::fit); throws std::invalid_argument for
// a format without group parameters of its own (f32, f16, q6k).
GroupFit fit_format_group(WeightFormat format, const float* w, int n, ScaleRule rule);

// Nearest codes for decoded parameters. Each is optimal for any sign of d:
// |w - d*v| = |d| * |w/d - v|, so the nearest value v to w/d is the answer.
// A zero scale gives the code of value 0 (q4a: code 0, value m).

// int8 code in -127..127 of w ~ d*q.
inline int q8_code(float w, float d) {
    if (d == 0.0f) return 0;
    const float t = std::fmin(std::fmax(w / d, -127.0f), 127.0f);
    return int(t + 127.5f) - 127;  // round half up; t + 127.5 >= 0.5, so truncation floors
}

// Stored code 0..15 of w ~ d*(q - 8).
inline int q4_code(float w, float d) {
    if (d == 0.0f) return 8;
    const float t = std::fmin(std::fmax(w / d, -8.0f), 7.0f);
    return int(t + 8.5f);  // round half up of t, plus 8 (positive, so truncation floors)
}

// Code 0..15 of w ~ d*q + m.
inline int q4a_code(float w, float d, float m) {
    if (d == 0.0f) return 0;
    const float t = std::fmin(std::fmax((w - m) / d, 0.0f), 15.0f);
    // t >= 0, so adding 0.5 and truncating rounds half up, the format's rule.
    return int(t + 0.5f);  // NOLINT(bugprone-incorrect-roundings)
}

// Index 0..15 of the NF4 code book value nearest w/d: the number of midpoints
// between consecutive (ascending) code book values that lie below w/d.
inline int nf4_code(float w, float d) {
    if (d == 0.0f) return 7;  // kNf4Codebook[7] == 0
    const float t = w / d;
    int q = 0;
    for (int i = 0; i < 15; ++i) q += t > 0.5f * (kNf4Codebook[i] + kNf4Codebook[i + 1]);
    return q;
}

// Index 0..15 of the IQ4_NL table value nearest w/d (a zero scale: the entry
// nearest 0, kIq4nlCodebook[8] == 1).
inline int iq4nl_code(float w, float d) {
    if (d == 0.0f) return 8;
    const float t = w / d;
    int q = 0;
    for (int i = 0; i < 15; ++i) q += t > 0.5f * (kIq4nlCodebook[i] + kIq4nlCodebook[i + 1]);
    return q;
}

// Least-squares (d, m) of w_i ~ d q_i + m for fixed codes q_i = code_of(w_i):
// the normal equations of sum (w - d q - m)^2 are [Sqq Sq; Sq n] [d; m] =
// [Swq; Sw]. False when the codes do not determine them (all equal).
template <class CodeOf>
bool fit_scale_and_min(const float* w, int n, CodeOf code_of, float& d_out, float& m_out) {
    double sq = 0, sqq = 0, sw = 0, swq = 0;
    for (int i = 0; i < n; ++i) {
        const double q = code_of(w[i]);
        sq += q;
        sqq += q * q;
        sw += w[i];
        swq += double(w[i]) * q;
    }
    const double det = double(n) * sqq - sq * sq;
    if (!(det > 0.0)) return false;
    const double dd = (double(n) * swq - sq * sw) / det;
    d_out = float(dd);
    m_out = float((sw - dd * sq) / double(n));
    return true;
}

}  // namespace nibble

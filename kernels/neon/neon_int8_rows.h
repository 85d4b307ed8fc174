// The int8 row kernels of q6k, the ggml block formats and q3 / q2 on NEON
// share this. Four rows are multiplied at once: per block of 32 activations,
// token and row the integer dot products (of 16 or 32 columns) are exact
// (SDOT, or widening multiplies whose pairs fit int16: |w x| <= 32 * 127),
// gathered with pairwise adds into one int32x4 whose lane r is row r, and the
// float epilogue runs with rows in lanes. rows4_tokens is the whole product for
// rows decoded beforehand into int8 codes in column order (one byte per column)
// and, per 16 columns, a scale s (and a minimum m), in the portable kernels' order:
//   acc += xd * ((s0 * dot0 - m0 * sum0) + (s1 * dot1 - m1 * sum1))  (kMin)
//   acc += xd * (s0 * dot0 + s1 * dot1)                              (!kMin)
// so a row's result depends on nothing but the row and the token (GEMM equals
// GEMV bitwise; 1 thread equals 2). It is the portable kernel's result bit for
// bit where that is compiled without FP contraction (GCC for aarch64 contracts
// the portable files into FMAs by default; this folder is -ffp-contract=off).
//
// Included by the kernel files of both variants (SDOT or not: the includer
// defines NIBBLE_NEON_DOTPROD to 1 or 0 first); everything has internal linkage.
#pragma once
#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#include "kernels/activation_quant.h"
#include "kernels/matmul_variants.h"

#ifndef NIBBLE_NEON_DOTPROD
#error "define NIBBLE_NEON_DOTPROD (0 or 1) before including neon_int8_rows.h"
#endif

namespace nibble::kernels::neon {
namespace {

constexpr int kRows4 = 4;    // rows per step (the float lanes)
constexpr int kTokens4 = 4;  // tokens per step

// An fp16 bit pattern at p as float (exact, as fp16_to_fp32).
[[gnu::always_inline]] inline float half_at(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

// Lane r: sum over 16 columns of w[r][k] * x[k], for four rows.
[[gnu::always_inline]] inline int32x4_t dot16_rows4(const int8x16_t* w, int8x16_t x) {
    int32x4_t d[kRows4];
    for (int r = 0; r < kRows4; ++r) {
#if NIBBLE_NEON_DOTPROD
        d[r] = vdotq_s32(vdupq_n_s32(0), w[r], x);
#else
        d[r] = vpaddlq_s16(vmlal_high_s8(vmull_s8(vget_low_s8(w[r]), vget_low_s8(x)), w[r], x));
#endif
    }
    return vpaddq_s32(vpaddq_s32(d[0], d[1]), vpaddq_s32(d[2], d[3]));
}

// Byte k: 0xff if bit k % 8 of byte k / 8 of the 2 bytes at p is set, else 0.
inline uint8x16_t bits_of_2_bytes(const uint8_t* p) {
    const uint8x16_t sel = vreinterpretq_u8_u64(vdupq_n_u64(0x8040201008040201ULL));
    return vtstq_u8(vcombine_u8(vdup_n_u8(p[0]), vdup_n_u8(p[1])), sel);
}

// Lane r: sum over 32 columns of w[r][k] * x[k] (columns 0..15 in w0 / x0,
// 16..31 in w1 / x1), for four rows.
[[gnu::always_inline]] inline int32x4_t dot32_rows4(const int8x16_t* w0, const int8x16_t* w1,
                                                    int8x16_t x0, int8x16_t x1) {
    int32x4_t d[kRows4];
    for (int r = 0; r < kRows4; ++r) {
#if NIBBLE_NEON_DOTPROD
        d[r] = vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0[r], x0), w1[r], x1);
#else
        const int16x8_t p0 =
            vmlal_high_s8(vmull_s8(vget_low_s8(w0[r]), vget_low_s8(x0)), w0[r], x0);
        const int16x8_t p1 =
            vmlal_high_s8(vmull_s8(vget_low_s8(w1[r]), vget_low_s8(x1)), w1[r], x1);
        d[r] = vpadalq_s16(vpaddlq_s16(p0), p1);
#endif
    }
    return vpaddq_s32(vpaddq_s32(d[0], d[1]), vpaddq_s32(d[2], d[3]));
}

// out[t * 2 * n_blocks + k]: float sum of token t's 16 activation codes of
// sub-block k (exact: at most 16 * 127).
inline void sub_sums_of_x(const QuantizedActivations& qa, float* out) {
    const int64_t n_sub = 2 * qa.n_blocks;
    for (int t = 0; t < qa.n_tokens; ++t) {
        const int8_t* xq = qa.token_q(t);
        float* o = out + size_t(t) * size_t(n_sub);
        for (int64_t k = 0; k < n_sub; ++k) o[k] = float(vaddlvq_s8(vld1q_s8(xq + 16 * k)));
    }
}

// out[4 k + r] = rows[r][k] for k < n.
inline void interleave_rows4(const float* const* rows, int64_t n, float* out) {
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) {
        float32x4x4_t v;
        v.val[0] = vld1q_f32(rows[0] + k);
        v.val[1] = vld1q_f32(rows[1] + k);
        v.val[2] = vld1q_f32(rows[2] + k);
        v.val[3] = vld1q_f32(rows[3] + k);
        vst4q_f32(out + 4 * k, v);
    }
    for (; k < n; ++k) {
        for (int r = 0; r < kRows4; ++r) out[4 * k + r] = rows[r][k];
    }
}

// Four decoded rows (wq[r]: codes of row r) times T tokens from t0. ws / wm:
// the rows' s and m interleaved (lane r of sub-block k at 4k); xs: the
// activations' sub-block sums (sub_sums_of_x; read only when kMin). Rows from
// n_valid on repeat a valid one and are not written.
template <bool kMin, int T>
void rows4_tokens(const int8_t* const* wq, const float* ws, const float* wm, const float* xs,
                  const QuantizedActivations& qa, int t0, int n_valid, float* y, int64_t n_rows) {
    const int64_t n_sub = 2 * qa.n_blocks;
    float32x4_t acc[T];
    const int8_t* xq[T];
    const float* xd[T];
    const float* xsum[T];
    for (int t = 0; t < T; ++t) {
        acc[t] = vdupq_n_f32(0.0f);
        xq[t] = qa.token_q(t0 + t);
        xd[t] = qa.token_d(t0 + t);
        xsum[t] = kMin ? xs + size_t(t0 + t) * size_t(n_sub) : nullptr;
    }
    for (int64_t b = 0; b < qa.n_blocks; ++b) {
        int8x16_t w0[kRows4], w1[kRows4];
        for (int r = 0; r < kRows4; ++r) {
            w0[r] = vld1q_s8(wq[r] + 32 * b);
            w1[r] = vld1q_s8(wq[r] + 32 * b + 16);
        }
        const float32x4_t s0 = vld1q_f32(ws + 8 * b), s1 = vld1q_f32(ws + 8 * b + 4);
        float32x4_t m0 = s0, m1 = s1;
        if constexpr (kMin) {
            m0 = vld1q_f32(wm + 8 * b);
            m1 = vld1q_f32(wm + 8 * b + 4);
        }
        for (int t = 0; t < T; ++t) {
            const int8x16_t x0 = vld1q_s8(xq[t] + 32 * b), x1 = vld1q_s8(xq[t] + 32 * b + 16);
            float32x4_t v0 = vmulq_f32(s0, vcvtq_f32_s32(dot16_rows4(w0, x0)));
            float32x4_t v1 = vmulq_f32(s1, vcvtq_f32_s32(dot16_rows4(w1, x1)));
            if constexpr (kMin) {
                v0 = vsubq_f32(v0, vmulq_n_f32(m0, xsum[t][2 * b]));
                v1 = vsubq_f32(v1, vmulq_n_f32(m1, xsum[t][2 * b + 1]));
            }
            acc[t] = vaddq_f32(acc[t], vmulq_n_f32(vaddq_f32(v0, v1), xd[t][b]));
        }
    }
    for (int t = 0; t < T; ++t) {
        float* out = y + size_t(t0 + t) * size_t(n_rows);
        if (n_valid == kRows4) {
            vst1q_f32(out, acc[t]);
        } else {
            float lanes[kRows4];
            vst1q_f32(lanes, acc[t]);
            for (int r = 0; r < n_valid; ++r) out[r] = lanes[r];
        }
    }
}

// Every token for four decoded rows (see rows4_tokens); y points at the first row's output.
template <bool kMin>
void rows4_all_tokens(const int8_t* const* wq, const float* ws, const float* wm, const float* xs,
                      const QuantizedActivations& qa, int n_valid, float* y, int64_t n_rows) {
    int t = 0;
    for (; t + kTokens4 <= qa.n_tokens; t += kTokens4)
        rows4_tokens<kMin, kTokens4>(wq, ws, wm, xs, qa, t, n_valid, y, n_rows);
    for (; t < qa.n_tokens; ++t) rows4_tokens<kMin, 1>(wq, ws, wm, xs, qa, t, n_valid, y, n_rows);
}

}  // namespace
}  // namespace nibble::kernels::neon

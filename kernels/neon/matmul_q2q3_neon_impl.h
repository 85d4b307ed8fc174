// nibble's q3 and q2 (kernels/q2q3.h) with int8 activations on NEON, included
// by matmul_q2q3_neon.cpp (widening multiplies) and matmul_q2q3_neon_dotprod.cpp
// (SDOT); the includer defines NIBBLE_NEON_DOTPROD to 0 or 1 first. Everything
// here has internal linkage. Activations in natural order.
//
// Four rows per step, rows in the float lanes as in kernels/neon/neon_int8_rows.h.
// Per 32-column chunk and row the codes are unpacked in registers: the 2-bit
// plane (8 bytes) doubled into 16 and shifted right by 0 / 2 and 4 / 6 per
// half, masked with 3, gives the low bits in column order; q3's third bits (4
// bytes) are spread one byte per column by a bit test. The chunk's integer
// dot product (exact) is multiplied as in the portable kernel,
//   acc += (d_w * d_x) * sum,
// and the offsets are added per group through the activations' group sums
// after the blocks (q3: acc -= 4 * sum_g d_g gs_g; q2: acc += sum_g m_g gs_g).
#include <arm_neon.h>

#include <cstdint>

#include "kernels/activation_quant.h"
#include "kernels/matmul_q2q3.h"
#include "kernels/matmul_variants.h"
#include "kernels/neon/neon_common.h"
#include "kernels/neon/neon_int8_rows.h"
#include "kernels/q2q3.h"

namespace nibble::kernels::neon {
namespace {

// The 32 codes of one chunk in column order: columns 0..15 and 16..31.
template <bool kQ3>
inline void chunk_codes(const uint8_t* chunk, int8x16_t& c0, int8x16_t& c1) {
    const uint8x8_t plane = vld1_u8(chunk);
    const uint8x16_t both = vcombine_u8(plane, plane);
    const uint8x16_t m3 = vdupq_n_u8(3);
    // Shift counts per byte: 0 / -2 for columns 0..15, -4 / -6 for 16..31.
    const int8x16_t sh0 = vcombine_s8(vdup_n_s8(0), vdup_n_s8(-2));
    const int8x16_t sh1 = vcombine_s8(vdup_n_s8(-4), vdup_n_s8(-6));
    uint8x16_t u0 = vandq_u8(vshlq_u8(both, sh0), m3);
    uint8x16_t u1 = vandq_u8(vshlq_u8(both, sh1), m3);
    if constexpr (kQ3) {
        const uint8x16_t four = vdupq_n_u8(4);
        u0 = vorrq_u8(u0, vandq_u8(bits_of_2_bytes(chunk + 8), four));
        u1 = vorrq_u8(u1, vandq_u8(bits_of_2_bytes(chunk + 10), four));
    }
    c0 = vreinterpretq_s8_u8(u0);
    c1 = vreinterpretq_s8_u8(u1);
}

// Four rows (codes[r]: a row's chunks) times T tokens from t0. ws / wm: the
// rows' group scales and minimums interleaved (lane r of group g at 4g).
template <bool kQ3, int T>
void q2q3_tokens(const uint8_t* const* codes, const float* ws, const float* wm,
                 const QuantizedActivations& qa, int t0, int n_valid, float* y, int64_t n_rows) {
    constexpr int kChunk = kQ3 ? kQ3ChunkBytes : kQ2ChunkBytes;
    const int group_shift = __builtin_ctzll(uint64_t(qa.blocks_per_group));
    float32x4_t acc[T];
    const int8_t* xq[T];
    const float* xd[T];
    for (int t = 0; t < T; ++t) {
        acc[t] = vdupq_n_f32(0.0f);
        xq[t] = qa.token_q(t0 + t);
        xd[t] = qa.token_d(t0 + t);
    }
    for (int64_t b = 0; b < qa.n_blocks; ++b) {
        int8x16_t w0[kRows4], w1[kRows4];
        for (int r = 0; r < kRows4; ++r) chunk_codes<kQ3>(codes[r] + kChunk * b, w0[r], w1[r]);
        const float32x4_t s = vld1q_f32(ws + 4 * (b >> group_shift));
        for (int t = 0; t < T; ++t) {
            const int8x16_t x0 = vld1q_s8(xq[t] + 32 * b), x1 = vld1q_s8(xq[t] + 32 * b + 16);
            const float32x4_t sum = vcvtq_f32_s32(dot32_rows4(w0, w1, x0, x1));
            acc[t] = vaddq_f32(acc[t], vmulq_f32(vmulq_n_f32(s, xd[t][b]), sum));
        }
    }
    for (int t = 0; t < T; ++t) {
        const float* gs = qa.token_group_sums(t0 + t);
        const float* p = kQ3 ? ws : wm;
        float32x4_t corr = vdupq_n_f32(0.0f);
        for (int64_t g = 0; g < qa.groups_per_row; ++g)
            corr = vaddq_f32(corr, vmulq_n_f32(vld1q_f32(p + 4 * g), gs[g]));
        const float32x4_t a =
            kQ3 ? vsubq_f32(acc[t], vmulq_n_f32(corr, 4.0f)) : vaddq_f32(acc[t], corr);
        float* out = y + size_t(t0 + t) * size_t(n_rows);
        if (n_valid == kRows4) {
            vst1q_f32(out, a);
        } else {
            float lanes[kRows4];
            vst1q_f32(lanes, a);
            for (int r = 0; r < n_valid; ++r) out[r] = lanes[r];
        }
    }
}

template <bool kQ3>
void q2q3_rows(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
               float* y) {
    const PackedLayout& l = w.layout;
    const int64_t gpr = l.groups_per_row;
    const size_t row_bytes = l.row_code_bytes();
    // Scratch: the four rows' scales and minimums, then their interleaved copies.
    float* scratch = kernel_scratch(4 * kRows4 * size_t(gpr));
    float* scales = scratch;
    float* mins = scales + kRows4 * gpr;
    float* ws = mins + kRows4 * gpr;
    float* wm = ws + kRows4 * gpr;
    const uint8_t* blob = w.data + l.codes_offset;
    for (int64_t r = r0; r < r1; r += kRows4) {
        const int n = r1 - r < kRows4 ? int(r1 - r) : kRows4;
        const uint8_t* codes[kRows4];
        const float* rs[kRows4];
        const float* rm[kRows4];
        for (int i = 0; i < kRows4; ++i) {
            // Rows past the range repeat the last one (computed, not written).
            const int src = i < n ? i : n - 1;
            codes[i] = blob + size_t(r + src) * row_bytes;
            rs[i] = scales + size_t(src) * size_t(gpr);
            rm[i] = mins + size_t(src) * size_t(gpr);
            if (i >= n) continue;
            // The rows kRows4 on (the last ones prefetch themselves).
            const uint8_t* pf = r + i + kRows4 < l.rows ? codes[i] + kRows4 * row_bytes : codes[i];
            for (size_t k = 0; k < row_bytes; k += 64) __builtin_prefetch(pf + k);
            decode_params(w, GroupStream::scales, r + i, scales + size_t(i) * size_t(gpr));
            if constexpr (!kQ3)
                decode_params(w, GroupStream::mins, r + i, mins + size_t(i) * size_t(gpr));
        }
        interleave_rows4(rs, gpr, ws);
        if constexpr (!kQ3) interleave_rows4(rm, gpr, wm);
        float* out = y + r;
        int t = 0;
        for (; t + kTokens4 <= qa.n_tokens; t += kTokens4)
            q2q3_tokens<kQ3, kTokens4>(codes, ws, wm, qa, t, n, out, l.rows);
        for (; t < qa.n_tokens; ++t) q2q3_tokens<kQ3, 1>(codes, ws, wm, qa, t, n, out, l.rows);
    }
}

void q2q3_rows_any(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
                   float* y) {
    if (w.layout.format == WeightFormat::q3) {
        q2q3_rows<true>(w, qa, r0, r1, y);
    } else {
        q2q3_rows<false>(w, qa, r0, r1, y);
    }
}

}  // namespace
}  // namespace nibble::kernels::neon

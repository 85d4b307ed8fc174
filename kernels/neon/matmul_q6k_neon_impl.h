// q6k (kernels/q6k.h: llama.cpp's Q6_K) with int8 activations on NEON,
// included by matmul_q6k_neon.cpp (widening multiplies) and
// matmul_q6k_neon_dotprod.cpp (SDOT); the includer defines NIBBLE_NEON_DOTPROD
// to 0 or 1 first. Everything here has internal linkage.
//
// Per step four rows are unpacked, 16 columns per instruction sequence (low
// nibbles by AND / shift, the two high bits shifted into place and masked,
// minus 32), into int8 codes q - 32, and their 16-column scales d * sc are
// widened and multiplied four at a time; kernels/neon/neon_int8_rows.h then
// multiplies them with every token: per block of 32 activations
// xd * (s0 * dot0 + s1 * dot1), in the portable kernel's order.
#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#include "kernels/interleave.h"
#include "kernels/matmul_variants.h"
#include "kernels/neon/neon_int8_rows.h"
#include "kernels/q6k.h"

namespace nibble::kernels::neon {
namespace {

// The 256 codes q - 32 of one super-block's codes (kernels/q6k.h), in column order.
inline void unpack_q6k(const uint8_t* codes, int8_t* out) {
    const uint8x16_t m4 = vdupq_n_u8(15), m30 = vdupq_n_u8(0x30);
    const int8x16_t bias = vdupq_n_s8(32);
    for (int h = 0; h < 2; ++h) {
        const uint8_t* ql = codes + 64 * h;
        const uint8_t* qh = codes + 128 + 32 * h;
        int8_t* o = out + 128 * h;
        for (int k = 0; k < 2; ++k) {  // columns l = 16k .. 16k + 15 of each quarter
            const uint8x16_t a = vld1q_u8(ql + 16 * k), b = vld1q_u8(ql + 32 + 16 * k);
            const uint8x16_t hb = vld1q_u8(qh + 16 * k);
            const uint8x16_t q[4] = {vorrq_u8(vandq_u8(a, m4), vandq_u8(vshlq_n_u8(hb, 4), m30)),
                                     vorrq_u8(vandq_u8(b, m4), vandq_u8(vshlq_n_u8(hb, 2), m30)),
                                     vorrq_u8(vshrq_n_u8(a, 4), vandq_u8(hb, m30)),
                                     vorrq_u8(vshrq_n_u8(b, 4), vandq_u8(vshrq_n_u8(hb, 2), m30))};
            for (int j = 0; j < 4; ++j)
                vst1q_s8(o + 32 * j + 16 * k, vsubq_s8(vreinterpretq_s8_u8(q[j]), bias));
        }
    }
}

// The 16 scales d * sc_j of one super-block's parameters (q6k_scales' products).
inline void q6k_block_scales(const uint8_t* params, float* out) {
    const float d = half_at(params + 16);
    const int8x16_t sc = vld1q_s8(reinterpret_cast<const int8_t*>(params));
    const int16x8_t lo = vmovl_s8(vget_low_s8(sc)), hi = vmovl_high_s8(sc);
    const int32x4_t v[4] = {vmovl_s16(vget_low_s16(lo)), vmovl_high_s16(lo),
                            vmovl_s16(vget_low_s16(hi)), vmovl_high_s16(hi)};
    for (int k = 0; k < 4; ++k) vst1q_f32(out + 4 * k, vmulq_n_f32(vcvtq_f32_s32(v[k]), d));
}

void q6k_rows(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
              float* y) {
    const PackedLayout& l = w.layout;
    const int64_t gpr = l.groups_per_row, cols = l.cols;
    const int64_t n_sub = cols / kQ6kSubBlock;
    // Scratch: the four rows' scales, their interleaved copy, then the four rows' codes.
    float* scratch = kernel_scratch(2 * kRows4 * size_t(n_sub) + kRows4 * size_t(cols) / 4);
    float* scales = scratch;
    float* ws = scales + kRows4 * n_sub;
    auto* codes = reinterpret_cast<int8_t*>(ws + kRows4 * n_sub);
    for (int64_t r = r0; r < r1; r += kRows4) {
        const int n = r1 - r < kRows4 ? int(r1 - r) : kRows4;
        for (int i = 0; i < n; ++i) {
            const int64_t row = r + i;
            const size_t first = size_t(row * gpr);
            // The same bytes kRows4 rows on (the last rows prefetch themselves).
            const int64_t pf_row = row + kRows4 < l.rows ? row + kRows4 : row;
            const RowUnits pf_codes = row_units(w, pf_row);
            const uint8_t* pf_params =
                w.data + l.scales_offset + size_t(pf_row * gpr) * size_t(kQ6kParamBytes);
            for (int64_t b = 0; b < gpr; ++b) {
                const uint8_t* pf = pf_codes.first + size_t(b) * pf_codes.stride;
                for (int64_t k = 0; k < kQ6kCodeBytes; k += 64) __builtin_prefetch(pf + k);
            }
            for (size_t k = 0; k < size_t(gpr * kQ6kParamBytes); k += 64)
                __builtin_prefetch(pf_params + k);
            // Super-block b's codes, in place in either layout (kernels/interleave.h:
            // a q6k unit is one whole super-block).
            const RowUnits rc = row_units(w, row);
            int8_t* wq = codes + size_t(i) * size_t(cols);
            for (int64_t b = 0; b < gpr; ++b)
                unpack_q6k(rc.first + size_t(b) * rc.stride, wq + kQ6kBlock * b);
            const uint8_t* params = w.data + l.scales_offset + first * size_t(kQ6kParamBytes);
            float* rs = scales + size_t(i) * size_t(n_sub);
            for (int64_t b = 0; b < gpr; ++b)
                q6k_block_scales(params + size_t(b) * size_t(kQ6kParamBytes), rs + 16 * b);
        }
        // Rows past the range repeat the last one (computed, not written).
        const int8_t* wq[kRows4];
        const float* rs[kRows4];
        for (int i = 0; i < kRows4; ++i) {
            const int src = i < n ? i : n - 1;
            wq[i] = codes + size_t(src) * size_t(cols);
            rs[i] = scales + size_t(src) * size_t(n_sub);
        }
        interleave_rows4(rs, n_sub, ws);
        rows4_all_tokens<false>(wq, ws, nullptr, nullptr, qa, n, y + r, l.rows);
    }
}

}  // namespace
}  // namespace nibble::kernels::neon

// The ggml block formats (kernels/lowbit.h) with int8 activations on NEON,
// included by matmul_lowbit_neon.cpp (widening multiplies) and
// matmul_lowbit_neon_dotprod.cpp (SDOT); the includer defines
// NIBBLE_NEON_DOTPROD to 0 or 1 first. Everything here has internal linkage.
//
// Per step four rows are decoded, 16 or 32 columns per instruction sequence,
// into unsigned codes u (0..31, as int8) and the 16-column s and m of
// lowbit.h (fp16 parameters converted by the FPU, 6-bit scales unpacked as
// ggml does, then widened and multiplied four at a time), then multiplied with
// every token by kernels/neon/neon_int8_rows.h: s * sum(u x) - m * sum(x) per
// 16 columns, in the portable kernel's order.
#include <arm_neon.h>

#include <cstdint>

#include "kernels/format_traits.h"
#include "kernels/formats.h"
#include "kernels/lowbit.h"
#include "kernels/matmul_variants.h"
#include "kernels/neon/neon_int8_rows.h"

#define NIBBLE_ISA_NAMESPACE neon
#include "kernels/kquant_scale_bytes.h"

namespace nibble::kernels::neon {
namespace {

// Four floats v[k] * d of four bytes (widened from lane 0..3 of a uint32x4).
inline float32x4_t scaled(uint32x4_t v, float d) {
    return vmulq_n_f32(vcvtq_f32_u32(v), d);
}

// 16 floats d * v[k] of 16 unsigned bytes v, minus `bias` before the product.
inline void scale16(uint8x16_t v, int bias, float d, float* out) {
    const uint16x8_t lo = vmovl_u8(vget_low_u8(v)), hi = vmovl_high_u8(v);
    const int32x4_t b = vdupq_n_s32(bias);
    const int32x4_t w[4] = {vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(lo))),
                            vreinterpretq_s32_u32(vmovl_high_u16(lo)),
                            vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(hi))),
                            vreinterpretq_s32_u32(vmovl_high_u16(hi))};
    for (int k = 0; k < 4; ++k)
        vst1q_f32(out + 4 * k, vmulq_n_f32(vcvtq_f32_s32(vsubq_s32(w[k], b)), d));
}

inline void store32(uint8_t* p, uint8x16_t a, uint8x16_t b) {
    vst1q_u8(p, a);
    vst1q_u8(p + 16, b);
}

// One block of format F decoded: u (block columns), s and m (block columns / 16).
template <WeightFormat F>
inline void decode_block(const uint8_t* b, uint8_t* u, float* s, float* m) {
    if constexpr (F == WeightFormat::q5_0 || F == WeightFormat::q5_1) {
        constexpr int off = F == WeightFormat::q5_1 ? 4 : 2;
        const uint8x16_t qs = vld1q_u8(b + off + 4);
        const uint8x16_t sixteen = vdupq_n_u8(16);
        const uint8x16_t h0 = vandq_u8(bits_of_2_bytes(b + off), sixteen);
        const uint8x16_t h1 = vandq_u8(bits_of_2_bytes(b + off + 2), sixteen);
        store32(u, vorrq_u8(vandq_u8(qs, vdupq_n_u8(15)), h0), vorrq_u8(vshrq_n_u8(qs, 4), h1));
        const float d = half_at(b);
        const float mm = F == WeightFormat::q5_1 ? -half_at(b + 2) : 16.0f * d;
        s[0] = s[1] = d;
        m[0] = m[1] = mm;
    } else if constexpr (F == WeightFormat::q5k) {
        const float d = half_at(b), dmin = half_at(b + 2);
        // The eight 6-bit scales then the eight mins as bytes.
        uint8_t sm[16];
        q5k_scale_min_bytes(b + 4, sm);
        const uint8x16_t v = vld1q_u8(sm);
        const uint16x8_t sc = vmovl_u8(vget_low_u8(v)), mc = vmovl_high_u8(v);
        // Each value twice: one per 16 columns.
        const float32x4_t sv[2] = {scaled(vmovl_u16(vget_low_u16(sc)), d),
                                   scaled(vmovl_high_u16(sc), d)};
        const float32x4_t mv[2] = {scaled(vmovl_u16(vget_low_u16(mc)), dmin),
                                   scaled(vmovl_high_u16(mc), dmin)};
        for (int k = 0; k < 2; ++k) {
            vst1q_f32(s + 8 * k, vzip1q_f32(sv[k], sv[k]));
            vst1q_f32(s + 8 * k + 4, vzip2q_f32(sv[k], sv[k]));
            vst1q_f32(m + 8 * k, vzip1q_f32(mv[k], mv[k]));
            vst1q_f32(m + 8 * k + 4, vzip2q_f32(mv[k], mv[k]));
        }
        const uint8x16_t qh0 = vld1q_u8(b + 16), qh1 = vld1q_u8(b + 32);
        const uint8x16_t m4 = vdupq_n_u8(15), sixteen = vdupq_n_u8(16);
        for (int i = 0; i < 8; ++i) {
            const uint8x16_t ql0 = vld1q_u8(b + 48 + 32 * (i / 2));
            const uint8x16_t ql1 = vld1q_u8(b + 48 + 32 * (i / 2) + 16);
            const uint8x16_t bit = vdupq_n_u8(uint8_t(1u << i));
            const uint8x16_t h0 = vandq_u8(vtstq_u8(qh0, bit), sixteen);
            const uint8x16_t h1 = vandq_u8(vtstq_u8(qh1, bit), sixteen);
            if (i % 2 == 0) {
                store32(u + 32 * i, vorrq_u8(vandq_u8(ql0, m4), h0),
                        vorrq_u8(vandq_u8(ql1, m4), h1));
            } else {
                store32(u + 32 * i, vorrq_u8(vshrq_n_u8(ql0, 4), h0),
                        vorrq_u8(vshrq_n_u8(ql1, 4), h1));
            }
        }
    } else if constexpr (F == WeightFormat::q3k) {
        uint8_t sc[16];
        q3k_scale_bytes(b + 96, sc);
        scale16(vld1q_u8(sc), 32, half_at(b + 108), s);
        for (int k = 0; k < 4; ++k) vst1q_f32(m + 4 * k, vmulq_n_f32(vld1q_f32(s + 4 * k), 4.0f));
        const uint8x16_t hm0 = vld1q_u8(b), hm1 = vld1q_u8(b + 16);
        const uint8x16_t m3 = vdupq_n_u8(3), four = vdupq_n_u8(4);
        for (int n = 0; n < 2; ++n) {
            const uint8x16_t q0 = vld1q_u8(b + 32 + 32 * n), q1 = vld1q_u8(b + 48 + 32 * n);
            for (int j = 0; j < 4; ++j) {
                const int8x16_t shift = vdupq_n_s8(int8_t(-2 * j));
                const uint8x16_t bit = vdupq_n_u8(uint8_t(1u << (4 * n + j)));
                store32(
                    u + 128 * n + 32 * j,
                    vorrq_u8(vandq_u8(vshlq_u8(q0, shift), m3), vandq_u8(vtstq_u8(hm0, bit), four)),
                    vorrq_u8(vandq_u8(vshlq_u8(q1, shift), m3),
                             vandq_u8(vtstq_u8(hm1, bit), four)));
            }
        }
    } else {  // q2k
        const uint8x16_t sc = vld1q_u8(b);
        scale16(vandq_u8(sc, vdupq_n_u8(15)), 0, half_at(b + 80), s);
        scale16(vshrq_n_u8(sc, 4), 0, half_at(b + 82), m);
        const uint8x16_t m3 = vdupq_n_u8(3);
        for (int n = 0; n < 2; ++n) {
            const uint8x16_t q0 = vld1q_u8(b + 16 + 32 * n), q1 = vld1q_u8(b + 32 + 32 * n);
            for (int j = 0; j < 4; ++j) {
                const int8x16_t shift = vdupq_n_s8(int8_t(-2 * j));
                store32(u + 128 * n + 32 * j, vandq_u8(vshlq_u8(q0, shift), m3),
                        vandq_u8(vshlq_u8(q1, shift), m3));
            }
        }
    }
}

template <WeightFormat F>
void lowbit_rows(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
                 float* y) {
    constexpr int64_t block_cols = lowbit_block_cols(F);
    constexpr int64_t block_bytes = lowbit_block_bytes(F);
    constexpr int64_t sub_per_block = block_cols / 16;
    const PackedLayout& l = w.layout;
    const int64_t cols = l.cols, n_sub = cols / 16, gpr = l.groups_per_row;
    const size_t xs_floats = size_t(qa.n_tokens) * size_t(2 * qa.n_blocks);
    // Scratch: the activations' sub-block sums, the four rows' s and m, their
    // interleaved copies, then the four rows' codes.
    float* scratch =
        kernel_scratch(xs_floats + 4 * kRows4 * size_t(n_sub) + kRows4 * size_t(cols) / 4);
    float* xs = scratch;
    float* s = xs + xs_floats;
    float* m = s + kRows4 * n_sub;
    float* ws = m + kRows4 * n_sub;
    float* wm = ws + kRows4 * n_sub;
    auto* codes = reinterpret_cast<uint8_t*>(wm + kRows4 * n_sub);
    sub_sums_of_x(qa, xs);
    const size_t row_bytes = size_t(gpr * block_bytes);
    const uint8_t* blob = w.data + l.codes_offset;
    for (int64_t r = r0; r < r1; r += kRows4) {
        const int n = r1 - r < kRows4 ? int(r1 - r) : kRows4;
        for (int i = 0; i < n; ++i) {
            const uint8_t* row = blob + size_t(r + i) * row_bytes;
            // The rows kRows4 on (the last ones prefetch themselves).
            const uint8_t* pf = r + i + kRows4 < l.rows ? row + kRows4 * row_bytes : row;
            uint8_t* u = codes + size_t(i) * size_t(cols);
            float* rs = s + size_t(i) * size_t(n_sub);
            float* rm = m + size_t(i) * size_t(n_sub);
            for (size_t k = 0; k < row_bytes; k += 64) __builtin_prefetch(pf + k);
            for (int64_t b = 0; b < gpr; ++b) {
                decode_block<F>(row + size_t(b * block_bytes), u + block_cols * b,
                                rs + sub_per_block * b, rm + sub_per_block * b);
            }
        }
        // Rows past the range repeat the last one (computed, not written).
        const int8_t* wq[kRows4];
        const float* rs[kRows4];
        const float* rm[kRows4];
        for (int i = 0; i < kRows4; ++i) {
            const int src = i < n ? i : n - 1;
            wq[i] = reinterpret_cast<const int8_t*>(codes) + size_t(src) * size_t(cols);
            rs[i] = s + size_t(src) * size_t(n_sub);
            rm[i] = m + size_t(src) * size_t(n_sub);
        }
        interleave_rows4(rs, n_sub, ws);
        interleave_rows4(rm, n_sub, wm);
        rows4_all_tokens<true>(wq, ws, wm, xs, qa, n, y + r, l.rows);
    }
}

void lowbit_rows_any(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
                     float* y) {
    visit_any_format(w.layout.format, [&](auto tag) {
        constexpr WeightFormat F = decltype(tag)::value;
        if constexpr (is_ggml_block_format(F)) lowbit_rows<F>(w, qa, r0, r1, y);
    });
}

}  // namespace
}  // namespace nibble::kernels::neon

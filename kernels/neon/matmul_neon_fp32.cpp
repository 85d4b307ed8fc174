// NEON matmul with exact FP32 activations: each 32-column chunk of a row is
// dequantized (w = d * v + m, v the code value) into a small buffer, then
// multiplied into every token with FMA; also the f32 / f16 formats. Each token
// keeps four float32x4 accumulators (columns i mod 16 in 4-lane slices).
#include <cmath>

#include "kernels/codebooks.h"
#include "kernels/format_traits.h"
#include "kernels/interleave.h"
#include "kernels/matmul_variants.h"
#include "kernels/neon/neon_common.h"

namespace nibble::kernels::neon {

namespace {

constexpr int kTokenBlock = 2;

template <WeightFormat F>
inline void dequant_chunk(const uint8_t* row_codes, int64_t k, float d, float m, float* out) {
    if constexpr (F == WeightFormat::q8) {
        const int8_t* src = reinterpret_cast<const int8_t*>(row_codes) + 32 * k;
        for (int j = 0; j < 32; ++j) out[j] = d * float(src[j]);
    } else {
        const uint8_t* src = row_codes + 16 * k;
        for (int j = 0; j < 16; ++j) {
            const int lo = src[j] & 0x0f, hi = src[j] >> 4;
            if constexpr (FormatTraits<F>::code_book) {
                out[j] = d * kCodeBook<F>[lo];
                out[j + 16] = d * kCodeBook<F>[hi];
            } else {  // q4: m = -8d, fma gives d*(q-8) in one rounding; q4a: d*q + m
                out[j] = std::fma(float(lo), d, m);
                out[j + 16] = std::fma(float(hi), d, m);
            }
        }
    }
}

// acc[t][0..3] += w[0..31] * x_t[0..31]
template <int T>
inline void fma_chunk(const float* w, const float* const* xt, float32x4_t (*acc)[4]) {
    for (int i = 0; i < 8; ++i) {
        const float32x4_t wv = vld1q_f32(w + 4 * i);
        for (int t = 0; t < T; ++t)
            acc[t][i & 3] = vfmaq_f32(acc[t][i & 3], wv, vld1q_f32(xt[t] + 4 * i));
    }
}

template <int T>
inline float finish(const float32x4_t* acc) {
    return vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
}

template <WeightFormat F, int T>
void grouped_tokens(const uint8_t* codes, const float* scales, const float* mins, int group_shift,
                    int64_t n_chunks, const float* x, int64_t x_stride, int t0, int64_t row,
                    int64_t n_rows, float* y) {
    float32x4_t acc[T][4];
    for (int t = 0; t < T; ++t)
        for (int i = 0; i < 4; ++i) acc[t][i] = vdupq_n_f32(0.0f);
    float w[32];
    const float* xt[T];
    for (int64_t k = 0; k < n_chunks; ++k) {
        const float d = scales[k >> group_shift];
        float m = 0.0f;
        if constexpr (F == WeightFormat::q4) m = -8.0f * d;
        if constexpr (F == WeightFormat::q4a) m = mins[k >> group_shift];
        dequant_chunk<F>(codes, k, d, m, w);
        for (int t = 0; t < T; ++t) xt[t] = x + size_t(t0 + t) * size_t(x_stride) + 32 * k;
        fma_chunk<T>(w, xt, acc);
    }
    for (int t = 0; t < T; ++t)
        y[size_t(t0 + t) * size_t(n_rows) + size_t(row)] = finish<T>(acc[t]);
}

template <WeightFormat F>
void rows_grouped(const MatrixView& w, const float* x, int64_t x_stride, int n_tokens, int64_t r0,
                  int64_t r1, float* y) {
    const PackedLayout& l = w.layout;
    const int64_t gpr = l.groups_per_row;
    // 32-column chunks per group is a power of two: chunk k is in group k >> group_shift.
    const int group_shift = __builtin_ctz(unsigned(l.group_size / 32));
    const int64_t n_chunks = l.padded_cols / 32;
    const size_t row_bytes = size_t(kChunkBytes<F> * (l.padded_cols / 32));
    float* scales = kernel_scratch(size_t(2 * gpr));
    float* mins = scales + gpr;
    const bool interleaved = l.interleave > 1;  // rows gathered (kernels/interleave.h)
    uint8_t* gathered = interleaved ? code_scratch(0, row_bytes) : nullptr;
    for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* codes = interleaved ? row_codes(w, r, gathered)
                                           : w.data + l.codes_offset + size_t(r) * row_bytes;
        decode_params(w, GroupStream::scales, r, scales);
        if constexpr (F == WeightFormat::q4a) decode_params(w, GroupStream::mins, r, mins);
        int t = 0;
        for (; t + kTokenBlock <= n_tokens; t += kTokenBlock)
            grouped_tokens<F, kTokenBlock>(codes, scales, mins, group_shift, n_chunks, x, x_stride,
                                           t, r, l.rows, y);
        for (; t < n_tokens; ++t)
            grouped_tokens<F, 1>(codes, scales, mins, group_shift, n_chunks, x, x_stride, t, r,
                                 l.rows, y);
    }
}

template <WeightFormat F>
inline float weight_at(const uint8_t* row, int64_t c) {
    if constexpr (F == WeightFormat::f32) {
        float v;
        std::memcpy(&v, row + 4 * c, 4);
        return v;
    } else {
        uint16_t h;
        std::memcpy(&h, row + 2 * c, 2);
        return fp16_to_fp32(h);
    }
}

template <WeightFormat F, int T>
void dense_tokens(const uint8_t* row, int64_t cols, const float* x, int64_t x_stride, int t0,
                  int64_t r, int64_t n_rows, float* y) {
    float32x4_t acc[T][4];
    for (int t = 0; t < T; ++t)
        for (int i = 0; i < 4; ++i) acc[t][i] = vdupq_n_f32(0.0f);
    float w[32];
    const float* xt[T];
    int64_t c = 0;
    for (; c + 32 <= cols; c += 32) {
        if constexpr (F == WeightFormat::f32) {
            std::memcpy(w, row + 4 * c, sizeof(w));
        } else {
            for (int i = 0; i < 8; ++i) {
                uint16_t h[4];
                std::memcpy(h, row + 2 * (c + 4 * i), 8);
                vst1q_f32(w + 4 * i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h))));
            }
        }
        for (int t = 0; t < T; ++t) xt[t] = x + size_t(t0 + t) * size_t(x_stride) + c;
        fma_chunk<T>(w, xt, acc);
    }
    for (int t = 0; t < T; ++t) {
        float sum = finish<T>(acc[t]);
        const float* xr = x + size_t(t0 + t) * size_t(x_stride);
        for (int64_t j = c; j < cols; ++j) sum += weight_at<F>(row, j) * xr[j];
        y[size_t(t0 + t) * size_t(n_rows) + size_t(r)] = sum;
    }
}

template <WeightFormat F>
void rows_dense(const MatrixView& w, const float* x, int64_t x_stride, int n_tokens, int64_t r0,
                int64_t r1, float* y) {
    const int64_t cols = w.layout.cols;
    const size_t row_bytes = size_t(cols) * (F == WeightFormat::f32 ? 4 : 2);
    for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* row = w.data + size_t(r) * row_bytes;
        int t = 0;
        for (; t + kTokenBlock <= n_tokens; t += kTokenBlock)
            dense_tokens<F, kTokenBlock>(row, cols, x, x_stride, t, r, w.layout.rows, y);
        for (; t < n_tokens; ++t)
            dense_tokens<F, 1>(row, cols, x, x_stride, t, r, w.layout.rows, y);
    }
}

}  // namespace

void matmul_rows_fp32(const MatrixView& w, const float* x, int64_t x_stride, int n_tokens,
                      int64_t r0, int64_t r1, float* y) {
    visit_format(w.layout.format, [&](auto format) {
        constexpr WeightFormat F = decltype(format)::value;
        if constexpr (FormatTraits<F>::grouped) {
            rows_grouped<F>(w, x, x_stride, n_tokens, r0, r1, y);
        } else {
            rows_dense<F>(w, x, x_stride, n_tokens, r0, r1, y);
        }
    });
}

}  // namespace nibble::kernels::neon

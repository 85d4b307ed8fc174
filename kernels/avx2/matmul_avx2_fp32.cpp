// AVX2 matmul with exact FP32 activations: each 32-column chunk of a row is
// dequantized into four 8-float registers (w = d * v + m with v the code value)
// and multiplied into the activations with FMA; also the f32 / f16 formats.
// Each token keeps four accumulators, one per 8-column slice of a chunk.
#include "kernels/avx2/avx2_common.h"
#include "kernels/codebooks.h"
#include "kernels/format_traits.h"
#include "kernels/interleave.h"
#include "kernels/matmul_variants.h"

namespace nibble::kernels::avx2 {

namespace {

constexpr int kTokenBlock = 2;

// Code book value book[idx] (nf4, iq4nl) for 8 indices 0..15: two 8-entry
// permutes, blended on bit 3.
inline __m256 codebook_lookup(const float* book, __m256i idx) {
    const __m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(book), idx);
    const __m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(book + 8), idx);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

// Weights of chunk k (columns 32k .. 32k+31) of a grouped row, 8 per register.
template <WeightFormat F>
inline void dequant_chunk(const uint8_t* row_codes, int64_t k, float d, float m, __m256* w) {
    const __m256 vd = _mm256_set1_ps(d);
    if constexpr (F == WeightFormat::q8) {
        const int8_t* src = reinterpret_cast<const int8_t*>(row_codes) + 32 * k;
        for (int i = 0; i < 4; ++i) {
            const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + 8 * i));
            w[i] = _mm256_mul_ps(vd, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8)));
        }
    } else {
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row_codes + 16 * k));
        const __m256i b0 = _mm256_cvtepu8_epi32(bytes);                     // bytes 0..7
        const __m256i b1 = _mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8));  // bytes 8..15
        const __m256i mask = _mm256_set1_epi32(0x0f);
        // Low nibbles are columns 0..15, high nibbles columns 16..31.
        const __m256i q[4] = {_mm256_and_si256(b0, mask), _mm256_and_si256(b1, mask),
                              _mm256_srli_epi32(b0, 4), _mm256_srli_epi32(b1, 4)};
        for (int i = 0; i < 4; ++i) {
            if constexpr (FormatTraits<F>::code_book) {
                w[i] = _mm256_mul_ps(vd, codebook_lookup(kCodeBook<F>, q[i]));
            } else {  // q4: m = -8d gives d*(q-8) in one rounding; q4a: d*q + m
                w[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q[i]), vd, _mm256_set1_ps(m));
            }
        }
    }
}

template <WeightFormat F, int T>
void grouped_tokens(const uint8_t* codes, const uint8_t* next_codes, const float* scales,
                    const float* mins, int group_shift, int64_t n_chunks, const float* x,
                    int64_t x_stride, int t0, int64_t row, int64_t n_rows, float* y) {
    __m256 acc[T][4];
    for (int t = 0; t < T; ++t)
        for (int i = 0; i < 4; ++i) acc[t][i] = _mm256_setzero_ps();
    for (int64_t k = 0; k < n_chunks; ++k) {
        const float d = scales[k >> group_shift];
        float m = 0.0f;
        if constexpr (F == WeightFormat::q4) m = -8.0f * d;
        if constexpr (F == WeightFormat::q4a) m = mins[k >> group_shift];
        __m256 w[4];
        // The next row's codes, so the stream does not wait for DRAM at row starts.
        constexpr int kChunkBytes = F == WeightFormat::q8 ? 32 : 16;
        _mm_prefetch(reinterpret_cast<const char*>(next_codes + kChunkBytes * k), _MM_HINT_T0);
        dequant_chunk<F>(codes, k, d, m, w);
        for (int t = 0; t < T; ++t) {
            const float* xt = x + size_t(t0 + t) * size_t(x_stride) + 32 * k;
            for (int i = 0; i < 4; ++i)
                acc[t][i] = _mm256_fmadd_ps(w[i], _mm256_loadu_ps(xt + 8 * i), acc[t][i]);
        }
    }
    for (int t = 0; t < T; ++t) {
        const __m256 s =
            _mm256_add_ps(_mm256_add_ps(acc[t][0], acc[t][1]), _mm256_add_ps(acc[t][2], acc[t][3]));
        y[size_t(t0 + t) * size_t(n_rows) + size_t(row)] = hsum(s);
    }
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
        const uint8_t* next = r + 1 < l.rows && !interleaved ? codes + row_bytes : codes;
        decode_row_params(w, GroupStream::scales, r, scales);
        if constexpr (F == WeightFormat::q4a) decode_row_params(w, GroupStream::mins, r, mins);
        int t = 0;
        for (; t + kTokenBlock <= n_tokens; t += kTokenBlock)
            grouped_tokens<F, kTokenBlock>(codes, next, scales, mins, group_shift, n_chunks, x,
                                           x_stride, t, r, l.rows, y);
        for (; t < n_tokens; ++t)
            grouped_tokens<F, 1>(codes, next, scales, mins, group_shift, n_chunks, x, x_stride, t,
                                 r, l.rows, y);
    }
}

// 8 weights of a dense row starting at column c.
template <WeightFormat F>
inline __m256 load8(const uint8_t* row, int64_t c) {
    if constexpr (F == WeightFormat::f32) {
        return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + c);
    } else {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * c)));
    }
}

template <WeightFormat F>
inline float load1(const uint8_t* row, int64_t c) {
    if constexpr (F == WeightFormat::f32) {
        return reinterpret_cast<const float*>(row)[c];
    } else {
        uint16_t h;
        std::memcpy(&h, row + 2 * c, 2);
        return _cvtsh_ss(h);
    }
}

template <WeightFormat F, int T>
void dense_tokens(const uint8_t* row, int64_t cols, const float* x, int64_t x_stride, int t0,
                  int64_t r, int64_t n_rows, float* y) {
    __m256 acc[T][4];
    for (int t = 0; t < T; ++t)
        for (int i = 0; i < 4; ++i) acc[t][i] = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 32 <= cols; c += 32) {
        __m256 w[4];
        for (int i = 0; i < 4; ++i) w[i] = load8<F>(row, c + 8 * i);
        for (int t = 0; t < T; ++t) {
            const float* xt = x + size_t(t0 + t) * size_t(x_stride) + c;
            for (int i = 0; i < 4; ++i)
                acc[t][i] = _mm256_fmadd_ps(w[i], _mm256_loadu_ps(xt + 8 * i), acc[t][i]);
        }
    }
    for (int t = 0; t < T; ++t) {
        const __m256 s =
            _mm256_add_ps(_mm256_add_ps(acc[t][0], acc[t][1]), _mm256_add_ps(acc[t][2], acc[t][3]));
        float sum = hsum(s);
        const float* xt = x + size_t(t0 + t) * size_t(x_stride);
        for (int64_t j = c; j < cols; ++j) sum += load1<F>(row, j) * xt[j];
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

}  // namespace nibble::kernels::avx2

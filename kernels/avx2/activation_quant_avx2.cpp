// AVX2 version of quantize_activation_row (kernels/activation_quant.h): the same
// codes, scales and group sums bit for bit, 32 columns per step. When decoding
// it runs on the calling thread before each matmul, i.e. serially.
//
// Per block: amax = max |x_c| (exact in any order), d = amax / 127,
// q_c = round-half-even(x_c * 127 / amax) via vcvtps2dq (the default MXCSR
// rounding, as lrint), clamped to -127..127; the code sum is exact in int32.
#include <immintrin.h>

#include <cstring>

#include "kernels/activation_quant.h"

namespace nibble::kernels::avx2 {

namespace {

inline float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

inline int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

}  // namespace

void quantize_activation_row(const float* x, int t, const QuantizedActivations& qa) {
    // Only rows of whole blocks (every real model width); otherwise the
    // portable version handles the zero padding.
    if (qa.cols != qa.n_blocks * kActivationBlock) {
        nibble::quantize_activation_row(x, t, qa);
        return;
    }
    int8_t* q = qa.q + size_t(t) * size_t(qa.q_stride());
    float* d = qa.d + size_t(t) * size_t(qa.block_stride);
    float* d4 = qa.d4 + size_t(t) * size_t(4 * qa.block_stride);
    float* group_sums = qa.group_sums + size_t(t) * size_t(qa.groups_per_row);
    x += size_t(t) * size_t(qa.cols);
    for (int64_t g = 0; g < qa.groups_per_row; ++g) group_sums[g] = 0.0f;

    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i lim = _mm256_set1_epi32(127), neg_lim = _mm256_set1_epi32(-127);
    // Dword order after the two saturating packs (see below).
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < qa.n_blocks; ++b) {
        const float* xb = x + b * kActivationBlock;
        __m256 v[4];
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < 4; ++i) {
            v[i] = _mm256_loadu_ps(xb + 8 * i);
            m = _mm256_max_ps(m, _mm256_and_ps(v[i], abs_mask));
        }
        const float amax = hmax(m);
        const float scale = amax / 127.0f;
        const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        const __m256 vinv = _mm256_set1_ps(inv);
        __m256i c[4];
        __m256i sum = _mm256_setzero_si256();
        for (int i = 0; i < 4; ++i) {
            c[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], vinv));
            c[i] = _mm256_max_epi32(_mm256_min_epi32(c[i], lim), neg_lim);
            sum = _mm256_add_epi32(sum, c[i]);
        }
        // packs work per 128-bit lane: the bytes come out as dwords
        // [c0-3, c8-11, c16-19, c24-27 | c4-7, c12-15, c20-23, c28-31].
        const __m256i w01 = _mm256_packs_epi32(c[0], c[1]);
        const __m256i w23 = _mm256_packs_epi32(c[2], c[3]);
        const __m256i codes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23), order);

        d[b] = scale;
        const __m128 s4 = _mm_set1_ps(scale);
        _mm_storeu_ps(d4 + 4 * b, s4);
        if (qa.groups_per_row > 0)
            group_sums[b / qa.blocks_per_group] += scale * float(hsum_epi32(sum));

        // Interleaved units (activation_quant.h): 2 blocks (pairs) or 4 (quads).
        const int64_t unit = qa.order == CodeOrder::pairs   ? 2
                             : qa.order == CodeOrder::quads ? 4
                                                            : 1;
        if (unit == 1 || (unit == 2 && (b | 1) >= qa.n_blocks)) {
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + b * kActivationBlock), codes);
            continue;
        }
        // Block k of its unit: columns 0-15 at 16k, columns 16-31 at 16 (unit + k).
        const int64_t k = b % unit;
        int8_t* base = q + (b - k) * kActivationBlock;
        _mm_storeu_si128(reinterpret_cast<__m128i*>(base + 16 * k), _mm256_castsi256_si128(codes));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(base + 16 * (unit + k)),
                         _mm256_extracti128_si256(codes, 1));
    }
    nibble::pad_quads(t, qa);
}

}  // namespace nibble::kernels::avx2

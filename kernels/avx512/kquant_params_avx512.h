// q4k's K-coded parameters (kernels/kquant_params.h) decoded for a whole row
// with AVX-512, four super-blocks (64 bytes of parameters) per step, for the
// AVX-512 int8 kernel. With each super-block's four 32-bit words [dd, w0, w1,
// w2] in a 128-bit lane, two permutes give [w0, w2, w1, w2] and [w0, w0, w1,
// w1], and
//   (those >> [0, 0, 0, 4]) & [3f, 0f, 3f, 0f]  |  (these >> 2) & [0, 30, 0, 30]
// (bytes repeated) are the lane's codes [sc 0..3, sc 4..7, m 0..3, m 4..7]
// (kquant_codes8's arithmetic). Per super-block they are widened to sixteen
// floats and multiplied by [d x 8, dmin x 8] (vcvtph2ps), the minimums'
// signs flipped: the same values as kquant_row(), both products being exact.
#pragma once
#include <immintrin.h>

#include <cstdint>

#ifndef NIBBLE_ISA_NAMESPACE
#error "define NIBBLE_ISA_NAMESPACE before including kquant_params_avx512.h"
#endif

namespace nibble::kernels::NIBBLE_ISA_NAMESPACE {

// scales[8i + j], mins[8i + j]: group j of super-block i of the n_blocks
// super-blocks whose 16-byte parameters start at sb.
inline void decode_q4k_row_avx512(const uint8_t* sb, int64_t n_blocks, float* scales, float* mins) {
    const __m512i pick_p = _mm512_setr_epi32(1, 3, 2, 3, 5, 7, 6, 7, 9, 11, 10, 11, 13, 15, 14, 15);
    const __m512i pick_q = _mm512_setr_epi32(1, 1, 2, 2, 5, 5, 6, 6, 9, 9, 10, 10, 13, 13, 14, 14);
    const __m512i shift = _mm512_set4_epi32(4, 0, 0, 0);  // (set4 lists lanes 3..0)
    const __m512i mask_a = _mm512_set4_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f);
    const __m512i mask_b = _mm512_set4_epi32(0x30303030, 0, 0x30303030, 0);
    // [d x 8 | dmin x 8] as halves from a dword dd broadcast to both 128-bit lanes.
    const __m256i dup = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,  //
                                         2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
    const __m512i neg = _mm512_inserti64x4(_mm512_setzero_si512(),
                                           _mm256_set1_epi32(int(0x80000000u)), 1);  // mins' sign
    alignas(64) uint32_t words[16];
    alignas(64) uint8_t codes[64];
    for (int64_t i = 0; i < n_blocks; i += 4) {
        const int n = n_blocks - i < 4 ? int(n_blocks - i) : 4;
        const __m512i x = _mm512_maskz_loadu_epi32(__mmask16((1u << (4 * n)) - 1), sb + 16 * i);
        const __m512i p = _mm512_permutexvar_epi32(pick_p, x);
        const __m512i q = _mm512_permutexvar_epi32(pick_q, x);
        const __m512i c = _mm512_or_si512(_mm512_and_si512(_mm512_srlv_epi32(p, shift), mask_a),
                                          _mm512_and_si512(_mm512_srli_epi32(q, 2), mask_b));
        _mm512_store_si512(words, x);
        _mm512_store_si512(codes, c);
        for (int s = 0; s < n; ++s) {
            const __m512 d =
                _mm512_cvtph_ps(_mm256_shuffle_epi8(_mm256_set1_epi32(int(words[4 * s])), dup));
            const __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
                _mm_load_si128(reinterpret_cast<const __m128i*>(codes + 16 * s))));
            const __m512 f = _mm512_castsi512_ps(  // (AVX-512 F has no vxorps)
                _mm512_xor_si512(_mm512_castps_si512(_mm512_mul_ps(d, v)), neg));
            _mm256_storeu_ps(scales + 8 * (i + s), _mm512_castps512_ps256(f));
            _mm256_storeu_ps(mins + 8 * (i + s),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1)));
        }
    }
}

}  // namespace nibble::kernels::NIBBLE_ISA_NAMESPACE

// q4k's K-coded parameters (kernels/kquant_params.h) decoded for a whole row
// with AVX2 and F16C, for the AVX2, AVX-VNNI and AVX-512 int8 kernels: per
// super-block, d and dmin by vcvtph2ps, the eight 6-bit scale and minimum
// codes by 32-bit word operations (kquant_codes8's arithmetic), widened to
// floats eight at a time. The same values as kquant_row(): both products are
// exact in fp32, and negating a product is flipping its sign bit.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#ifndef NIBBLE_ISA_NAMESPACE
#error "define NIBBLE_ISA_NAMESPACE before including kquant_params_simd.h"
#endif

namespace nibble::kernels::NIBBLE_ISA_NAMESPACE {

// scales[8i + j], mins[8i + j] (either may be null): group j of super-block i
// of the n_blocks super-blocks whose 16-byte parameters start at sb.
inline void decode_q4k_row(const uint8_t* sb, int64_t n_blocks, float* scales, float* mins) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n_blocks; ++i, sb += 16) {
        uint32_t dd, w[3];
        std::memcpy(&dd, sb, 4);
        std::memcpy(w, sb + 4, 12);
        const __m128 d2 = _mm_cvtph_ps(_mm_cvtsi32_si128(int(dd)));  // [d, dmin, 0, 0]
        if (scales != nullptr) {
            const uint64_t sc = uint64_t(w[0] & 0x3f3f3f3fu) |
                                uint64_t((w[2] & 0x0f0f0f0fu) | (w[0] >> 2 & 0x30303030u)) << 32;
            const __m256 codes =
                _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(sc))));
            _mm256_storeu_ps(scales + 8 * i, _mm256_mul_ps(_mm256_broadcastss_ps(d2), codes));
        }
        if (mins != nullptr) {
            const uint64_t m = uint64_t(w[1] & 0x3f3f3f3fu) |
                               uint64_t((w[2] >> 4 & 0x0f0f0f0fu) | (w[1] >> 2 & 0x30303030u))
                                   << 32;
            const __m256 codes =
                _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(m))));
            const __m256 dmin = _mm256_broadcastss_ps(_mm_movehdup_ps(d2));
            _mm256_storeu_ps(mins + 8 * i, _mm256_xor_ps(_mm256_mul_ps(dmin, codes), sign));
        }
    }
}

}  // namespace nibble::kernels::NIBBLE_ISA_NAMESPACE

// One 32-column chunk of q3 or q2 codes (kernels/q2q3.h) unpacked with AVX2:
// the 2-bit plane (8 bytes) broadcast to four 64-bit lanes shifted right by
// 0, 2, 4, 6 and masked gives the 32 low code bits in column order; q3's
// third bits (4 bytes) are spread to one byte per column with vpshufb and a
// bit mask. Shared by the AVX2 q2q3 kernel and the AMX kernel, each with its
// own NIBBLE_ISA_NAMESPACE.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#ifndef NIBBLE_ISA_NAMESPACE
#error "define NIBBLE_ISA_NAMESPACE before including q2q3_unpack_256.h"
#endif

namespace nibble::kernels::NIBBLE_ISA_NAMESPACE {

// The 32 codes of one chunk as unsigned bytes, column order.
template <bool kQ3>
[[gnu::always_inline]] inline __m256i unpack_chunk(const uint8_t* chunk) {
    int64_t plane;
    std::memcpy(&plane, chunk, 8);
    __m256i q = _mm256_and_si256(
        _mm256_srlv_epi64(_mm256_set1_epi64x(plane), _mm256_setr_epi64x(0, 2, 4, 6)),
        _mm256_set1_epi8(3));
    if constexpr (kQ3) {
        int32_t bits;
        std::memcpy(&bits, chunk + 8, 4);
        // Byte k of the bit plane to bytes 8k..8k+7 (lane 0: bytes 0, 1; lane 1: 2, 3).
        const __m256i spread =
            _mm256_shuffle_epi8(_mm256_set1_epi32(bits),
                                _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2,
                                                 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        const __m256i mask = _mm256_set1_epi64x(int64_t(0x8040201008040201));
        const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask);
        q = _mm256_or_si256(q, _mm256_and_si256(set, _mm256_set1_epi8(4)));
    }
    return q;
}

}  // namespace nibble::kernels::NIBBLE_ISA_NAMESPACE

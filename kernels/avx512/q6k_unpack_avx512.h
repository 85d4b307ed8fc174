// q6k codes (kernels/q6k.h) unpacked with AVX-512, one half (128 columns) of
// a super-block per call: one 64-byte load of ql and one 32-byte load of qh,
// broadcast to both 256-bit halves. ql & 15 holds columns 0..63 of the half in
// order, ql >> 4 columns 64..127, and qh shifted right by 0 / 2 (lower / upper
// 256 bits) or 4 / 6 supplies their top two bits. Shared by the AVX-512 and the
// AMX q6k kernels.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#ifndef NIBBLE_ISA_NAMESPACE
#error "define NIBBLE_ISA_NAMESPACE before including q6k_unpack_avx512.h"
#endif

namespace nibble::kernels::NIBBLE_ISA_NAMESPACE {

// The unsigned codes q (0..63) of half h of the super-block whose 192 code
// bytes start at codes: lo holds columns 128h + 0..63, hi 128h + 64..127.
[[gnu::always_inline]] inline void q6k_unpack_half(const uint8_t* codes, int h, __m512i& lo,
                                                   __m512i& hi) {
    const __m512i m4 = _mm512_set1_epi8(15), m2 = _mm512_set1_epi8(3);
    // qh shift counts (per 16-bit lane): 0 / 2 in the lower / upper 256 bits,
    // 4 / 6 for the columns of the high nibbles.
    const __m512i shift_lo = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    const __m512i shift_hi = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    const __m512i ql = _mm512_loadu_si512(codes + 64 * h);
    const __m512i qh = _mm512_broadcast_i64x4(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + 128 + 32 * h)));
    // Byte shifts through 16-bit lanes: the masks drop what crosses bytes.
    const __m512i top_lo = _mm512_and_si512(_mm512_srlv_epi16(qh, shift_lo), m2);
    const __m512i top_hi = _mm512_and_si512(_mm512_srlv_epi16(qh, shift_hi), m2);
    lo = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_slli_epi16(top_lo, 4));
    hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                         _mm512_slli_epi16(top_hi, 4));
}

// The sixteen sub-block scales d * sc_j (j = 0..15) of one super-block's
// 18 parameter bytes (int8 sc[16], fp16 d), as q6k_scales computes them.
[[gnu::always_inline]] inline __m512 q6k_sub_scales(const uint8_t* params) {
    uint16_t dh;
    std::memcpy(&dh, params + 16, 2);
    const __m512 d = _mm512_set1_ps(_cvtsh_ss(dh));
    return _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                _mm_loadu_si128(reinterpret_cast<const __m128i*>(params)))));
}

}  // namespace nibble::kernels::NIBBLE_ISA_NAMESPACE

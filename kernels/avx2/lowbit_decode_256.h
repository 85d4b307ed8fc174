// The ggml block formats (kernels/lowbit.h) decoded with 256-bit AVX2 code
// for the int8 kernels: per block the unsigned codes u (one byte per column,
// 0..31) and the 16-column scale s and minimum m of lowbit.h, so that a
// sub-block's weights are s u - m. Included by kernels/avx2/matmul_lowbit_256.inc
// (the AVX2, AVX-VNNI and AVX-512 kernels) and the AMX kernel, each with its
// own NIBBLE_ISA_NAMESPACE: no copy compiled for one instruction set can stand
// in for another's.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/formats.h"
#include "kernels/kquant_scale_bytes.h"

#ifndef NIBBLE_ISA_NAMESPACE
#error "define NIBBLE_ISA_NAMESPACE before including lowbit_decode_256.h"
#endif

namespace nibble::kernels::NIBBLE_ISA_NAMESPACE {

[[gnu::always_inline]] inline float half_to_float(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

[[gnu::always_inline]] inline __m256i load32(const uint8_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
[[gnu::always_inline]] inline void store32(uint8_t* p, __m256i v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v);
}

// (v >> k) & mask per byte (shifts through 16-bit lanes; the mask drops what
// crosses bytes).
[[gnu::always_inline]] inline __m256i bits(__m256i v, int k, __m256i mask) {
    return _mm256_and_si256(_mm256_srli_epi16(v, k), mask);
}

// Byte j of the result: 16 if bit j of qh is set, else 0 (j = 0..31).
[[gnu::always_inline]] inline __m256i high_bits_16(uint32_t qh) {
    const __m256i shuf =
        _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
    const __m256i sel = _mm256_set1_epi64x(int64_t(0x8040201008040201));
    const __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32(int32_t(qh)), shuf);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(b, sel), sel), _mm256_set1_epi8(16));
}

// The 16 floats d * v[k] of 16 bytes v (unsigned, or signed minus `bias`).
template <bool Signed>
[[gnu::always_inline]] inline void scale16(__m128i v, int bias, float d, float* out) {
    const __m256 dv = _mm256_set1_ps(d);
    const __m256i b = _mm256_set1_epi32(bias);
    const __m128i hi = _mm_srli_si128(v, 8);
    const __m256i v0 = Signed ? _mm256_cvtepi8_epi32(v) : _mm256_cvtepu8_epi32(v);
    const __m256i v1 = Signed ? _mm256_cvtepi8_epi32(hi) : _mm256_cvtepu8_epi32(hi);
    _mm256_storeu_ps(out, _mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_sub_epi32(v0, b))));
    _mm256_storeu_ps(out + 8, _mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_sub_epi32(v1, b))));
}

// One block of format F decoded: u (block columns), s and m (block columns / 16).
template <WeightFormat F>
[[gnu::always_inline]] inline void decode_block(const uint8_t* b, uint8_t* u, float* s, float* m) {
    if constexpr (F == WeightFormat::q5_0 || F == WeightFormat::q5_1) {
        constexpr int off = F == WeightFormat::q5_1 ? 4 : 2;
        uint32_t qh;
        std::memcpy(&qh, b + off, 4);
        const __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + off + 4));
        const __m128i m4 = _mm_set1_epi8(15);
        const __m256i lo =
            _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(qs, 4), m4), _mm_and_si128(qs, m4));
        store32(u, _mm256_or_si256(lo, high_bits_16(qh)));
        const float d = half_to_float(b);
        const float mm = F == WeightFormat::q5_1 ? -half_to_float(b + 2) : 16.0f * d;
        s[0] = s[1] = d;
        m[0] = m[1] = mm;
    } else if constexpr (F == WeightFormat::q5k) {
        const float d = half_to_float(b), dmin = half_to_float(b + 2);
        const __m256i qh = load32(b + 16);
        const __m256i m4 = _mm256_set1_epi8(15), m1 = _mm256_set1_epi8(1);
        // The eight scales then the eight mins, each twice: one per 16 columns.
        uint8_t bytes[16];
        q5k_scale_min_bytes(b + 4, bytes);
        const __m128i sm = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes));
        scale16<false>(_mm_unpacklo_epi8(sm, sm), 0, d, s);
        scale16<false>(_mm_unpackhi_epi8(sm, sm), 0, dmin, m);
        for (int i = 0; i < 8; ++i) {
            const __m256i ql = load32(b + 48 + 32 * (i / 2));
            const __m256i hb = _mm256_slli_epi16(bits(qh, i, m1), 4);
            store32(u + 32 * i, _mm256_or_si256(bits(ql, 4 * (i % 2), m4), hb));
        }
    } else if constexpr (F == WeightFormat::q3k) {
        uint8_t bytes[16];
        q3k_scale_bytes(b + 96, bytes);
        const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes));
        scale16<false>(sc, 32, half_to_float(b + 108), s);
        const __m256 four = _mm256_set1_ps(4.0f);
        _mm256_storeu_ps(m, _mm256_mul_ps(four, _mm256_loadu_ps(s)));
        _mm256_storeu_ps(m + 8, _mm256_mul_ps(four, _mm256_loadu_ps(s + 8)));
        const __m256i hm = load32(b);
        const __m256i m3 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1);
        for (int n = 0; n < 2; ++n) {
            const __m256i q = load32(b + 32 + 32 * n);
            for (int j = 0; j < 4; ++j) {
                const __m256i hb = _mm256_slli_epi16(bits(hm, 4 * n + j, m1), 2);
                store32(u + 128 * n + 32 * j, _mm256_or_si256(bits(q, 2 * j, m3), hb));
            }
        }
    } else {  // q2k
        const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b));
        const __m128i m4 = _mm_set1_epi8(15);
        scale16<false>(_mm_and_si128(sc, m4), 0, half_to_float(b + 80), s);
        scale16<false>(_mm_and_si128(_mm_srli_epi16(sc, 4), m4), 0, half_to_float(b + 82), m);
        const __m256i m3 = _mm256_set1_epi8(3);
        for (int n = 0; n < 2; ++n) {
            const __m256i q = load32(b + 16 + 32 * n);
            for (int j = 0; j < 4; ++j) store32(u + 128 * n + 32 * j, bits(q, 2 * j, m3));
        }
    }
}

}  // namespace nibble::kernels::NIBBLE_ISA_NAMESPACE

// AVX-512 helpers shared by the AVX-512 VNNI kernel (kernels/avx512/) and the
// AMX kernel (kernels/amx/). The two must finish every output with the same
// instructions in the same order, because AMX GEMM results are required to
// equal the VNNI GEMV's bit for bit.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "kernels/format_traits.h"
#include "kernels/formats.h"
#include "kernels/matmul_variants.h"

// Every translation unit that includes this gets its own copy of these inline
// helpers in its own namespace (avx512, amx): no copy compiled for one
// instruction set can stand in for another's at link time.
#ifndef NIBBLE_ISA_NAMESPACE
#error "define NIBBLE_ISA_NAMESPACE before including avx512_common.h"
#endif

namespace nibble::kernels::NIBBLE_ISA_NAMESPACE {

// sum_g params[g] * sums[g] over a row's groups (q4a mins), 16 at a time.
inline float param_dot(const uint16_t* p16, const float* p32, const float* sums, int64_t n) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t g = 0; g < n; g += 16) {
        const __mmask16 m = n - g >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - g)) - 1);
        const __m512 p = p16 != nullptr ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p16 + g))
                                        : _mm512_maskz_loadu_ps(m, p32 + g);
        acc = _mm512_fmadd_ps(p, _mm512_maskz_loadu_ps(m, sums + g), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

// A row's output from its scaled integer dot product: the code book's scale,
// and q4a's sum_g m_g group_sum_g (mins as fp16 from the blob or as floats).
template <WeightFormat F>
inline float finish_output(float dot, const uint16_t* mins16, const float* mins32,
                           const float* group_sums, int64_t groups_per_row) {
    float s = dot;
    if constexpr (FormatTraits<F>::code_book) s *= kCodeBookInt8Scale<F>;
    if constexpr (F == WeightFormat::q4a)
        s += param_dot(mins16, mins32, group_sums, groups_per_row);
    return s;
}

}  // namespace nibble::kernels::NIBBLE_ISA_NAMESPACE

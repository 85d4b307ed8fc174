// AVX-512 helpers shared by the AVX-512 VNNI kernel (kernels/avx512/) and the
// AMX kernel (kernels/amx/). The two must finish every output with the same
// instructions in the same order, because AMX GEMM results are required to
// equal the VNNI GEMV's bit for bit.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/format_traits.h"
#include "kernels/formats.h"
#include "kernels/group_params.h"
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

// Double-quantized parameters of `stream` for n_rows consecutive rows from
// first_row (kernels/formats.h: int8 code c_i per group, one float offset per
// stream and one float block scale per kDoubleQuantBlock groups counted over
// the whole matrix, so a block may end inside a row):
//   out[i] = offset + block_scale[(first_row * gpr + i) / 256] * c_i,
// i < n_rows * gpr: the rows' groups are consecutive in the stream, so a row
// block is one span. 16 groups per step, multiply then add as the portable
// decoder does (no FMA: the same bits as group_param()). Not for q4k.
inline void decode_dq_rows(const MatrixView& w, GroupStream stream, int64_t first_row,
                           int64_t n_rows, float* out) {
    const PackedLayout& l = w.layout;
    const int64_t first = first_row * l.groups_per_row, n = n_rows * l.groups_per_row;
    const size_t offset = stream == GroupStream::scales ? l.scales_offset : l.mins_offset;
    const auto* codes = reinterpret_cast<const int8_t*>(w.data + offset) + first;
    // (PackedLayout::dq_blocks() spelled out: no portable inline code here)
    const int64_t dq_blocks =
        (l.rows * l.groups_per_row + kDoubleQuantBlock - 1) / kDoubleQuantBlock;
    const uint8_t* dq =
        w.data + l.dq_offset + size_t(stream) * (1 + size_t(dq_blocks)) * sizeof(float);
    float mean;
    std::memcpy(&mean, dq, sizeof(float));
    const __m512 mean16 = _mm512_set1_ps(mean);
    for (int64_t i = 0; i < n;) {
        const int64_t block = (first + i) / kDoubleQuantBlock;
        const int64_t block_end = (block + 1) * kDoubleQuantBlock - first;
        const int64_t end = block_end < n ? block_end : n;
        float block_scale;
        std::memcpy(&block_scale, dq + sizeof(float) * size_t(1 + block), sizeof(float));
        const __m512 scale16 = _mm512_set1_ps(block_scale);
        for (; i < end; i += 16) {
            const __mmask16 m =
                end - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (end - i)) - 1);
            const __m512 c =
                _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, codes + i)));
            _mm512_mask_storeu_ps(out + i, m, _mm512_add_ps(mean16, _mm512_mul_ps(scale16, c)));
        }
        i = end;
    }
}

// A row's output from its scaled integer dot product: the code book's scale,
// and q4a's sum_g m_g group_sum_g (mins as fp16 from the blob or as floats).
template <WeightFormat F>
inline float finish_output(float dot, const uint16_t* mins16, const float* mins32,
                           const float* group_sums, int64_t groups_per_row) {
    float s = dot;
    if constexpr (FormatTraits<F>::code_book) s *= kCodeBookInt8Scale<F>;
    if constexpr (F == WeightFormat::q4a || F == WeightFormat::q2)
        s += param_dot(mins16, mins32, group_sums, groups_per_row);
    return s;
}

// Four rows' products of one step, lane 4k + j of dot[r] holding partial sum j
// of row r's k-th group of columns (a 32-column block in the 4-bit kernels, a
// 16-column sub-block in q6k), added into whole-group sums at lane 4k + r.
// Integer adds, so the order does not matter.
inline __m512i four_row_sums(const __m512i* dot) {
    // s01 lanes per group: [d0 (j0+j2), d1 (j0+j2), d0 (j1+j3), d1 (j1+j3)]
    const __m512i s01 = _mm512_add_epi32(_mm512_unpacklo_epi32(dot[0], dot[1]),
                                         _mm512_unpackhi_epi32(dot[0], dot[1]));
    const __m512i s23 = _mm512_add_epi32(_mm512_unpacklo_epi32(dot[2], dot[3]),
                                         _mm512_unpackhi_epi32(dot[2], dot[3]));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(s01, s23), _mm512_unpackhi_epi64(s01, s23));
}

}  // namespace nibble::kernels::NIBBLE_ISA_NAMESPACE

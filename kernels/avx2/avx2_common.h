// Small AVX2 helpers shared by the kernels in this folder (compiled with
// -mavx2 -mfma -mf16c; only reached after run-time dispatch checked the CPU).
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/formats.h"
#include "kernels/group_params.h"

// Every x86 ISA translation unit that includes this gets its own copy of these
// inline helpers, in its own namespace (avx2, avxvnni), so that no copy
// compiled for one instruction set can stand in for another's at link time.
#ifndef NIBBLE_ISA_NAMESPACE
#define NIBBLE_ISA_NAMESPACE avx2
#endif

#include "kernels/avx2/kquant_params_simd.h"

namespace nibble::kernels::NIBBLE_ISA_NAMESPACE {

// Sum of the 8 lanes, in a fixed order.
inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// sum_i a[i] * b[i], 8 lanes at a time then a scalar tail (fixed order).
inline float dot(const float* a, const float* b, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    float s = hsum(acc);
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

// One row's group parameters of `stream` as floats (fp16 via F16C, 8 at a time).
inline void decode_row_params(const MatrixView& w, GroupStream stream, int64_t row, float* out) {
    const PackedLayout& l = w.layout;
    if (l.format == WeightFormat::q4k) {  // K-coded, 8 groups per 16-byte super-block
        const int64_t n_blocks = l.groups_per_row / 8;
        const uint8_t* sb = w.data + l.scales_offset + size_t(row * n_blocks) * 16;
        const bool mins = stream == GroupStream::mins;
        decode_q4k_row(sb, n_blocks, mins ? nullptr : out, mins ? out : nullptr);
        return;
    }
    if (l.double_quant) {  // out[g] = offset + block_scale[(row * gpr + g) / 256] * code_g
        const int64_t gpr = l.groups_per_row;
        const size_t offset = stream == GroupStream::scales ? l.scales_offset : l.mins_offset;
        const auto* codes = reinterpret_cast<const int8_t*>(w.data + offset) + row * gpr;
        // (PackedLayout::dq_blocks() spelled out: no portable inline code here)
        const int64_t dq_blocks = (l.rows * gpr + kDoubleQuantBlock - 1) / kDoubleQuantBlock;
        const uint8_t* dq =
            w.data + l.dq_offset + size_t(stream) * (1 + size_t(dq_blocks)) * sizeof(float);
        float mean;
        std::memcpy(&mean, dq, sizeof(float));
        for (int64_t g = 0; g < gpr;) {
            const int64_t block = (row * gpr + g) / kDoubleQuantBlock;
            const int64_t block_end = (block + 1) * kDoubleQuantBlock - row * gpr;
            const int64_t end = block_end < gpr ? block_end : gpr;
            float block_scale;
            std::memcpy(&block_scale, dq + sizeof(float) * size_t(1 + block), sizeof(float));
            const __m256 mean8 = _mm256_set1_ps(mean), scale8 = _mm256_set1_ps(block_scale);
            for (; g + 8 <= end; g += 8) {  // multiply then add, as group_param() (no FMA)
                int64_t c8;
                std::memcpy(&c8, codes + g, sizeof(c8));
                const __m256 c = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(c8)));
                _mm256_storeu_ps(out + g, _mm256_add_ps(mean8, _mm256_mul_ps(scale8, c)));
            }
            for (; g < end; ++g) out[g] = mean + block_scale * float(codes[g]);
        }
        return;
    }
    const size_t offset = stream == GroupStream::scales ? l.scales_offset : l.mins_offset;
    const uint8_t* src = w.data + offset + 2 * size_t(row * l.groups_per_row);
    int64_t g = 0;
    for (; g + 8 <= l.groups_per_row; g += 8) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * g));
        _mm256_storeu_ps(out + g, _mm256_cvtph_ps(h));
    }
    for (; g < l.groups_per_row; ++g) {
        uint16_t h;
        std::memcpy(&h, src + 2 * g, 2);
        out[g] = _cvtsh_ss(h);
    }
}

// out[4 k + i] = rows[i][k] for k < n: four rows' values (group or sub-block
// scales) interleaved, so that one load gives a step's scale of every row;
// eight at a time in two 4 x 4 transposes, then one by one. Callers with fewer
// than 4 rows repeat one (its lanes are never used).
inline void interleave4(const float* const* rows, int64_t n, float* out) {
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        const __m256 r0 = _mm256_loadu_ps(rows[0] + k), r1 = _mm256_loadu_ps(rows[1] + k);
        const __m256 r2 = _mm256_loadu_ps(rows[2] + k), r3 = _mm256_loadu_ps(rows[3] + k);
        const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
        const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
        const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
        const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
        float* o = out + 4 * k;
        _mm256_storeu_ps(o, _mm256_permute2f128_ps(u0, u1, 0x20));
        _mm256_storeu_ps(o + 8, _mm256_permute2f128_ps(u2, u3, 0x20));
        _mm256_storeu_ps(o + 16, _mm256_permute2f128_ps(u0, u1, 0x31));
        _mm256_storeu_ps(o + 24, _mm256_permute2f128_ps(u2, u3, 0x31));
    }
    for (; k < n; ++k) {
        for (int i = 0; i < 4; ++i) out[4 * k + i] = rows[i][k];
    }
}

}  // namespace nibble::kernels::NIBBLE_ISA_NAMESPACE

// AVX2 int8-activation kernel of q3 and q2 (kernels/matmul_q2q3.h), run by
// the AVX2, AVX-VNNI, AVX-512 and AMX entries of the kernel table. Activations
// in natural order. Per 32-column block: the 2-bit plane (8 bytes) broadcast to
// four 64-bit lanes shifted right by 0, 2, 4, 6 and masked gives the 32 low
// code bits in column order; q3's third bits (4 bytes) are spread to one byte
// per column with vpshufb and a bit mask. The unsigned codes go into
// vpmaddubsw's unsigned operand (|pair sum| <= 2 * 7 * 127) and vpmaddwd sums
// the pairs. The int32 lanes of eight blocks are added into one vector of
// whole-block sums (integer: exact), converted once and accumulated with one
// FMA by d_w d_x per 256 columns and token, instead of a float conversion,
// scalar scale product and FMA chained on one accumulator per 32 columns.
// Each (row, token) output adds the same terms in the same order whatever the
// token blocking, so GEMM equals repeated GEMV bit for bit.
#include "kernels/avx2/avx2_common.h"
#include "kernels/avx2/q2q3_unpack_256.h"
#include "kernels/matmul_q2q3.h"
#include "kernels/matmul_variants.h"
#include "kernels/q2q3.h"

namespace nibble::kernels::avx2 {

namespace {

constexpr int kTokenBlock = 4;

inline __m256i dot_block(__m256i w, const int8_t* x) {
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, xv), _mm256_set1_epi16(1));
}

// Lane 4h + k: the sum of the four int32 lanes of 128-bit half h of p[k].
inline __m256i four_sums(const __m256i* p) {
    const __m256i s01 =
        _mm256_add_epi32(_mm256_unpacklo_epi32(p[0], p[1]), _mm256_unpackhi_epi32(p[0], p[1]));
    const __m256i s23 =
        _mm256_add_epi32(_mm256_unpacklo_epi32(p[2], p[3]), _mm256_unpackhi_epi32(p[2], p[3]));
    return _mm256_add_epi32(_mm256_unpacklo_epi64(s01, s23), _mm256_unpackhi_epi64(s01, s23));
}

// Lane k: the whole-block dot product of p[k] (eight blocks; integer adds).
inline __m256i eight_block_sums(const __m256i* p) {
    const __m256i a = four_sums(p), b = four_sums(p + 4);
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20),
                            _mm256_permute2x128_si256(a, b, 0x31));
}

// One row, tokens [t0, t0 + T), eight blocks (256 columns) per step: the eight
// whole-block integer sums of a token go into one vector, which one FMA
// scales by d_w d_x and accumulates (lane k: blocks k mod 8). scales holds
// the row's group scales followed by 8 zeros.
template <bool kQ3, int T>
void row_tokens(const uint8_t* codes, const float* scales, const float* mins,
                const QuantizedActivations& qa, int t0, int64_t row, int64_t n_rows, float* y) {
    constexpr int kChunk = kQ3 ? kQ3ChunkBytes : kQ2ChunkBytes;
    // The scales of blocks b0..b0+7: group (b0 >> shift) + (k >> shift) at lane k.
    const int group_shift = __builtin_ctzll(uint64_t(qa.blocks_per_group));
    const __m256i spread = _mm256_srlv_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                             _mm256_set1_epi32(group_shift));
    __m256 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
    const auto step = [&]<bool kTail>(int64_t b0, int n) {
        __m256i w[8];
        for (int k = 0; k < 8; ++k) {
            w[k] = !kTail || k < n ? unpack_chunk<kQ3>(codes + kChunk * (b0 + k))
                                   : _mm256_setzero_si256();
        }
        const __m256 ws =
            _mm256_permutevar8x32_ps(_mm256_loadu_ps(scales + (b0 >> group_shift)), spread);
        for (int t = 0; t < T; ++t) {
            const int8_t* xq = qa.token_q(t0 + t) + 32 * b0;
            __m256i dots[8];
            for (int k = 0; k < 8; ++k) {
                dots[k] = !kTail || k < n ? dot_block(w[k], xq + 32 * k) : _mm256_setzero_si256();
            }
            // (token rows hold exactly n_blocks values of d_x: masked in the tail)
            const __m256 dx =
                kTail ? _mm256_maskload_ps(
                            qa.token_d(t0 + t) + b0,
                            _mm256_cmpgt_epi32(_mm256_set1_epi32(n),
                                               _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)))
                      : _mm256_loadu_ps(qa.token_d(t0 + t) + b0);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(eight_block_sums(dots)),
                                     _mm256_mul_ps(ws, dx), acc[t]);
        }
    };
    const int64_t n_full = qa.n_blocks / 8 * 8;
    for (int64_t b0 = 0; b0 < n_full; b0 += 8) step.template operator()<false>(b0, 8);
    if (n_full < qa.n_blocks) step.template operator()<true>(n_full, int(qa.n_blocks - n_full));
    for (int t = 0; t < T; ++t) {
        const float* gs = qa.token_group_sums(t0 + t);
        float s = hsum(acc[t]);
        if constexpr (kQ3) {
            s -= 4.0f * dot(scales, gs, qa.groups_per_row);
        } else {
            s += dot(mins, gs, qa.groups_per_row);
        }
        y[size_t(t0 + t) * size_t(n_rows) + size_t(row)] = s;
    }
}

template <bool kQ3>
void rows_int8(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
               float* y) {
    const PackedLayout& l = w.layout;
    const int64_t gpr = l.groups_per_row;
    const size_t row_bytes = l.codes_bytes / size_t(l.rows);
    float* scales = kernel_scratch(size_t(2 * gpr + 8));
    for (int i = 0; i < 8; ++i) scales[gpr + i] = 0.0f;  // read by a row's last step
    float* mins = scales + gpr + 8;
    for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* codes = w.data + l.codes_offset + size_t(r) * row_bytes;
        if (r + 1 < l.rows) {  // the next row's codes, ahead of the stream prefetchers
            for (size_t o = 0; o < row_bytes; o += 64)
                _mm_prefetch(reinterpret_cast<const char*>(codes + row_bytes + o), _MM_HINT_T0);
        }
        decode_row_params(w, GroupStream::scales, r, scales);
        if constexpr (!kQ3) decode_row_params(w, GroupStream::mins, r, mins);
        int t = 0;
        for (; t + kTokenBlock <= qa.n_tokens; t += kTokenBlock) {
            row_tokens<kQ3, kTokenBlock>(codes, scales, mins, qa, t, r, l.rows, y);
        }
        for (; t < qa.n_tokens; ++t) row_tokens<kQ3, 1>(codes, scales, mins, qa, t, r, l.rows, y);
    }
}

}  // namespace

void matmul_rows_int8_q2q3(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                           int64_t r1, float* y) {
    if (w.layout.format == WeightFormat::q3) {
        rows_int8<true>(w, qa, r0, r1, y);
    } else {
        rows_int8<false>(w, qa, r0, r1, y);
    }
}

}  // namespace nibble::kernels::avx2

// AVX-512 VNNI int8-activation kernel of q3 and q2 (kernels/matmul_q2q3.h),
// run by the AVX-512 and AMX entries of the kernel table. Activations in quad
// order (kernels/activation_quant.h): x0 = [b0 0..15 | b1 0..15 | b2 0..15 |
// b3 0..15], x1 the columns 16..31 of the same blocks.
//
// One step covers four 32-column blocks 4q..4q+3 of four rows (4 x 128
// weights). Unpacking one row's quad (kernels/q2q3.h: per chunk a 2-bit plane
// of 8 bytes whose 64-bit word shifted right by 2s holds columns 8s..8s+7 in
// the low two bits of each byte; q3 then a 32-bit plane of third bits):
//   q2: one 32-byte load; vpermq duplicates chunk k's plane into both 64-bit
//       halves of 128-bit lane k, vpsrlvq shifts them by 0 and 2, and AND 3
//       gives lane k = block 4q+k columns 0..15 (x0's order); the same words
//       shifted by 4 more give columns 16..31 (x1's order). Five instructions
//       per 128 weights after the load.
//   q3: one 48-byte load; vpermd picks the planes out of the 12-byte chunks
//       and the same shifts follow. The third bits: vpermd broadcasts chunk
//       k's 32-bit plane to lane k, vpshufb spreads its bytes 0-1 (x0) or 2-3
//       (x1) to one byte per column, vptestmb against the column's bit gives
//       a byte mask and a masked add puts 4 into the codes.
// The unsigned codes (q3: q = w/d + 4, q2: q = (w - m)/d) multiply the signed
// activations with vpdpbusd; the four rows' sixteen int32 lanes are added into
// whole-block dot products D(r, 4q+k) at lane 4k+r (four_row_sums, integer
// adds: exact), q3 subtracts 4 sum(x) per block (computed once per call and
// token, offset_sums), and one FMA per token and step accumulates
// D d_w d_x in FP32: one float conversion, multiply and FMA per 512 weights
// and token instead of per 32. A row's output is
//   y = (a_0 + a_2) + (a_1 + a_3),   a_k = sum over q of D(4q+k) d_w d_x in q order,
// the same terms in the same order for any token blocking (GEMM == GEMV bit for
// bit) and any row split (1 == 2 threads). q2 then adds sum_g m_g group_sum_g.
//
// Group parameters are read as fp16 straight from the blob (vcvtph2ps), or
// decoded per block of four rows when double-quantized. Codes of the rows a
// few row blocks on are prefetched, one cache line per step and row. A row
// whose block count is not a multiple of 4 ends in a partial quad read with
// masked loads (the activations' padding blocks are zero).
#include <immintrin.h>

#include <cstring>

// GCC 12's avx512fintrin.h builds _mm512_undefined_ps() from a self-initialised
// variable, which -Wmaybe-uninitialized reports wherever an intrinsic that
// uses it is inlined: a false positive in the header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define NIBBLE_ISA_NAMESPACE avx512
#include "kernels/avx512/avx512_common.h"
#include "kernels/matmul_q2q3.h"
#include "kernels/matmul_variants.h"
#include "kernels/q2q3.h"

namespace nibble::kernels::avx512 {

namespace {

constexpr int kRowBlock = 4;
constexpr int kTokenBlock = 4;
// Prefetch distance in code bytes (rounded up to whole row blocks), as the
// 4-bit kernel's: far enough ahead to hide DRAM's latency at full bandwidth.
constexpr int64_t kPrefetchBytes = 8192;

template <bool kQ3>
constexpr int kChunk = kQ3 ? kQ3ChunkBytes : kQ2ChunkBytes;

struct Quad {
    __m512i lo, hi;  // unsigned codes pairing with x0 and x1
};

// The constants of unpacking, loaded once per micro-kernel.
struct Unpack {
    __m512i planes;  // q2: vpermq index; q3: vpermd index
    __m512i shifts;  // 0, 2 per 128-bit lane
    __m512i three;
    __m512i bits_index;  // q3: vpermd index of the third-bit planes
    __m512i spread_lo, spread_hi;
    __m512i column_bit;
    __m512i four;
};

template <bool kQ3>
Unpack make_unpack() {
    Unpack u;
    u.planes = kQ3 ? _mm512_setr_epi32(0, 1, 0, 1, 3, 4, 3, 4, 6, 7, 6, 7, 9, 10, 9, 10)
                   : _mm512_setr_epi64(0, 0, 1, 1, 2, 2, 3, 3);
    u.shifts = _mm512_setr_epi64(0, 2, 0, 2, 0, 2, 0, 2);
    u.three = _mm512_set1_epi8(3);
    u.bits_index = _mm512_setr_epi32(2, 2, 2, 2, 5, 5, 5, 5, 8, 8, 8, 8, 11, 11, 11, 11);
    u.spread_lo =
        _mm512_broadcast_i32x4(_mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
    u.spread_hi =
        _mm512_broadcast_i32x4(_mm_setr_epi8(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    u.column_bit = _mm512_set1_epi64(int64_t(0x8040201008040201));
    u.four = _mm512_set1_epi8(4);
    return u;
}

// The 128 codes of one row's quad at p; code_mask covers its valid bytes.
template <bool kQ3, bool kMasked>
inline Quad load_quad(const uint8_t* p, __mmask64 code_mask, const Unpack& u) {
    __m512i c;
    if constexpr (kQ3) {
        c = _mm512_maskz_loadu_epi8(kMasked ? code_mask : __mmask64(0xffffffffffff), p);
    } else {
        c = _mm512_castsi256_si512(kMasked
                                       ? _mm256_maskz_loadu_epi8(__mmask32(code_mask), p)
                                       : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    }
    const __m512i words =
        kQ3 ? _mm512_permutexvar_epi32(u.planes, c) : _mm512_permutexvar_epi64(u.planes, c);
    const __m512i s = _mm512_srlv_epi64(words, u.shifts);
    Quad w{_mm512_and_si512(s, u.three), _mm512_and_si512(_mm512_srli_epi64(s, 4), u.three)};
    if constexpr (kQ3) {
        const __m512i bits = _mm512_permutexvar_epi32(u.bits_index, c);
        const __mmask64 lo =
            _mm512_test_epi8_mask(_mm512_shuffle_epi8(bits, u.spread_lo), u.column_bit);
        const __mmask64 hi =
            _mm512_test_epi8_mask(_mm512_shuffle_epi8(bits, u.spread_hi), u.column_bit);
        w.lo = _mm512_mask_add_epi8(w.lo, lo, w.lo, u.four);
        w.hi = _mm512_mask_add_epi8(w.hi, hi, w.hi, u.four);
    }
    return w;
}

struct RowData {
    const uint8_t* codes;
    const uint8_t* prefetch;  // the same offset some row blocks further on
    const uint16_t* scales16;
    const float* scales32;
    const uint16_t* mins16;
    const float* mins32;
};

// Weight scales of quad q for four rows at lane 4k+r (the group of block 4q+k
// of row r); as in the 4-bit AVX-512 kernel.
template <bool kFp16>
inline __m512 quad_scales(const RowData* rows, int64_t q, int group_shift, __mmask8 group_mask,
                          __m512i transpose) {
    const int64_t g0 = (4 * q) >> group_shift;
    __m512 s;
    if constexpr (kFp16) {
        const __m128i h01 =
            _mm_unpacklo_epi64(_mm_maskz_loadu_epi16(group_mask, rows[0].scales16 + g0),
                               _mm_maskz_loadu_epi16(group_mask, rows[1].scales16 + g0));
        const __m128i h23 =
            _mm_unpacklo_epi64(_mm_maskz_loadu_epi16(group_mask, rows[2].scales16 + g0),
                               _mm_maskz_loadu_epi16(group_mask, rows[3].scales16 + g0));
        s = _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(h01), h23, 1));
    } else {
        s = _mm512_castps128_ps512(_mm_maskz_loadu_ps(group_mask, rows[0].scales32 + g0));
        s = _mm512_insertf32x4(s, _mm_maskz_loadu_ps(group_mask, rows[1].scales32 + g0), 1);
        s = _mm512_insertf32x4(s, _mm_maskz_loadu_ps(group_mask, rows[2].scales32 + g0), 2);
        s = _mm512_insertf32x4(s, _mm_maskz_loadu_ps(group_mask, rows[3].scales32 + g0), 3);
    }
    return _mm512_permutexvar_ps(transpose, s);
}

// q3's 4 sum(x) of every block: lane 4k+r of quad q holds 4 times the sum of
// block 4q+k's activation codes. out is [n_tokens][n_quads][16] int32.
void offset_sums(const QuantizedActivations& qa, int32_t* out) {
    const __m512i four = _mm512_set1_epi8(4);
    const int64_t n_quads = (qa.n_blocks + 3) / 4;
    for (int t = 0; t < qa.n_tokens; ++t) {
        const int8_t* xq = qa.token_q(t);
        int32_t* o = out + size_t(t) * size_t(n_quads) * 16;
        for (int64_t q = 0; q < n_quads; ++q) {
            __m512i s =
                _mm512_dpbusd_epi32(_mm512_setzero_si512(), four, _mm512_loadu_si512(xq + 128 * q));
            s = _mm512_dpbusd_epi32(s, four, _mm512_loadu_si512(xq + 128 * q + 64));
            s = _mm512_add_epi32(s, _mm512_shuffle_epi32(s, _MM_PERM_CDAB));
            s = _mm512_add_epi32(s, _mm512_shuffle_epi32(s, _MM_PERM_BADC));
            _mm512_storeu_si512(o + 16 * q, s);
        }
    }
}

// Four rows x T tokens; rows beyond n_valid repeat a valid row and are not written.
template <bool kQ3, bool kFp16, int T>
void micro_kernel(const RowData* rows, int n_valid, const QuantizedActivations& qa,
                  const int32_t* offsets, int t0, int64_t row0, int64_t n_rows, float* y) {
    constexpr int R = kRowBlock;
    const int group_shift = __builtin_ctzll(uint64_t(qa.blocks_per_group));
    const __m512i transpose =
        group_shift == 0   ? _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15)
        : group_shift == 1 ? _mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 1, 5, 9, 13, 1, 5, 9, 13)
                           : _mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12);
    const Unpack u = make_unpack<kQ3>();
    const int64_t n_quads = (qa.n_blocks + 3) / 4;

    __m512 acc[T];  // lane 4k+r: a_k of row r
    const int8_t* xq[T];
    const float* xd4[T];
    const int32_t* xk[T];
    for (int t = 0; t < T; ++t) {
        acc[t] = _mm512_setzero_ps();
        xq[t] = qa.token_q(t0 + t);
        xd4[t] = qa.token_d4(t0 + t);
        xk[t] = offsets + size_t(t0 + t) * size_t(n_quads) * 16;
    }

    const auto step = [&]<bool kMasked>(int64_t q, __mmask64 code_mask, __mmask8 group_mask) {
        const size_t at = size_t(4 * kChunk<kQ3>) * size_t(q);
        Quad w[R];
        for (int r = 0; r < R; ++r) {
            _mm_prefetch(reinterpret_cast<const char*>(rows[r].prefetch + at), _MM_HINT_T0);
            w[r] = load_quad<kQ3, kMasked>(rows[r].codes + at, code_mask, u);
        }
        const __m512 ws = quad_scales<kFp16>(rows, q, group_shift, group_mask, transpose);
        for (int t = 0; t < T; ++t) {
            const __m512i x0 = _mm512_loadu_si512(xq[t] + 128 * q);
            const __m512i x1 = _mm512_loadu_si512(xq[t] + 128 * q + 64);
            const __m512 dx = _mm512_loadu_ps(xd4[t] + 16 * q);  // lane 4k+j: d_x(4q+k)
            __m512i dot[R];
            for (int r = 0; r < R; ++r) {
                dot[r] = _mm512_dpbusd_epi32(
                    _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[r].lo, x0), w[r].hi, x1);
            }
            __m512i sums = four_row_sums(dot);
            if constexpr (kQ3) sums = _mm512_sub_epi32(sums, _mm512_loadu_si512(xk[t] + 16 * q));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(ws, dx), acc[t]);
        }
    };

    const int64_t n_full = qa.n_blocks / 4;
    // Groups of a whole quad: one for 4 blocks per group or more.
    const __mmask8 full_groups = __mmask8((1u << (group_shift >= 2 ? 1 : 4 >> group_shift)) - 1);
    for (int64_t q = 0; q < n_full; ++q) step.template operator()<false>(q, 0, full_groups);
    if (const int rest = int(qa.n_blocks % 4); rest != 0) {
        const __mmask64 code_mask = (__mmask64(1) << (rest * kChunk<kQ3>)) - 1;
        const int n_groups = group_shift >= 2 ? 1 : ((rest - 1) >> group_shift) + 1;
        step.template operator()<true>(n_full, code_mask, __mmask8((1u << n_groups) - 1));
    }

    for (int t = 0; t < T; ++t) {
        // (a_0 + a_2) + (a_1 + a_3) for each row, lane r.
        const __m256 half =
            _mm256_add_ps(_mm512_castps512_ps256(acc[t]),
                          _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[t]), 1)));
        const __m128 row_sums =
            _mm_add_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
        float* out = y + size_t(t0 + t) * size_t(n_rows) + size_t(row0);
        if constexpr (kQ3) {
            if (n_valid == R) {
                _mm_storeu_ps(out, row_sums);
                continue;
            }
        }
        alignas(16) float sums[4];
        _mm_store_ps(sums, row_sums);
        for (int r = 0; r < n_valid; ++r) {
            float s = sums[r];
            if constexpr (!kQ3) {
                s += param_dot(rows[r].mins16, rows[r].mins32, qa.token_group_sums(t0 + t),
                               qa.groups_per_row);
            }
            out[r] = s;
        }
    }
}

template <bool kQ3, bool kFp16>
void rows_int8(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
               float* y) {
    const PackedLayout& l = w.layout;
    const int64_t gpr = l.groups_per_row;
    const size_t row_bytes = size_t(kChunk<kQ3>) * size_t(l.padded_cols / 32);
    // Scratch: double-quantized parameters of a row block, then q3's offset sums.
    const size_t per_row = kFp16 ? 0 : size_t(2 * gpr);
    const size_t offset_words = kQ3 ? size_t(qa.n_tokens) * size_t((qa.n_blocks + 3) / 4) * 16 : 0;
    float* scratch = kernel_scratch(per_row * kRowBlock + offset_words + 1);
    auto* offsets = reinterpret_cast<int32_t*>(scratch + per_row * kRowBlock);
    if constexpr (kQ3) offset_sums(qa, offsets);
    const auto* scales16 = reinterpret_cast<const uint16_t*>(w.data + l.scales_offset);
    const auto* mins16 = reinterpret_cast<const uint16_t*>(w.data + l.mins_offset);

    const int64_t block_bytes = kRowBlock * int64_t(row_bytes);
    const int64_t blocks_ahead = (kPrefetchBytes + block_bytes - 1) / block_bytes;
    const int64_t ahead = kRowBlock * (blocks_ahead > 1 ? blocks_ahead : 1);
    for (int64_t r = r0; r < r1; r += kRowBlock) {
        const int n = r1 - r < kRowBlock ? int(r1 - r) : kRowBlock;
        RowData rows[kRowBlock];
        for (int i = 0; i < n; ++i) {
            const int64_t row = r + i;
            const uint8_t* codes = w.data + l.codes_offset + size_t(row) * row_bytes;
            // (no pointer past the blob: the last rows prefetch themselves)
            const bool has_next = row + ahead < l.rows;
            RowData& d = rows[i];
            d = RowData{codes,   has_next ? codes + ahead * row_bytes : codes,
                        nullptr, nullptr,
                        nullptr, nullptr};
            if constexpr (kFp16) {
                d.scales16 = scales16 + row * gpr;
                if constexpr (!kQ3) d.mins16 = mins16 + row * gpr;
            } else {
                d.scales32 = scratch + size_t(i * gpr);
                if constexpr (!kQ3) d.mins32 = scratch + size_t((kRowBlock + i) * gpr);
            }
        }
        if constexpr (!kFp16) {
            decode_dq_rows(w, GroupStream::scales, r, n, scratch);
            if constexpr (!kQ3)
                decode_dq_rows(w, GroupStream::mins, r, n, scratch + size_t(kRowBlock * gpr));
        }
        for (int i = n; i < kRowBlock; ++i) rows[i] = rows[n - 1];
        int t = 0;
        for (; t + kTokenBlock <= qa.n_tokens; t += kTokenBlock)
            micro_kernel<kQ3, kFp16, kTokenBlock>(rows, n, qa, offsets, t, r, l.rows, y);
        for (; t < qa.n_tokens; ++t)
            micro_kernel<kQ3, kFp16, 1>(rows, n, qa, offsets, t, r, l.rows, y);
    }
}

template <bool kQ3>
void rows_int8(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
               float* y) {
    if (w.layout.double_quant) {
        rows_int8<kQ3, false>(w, qa, r0, r1, y);
    } else {
        rows_int8<kQ3, true>(w, qa, r0, r1, y);
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

}  // namespace nibble::kernels::avx512

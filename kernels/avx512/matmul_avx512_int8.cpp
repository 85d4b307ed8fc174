// AVX-512 VNNI integer matmul: int8 activations in quad order (kernels/
// activation_quant.h) times 4/8-bit weight codes with vpdpbusd, scaled and
// accumulated in FP32. Needs AVX-512 F, BW, VL and VNNI (cpu_features().avx512).
//
// One step covers four 32-column blocks 4q..4q+3 of a row (128 weights):
//   q4/q4a/nf4/iq4nl: one 64-byte load of four 16-byte code chunks; AND 0x0f gives
//     [b0 0..15 | b1 0..15 | b2 0..15 | b3 0..15] and a 4-bit shift gives the
//     columns 16..31 of each block in the same places: the quad order of the
//     activations, so 128-bit lane k of both products belongs to block 4q+k.
//   q8: two 64-byte loads [b0 | b1], [b2 | b3] regrouped by vshufi64x2.
// vpdpbusd multiplies unsigned bytes by signed bytes. Every format is written
// as unsigned bytes u = w + K with a per-format constant K (q4: codes 0..15 are
// w + 8; nf4/iq4nl: the int8 code book plus 127; q8: w xor 0x80 = w + 128; q4a: K = 0,
// its codes are the unsigned q itself), so
//   vpdpbusd(u, x) = sum w x + K sum x,
// and K sum x over each block is subtracted from the rows' whole-block sums.
// That term depends on the activations alone: it is computed once per call,
// token and quad (offset_sums) and is one subtraction per quad for four rows.
// The sixteen int32 lanes (four partial sums per block) of four rows are
// added into one vector of whole-block dot products D(r, 4q+k) at lane 4k+r
// (integer adds: exact), converted to float, multiplied by d_w(r, 4q+k) *
// d_x(4q+k) and accumulated with FMA. A row's output is
//   y = (a_0 + a_2) + (a_1 + a_3),   a_k = sum over q of D(4q+k) d_w d_x in q order,
// an order that the AMX kernel (kernels/amx/) reproduces exactly, so that GEMM
// on AMX equals GEMV here bit for bit. q4a adds sum_g m_g group_sum_g at the
// end (kernels/activation_quant.h).
//
// Group scales are read as fp16 straight from the blob (vcvtph2ps, no decoded
// copy of the row), or from a per-row float scratch when double-quantized.
// A row whose block count is not a multiple of 4 ends in a partial quad read
// with masked loads (nothing is read past the row; the activations are padded
// with zeros).
#include <immintrin.h>

#include <cstring>

// GCC 12's avx512fintrin.h builds _mm512_undefined_ps() from a self-initialised
// variable, which -Wmaybe-uninitialized reports wherever an intrinsic that
// uses it (vpermps, vcvtdq2ps) is inlined: a false positive in the header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define NIBBLE_ISA_NAMESPACE avx512
#include "kernels/avx512/avx512_common.h"
#include "kernels/avx512/kquant_params_avx512.h"
#include "kernels/format_traits.h"
#include "kernels/interleave.h"
#include "kernels/matmul_variants.h"

namespace nibble::kernels::avx512 {

namespace {

// Rows per register block (the whole-block reduction combines four rows), and
// tokens per register block for GEMM.
constexpr int kRowBlock = 4;
constexpr int kTokenBlock = 4;
// How far ahead of the rows being read their codes are prefetched: a row
// block of short rows (TinyLlama's 2048 columns: 4 KiB) is not far enough
// ahead to hide DRAM's latency at full bandwidth.
constexpr int64_t kPrefetchBytes = 8192;

template <WeightFormat F>
constexpr int kCodeBias = FormatTraits<F>::code_book      ? 127
                          : FormatTraits<F>::signed_codes ? 128
                                                          : FormatTraits<F>::code_offset;

// Code bytes of one quad step of a row.
template <WeightFormat F>
constexpr int kQuadBytes = 4 * kChunkBytes<F>;

// Unsigned weight bytes of one quad: lo pairs with activations [0, 64) of the
// quad, hi with [64, 128).
struct Quad {
    __m512i lo, hi;
};

// The int8 code book of a code-book format (nf4: -127..127, iq4nl: -127..113)
// plus 127, for vpshufb in every 128-bit lane.
template <WeightFormat F>
inline __m512i codebook_unsigned_table() {
    constexpr const int8_t* b = kCodeBookInt8<F>;
    return _mm512_broadcast_i32x4(
        _mm_setr_epi8(char(b[0] + 127), char(b[1] + 127), char(b[2] + 127), char(b[3] + 127),
                      char(b[4] + 127), char(b[5] + 127), char(b[6] + 127), char(b[7] + 127),
                      char(b[8] + 127), char(b[9] + 127), char(b[10] + 127), char(b[11] + 127),
                      char(b[12] + 127), char(b[13] + 127), char(b[14] + 127), char(b[15] + 127)));
}

// n_blocks (1..4) of quad q; mask_bytes covers the valid code bytes when masked.
template <WeightFormat F, bool kMasked>
inline Quad load_quad(const uint8_t* codes, int64_t q, __mmask64 mask_a, __mmask64 mask_b,
                      __m512i book) {
    Quad w;
    const uint8_t* p = codes + kQuadBytes<F> * q;
    if constexpr (F == WeightFormat::q8) {
        const __m512i a = kMasked ? _mm512_maskz_loadu_epi8(mask_a, p) : _mm512_loadu_si512(p);
        const __m512i b =
            kMasked ? _mm512_maskz_loadu_epi8(mask_b, p + 64) : _mm512_loadu_si512(p + 64);
        // a = [b0 lo | b0 hi | b1 lo | b1 hi] in 128-bit lanes, b likewise for b2, b3.
        const __m512i sign = _mm512_set1_epi8(char(0x80));
        w.lo = _mm512_xor_si512(_mm512_shuffle_i64x2(a, b, 0x88), sign);  // [a0 a2 b0 b2]
        w.hi = _mm512_xor_si512(_mm512_shuffle_i64x2(a, b, 0xdd), sign);  // [a1 a3 b1 b3]
        // (Padding blocks of a partial quad meet zero activations: they add 0.)
    } else {
        const __m512i c = kMasked ? _mm512_maskz_loadu_epi8(mask_a, p) : _mm512_loadu_si512(p);
        const __m512i nibble = _mm512_set1_epi8(0x0f);
        w.lo = _mm512_and_si512(c, nibble);
        w.hi = _mm512_and_si512(_mm512_srli_epi16(c, 4), nibble);
        if constexpr (FormatTraits<F>::code_book) {
            w.lo = _mm512_shuffle_epi8(book, w.lo);
            w.hi = _mm512_shuffle_epi8(book, w.hi);
        }
    }
    return w;
}

// Where a row's group parameters come from: fp16 in the blob, or decoded floats.
// A row's quads (128 columns) are `stride` bytes apart: kQuadBytes when
// row-major, the row block's unit when interleaved (kernels/interleave.h).
struct RowData {
    const uint8_t* codes;
    const uint8_t* prefetch;  // the same offset kRowBlock rows further on
    const uint16_t* scales16;
    const float* scales32;
    const uint16_t* mins16;
    const float* mins32;
    size_t stride;
};

// Weight scales of quad q for the four rows: lane 4k+r gets the scale of row
// r's group of block 4q+k. group_shift = log2(blocks per group); the quad's
// first group is (4q) >> group_shift and it spans max(1, 4 >> group_shift)
// groups, fewer in a partial quad (group_mask). The four rows' group scales
// are loaded side by side (lane 4r+g) and transposed by one permute
// (transpose[4k+r] = 4r + (k >> group_shift)).
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

// K sum x over each block of every quad, for tokens [0, n_tokens): lane 4k+r
// of quad q holds K times the sum of block 4q+k's activation codes (the same
// for every r), i.e. what the bias K adds to each row's whole-block sum.
// out is [n_tokens][n_quads][16] int32.
template <WeightFormat F>
void offset_sums(const QuantizedActivations& qa, int32_t* out) {
    const __m512i bias_bytes = _mm512_set1_epi8(char(kCodeBias<F>));
    const int64_t n_quads = (qa.n_blocks + 3) / 4;
    for (int t = 0; t < qa.n_tokens; ++t) {
        const int8_t* xq = qa.token_q(t);
        int32_t* o = out + size_t(t) * size_t(n_quads) * 16;
        for (int64_t q = 0; q < n_quads; ++q) {
            // lane 4k+j: K times bytes 4j..4j+3 of block 4q+k's two halves
            // (padding blocks of a partial quad hold zero codes).
            __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias_bytes,
                                            _mm512_loadu_si512(xq + 128 * q));
            s = _mm512_dpbusd_epi32(s, bias_bytes, _mm512_loadu_si512(xq + 128 * q + 64));
            // Sum the four lanes of each block into all four.
            s = _mm512_add_epi32(s, _mm512_shuffle_epi32(s, _MM_PERM_CDAB));
            s = _mm512_add_epi32(s, _mm512_shuffle_epi32(s, _MM_PERM_BADC));
            _mm512_storeu_si512(o + 16 * q, s);
        }
    }
}

// Masks of a quad with n_blocks valid blocks.
struct QuadMasks {
    __mmask64 code_a, code_b;
    __mmask8 groups;
};

template <WeightFormat F>
QuadMasks quad_masks(int n_blocks, int group_shift) {
    QuadMasks m;
    if constexpr (F == WeightFormat::q8) {
        const int a = n_blocks < 2 ? n_blocks : 2, b = n_blocks - a;
        m.code_a = a == 2 ? ~__mmask64(0) : (__mmask64(1) << (32 * a)) - 1;
        m.code_b = b == 2 ? ~__mmask64(0) : (__mmask64(1) << (32 * b)) - 1;
    } else {
        m.code_a = n_blocks == 4 ? ~__mmask64(0) : (__mmask64(1) << (16 * n_blocks)) - 1;
        m.code_b = 0;
    }
    // Groups touched by blocks 0..n_blocks-1 of a quad that starts a group
    // (quads start at multiples of 4 blocks, so for group_shift >= 2 one group).
    const int n_groups = group_shift >= 2 ? 1 : ((n_blocks - 1) >> group_shift) + 1;
    m.groups = __mmask8((1u << n_groups) - 1);
    return m;
}

// Four rows x T tokens: every quad of weights is unpacked once and used for T
// tokens. Rows beyond n_valid repeat a valid row and are not written.
template <WeightFormat F, bool kFp16, int T>
void micro_kernel(const RowData* rows, int n_valid, const QuantizedActivations& qa,
                  const int32_t* offsets, int t0, int64_t row0, int64_t n_rows, float* y) {
    constexpr int R = kRowBlock;
    const int group_shift = __builtin_ctzll(uint64_t(qa.blocks_per_group));
    const __m512i transpose =
        group_shift == 0   ? _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15)
        : group_shift == 1 ? _mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 1, 5, 9, 13, 1, 5, 9, 13)
                           : _mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12);
    __m512i book = _mm512_setzero_si512();
    if constexpr (FormatTraits<F>::code_book) book = codebook_unsigned_table<F>();

    __m512 acc[T];  // lane 4k+r: a_k of row r
    for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
    const int8_t* xq[T];
    const float* xd4[T];
    const int32_t* xk[T];
    const int64_t n_quads = (qa.n_blocks + 3) / 4;
    for (int t = 0; t < T; ++t) {
        xq[t] = qa.token_q(t0 + t);
        xd4[t] = qa.token_d4(t0 + t);
        xk[t] = offsets + size_t(t0 + t) * size_t(n_quads) * 16;
    }

    const auto step = [&]<bool kMasked>(int64_t q, const QuadMasks& m) {
        Quad w[R];
        for (int r = 0; r < R; ++r) {
            const size_t at = rows[r].stride * size_t(q);
            if (rows[r].stride == size_t(kQuadBytes<F>)) {
                _mm_prefetch(reinterpret_cast<const char*>(rows[r].prefetch + at), _MM_HINT_T0);
                if constexpr (F == WeightFormat::q8) {
                    _mm_prefetch(reinterpret_cast<const char*>(rows[r].prefetch + at + 64),
                                 _MM_HINT_T0);
                }
            } else {
                // Interleaved: the block's rows are one stream, which the L1
                // prefetches held back (one decoding thread, a shared Xeon:
                // ~70% of the row-major rate with T0, about equal into L2).
                _mm_prefetch(reinterpret_cast<const char*>(rows[r].prefetch + at), _MM_HINT_T2);
                if constexpr (F == WeightFormat::q8) {
                    _mm_prefetch(reinterpret_cast<const char*>(rows[r].prefetch + at + 64),
                                 _MM_HINT_T2);
                }
            }
            w[r] = load_quad<F, kMasked>(rows[r].codes + at, 0, m.code_a, m.code_b, book);
        }
        const __m512 ws = quad_scales<kFp16>(rows, q, group_shift, m.groups, transpose);
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
            if constexpr (kCodeBias<F> != 0)
                sums = _mm512_sub_epi32(sums, _mm512_loadu_si512(xk[t] + 16 * q));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(ws, dx), acc[t]);
        }
    };

    const int64_t n_full = qa.n_blocks / 4;
    const QuadMasks full = quad_masks<F>(4, group_shift);
    for (int64_t q = 0; q < n_full; ++q) step.template operator()<false>(q, full);
    if (const int rest = int(qa.n_blocks % 4); rest != 0) {
        step.template operator()<true>(n_full, quad_masks<F>(rest, group_shift));
    }

    for (int t = 0; t < T; ++t) {
        // (a_0 + a_2) + (a_1 + a_3) for each row, lane r.
        const __m256 half =
            _mm256_add_ps(_mm512_castps512_ps256(acc[t]),
                          _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[t]), 1)));
        const __m128 row_sums =
            _mm_add_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
        float* out = y + size_t(t0 + t) * size_t(n_rows) + size_t(row0);
        if constexpr (F != WeightFormat::q4a) {
            // finish_output's code-book scale, four rows at once (the same product).
            if (n_valid == R) {
                _mm_storeu_ps(out, FormatTraits<F>::code_book
                                       ? _mm_mul_ps(row_sums, _mm_set1_ps(kCodeBookInt8Scale<F>))
                                       : row_sums);
                continue;
            }
        }
        alignas(16) float sums[4];
        _mm_store_ps(sums, row_sums);
        for (int r = 0; r < n_valid; ++r) {
            out[r] = finish_output<F>(sums[r], rows[r].mins16, rows[r].mins32,
                                      qa.token_group_sums(t0 + t), qa.groups_per_row);
        }
    }
}

// All tokens for four rows: token blocks of kTokenBlock, then the rest one by one.
template <WeightFormat F, bool kFp16>
void all_tokens(const RowData* rows, int n_valid, const QuantizedActivations& qa,
                const int32_t* offsets, int64_t row0, int64_t n_rows, float* y) {
    int t = 0;
    for (; t + kTokenBlock <= qa.n_tokens; t += kTokenBlock)
        micro_kernel<F, kFp16, kTokenBlock>(rows, n_valid, qa, offsets, t, row0, n_rows, y);
    for (; t < qa.n_tokens; ++t)
        micro_kernel<F, kFp16, 1>(rows, n_valid, qa, offsets, t, row0, n_rows, y);
}

template <WeightFormat F, bool kFp16>
void rows_int8(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
               float* y) {
    const PackedLayout& l = w.layout;
    const int64_t gpr = l.groups_per_row;
    const size_t row_bytes = size_t(kChunkBytes<F> * (l.padded_cols / 32));
    // Scratch: the double-quantized parameters decoded per row (kRowBlock rows),
    // then the offset sums of every token (16 int32 per quad).
    const size_t per_row = kFp16 ? 0 : size_t(2 * gpr);
    const size_t offset_words = size_t(qa.n_tokens) * size_t((qa.n_blocks + 3) / 4) * 16;
    float* scratch = kernel_scratch(per_row * kRowBlock + offset_words);
    auto* offsets = reinterpret_cast<int32_t*>(scratch + per_row * kRowBlock);
    if constexpr (kCodeBias<F> != 0) offset_sums<F>(qa, offsets);
    const auto* scales16 = reinterpret_cast<const uint16_t*>(w.data + l.scales_offset);
    const auto* mins16 = reinterpret_cast<const uint16_t*>(w.data + l.mins_offset);

    // Prefetch distance: whole row blocks, at least kPrefetchBytes of codes ahead.
    // (No std::max: nothing from std:: is instantiated in an ISA translation
    // unit, tests/check_isa_symbols.sh.)
    const int64_t block_bytes = kRowBlock * int64_t(row_bytes);
    const int64_t blocks_ahead = (kPrefetchBytes + block_bytes - 1) / block_bytes;
    const int64_t ahead = kRowBlock * (blocks_ahead > 1 ? blocks_ahead : 1);
    // Interleaved rows are read in place when the kernel's row blocks are the
    // layout's (whole quads); otherwise each row is gathered (kernels/interleave.h).
    const bool interleaved = l.interleave > 1;
    const bool in_place = l.interleave == kRowBlock && l.padded_cols % 128 == 0;
    uint8_t* gathered = interleaved ? code_scratch(0, kRowBlock * row_bytes) : nullptr;
    const size_t unit = kQuadBytes<F>;
    for (int64_t r = r0; r < r1; r += kRowBlock) {
        const int n = r1 - r < kRowBlock ? int(r1 - r) : kRowBlock;
        const bool direct = !interleaved || (in_place && r % kRowBlock == 0);
        const int64_t block_rows = l.rows - r < kRowBlock ? l.rows - r : kRowBlock;
        RowData rows[kRowBlock];
        for (int i = 0; i < n; ++i) {
            const int64_t row = r + i;
            const uint8_t* codes = w.data + l.codes_offset + size_t(row) * row_bytes;
            // (no pointer past the blob: the last row blocks prefetch themselves)
            bool has_next = row + ahead < l.rows;
            size_t stride = unit;
            if (interleaved && direct) {
                // Quad q of row r+i: block start + q * block_rows * unit + i * unit; the
                // block `ahead` rows on has the same stride when it is whole.
                codes = w.data + l.codes_offset + size_t(r) * row_bytes + size_t(i) * unit;
                stride = size_t(block_rows) * unit;
                has_next = r + ahead + kRowBlock <= l.rows && block_rows == kRowBlock;
            } else if (interleaved) {
                codes = row_codes(w, row, gathered + size_t(i) * row_bytes);
                has_next = false;
            }
            RowData& d = rows[i];
            d = RowData{codes,   has_next ? codes + ahead * row_bytes : codes,
                        nullptr, nullptr,
                        nullptr, nullptr,
                        stride};
            if constexpr (kFp16) {
                d.scales16 = scales16 + row * gpr;
                if constexpr (F == WeightFormat::q4a) d.mins16 = mins16 + row * gpr;
            } else {
                // Decoded parameters: row i's scales at scratch[i * gpr], its
                // mins at scratch[(kRowBlock + i) * gpr], so that the block's
                // double-quantized codes decode as one span after this loop.
                float* scales = scratch + size_t(i * gpr);
                float* mins = scratch + size_t((kRowBlock + i) * gpr);
                d.scales32 = scales;
                if constexpr (F == WeightFormat::q4a) d.mins32 = mins;
                if (l.format == WeightFormat::q4k) {  // both streams in one pass
                    const size_t sb_bytes = size_t(gpr / 8) * 16;
                    const uint8_t* sb = w.data + l.scales_offset + size_t(row) * sb_bytes;
                    // The parameters are a stream of their own: fetch those
                    // of the rows `ahead` now, as their codes are.
                    if (has_next) {
                        for (size_t b = 0; b < sb_bytes; b += 64)
                            _mm_prefetch(reinterpret_cast<const char*>(sb + ahead * sb_bytes + b),
                                         _MM_HINT_T0);
                    }
                    decode_q4k_row_avx512(sb, gpr / 8, scales, mins);
                }
            }
        }
        if (!kFp16 && l.format != WeightFormat::q4k) {
            decode_dq_rows(w, GroupStream::scales, r, n, scratch);
            if constexpr (F == WeightFormat::q4a)
                decode_dq_rows(w, GroupStream::mins, r, n, scratch + size_t(kRowBlock * gpr));
        }
        for (int i = n; i < kRowBlock; ++i) rows[i] = rows[n - 1];
        all_tokens<F, kFp16>(rows, n, qa, offsets, r, l.rows, y);
    }
}

template <WeightFormat F>
void rows_int8(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
               float* y) {
    if (w.layout.double_quant) {
        rows_int8<F, false>(w, qa, r0, r1, y);
    } else {
        rows_int8<F, true>(w, qa, r0, r1, y);
    }
}

}  // namespace

void matmul_rows_int8(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
                      float* y) {
    visit_grouped_format(w.layout.format, [&](auto format) {
        rows_int8<decltype(format)::value>(w, qa, r0, r1, y);
    });
}

}  // namespace nibble::kernels::avx512

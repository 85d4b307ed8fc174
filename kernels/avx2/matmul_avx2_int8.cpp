// AVX2 integer matmul: int8 activations (pair-interleaved, see
// kernels/activation_quant.h) times 4/8-bit weight codes with vpmaddubsw /
// vpmaddwd, scaled and accumulated in FP32 with FMA.
//
// Two 32-column blocks are handled per step. For 4-bit formats the 32 code bytes
// of blocks 2p and 2p+1 give, after AND 0x0f and a 4-bit shift, the low and high
// nibbles = columns 0..15 and 16..31 of both blocks: [b0 0..15 | b1 0..15] and
// [b0 16..31 | b1 16..31], the order of the interleaved activations. After
// vpmaddwd the eight int32 lanes hold partial sums of block 2p (lanes 0-3) and
// 2p+1 (lanes 4-7), so the scale vector is [s0 x4, s1 x4] with s = d_w * d_x.
//
// q4/q4a codes are unsigned (0..15) and go straight into vpmaddubsw's unsigned
// operand (|pair sum| <= 2*15*127, two blocks' halves add without overflow); the
// -8 offset of q4 and the min of q4a are added per group through the
// activations' group sums. nf4 (int8 code book via vpshufb) and q8 are signed:
// vpmaddubsw(|w|, sign(x, w)) with each half widened separately (2*127*127 fits
// int16, twice that does not).
#include "kernels/avx2/avx2_common.h"
#include "kernels/matmul_variants.h"

namespace nibble::kernels::avx2 {

namespace {

// Rows per register block, and tokens per register block for GEMM (where the
// signed formats, with more registers per weight step, use half the rows).
constexpr int kRowBlock = 4;
constexpr int kTokenBlock = 4;

constexpr bool is_signed_format(WeightFormat f) {
    return f == WeightFormat::q8 || f == WeightFormat::nf4;
}

// Weight operands for one step: a0/a1 feed vpmaddubsw's unsigned side (|w| for
// signed formats), s0/s1 carry the signs (signed formats only).
struct Operands {
    __m256i a0, a1, s0, s1;
};

inline __m256i nf4_table() {
    return _mm256_setr_epi8(
        kNf4Int8[0], kNf4Int8[1], kNf4Int8[2], kNf4Int8[3], kNf4Int8[4], kNf4Int8[5], kNf4Int8[6],
        kNf4Int8[7], kNf4Int8[8], kNf4Int8[9], kNf4Int8[10], kNf4Int8[11], kNf4Int8[12],
        kNf4Int8[13], kNf4Int8[14], kNf4Int8[15], kNf4Int8[0], kNf4Int8[1], kNf4Int8[2],
        kNf4Int8[3], kNf4Int8[4], kNf4Int8[5], kNf4Int8[6], kNf4Int8[7], kNf4Int8[8], kNf4Int8[9],
        kNf4Int8[10], kNf4Int8[11], kNf4Int8[12], kNf4Int8[13], kNf4Int8[14], kNf4Int8[15]);
}

// Blocks 2p and 2p+1 of a row.
template <WeightFormat F>
inline Operands load_pair(const uint8_t* row_codes, int64_t p) {
    Operands o;
    if constexpr (F == WeightFormat::q8) {
        const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row_codes + 64 * p));
        const __m256i w1 =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row_codes + 64 * p + 32));
        o.s0 = _mm256_permute2x128_si256(w0, w1, 0x20);  // [b0 0..15 | b1 0..15]
        o.s1 = _mm256_permute2x128_si256(w0, w1, 0x31);  // [b0 16..31 | b1 16..31]
        o.a0 = _mm256_abs_epi8(o.s0);
        o.a1 = _mm256_abs_epi8(o.s1);
    } else {
        const __m256i mask = _mm256_set1_epi8(0x0f);
        const __m256i bytes =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row_codes + 32 * p));
        const __m256i lo = _mm256_and_si256(bytes, mask);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), mask);
        if constexpr (F == WeightFormat::nf4) {
            const __m256i table = nf4_table();
            o.s0 = _mm256_shuffle_epi8(table, lo);
            o.s1 = _mm256_shuffle_epi8(table, hi);
            o.a0 = _mm256_abs_epi8(o.s0);
            o.a1 = _mm256_abs_epi8(o.s1);
        } else {
            o.a0 = lo;
            o.a1 = hi;
        }
    }
    return o;
}

// Last block b of a row when the block count is odd (natural column order).
template <WeightFormat F>
inline Operands load_single(const uint8_t* row_codes, int64_t b) {
    Operands o;
    if constexpr (F == WeightFormat::q8) {
        o.s0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row_codes + 32 * b));
        o.a0 = _mm256_abs_epi8(o.s0);
    } else {
        const __m128i mask = _mm_set1_epi8(0x0f);
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row_codes + 16 * b));
        const __m256i idx = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(bytes, 4), mask),
                                             _mm_and_si128(bytes, mask));
        if constexpr (F == WeightFormat::nf4) {
            o.s0 = _mm256_shuffle_epi8(nf4_table(), idx);
            o.a0 = _mm256_abs_epi8(o.s0);
        } else {
            o.a0 = idx;
        }
    }
    o.a1 = o.s1 = _mm256_setzero_si256();
    return o;
}

// Integer dot products of a pair step: 8 int32 lanes (lanes 0-3 block 2p).
template <WeightFormat F>
inline __m256i dot_pair(const Operands& w, __m256i x0, __m256i x1) {
    const __m256i ones = _mm256_set1_epi16(1);
    if constexpr (is_signed_format(F)) {
        const __m256i p0 = _mm256_maddubs_epi16(w.a0, _mm256_sign_epi8(x0, w.s0));
        const __m256i p1 = _mm256_maddubs_epi16(w.a1, _mm256_sign_epi8(x1, w.s1));
        return _mm256_add_epi32(_mm256_madd_epi16(p0, ones), _mm256_madd_epi16(p1, ones));
    } else {
        const __m256i p =
            _mm256_add_epi16(_mm256_maddubs_epi16(w.a0, x0), _mm256_maddubs_epi16(w.a1, x1));
        return _mm256_madd_epi16(p, ones);
    }
}

template <WeightFormat F>
inline __m256i dot_single(const Operands& w, __m256i x) {
    const __m256i ones = _mm256_set1_epi16(1);
    if constexpr (is_signed_format(F)) {
        return _mm256_madd_epi16(_mm256_maddubs_epi16(w.a0, _mm256_sign_epi8(x, w.s0)), ones);
    } else {
        return _mm256_madd_epi16(_mm256_maddubs_epi16(w.a0, x), ones);
    }
}

// Decoded parameters of one row: codes, group scales (times 1/127 for nf4) and
// group mins (q4a).
struct RowData {
    const uint8_t* codes;
    const uint8_t* prefetch;  // same offset kRowBlock rows further on
    const float* scales;
    const float* mins;
};

// Weight scales of pair step p as [d(2p) x4, d(2p+1) x4]. Group size 32
// (kBlockGroups): one group per block, two consecutive scales spread over the
// halves; larger groups: both blocks share group p >> pair_shift.
template <bool kBlockGroups>
inline __m256 pair_scales(const float* scales, int64_t p, int pair_shift) {
    if constexpr (kBlockGroups) {
        const __m128 two =
            _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(scales + 2 * p)));
        return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(two),
                                        _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
    } else {
        return _mm256_broadcast_ss(scales + (p >> pair_shift));
    }
}

// R rows x T tokens: every weight step is unpacked once and used for T tokens.
template <WeightFormat F, bool kBlockGroups, int R, int T>
void micro_kernel(const RowData* rows, const QuantizedActivations& qa, int t0, int64_t row0,
                  int64_t n_rows, float* y) {
    const int group_shift = __builtin_ctzll(uint64_t(qa.blocks_per_group));
    const int pair_shift = group_shift > 0 ? group_shift - 1 : 0;
    __m256 acc[R][T];
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    const int8_t* xq[T];
    const float* xd4[T];
    const float* xd[T];
    for (int t = 0; t < T; ++t) {
        xq[t] = qa.token_q(t0 + t);
        xd4[t] = qa.token_d4(t0 + t);
        xd[t] = qa.token_d(t0 + t);
    }
    const int64_t n_pairs = qa.n_blocks / 2;
    for (int64_t p = 0; p < n_pairs; ++p) {
        Operands w[R];
        for (int r = 0; r < R; ++r) {
            // Rows are only a few KB: pull in the next row block while this one is
            // processed, rather than waiting for the stream prefetchers to ramp up.
            constexpr int kPairBytes = F == WeightFormat::q8 ? 64 : 32;
            _mm_prefetch(reinterpret_cast<const char*>(rows[r].prefetch + kPairBytes * p),
                         _MM_HINT_T0);
            w[r] = load_pair<F>(rows[r].codes, p);
        }
        for (int t = 0; t < T; ++t) {
            const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[t] + 64 * p));
            const __m256i x1 =
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[t] + 64 * p + 32));
            const __m256 dx = _mm256_loadu_ps(xd4[t] + 8 * p);
            for (int r = 0; r < R; ++r) {
                const __m256 scale =
                    _mm256_mul_ps(pair_scales<kBlockGroups>(rows[r].scales, p, pair_shift), dx);
                const __m256 sum = _mm256_cvtepi32_ps(dot_pair<F>(w[r], x0, x1));
                acc[r][t] = _mm256_fmadd_ps(sum, scale, acc[r][t]);
            }
        }
    }
    if (qa.n_blocks & 1) {
        const int64_t b = qa.n_blocks - 1;
        Operands w[R];
        for (int r = 0; r < R; ++r) w[r] = load_single<F>(rows[r].codes, b);
        for (int t = 0; t < T; ++t) {
            const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[t] + 32 * b));
            for (int r = 0; r < R; ++r) {
                const __m256 scale = _mm256_set1_ps(rows[r].scales[b >> group_shift] * xd[t][b]);
                const __m256 sum = _mm256_cvtepi32_ps(dot_single<F>(w[r], x));
                acc[r][t] = _mm256_fmadd_ps(sum, scale, acc[r][t]);
            }
        }
    }
    for (int t = 0; t < T; ++t) {
        const float* gs = qa.token_group_sums(t0 + t);
        for (int r = 0; r < R; ++r) {
            float s = hsum(acc[r][t]);
            // Offsets: q4 weights are d*(q-8), q4a weights d*q + m.
            if constexpr (F == WeightFormat::q4)
                s -= 8.0f * dot(rows[r].scales, gs, qa.groups_per_row);
            if constexpr (F == WeightFormat::q4a) s += dot(rows[r].mins, gs, qa.groups_per_row);
            y[size_t(t0 + t) * size_t(n_rows) + size_t(row0 + r)] = s;
        }
    }
}

// All tokens for R rows: token blocks of kTokenBlock, then the rest one by one.
template <WeightFormat F, bool kBlockGroups, int R>
void all_tokens(const RowData* rows, const QuantizedActivations& qa, int64_t row0, int64_t n_rows,
                float* y) {
    int t = 0;
    for (; t + kTokenBlock <= qa.n_tokens; t += kTokenBlock) {
        if constexpr (is_signed_format(F) && R % 2 == 0) {
            for (int r = 0; r < R; r += 2)
                micro_kernel<F, kBlockGroups, 2, kTokenBlock>(rows + r, qa, t, row0 + r, n_rows, y);
        } else {
            micro_kernel<F, kBlockGroups, R, kTokenBlock>(rows, qa, t, row0, n_rows, y);
        }
    }
    for (; t < qa.n_tokens; ++t) micro_kernel<F, kBlockGroups, R, 1>(rows, qa, t, row0, n_rows, y);
}

template <WeightFormat F, int R>
void all_tokens(const RowData* rows, const QuantizedActivations& qa, int64_t row0, int64_t n_rows,
                float* y) {
    if (qa.blocks_per_group == 1) {
        all_tokens<F, true, R>(rows, qa, row0, n_rows, y);
    } else {
        all_tokens<F, false, R>(rows, qa, row0, n_rows, y);
    }
}

template <WeightFormat F>
void rows_int8(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
               float* y) {
    const PackedLayout& l = w.layout;
    const int64_t gpr = l.groups_per_row;
    const size_t row_bytes = size_t(F == WeightFormat::q8 ? l.padded_cols : l.padded_cols / 2);
    const size_t per_row = size_t(2 * gpr);
    float* scratch = kernel_scratch(per_row * kRowBlock);
    const float kscale = F == WeightFormat::nf4 ? kNf4Int8Scale : 1.0f;

    for (int64_t r = r0; r < r1; r += kRowBlock) {
        const int n = r1 - r < kRowBlock ? int(r1 - r) : kRowBlock;
        RowData rows[kRowBlock];
        for (int i = 0; i < n; ++i) {
            float* scales = scratch + per_row * size_t(i);
            float* mins = scales + gpr;
            decode_row_params(w, GroupStream::scales, r + i, scales);
            if constexpr (F == WeightFormat::q4a)
                decode_row_params(w, GroupStream::mins, r + i, mins);
            if constexpr (F == WeightFormat::nf4) {
                for (int64_t g = 0; g < gpr; ++g) scales[g] *= kscale;
            }
            const uint8_t* codes = w.data + l.codes_offset + size_t(r + i) * row_bytes;
            // (no pointer past the blob: the last row block prefetches itself)
            const bool has_next = r + i + kRowBlock < l.rows;
            rows[i] =
                RowData{codes, has_next ? codes + kRowBlock * row_bytes : codes, scales, mins};
        }
        if (n == kRowBlock) {
            all_tokens<F, kRowBlock>(rows, qa, r, l.rows, y);
        } else {
            for (int i = 0; i < n; ++i) all_tokens<F, 1>(rows + i, qa, r + i, l.rows, y);
        }
    }
}

}  // namespace

void matmul_rows_int8(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
                      float* y) {
    switch (w.layout.format) {
        case WeightFormat::q8:
            rows_int8<WeightFormat::q8>(w, qa, r0, r1, y);
            break;
        case WeightFormat::q4:
            rows_int8<WeightFormat::q4>(w, qa, r0, r1, y);
            break;
        case WeightFormat::q4a:
            rows_int8<WeightFormat::q4a>(w, qa, r0, r1, y);
            break;
        case WeightFormat::nf4:
            rows_int8<WeightFormat::nf4>(w, qa, r0, r1, y);
            break;
        default:
            break;
    }
}

}  // namespace nibble::kernels::avx2

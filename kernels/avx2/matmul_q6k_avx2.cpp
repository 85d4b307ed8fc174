// q6k (kernels/q6k.h) with int8 activations on AVX2 (also run by the
// AVX-VNNI variant; AVX-512 has kernels/avx512/matmul_q6k_avx512.cpp): per
// row the codes are unpacked to bytes 0..63 in column order, 32 at a time as
// llama.cpp's Q6_K layout allows, and the scales d * sc widened from the
// int8 codes sixteen at a time (vpmovsxbd, F16C for d).
//
// Four rows are multiplied together. Per block of 32 activations and row,
// madd(maddubs(q, x), 1) gives eight 4-column sums (|.| <= 4 * 63 * 127, no
// saturation: a pair is at most 2 * 63 * 127); 128-bit lane h holds those of
// the block's 16-column half h. The four rows' vectors are added into half
// sums at lane 4h + r (row r; integer adds, exact), minus 32 times the half's
// sum of x (the same for every row), which gives the dot products of (q - 32)
// and x; converted to float, multiplied by row r's d * sc of that half times
// the block's activation scale and accumulated with FMA. A row's output is
// its lane r plus lane 4 + r: nothing depends on which rows or tokens are
// processed together.
//
// Up to four tokens (decoding), the four rows are unpacked one super-block at
// a time into an L1 scratch and multiplied at once; more tokens unpack whole
// rows first and reuse them for every token (the same float operations per
// token in the same order). Codes are read in place in either layout
// (kernels/interleave.h: a q6k unit is one whole super-block).
#include <immintrin.h>

#include <cstring>

#include "kernels/avx2/avx2_common.h"
#include "kernels/interleave.h"
#include "kernels/matmul_variants.h"
#include "kernels/q6k.h"

namespace nibble::kernels::avx2 {

namespace {

// How far ahead the codes and parameters of later rows are prefetched while a
// row is unpacked (whole rows, at least this many code bytes), as in the
// AVX-512 q6k kernel.
constexpr int64_t kPrefetchBytes = 8192;
constexpr int kRowBlock = 4;
constexpr int kTokenBlock = 4;

// The 256 codes q (0..63) of one super-block, in column order.
void unpack_q6k(const uint8_t* codes, uint8_t* out) {
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3);
    for (int h = 0; h < 2; ++h) {
        const uint8_t* ql = codes + 64 * h;
        const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
        const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
        const __m256i hb =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + 128 + 32 * h));
        // Byte shifts through 16-bit lanes: the masks drop what crosses bytes.
        const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4);
        const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4);
        const __m256i h2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4);
        const __m256i h3 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4);
        const __m256i q0 = _mm256_or_si256(_mm256_and_si256(l0, m4), h0);
        const __m256i q1 = _mm256_or_si256(_mm256_and_si256(l1, m4), h1);
        const __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), h2);
        const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), h3);
        uint8_t* o = out + 128 * h;
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), q0);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + 32), q1);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + 64), q2);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + 96), q3);
    }
}

// For every token and block of 32: 32 times the sum of the activation codes of
// each 16-column half, in all four lanes of the half (offsets[(t * n_blocks + b)
// * 8 + 4h + i]).
void half_offsets(const QuantizedActivations& qa, int32_t* offsets) {
    const __m256i c32 = _mm256_set1_epi8(32), ones = _mm256_set1_epi16(1);
    for (int t = 0; t < qa.n_tokens; ++t) {
        const int8_t* xq = qa.token_q(t);
        for (int64_t b = 0; b < qa.n_blocks; ++b) {
            const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32 * b));
            __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(c32, x), ones);
            s = _mm256_add_epi32(s, _mm256_shuffle_epi32(s, 0xb1));  // pairs of lanes
            s = _mm256_add_epi32(s, _mm256_shuffle_epi32(s, 0x4e));  // the four lanes
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(
                                    offsets + (size_t(t) * size_t(qa.n_blocks) + size_t(b)) * 8),
                                s);
        }
    }
}

// Four rows' 4-column sums (lane 4h + i of p[r]) added into half sums at lane
// 4h + r. Integer adds, so the order does not matter.
inline __m256i half_sums(const __m256i* p) {
    const __m256i s01 =
        _mm256_add_epi32(_mm256_unpacklo_epi32(p[0], p[1]), _mm256_unpackhi_epi32(p[0], p[1]));
    const __m256i s23 =
        _mm256_add_epi32(_mm256_unpacklo_epi32(p[2], p[3]), _mm256_unpackhi_epi32(p[2], p[3]));
    return _mm256_add_epi32(_mm256_unpacklo_epi64(s01, s23), _mm256_unpackhi_epi64(s01, s23));
}

// d * sc_j of the 16 int8 scales of one super-block's parameters (q6k_scales'
// products).
inline void block_scales_of(const uint8_t* p, float* out) {
    uint16_t dh;
    std::memcpy(&dh, p + 16, 2);
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(dh));
    const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    _mm256_storeu_ps(out, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc))));
    _mm256_storeu_ps(
        out + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8)))));
}

// Block b of 32 columns of four unpacked rows (wq[r]: the block's codes; ws:
// its transposed scales) times T tokens from t0, added into acc[t]: the float
// order per token does not depend on the caller.
template <int T>
[[gnu::always_inline]] inline void block_tokens(const uint8_t* const* wq, const float* ws_ptr,
                                                int64_t b, const QuantizedActivations& qa,
                                                const int32_t* offsets, int t0, __m256* acc) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i w[kRowBlock];
    for (int r = 0; r < kRowBlock; ++r)
        w[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq[r]));
    const __m256 ws = _mm256_loadu_ps(ws_ptr);
    for (int t = 0; t < T; ++t) {
        const size_t o = (size_t(t0 + t) * size_t(qa.n_blocks) + size_t(b)) * 8;
        const __m256i x =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qa.token_q(t0 + t) + 32 * b));
        __m256i p[kRowBlock];
        for (int r = 0; r < kRowBlock; ++r)
            p[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(w[r], x), ones);
        const __m256i sums = _mm256_sub_epi32(
            half_sums(p), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(offsets + o)));
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums),
                                 _mm256_mul_ps(ws, _mm256_set1_ps(qa.token_d(t0 + t)[b])), acc[t]);
    }
}

// Row r's output: lane r plus lane 4 + r of acc[t]; rows from n_valid on are
// not written.
template <int T>
void store_rows(const __m256* acc, int t0, int n_valid, float* y, int64_t n_rows) {
    for (int t = 0; t < T; ++t) {
        const __m128 row_sums =
            _mm_add_ps(_mm256_castps256_ps128(acc[t]), _mm256_extractf128_ps(acc[t], 1));
        float* out = y + size_t(t0 + t) * size_t(n_rows);
        if (n_valid == kRowBlock) {
            _mm_storeu_ps(out, row_sums);
        } else {
            alignas(16) float sums[4];
            _mm_store_ps(sums, row_sums);
            for (int r = 0; r < n_valid; ++r) out[r] = sums[r];
        }
    }
}

// Four unpacked whole rows times T tokens from token t0; rows from n_valid on
// repeat a valid one and are not written.
template <int T>
void rows_tokens(const uint8_t* const* wq, const float* block_scales,
                 const QuantizedActivations& qa, const int32_t* offsets, int t0, int n_valid,
                 float* y, int64_t n_rows) {
    __m256 acc[T];  // lane 4h + r: row r, half h of every block
    for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < qa.n_blocks; ++b) {
        const uint8_t* w[kRowBlock];
        for (int r = 0; r < kRowBlock; ++r) w[r] = wq[r] + 32 * b;
        block_tokens<T>(w, block_scales + 8 * b, b, qa, offsets, t0, acc);
    }
    store_rows<T>(acc, t0, n_valid, y, n_rows);
}

// Where one row's codes and parameters are, and those of the row to prefetch
// (kernels/interleave.h: every unit of a q6k row is one whole super-block,
// read in place in either layout).
struct RowSource {
    RowUnits codes, pf_codes;
    const uint8_t* params;
    const uint8_t* pf_params;
};

// Super-block g of a row: its codes unpacked to out (256 bytes) and its 16
// scales to scales, the same block of the prefetched row requested.
inline void unpack_block(const RowSource& r, int64_t g, uint8_t* out, float* scales) {
    const uint8_t* pf = r.pf_codes.first + size_t(g) * r.pf_codes.stride;
    // (interleaved: one stream per row block, into L2 only, as the int8 kernels)
    if (r.pf_codes.stride == size_t(kQ6kCodeBytes)) {
        for (int64_t k = 0; k < kQ6kCodeBytes; k += 64)
            _mm_prefetch(reinterpret_cast<const char*>(pf + k), _MM_HINT_T0);
    } else {
        for (int64_t k = 0; k < kQ6kCodeBytes; k += 64)
            _mm_prefetch(reinterpret_cast<const char*>(pf + k), _MM_HINT_T2);
    }
    _mm_prefetch(reinterpret_cast<const char*>(r.pf_params + g * kQ6kParamBytes), _MM_HINT_T0);
    unpack_q6k(r.codes.first + size_t(g) * r.codes.stride, out);
    block_scales_of(r.params + g * kQ6kParamBytes, scales);
}

// Up to four tokens (decoding): the n rows are unpacked one super-block at a
// time into a scratch that stays in L1 and multiplied at once. The same float
// operations per token in the same order as rows_tokens: equal bit for bit.
template <int T>
void rows_streamed(const RowSource* src, int n, int64_t n_super, const QuantizedActivations& qa,
                   const int32_t* offsets, uint8_t* codes, float* scales, float* block_scales,
                   float* y, int64_t n_rows) {
    constexpr int64_t kScales = kQ6kBlock / kQ6kSubBlock;  // 16 per super-block
    const uint8_t* wq[kRowBlock];
    const float* rs[kRowBlock];
    for (int i = 0; i < kRowBlock; ++i) {
        const int from = i < n ? i : n - 1;  // rows past the range repeat the last one
        wq[i] = codes + from * kQ6kBlock;
        rs[i] = scales + from * kScales;
    }
    __m256 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t g = 0; g < n_super; ++g) {
        for (int i = 0; i < n; ++i)
            unpack_block(src[i], g, codes + i * kQ6kBlock, scales + i * kScales);
        interleave4(rs, kScales, block_scales);  // [8b + 4h + i]: half h of block b
        for (int64_t j = 0; j < kQ6kBlock / 32; ++j) {
            const uint8_t* w[kRowBlock];
            for (int r = 0; r < kRowBlock; ++r) w[r] = wq[r] + 32 * j;
            block_tokens<T>(w, block_scales + 8 * j, g * (kQ6kBlock / 32) + j, qa, offsets, 0, acc);
        }
    }
    store_rows<T>(acc, 0, n, y, n_rows);
}

}  // namespace

void matmul_rows_int8_q6k(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                          int64_t r1, float* y) {
    const PackedLayout& l = w.layout;
    const bool streamed = qa.n_tokens <= kTokenBlock;
    // Unpacked at a time: whole rows, or one super-block of each when streamed.
    const int64_t cols = streamed ? kQ6kBlock : l.cols;
    const int64_t n_scales = cols / kQ6kSubBlock;  // one per 16 columns
    const size_t offset_words = size_t(qa.n_tokens) * size_t(qa.n_blocks) * 8;
    // Scratch: the offsets of every token, the four rows' scales, their
    // transposed copy (8 per block of 32: as many), then the four rows' codes.
    float* scratch = kernel_scratch(offset_words + 2 * kRowBlock * size_t(n_scales) +
                                    kRowBlock * size_t(cols) / 4);
    auto* offsets = reinterpret_cast<int32_t*>(scratch);
    float* scales = scratch + offset_words;
    float* block_scales = scales + kRowBlock * n_scales;
    auto* codes = reinterpret_cast<uint8_t*>(block_scales + kRowBlock * n_scales);
    half_offsets(qa, offsets);
    // Prefetch distance: at least kPrefetchBytes of codes, in whole row blocks.
    const int64_t row_code_bytes = l.groups_per_row * kQ6kCodeBytes;
    const int64_t rows_ahead = (kPrefetchBytes + row_code_bytes - 1) / row_code_bytes;
    const int64_t ahead = (rows_ahead + kRowBlock - 1) / kRowBlock * kRowBlock;
    const uint8_t* params = w.data + l.scales_offset;
    const size_t row_params = size_t(l.groups_per_row) * size_t(kQ6kParamBytes);
    for (int64_t r = r0; r < r1; r += kRowBlock) {
        const int n = r1 - r < kRowBlock ? int(r1 - r) : kRowBlock;
        RowSource src[kRowBlock];
        for (int i = 0; i < n; ++i) {
            // The same blocks `ahead` rows on (the last rows prefetch
            // themselves: no pointer past the blob).
            const int64_t row = r + i, pf_row = row + ahead < l.rows ? row + ahead : row;
            src[i] = {row_units(w, row), row_units(w, pf_row), params + size_t(row) * row_params,
                      params + size_t(pf_row) * row_params};
        }
        float* out = y + r;
        if (streamed) {
            switch (qa.n_tokens) {
                case 1:
                    rows_streamed<1>(src, n, l.groups_per_row, qa, offsets, codes, scales,
                                     block_scales, out, l.rows);
                    break;
                case 2:
                    rows_streamed<2>(src, n, l.groups_per_row, qa, offsets, codes, scales,
                                     block_scales, out, l.rows);
                    break;
                case 3:
                    rows_streamed<3>(src, n, l.groups_per_row, qa, offsets, codes, scales,
                                     block_scales, out, l.rows);
                    break;
                default:
                    rows_streamed<4>(src, n, l.groups_per_row, qa, offsets, codes, scales,
                                     block_scales, out, l.rows);
                    break;
            }
            continue;
        }
        for (int i = 0; i < n; ++i) {
            uint8_t* wq = codes + size_t(i) * size_t(l.cols);
            float* row_scales = scales + size_t(i) * size_t(n_scales);
            for (int64_t b = 0; b < l.groups_per_row; ++b)
                unpack_block(src[i], b, wq + kQ6kBlock * b, row_scales + 16 * b);
        }
        // Rows past the range repeat the last one (computed, not written).
        const uint8_t* wq[kRowBlock];
        const float* rs[kRowBlock];
        for (int i = 0; i < kRowBlock; ++i) {
            const int from = i < n ? i : n - 1;
            wq[i] = codes + size_t(from) * size_t(l.cols);
            rs[i] = scales + size_t(from) * size_t(n_scales);
        }
        interleave4(rs, n_scales, block_scales);
        int t = 0;
        for (; t + kTokenBlock <= qa.n_tokens; t += kTokenBlock)
            rows_tokens<kTokenBlock>(wq, block_scales, qa, offsets, t, n, out, l.rows);
        for (; t < qa.n_tokens; ++t)
            rows_tokens<1>(wq, block_scales, qa, offsets, t, n, out, l.rows);
    }
}

}  // namespace nibble::kernels::avx2

// q6k (kernels/q6k.h) with int8 activations in natural order on AVX-512 VNNI.
//
// Per row, each half (128 columns) of a super-block is unpacked
// (kernels/avx512/q6k_unpack_avx512.h) and the unsigned codes q (0..63) of the
// row go to a small per-thread scratch, 64 columns (one "chunk") per 512-bit register, with
// the chunk's four 16-column scales d * sc spread over its sixteen int32 lanes
// (lane i: columns 4i..4i+3, sub-block i / 4).
//
// Four rows are multiplied together. For a chunk and a token, vpdpbusd(q, x)
// of each row gives sixteen 4-column sums; the four rows' vectors are added
// into whole sub-block sums at lane 4j + r (row r, sub-block j of the chunk;
// integer adds, exact), minus 32 times the sub-block's sum of x (the same for
// every row), which gives the dot product of (q - 32) and x (|.| <= 16 * 63 *
// 127). Converted to float, multiplied by the row's d * sc times the block's
// activation scale (lanes 0..7 block 2c, 8..15 block 2c + 1) and accumulated
// with FMA. A row's output is the sum of its four lanes, every chunk in order:
// nothing depends on which rows or tokens are processed together. The 32 * sum
// x terms and the per-lane activation scales depend on the activations alone
// and are computed once per call.
//
// Up to four tokens (decoding), the four rows are unpacked one super-block at
// a time into an L1 scratch and multiplied at once; more tokens unpack whole
// rows first and reuse them for every token (the same float operations per
// token in the same order). Codes are read in place in either layout
// (kernels/interleave.h: a q6k unit is one whole super-block).
#include <immintrin.h>

#include <cstring>

#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's _mm512_undefined_ps() false positive (see matmul_avx512_int8.cpp),
// reported as -Wuninitialized where vshuff32x4 is inlined here.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#define NIBBLE_ISA_NAMESPACE avx512
#include "kernels/avx512/avx512_common.h"
#include "kernels/avx512/q6k_unpack_avx512.h"
#include "kernels/interleave.h"
#include "kernels/matmul_variants.h"
#include "kernels/q6k.h"

namespace nibble::kernels::avx512 {

namespace {

constexpr int64_t kChunk = 64;  // columns per 512-bit register
constexpr int kRowBlock = 4;
constexpr int kTokenBlock = 4;
// How far ahead the codes and parameters of later rows are prefetched while a
// row is unpacked (whole rows, at least this many code bytes): without it the
// hardware prefetcher alone reads about half as fast from DRAM as the q4 GEMV.
constexpr int64_t kPrefetchBytes = 8192;

// Unsigned codes q of one row (out[c]: column c) and the per-lane weight scales
// of each chunk (scales[16k + i]: d * sc of columns 64k + 4i..64k + 4i + 3).
// Super-block i's codes are at codes + i * stride (kQ6kCodeBytes row-major, more
// in the interleaved layout: kernels/interleave.h), its parameters at params + i
// * kQ6kParamBytes. pf_codes (with pf_stride) and pf_params: the same blocks of a
// later row to prefetch, block by block along with the unpacking.
void unpack_row(const uint8_t* codes, int64_t stride, const uint8_t* params,
                const uint8_t* pf_codes, int64_t pf_stride, const uint8_t* pf_params,
                int64_t n_blocks, uint8_t* out, float* scales) {
    // Chunk k's lanes from the 16 scales of its super-block: lane i <- 4 (k % 4) + i / 4.
    const __m512i spread[4] = {
        _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
        _mm512_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7),
        _mm512_setr_epi32(8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11, 11),
        _mm512_setr_epi32(12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15)};
    for (int64_t i = 0; i < n_blocks; ++i) {
        const uint8_t* c = codes + i * stride;
        // (interleaved: one stream per row block, into L2 only, as the int8 kernel)
        if (pf_stride == kQ6kCodeBytes) {
            for (int64_t b = 0; b < kQ6kCodeBytes; b += 64)
                _mm_prefetch(reinterpret_cast<const char*>(pf_codes + i * pf_stride + b),
                             _MM_HINT_T0);
        } else {
            for (int64_t b = 0; b < kQ6kCodeBytes; b += 64)
                _mm_prefetch(reinterpret_cast<const char*>(pf_codes + i * pf_stride + b),
                             _MM_HINT_T2);
        }
        _mm_prefetch(reinterpret_cast<const char*>(pf_params + i * kQ6kParamBytes), _MM_HINT_T0);
        for (int h = 0; h < 2; ++h) {
            __m512i q_lo, q_hi;
            q6k_unpack_half(c, h, q_lo, q_hi);
            uint8_t* o = out + kQ6kBlock * i + 128 * h;
            _mm512_storeu_si512(o, q_lo);
            _mm512_storeu_si512(o + 64, q_hi);
        }
        const __m512 sc = q6k_sub_scales(params + i * kQ6kParamBytes);  // d * sc_j
        for (int k = 0; k < 4; ++k)
            _mm512_storeu_ps(scales + 16 * (4 * i + k), _mm512_permutexvar_ps(spread[k], sc));
    }
}

// Where one row's codes and parameters are, and those of the row to prefetch
// (kernels/interleave.h: every unit of a q6k row is one whole super-block,
// read in place in either layout).
struct RowSource {
    RowUnits codes, pf_codes;
    const uint8_t* params;
    const uint8_t* pf_params;
};

RowSource row_source(const MatrixView& w, int64_t row, int64_t pf_row) {
    const uint8_t* params = w.data + w.layout.scales_offset;
    const size_t row_params = size_t(w.layout.groups_per_row) * size_t(kQ6kParamBytes);
    return {row_units(w, row), row_units(w, pf_row), params + size_t(row) * row_params,
            params + size_t(pf_row) * row_params};
}

// For every token and chunk: 32 times the sum of the activation codes of each
// lane's 16-column sub-block (offsets, int32; lanes 4j..4j+3 all hold that of
// sub-block j) and the activation scale of each lane's block (dx).
void prepare_activations(const QuantizedActivations& qa, int64_t n_chunks, int32_t* offsets,
                         float* dx) {
    const __m512i c32 = _mm512_set1_epi8(32);
    const __m512i halves = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    for (int t = 0; t < qa.n_tokens; ++t) {
        const int8_t* xq = qa.token_q(t);
        const float* xd = qa.token_d(t);
        for (int64_t k = 0; k < n_chunks; ++k) {
            const size_t o = (size_t(t) * size_t(n_chunks) + size_t(k)) * 16;
            const __m512i x = _mm512_loadu_si512(xq + kChunk * k);
            __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c32, x);
            s = _mm512_add_epi32(s, _mm512_shuffle_epi32(s, _MM_PERM_CDAB));
            s = _mm512_add_epi32(s, _mm512_shuffle_epi32(s, _MM_PERM_BADC));
            _mm512_storeu_si512(offsets + o, s);
            const __m512 d2 = _mm512_castps128_ps512(
                _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(xd + 2 * k))));
            _mm512_storeu_ps(dx + o, _mm512_permutexvar_ps(halves, d2));
        }
    }
}

// The four rows' scales of every chunk side by side: lane 4j + r gets row r's
// scale of sub-block j, which lanes 4j..4j+3 of that row's scales all hold.
void interleave_scales(const float* const* row_scales, int64_t n_chunks, float* out) {
    for (int64_t k = 0; k < n_chunks; ++k) {
        __m512 s = _mm512_loadu_ps(row_scales[0] + 16 * k);
        s = _mm512_mask_mov_ps(s, 0x2222, _mm512_loadu_ps(row_scales[1] + 16 * k));
        s = _mm512_mask_mov_ps(s, 0x4444, _mm512_loadu_ps(row_scales[2] + 16 * k));
        s = _mm512_mask_mov_ps(s, 0x8888, _mm512_loadu_ps(row_scales[3] + 16 * k));
        _mm512_storeu_ps(out + 16 * k, s);
    }
}

// Chunk k of four unpacked rows (q[r]: the chunk's 64 codes; ws: its
// interleaved scales) times T tokens from t0, added into acc[t]: the float
// order per token does not depend on the caller.
template <int T>
[[gnu::always_inline]] inline void chunk_tokens(const uint8_t* const* q, const float* ws_ptr,
                                                int64_t k, int64_t n_chunks,
                                                const QuantizedActivations& qa,
                                                const int32_t* offsets, const float* dx, int t0,
                                                __m512* acc) {
    __m512i w[kRowBlock];
    for (int r = 0; r < kRowBlock; ++r) w[r] = _mm512_loadu_si512(q[r]);
    const __m512 ws = _mm512_loadu_ps(ws_ptr);
    for (int t = 0; t < T; ++t) {
        const size_t o = (size_t(t0 + t) * size_t(n_chunks) + size_t(k)) * 16;
        const __m512i x = _mm512_loadu_si512(qa.token_q(t0 + t) + kChunk * k);
        __m512i dot[kRowBlock];
        for (int r = 0; r < kRowBlock; ++r)
            dot[r] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[r], x);
        const __m512i sums = _mm512_sub_epi32(four_row_sums(dot), _mm512_loadu_si512(offsets + o));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums),
                                 _mm512_mul_ps(ws, _mm512_loadu_ps(dx + o)), acc[t]);
    }
}

// Row r's output: the sum of its four lanes of acc[t]; rows from n_valid on
// are not written.
template <int T>
void store_rows(const __m512* acc, int t0, int n_valid, float* y, int64_t n_rows) {
    for (int t = 0; t < T; ++t) {
        // (lane r + lane 8 + r) + (lane 4 + r + lane 12 + r): row r at lane r.
        const __m512 folded =
            _mm512_add_ps(acc[t], _mm512_shuffle_f32x4(acc[t], acc[t], _MM_SHUFFLE(1, 0, 3, 2)));
        const __m256 half = _mm512_castps512_ps256(folded);
        const __m128 row_sums =
            _mm_add_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
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
void rows_tokens(const uint8_t* const* q, const float* scales, int64_t n_chunks,
                 const QuantizedActivations& qa, const int32_t* offsets, const float* dx, int t0,
                 int n_valid, float* y, int64_t n_rows) {
    __m512 acc[T];  // lane 4j + r: row r, sub-block j of every chunk
    for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
    for (int64_t k = 0; k < n_chunks; ++k) {
        const uint8_t* qk[kRowBlock];
        for (int r = 0; r < kRowBlock; ++r) qk[r] = q[r] + kChunk * k;
        chunk_tokens<T>(qk, scales + 16 * k, k, n_chunks, qa, offsets, dx, t0, acc);
    }
    store_rows<T>(acc, t0, n_valid, y, n_rows);
}

// Up to four tokens (decoding): the n rows are unpacked one super-block at a
// time into a scratch that stays in L1 (codes: 4 x 256 bytes; scales: 4 x 64
// and 64 interleaved) and multiplied at once. The same float operations per
// token in the same order as rows_tokens: the results are equal bit for bit.
template <int T>
void rows_streamed(const RowSource* src, int n, int64_t n_blocks, const QuantizedActivations& qa,
                   const int32_t* offsets, const float* dx, uint8_t* codes, float* scales,
                   float* block_scales, float* y, int64_t n_rows) {
    const int64_t n_chunks = n_blocks * (kQ6kBlock / kChunk);
    const uint8_t* q[kRowBlock];
    const float* s[kRowBlock];
    for (int i = 0; i < kRowBlock; ++i) {
        const int from = i < n ? i : n - 1;  // rows past the range repeat the last one
        q[i] = codes + from * kQ6kBlock;
        s[i] = scales + from * 64;
    }
    __m512 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
    for (int64_t g = 0; g < n_blocks; ++g) {
        for (int i = 0; i < n; ++i) {
            const RowSource& r = src[i];
            unpack_row(r.codes.first + size_t(g) * r.codes.stride, 0, r.params + g * kQ6kParamBytes,
                       r.pf_codes.first + size_t(g) * r.pf_codes.stride, 0,
                       r.pf_params + g * kQ6kParamBytes, 1, codes + i * kQ6kBlock, scales + i * 64);
        }
        interleave_scales(s, kQ6kBlock / kChunk, block_scales);
        for (int64_t c = 0; c < kQ6kBlock / kChunk; ++c) {
            const uint8_t* qc[kRowBlock];
            for (int r = 0; r < kRowBlock; ++r) qc[r] = q[r] + kChunk * c;
            chunk_tokens<T>(qc, block_scales + 16 * c, g * (kQ6kBlock / kChunk) + c, n_chunks, qa,
                            offsets, dx, 0, acc);
        }
    }
    store_rows<T>(acc, 0, n, y, n_rows);
}

}  // namespace

void matmul_rows_int8_q6k(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                          int64_t r1, float* y) {
    const PackedLayout& l = w.layout;
    const int64_t n_chunks = l.cols / kChunk;
    const size_t act = size_t(qa.n_tokens) * size_t(n_chunks) * 16;
    const size_t row_scales = size_t(n_chunks) * 16;
    const bool streamed = qa.n_tokens <= kTokenBlock;
    // Scratch: offsets and dx of every token, the four rows' chunk scales, their
    // interleaved copy, then the four rows' codes (whole rows, or one
    // super-block of each when streamed).
    const size_t unpacked_cols = streamed ? size_t(kQ6kBlock) : size_t(l.cols);
    const size_t unpacked_scales = streamed ? size_t(64) : row_scales;
    float* scratch =
        kernel_scratch(2 * act + (kRowBlock + 1) * unpacked_scales + kRowBlock * unpacked_cols / 4);
    auto* offsets = reinterpret_cast<int32_t*>(scratch);
    float* dx = scratch + act;
    float* scales = dx + act;
    float* block_scales = scales + kRowBlock * unpacked_scales;
    auto* codes = reinterpret_cast<uint8_t*>(block_scales + unpacked_scales);
    prepare_activations(qa, n_chunks, offsets, dx);
    // Prefetch distance: at least kPrefetchBytes of codes, in whole row blocks.
    const int64_t row_code_bytes = l.groups_per_row * kQ6kCodeBytes;
    const int64_t rows_ahead = (kPrefetchBytes + row_code_bytes - 1) / row_code_bytes;
    const int64_t ahead = (rows_ahead + kRowBlock - 1) / kRowBlock * kRowBlock;
    for (int64_t r = r0; r < r1; r += kRowBlock) {
        const int n = r1 - r < kRowBlock ? int(r1 - r) : kRowBlock;
        RowSource src[kRowBlock];
        for (int i = 0; i < n; ++i) {
            // The last rows prefetch themselves (no pointer past the blob).
            const int64_t row = r + i;
            src[i] = row_source(w, row, row + ahead < l.rows ? row + ahead : row);
        }
        float* out = y + r;
        if (streamed) {
            switch (qa.n_tokens) {
                case 1:
                    rows_streamed<1>(src, n, l.groups_per_row, qa, offsets, dx, codes, scales,
                                     block_scales, out, l.rows);
                    break;
                case 2:
                    rows_streamed<2>(src, n, l.groups_per_row, qa, offsets, dx, codes, scales,
                                     block_scales, out, l.rows);
                    break;
                case 3:
                    rows_streamed<3>(src, n, l.groups_per_row, qa, offsets, dx, codes, scales,
                                     block_scales, out, l.rows);
                    break;
                default:
                    rows_streamed<4>(src, n, l.groups_per_row, qa, offsets, dx, codes, scales,
                                     block_scales, out, l.rows);
                    break;
            }
            continue;
        }
        const uint8_t* q[kRowBlock];
        const float* s[kRowBlock];
        for (int i = 0; i < kRowBlock; ++i) {
            const int from = i < n ? i : n - 1;  // rows past the range repeat the last one
            q[i] = codes + size_t(from) * size_t(l.cols);
            s[i] = scales + size_t(from) * row_scales;
        }
        for (int i = 0; i < n; ++i) {
            const RowSource& rs = src[i];
            unpack_row(rs.codes.first, int64_t(rs.codes.stride), rs.params, rs.pf_codes.first,
                       int64_t(rs.pf_codes.stride), rs.pf_params, l.groups_per_row,
                       codes + size_t(i) * size_t(l.cols), scales + size_t(i) * row_scales);
        }
        interleave_scales(s, n_chunks, block_scales);
        int t = 0;
        for (; t + kTokenBlock <= qa.n_tokens; t += kTokenBlock)
            rows_tokens<kTokenBlock>(q, block_scales, n_chunks, qa, offsets, dx, t, n, out, l.rows);
        for (; t < qa.n_tokens; ++t)
            rows_tokens<1>(q, block_scales, n_chunks, qa, offsets, dx, t, n, out, l.rows);
    }
}

}  // namespace nibble::kernels::avx512

// q6k (kernels/q6k.h) with int8 activations in natural order on AVX-512 VNNI.
//
// Per row, each half (128 columns) of a super-block is unpacked with one
// 64-byte load of ql and one 32-byte load of qh, broadcast to both 256-bit
// halves: ql & 15 holds columns 0..63 of the half in order, ql >> 4 columns
// 64..127, and qh shifted right by 0 / 2 (lower / upper 256 bits) or 4 / 6
// supplies their top two bits. The unsigned codes q (0..63) of the row go to a
// small per-thread scratch, 64 columns (one "chunk") per 512-bit register, with
// the chunk's four 16-column scales d * sc spread over its sixteen int32 lanes
// (lane i: columns 4i..4i+3, sub-block i / 4).
//
// For a chunk and a token, vpdpbusd(q, x) - 32 * (sums of four x) gives the
// integer dot products of (q - 32) and x per lane (|.| <= 4 * 63 * 127; exact),
// converted to float and multiplied by the lane's weight scale times its
// block's activation scale (lanes 0..7 block 2c, 8..15 block 2c + 1), then
// accumulated with FMA. A row's output is the sum of its sixteen lanes, every
// chunk in order: nothing depends on the rows or tokens processed together.
// The 32 * sum x terms and the per-lane activation scales depend on the
// activations alone and are computed once per call.
#include <immintrin.h>

#include <cstring>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // see matmul_avx512_int8.cpp
#endif

#include "kernels/matmul_variants.h"
#include "kernels/q6k.h"

namespace nibble::kernels::avx512 {

namespace {

constexpr int64_t kChunk = 64;  // columns per 512-bit register
constexpr int kTokenBlock = 4;
// How far ahead the codes and parameters of later rows are prefetched while a
// row is unpacked (whole rows, at least this many code bytes): without it the
// hardware prefetcher alone reads about half as fast from DRAM as the q4 GEMV.
constexpr int64_t kPrefetchBytes = 8192;

// Unsigned codes q of one row (out[c]: column c) and the per-lane weight scales
// of each chunk (scales[16k + i]: d * sc of columns 64k + 4i..64k + 4i + 3).
// pf_codes and pf_params: the same positions in the row to prefetch (a later
// row), block by block along with the unpacking.
void unpack_row(const uint8_t* codes, const uint8_t* params, const uint8_t* pf_codes,
                const uint8_t* pf_params, int64_t n_blocks, uint8_t* out, float* scales) {
    const __m512i m4 = _mm512_set1_epi8(15), m2 = _mm512_set1_epi8(3);
    // qh shift counts (per 16-bit lane): 0 / 2 in the lower / upper 256 bits,
    // 4 / 6 for the columns of the high nibbles.
    const __m512i shift_lo = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    const __m512i shift_hi = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    // Chunk k's lanes from the 16 scales of its super-block: lane i <- 4 (k % 4) + i / 4.
    const __m512i spread[4] = {
        _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
        _mm512_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7),
        _mm512_setr_epi32(8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11, 11),
        _mm512_setr_epi32(12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15)};
    for (int64_t i = 0; i < n_blocks; ++i) {
        const uint8_t* c = codes + i * kQ6kCodeBytes;
        for (int64_t b = 0; b < kQ6kCodeBytes; b += 64)
            _mm_prefetch(reinterpret_cast<const char*>(pf_codes + i * kQ6kCodeBytes + b),
                         _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(pf_params + i * kQ6kParamBytes), _MM_HINT_T0);
        for (int h = 0; h < 2; ++h) {
            const __m512i ql = _mm512_loadu_si512(c + 64 * h);
            const __m512i qh = _mm512_broadcast_i64x4(
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 128 + 32 * h)));
            // Byte shifts through 16-bit lanes: the masks drop what crosses bytes.
            const __m512i top_lo = _mm512_and_si512(_mm512_srlv_epi16(qh, shift_lo), m2);
            const __m512i top_hi = _mm512_and_si512(_mm512_srlv_epi16(qh, shift_hi), m2);
            const __m512i q_lo =
                _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_slli_epi16(top_lo, 4));
            const __m512i q_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                                 _mm512_slli_epi16(top_hi, 4));
            uint8_t* o = out + kQ6kBlock * i + 128 * h;
            _mm512_storeu_si512(o, q_lo);
            _mm512_storeu_si512(o + 64, q_hi);
        }
        const uint8_t* p = params + i * kQ6kParamBytes;
        uint16_t dh;
        std::memcpy(&dh, p + 16, 2);
        const __m512 d = _mm512_set1_ps(_cvtsh_ss(dh));
        const __m512 sc = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                                               reinterpret_cast<const __m128i*>(p)))));  // d * sc_j
        for (int k = 0; k < 4; ++k)
            _mm512_storeu_ps(scales + 16 * (4 * i + k), _mm512_permutexvar_ps(spread[k], sc));
    }
}

// For every token and chunk: 32 times the sum of each four activation codes
// (offsets, int32 per lane) and the activation scale of each lane's block (dx).
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
            _mm512_storeu_si512(offsets + o, _mm512_dpbusd_epi32(_mm512_setzero_si512(), c32, x));
            const __m512 d2 = _mm512_castps128_ps512(
                _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(xd + 2 * k))));
            _mm512_storeu_ps(dx + o, _mm512_permutexvar_ps(halves, d2));
        }
    }
}

// One row (unpacked) times T tokens from token t0.
template <int T>
void row_tokens(const uint8_t* q, const float* scales, int64_t n_chunks,
                const QuantizedActivations& qa, const int32_t* offsets, const float* dx, int t0,
                float* out, int64_t out_stride) {
    __m512 acc[T];
    const int8_t* xq[T];
    for (int t = 0; t < T; ++t) {
        acc[t] = _mm512_setzero_ps();
        xq[t] = qa.token_q(t0 + t);
    }
    for (int64_t k = 0; k < n_chunks; ++k) {
        const __m512i w = _mm512_loadu_si512(q + kChunk * k);
        const __m512 ws = _mm512_loadu_ps(scales + 16 * k);
        for (int t = 0; t < T; ++t) {
            const size_t o = (size_t(t0 + t) * size_t(n_chunks) + size_t(k)) * 16;
            const __m512i dot =
                _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, _mm512_loadu_si512(xq[t] + 64 * k));
            const __m512i sums = _mm512_sub_epi32(dot, _mm512_loadu_si512(offsets + o));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums),
                                     _mm512_mul_ps(ws, _mm512_loadu_ps(dx + o)), acc[t]);
        }
    }
    for (int t = 0; t < T; ++t)
        out[size_t(t0 + t) * size_t(out_stride)] = _mm512_reduce_add_ps(acc[t]);
}

}  // namespace

void matmul_rows_int8_q6k(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                          int64_t r1, float* y) {
    const PackedLayout& l = w.layout;
    const int64_t n_chunks = l.cols / kChunk;
    const size_t act = size_t(qa.n_tokens) * size_t(n_chunks) * 16;
    // Scratch: offsets and dx of every token, the row's chunk scales, its codes.
    float* scratch = kernel_scratch(2 * act + size_t(n_chunks) * 16 + size_t(l.cols) / 4);
    auto* offsets = reinterpret_cast<int32_t*>(scratch);
    float* dx = scratch + act;
    float* scales = dx + act;
    auto* q = reinterpret_cast<uint8_t*>(scales + n_chunks * 16);
    prepare_activations(qa, n_chunks, offsets, dx);
    const int64_t row_code_bytes = l.groups_per_row * kQ6kCodeBytes;
    const int64_t ahead = (kPrefetchBytes + row_code_bytes - 1) / row_code_bytes;
    for (int64_t r = r0; r < r1; ++r) {
        // (q6k_codes/q6k_params written out: no portable inline helper is
        // emitted in this translation unit, tests/check_isa_symbols.sh)
        const size_t first = size_t(r * l.groups_per_row);
        // The last rows prefetch themselves (no pointer past the blob).
        const size_t pf_first = r + ahead < l.rows ? size_t((r + ahead) * l.groups_per_row) : first;
        unpack_row(w.data + l.codes_offset + first * size_t(kQ6kCodeBytes),
                   w.data + l.scales_offset + first * size_t(kQ6kParamBytes),
                   w.data + l.codes_offset + pf_first * size_t(kQ6kCodeBytes),
                   w.data + l.scales_offset + pf_first * size_t(kQ6kParamBytes), l.groups_per_row,
                   q, scales);
        float* out = y + r;
        int t = 0;
        for (; t + kTokenBlock <= qa.n_tokens; t += kTokenBlock)
            row_tokens<kTokenBlock>(q, scales, n_chunks, qa, offsets, dx, t, out, l.rows);
        for (; t < qa.n_tokens; ++t)
            row_tokens<1>(q, scales, n_chunks, qa, offsets, dx, t, out, l.rows);
    }
}

}  // namespace nibble::kernels::avx512

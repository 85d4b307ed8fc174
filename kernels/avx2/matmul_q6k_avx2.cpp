// q6k (kernels/q6k.h) with int8 activations on AVX2 (also run by the
// AVX-VNNI variant; AVX-512 has kernels/avx512/matmul_q6k_avx512.cpp): per
// row the codes are unpacked to bytes 0..63 in column order, 32 at a time as
// llama.cpp's Q6_K layout allows, and the scales d * sc widened from the
// int8 codes sixteen at a time (vpmovsxbd, F16C for d); per block of 32
// activations maddubs(q, x) - maddubs(32, x) gives the pair sums of (q - 32) x
// (|.| <= 2 * 32 * 127, no saturation), madd the four 4-column sums of each
// 16-column half, which are scaled by that half's d * sc and the block's
// activation scale.
#include <immintrin.h>

#include <cstring>

#include "kernels/avx2/avx2_common.h"
#include "kernels/matmul_variants.h"
#include "kernels/q6k.h"

namespace nibble::kernels::avx2 {

namespace {

// How far ahead the codes and parameters of later rows are prefetched while a
// row is unpacked (whole rows, at least this many code bytes), as in the
// AVX-512 q6k kernel.
constexpr int64_t kPrefetchBytes = 8192;

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

}  // namespace

void matmul_rows_int8_q6k(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                          int64_t r1, float* y) {
    const PackedLayout& l = w.layout;
    const int64_t n_scales = l.cols / kQ6kSubBlock;
    float* scales = kernel_scratch(size_t(n_scales + l.cols / 4));
    uint8_t* wq = reinterpret_cast<uint8_t*>(scales + n_scales);
    const __m256i c32 = _mm256_set1_epi8(32);
    const __m256i ones = _mm256_set1_epi16(1);
    const int64_t row_code_bytes = l.groups_per_row * kQ6kCodeBytes;
    const int64_t ahead = (kPrefetchBytes + row_code_bytes - 1) / row_code_bytes;
    for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* codes =
            w.data + l.codes_offset + size_t(r * l.groups_per_row) * size_t(kQ6kCodeBytes);
        // The same blocks `ahead` rows on (the last rows prefetch themselves:
        // no pointer past the blob).
        const size_t pf_first = size_t((r + ahead < l.rows ? r + ahead : r) * l.groups_per_row);
        const uint8_t* pf_codes = w.data + l.codes_offset + pf_first * size_t(kQ6kCodeBytes);
        const uint8_t* pf_params = w.data + l.scales_offset + pf_first * size_t(kQ6kParamBytes);
        for (int64_t i = 0; i < l.groups_per_row; ++i) {
            for (int64_t b = 0; b < kQ6kCodeBytes; b += 64) {
                _mm_prefetch(reinterpret_cast<const char*>(pf_codes + i * kQ6kCodeBytes + b),
                             _MM_HINT_T0);
            }
            _mm_prefetch(reinterpret_cast<const char*>(pf_params + i * kQ6kParamBytes),
                         _MM_HINT_T0);
            unpack_q6k(codes + size_t(i) * size_t(kQ6kCodeBytes), wq + kQ6kBlock * i);
        }
        const uint8_t* params =
            w.data + l.scales_offset + size_t(r * l.groups_per_row) * size_t(kQ6kParamBytes);
        for (int64_t i = 0; i < l.groups_per_row; ++i) {
            // d * sc_j for the 16 int8 scales of super-block i (q6k_scales' products)
            const uint8_t* p = params + size_t(i) * size_t(kQ6kParamBytes);
            uint16_t dh;
            std::memcpy(&dh, p + 16, 2);
            const __m256 d = _mm256_set1_ps(_cvtsh_ss(dh));
            const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
            _mm256_storeu_ps(scales + 16 * i,
                             _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc))));
            _mm256_storeu_ps(
                scales + 16 * i + 8,
                _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8)))));
        }
        for (int t = 0; t < qa.n_tokens; ++t) {
            const int8_t* xq = qa.token_q(t);
            const float* xd = qa.token_d(t);
            __m256 acc = _mm256_setzero_ps();
            for (int64_t b = 0; b < qa.n_blocks; ++b) {
                const __m256i wv =
                    _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + 32 * b));
                const __m256i xv =
                    _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32 * b));
                const __m256i pairs =
                    _mm256_sub_epi16(_mm256_maddubs_epi16(wv, xv), _mm256_maddubs_epi16(c32, xv));
                const __m256 sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
                const __m256 s = _mm256_mul_ps(
                    _mm256_set_m128(_mm_set1_ps(scales[2 * b + 1]), _mm_set1_ps(scales[2 * b])),
                    _mm256_set1_ps(xd[b]));
                acc = _mm256_fmadd_ps(sums, s, acc);
            }
            y[size_t(t) * size_t(l.rows) + size_t(r)] = hsum(acc);
        }
    }
}

}  // namespace nibble::kernels::avx2

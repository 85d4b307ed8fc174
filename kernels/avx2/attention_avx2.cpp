// AVX2 + FMA + F16C attention kernels (kernels/attention.h), bitwise equal to
// the scalar reference: every score and every output element is the same
// fused multiply-add chain in the same order, only many of them run side by
// side in the lanes.
//
// Scores: a tile of NG queries x NB key blocks. A block row d holds element d
// of 16 positions (two vectors of 8); the query element q[g][d] is broadcast,
// so lane j of accumulator (g, b, h) is the chain of position 16 (b0 + b) + 8 h + j.
// Values: a tile of NG queries x one slice of 8 NV output elements; for every
// position the slice of its value row is loaded once and used by NG queries.
#include "kernels/avx2/attention_avx2.h"

#include <immintrin.h>

#include <cstring>

#include "kernels/attention.h"

namespace nibble::vec_avx2 {

namespace {

// 8 cached elements from offset `at` as floats (exact conversions).
template <CacheElement E>
inline __m256 load8(const void* data, size_t at) {
    if constexpr (E == CacheElement::f32) {
        return _mm256_loadu_ps(static_cast<const float*>(data) + at);
    } else if constexpr (E == CacheElement::f16) {
        return _mm256_cvtph_ps(_mm_loadu_si128(
            reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(data) + at)));
    } else {
        const __m128i bytes = _mm_loadl_epi64(
            reinterpret_cast<const __m128i*>(static_cast<const int8_t*>(data) + at));
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
    }
}

template <CacheElement E, int NG, int NB>
void score_tile(const KeyBlocks& k, int head_dim, const float* q, int block0, int n_pos,
                float scale, float* scores, size_t score_stride) {
    __m256 acc[NG][NB][2];
    for (int g = 0; g < NG; ++g)
        for (int b = 0; b < NB; ++b) acc[g][b][0] = acc[g][b][1] = _mm256_setzero_ps();
    const size_t base = size_t(block0) * k.block_stride;
    for (int d = 0; d < head_dim; ++d) {
        __m256 key[NB][2];
        for (int b = 0; b < NB; ++b) {
            const size_t at = base + size_t(b) * k.block_stride + size_t(d) * kKeyBlock;
            key[b][0] = load8<E>(k.data, at);
            key[b][1] = load8<E>(k.data, at + 8);
        }
        for (int g = 0; g < NG; ++g) {
            const __m256 qd = _mm256_broadcast_ss(q + size_t(g) * size_t(head_dim) + size_t(d));
            for (int b = 0; b < NB; ++b) {
                acc[g][b][0] = _mm256_fmadd_ps(qd, key[b][0], acc[g][b][0]);
                acc[g][b][1] = _mm256_fmadd_ps(qd, key[b][1], acc[g][b][1]);
            }
        }
    }
    const __m256 vscale = _mm256_set1_ps(scale);
    for (int b = 0; b < NB; ++b) {
        const int p0 = (block0 + b) * kKeyBlock;
        if (p0 >= n_pos) break;
        __m256 key_scale[2] = {vscale, vscale};
        if constexpr (E == CacheElement::i8) {
            const float* s = k.scales + size_t(block0 + b) * k.scale_block_stride;
            key_scale[0] = _mm256_loadu_ps(s);
            key_scale[1] = _mm256_loadu_ps(s + 8);
        }
        for (int g = 0; g < NG; ++g) {
            alignas(32) float out[kKeyBlock];
            for (int h = 0; h < 2; ++h) {
                __m256 s = acc[g][b][h];
                if constexpr (E == CacheElement::i8) s = _mm256_mul_ps(s, key_scale[h]);
                _mm256_store_ps(out + 8 * h, _mm256_mul_ps(s, vscale));
            }
            const int n = n_pos - p0 < kKeyBlock ? n_pos - p0 : kKeyBlock;
            std::memcpy(scores + size_t(g) * score_stride + size_t(p0), out,
                        sizeof(float) * size_t(n));
        }
    }
}

// All key blocks for NG queries: NB blocks per tile, then single blocks.
template <CacheElement E, int NG, int NB>
void scores_for_queries(const KeyBlocks& k, int head_dim, const float* q, int n_pos, float scale,
                        float* scores, size_t score_stride) {
    const int n_blocks = (n_pos + kKeyBlock - 1) / kKeyBlock;
    int b = 0;
    for (; b + NB <= n_blocks; b += NB)
        score_tile<E, NG, NB>(k, head_dim, q, b, n_pos, scale, scores, score_stride);
    for (; b < n_blocks; ++b)
        score_tile<E, NG, 1>(k, head_dim, q, b, n_pos, scale, scores, score_stride);
}

template <CacheElement E>
void scores_all(const KeyBlocks& k, int head_dim, const float* q, int n_queries, int n_pos,
                float scale, float* scores, size_t score_stride) {
    int g = 0;
    const auto query = [&](int i) { return q + size_t(i) * size_t(head_dim); };
    const auto rows = [&](int i) { return scores + size_t(i) * score_stride; };
    for (; g + 4 <= n_queries; g += 4)
        scores_for_queries<E, 4, 1>(k, head_dim, query(g), n_pos, scale, rows(g), score_stride);
    if (g + 2 <= n_queries) {
        scores_for_queries<E, 2, 2>(k, head_dim, query(g), n_pos, scale, rows(g), score_stride);
        g += 2;
    }
    if (g < n_queries)
        scores_for_queries<E, 1, 4>(k, head_dim, query(g), n_pos, scale, rows(g), score_stride);
}

// Output elements [d0, d0 + 8 NV) of NG queries.
template <CacheElement E, int NG, int NV>
void value_tile(const ValueRows& v, int head_dim, int d0, const float* w, size_t w_stride,
                int n_pos, float* out) {
    __m256 acc[NG][NV];
    for (int g = 0; g < NG; ++g)
        for (int j = 0; j < NV; ++j) acc[g][j] = _mm256_setzero_ps();
    for (int p = 0; p < n_pos; ++p) {
        __m256 val[NV];
        for (int j = 0; j < NV; ++j)
            val[j] = load8<E>(v.data, size_t(p) * v.stride + size_t(d0 + 8 * j));
        float value_scale = 1.0f;
        if constexpr (E == CacheElement::i8) value_scale = v.scales[size_t(p) * v.scale_stride];
        for (int g = 0; g < NG; ++g) {
            float weight = w[size_t(g) * w_stride + size_t(p)];
            if constexpr (E == CacheElement::i8) weight *= value_scale;
            const __m256 wg = _mm256_set1_ps(weight);
            for (int j = 0; j < NV; ++j) acc[g][j] = _mm256_fmadd_ps(wg, val[j], acc[g][j]);
        }
    }
    for (int g = 0; g < NG; ++g)
        for (int j = 0; j < NV; ++j)
            _mm256_storeu_ps(out + size_t(g) * size_t(head_dim) + size_t(d0 + 8 * j), acc[g][j]);
}

template <CacheElement E, int NG>
void values_for_queries(const ValueRows& v, int head_dim, const float* w, size_t w_stride,
                        int n_pos, float* out) {
    int d = 0;
    // A single query (no grouped heads, e.g. Llama-2-7B) takes 64 outputs at a
    // time: eight independent chains instead of two.
    if constexpr (NG == 1) {
        for (; d + 64 <= head_dim; d += 64)
            value_tile<E, 1, 8>(v, head_dim, d, w, w_stride, n_pos, out);
    }
    for (; d + 16 <= head_dim; d += 16)
        value_tile<E, NG, 2>(v, head_dim, d, w, w_stride, n_pos, out);
    for (; d < head_dim; d += 8) value_tile<E, NG, 1>(v, head_dim, d, w, w_stride, n_pos, out);
}

template <CacheElement E>
void values_all(const ValueRows& v, int head_dim, const float* w, size_t w_stride, int n_queries,
                int n_pos, float* out) {
    int g = 0;
    const auto weights = [&](int i) { return w + size_t(i) * w_stride; };
    const auto outputs = [&](int i) { return out + size_t(i) * size_t(head_dim); };
    for (; g + 4 <= n_queries; g += 4)
        values_for_queries<E, 4>(v, head_dim, weights(g), w_stride, n_pos, outputs(g));
    for (; g < n_queries; ++g)
        values_for_queries<E, 1>(v, head_dim, weights(g), w_stride, n_pos, outputs(g));
}

}  // namespace

void attention_scores(const KeyBlocks& keys, int head_dim, const float* q, int n_queries, int n_pos,
                      float scale, float* scores, size_t score_stride) {
    switch (keys.type) {
        case CacheElement::f32:
            return scores_all<CacheElement::f32>(keys, head_dim, q, n_queries, n_pos, scale, scores,
                                                 score_stride);
        case CacheElement::f16:
            return scores_all<CacheElement::f16>(keys, head_dim, q, n_queries, n_pos, scale, scores,
                                                 score_stride);
        case CacheElement::i8:
            return scores_all<CacheElement::i8>(keys, head_dim, q, n_queries, n_pos, scale, scores,
                                                score_stride);
    }
}

void attention_values(const ValueRows& values, int head_dim, const float* w, size_t w_stride,
                      int n_queries, int n_pos, float* out) {
    // Slices of 8 outputs: other head sizes take the reference.
    if (head_dim % 8 != 0) {
        attention_values_scalar(values, head_dim, w, w_stride, n_queries, n_pos, out);
        return;
    }
    switch (values.type) {
        case CacheElement::f32:
            return values_all<CacheElement::f32>(values, head_dim, w, w_stride, n_queries, n_pos,
                                                 out);
        case CacheElement::f16:
            return values_all<CacheElement::f16>(values, head_dim, w, w_stride, n_queries, n_pos,
                                                 out);
        case CacheElement::i8:
            return values_all<CacheElement::i8>(values, head_dim, w, w_stride, n_queries, n_pos,
                                                out);
    }
}

}  // namespace nibble::vec_avx2

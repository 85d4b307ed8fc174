// Portable reference of the attention kernels (kernels/attention.h): the order
// of operations every SIMD version reproduces bit for bit.
#include <cmath>

#include "kernels/attention.h"
#include "kernels/fp16.h"

namespace nibble {

namespace {

// Element `at` of a cache array of the given type, as a float (exact).
float element(const void* data, CacheElement type, size_t at) {
    switch (type) {
        case CacheElement::f32:
            return static_cast<const float*>(data)[at];
        case CacheElement::f16:
            return fp16_to_fp32(static_cast<const uint16_t*>(data)[at]);
        case CacheElement::i8:
            return float(static_cast<const int8_t*>(data)[at]);
    }
    return 0.0f;
}

float key_element(const KeyBlocks& k, int p, int d) {
    return element(
        k.data, k.type,
        size_t(p / kKeyBlock) * k.block_stride + size_t(d) * kKeyBlock + size_t(p % kKeyBlock));
}

float value_element(const ValueRows& v, int p, int d) {
    return element(v.data, v.type, size_t(p) * v.stride + size_t(d));
}

}  // namespace

void attention_scores_scalar(const KeyBlocks& keys, int head_dim, const float* q, int n_queries,
                             int n_pos, float scale, float* scores, size_t score_stride) {
    for (int g = 0; g < n_queries; ++g) {
        const float* qg = q + size_t(g) * size_t(head_dim);
        for (int p = 0; p < n_pos; ++p) {
            float acc = 0.0f;
            for (int d = 0; d < head_dim; ++d) acc = std::fma(qg[d], key_element(keys, p, d), acc);
            if (keys.type == CacheElement::i8) {
                acc *= keys.scales[size_t(p / kKeyBlock) * keys.scale_block_stride +
                                   size_t(p % kKeyBlock)];
            }
            scores[size_t(g) * score_stride + size_t(p)] = acc * scale;
        }
    }
}

void attention_values_scalar(const ValueRows& values, int head_dim, const float* w, size_t w_stride,
                             int n_queries, int n_pos, float* out) {
    for (int g = 0; g < n_queries; ++g) {
        float* o = out + size_t(g) * size_t(head_dim);
        for (int d = 0; d < head_dim; ++d) o[d] = 0.0f;
        for (int p = 0; p < n_pos; ++p) {
            float weight = w[size_t(g) * w_stride + size_t(p)];
            if (values.type == CacheElement::i8)
                weight *= values.scales[size_t(p) * values.scale_stride];
            for (int d = 0; d < head_dim; ++d)
                o[d] = std::fma(weight, value_element(values, p, d), o[d]);
        }
    }
}

}  // namespace nibble

// The element-wise pieces of a LLaMA layer, written as plainly as the math.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/model.h"

namespace nibble {

// out = weight * x / sqrt(mean(x^2) + eps)
inline void rmsnorm(float* out, const float* x, const float* weight, int n, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < n; ++i) ss += x[i] * x[i];
    ss /= float(n);
    ss += eps;
    ss = 1.0f / std::sqrt(ss);
    for (int i = 0; i < n; ++i) out[i] = weight[i] * (ss * x[i]);
}

// Rotates each head of vec (n_heads * head_dim floats) by angle pos * freq[i]
// for its i-th pair; pairs are (2i, 2i+1) or (i, i + head_dim/2). The angle
// depends on the pair, not the head: one cos and sin per pair for all heads.
// `magnitude` multiplies cos and sin (1, or LongRoPE's attention factor).
inline void rope(float* vec, int n_heads, int head_dim, int pos, const float* freq,
                 float magnitude, RopeStyle style) {
    const int half = head_dim / 2;
    for (int i = 0; i < half; ++i) {
        const float angle = float(pos) * freq[i];
        const float c = magnitude * std::cos(angle), s = magnitude * std::sin(angle);
        const int a = style == RopeStyle::adjacent_pairs ? 2 * i : i;
        const int b = style == RopeStyle::adjacent_pairs ? 2 * i + 1 : i + half;
        for (int h = 0; h < n_heads; ++h) {
            float* head = vec + h * head_dim;
            const float v0 = head[a], v1 = head[b];
            head[a] = v0 * c - v1 * s;
            head[b] = v0 * s + v1 * c;
        }
    }
}

// softmax(x, n) and silu_mul(gate, up, n) (SwiGLU: gate = silu(gate) * up) are
// vector kernels: kernels/vec_ops.h.

inline void add_into(float* x, const float* delta, int n) {
    for (int i = 0; i < n; ++i) x[i] += delta[i];
}

inline void scale_into(float* x, float scale, int n) {
    for (int i = 0; i < n; ++i) x[i] *= scale;
}

// x -> cap * tanh(x / cap): Gemma-2's soft-capping of scores and logits.
inline void soft_cap(float* x, int64_t n, float cap) {
    const float inv = 1.0f / cap;
    for (int64_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] * inv);
}

// GeGLU: gate = gelu(gate) * up with GELU's tanh approximation
// gelu(x) = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (Gemma).
inline void gelu_tanh_mul(float* gate, const float* up, int n) {
    constexpr float kSqrt2OverPi = 0.7978845608028654f;
    for (int i = 0; i < n; ++i) {
        const float x = gate[i];
        gate[i] = 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + 0.044715f * x * x * x))) * up[i];
    }
}

}  // namespace nibble

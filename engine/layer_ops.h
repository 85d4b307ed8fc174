// The element-wise pieces of a LLaMA layer, written as plainly as the math.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "engine/model.h"
#include "kernels/vec_ops.h"

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
inline void rope(float* vec, int n_heads, int head_dim, int pos, const float* freq, float magnitude,
                 RopeStyle style) {
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

// x -> cap * tanh(x / cap): Gemma-2's soft-capping of scores and logits, as
// cap (2 sigmoid(a) - 1) with a = 2x / cap, the sigmoid from the vector silu
// kernel: silu(a) * (1/a) = sigmoid(a) (x = 0 stays 0). In blocks on the stack.
inline void soft_cap(float* x, int64_t n, float cap) {
    constexpr int kBlock = 256;
    float a[kBlock], inv_a[kBlock];
    for (int64_t first = 0; first < n; first += kBlock) {
        float* y = x + first;
        const int m = int(std::min<int64_t>(kBlock, n - first));
        for (int i = 0; i < m; ++i) {
            a[i] = 2.0f * y[i] / cap;
            inv_a[i] = a[i] != 0.0f ? 1.0f / a[i] : 0.0f;
        }
        silu_mul(a, inv_a, m);  // a = sigmoid(a)
        for (int i = 0; i < m; ++i) y[i] = y[i] != 0.0f ? cap * (2.0f * a[i] - 1.0f) : 0.0f;
    }
}

// GeGLU: gate = gelu(gate) * up with GELU's tanh approximation
// gelu(g) = g/2 (1 + tanh(z/2)) = g sigmoid(z), z = 2 sqrt(2/pi) (g + 0.044715 g^3)
// (Gemma). The vector silu kernel gives it as silu(z) * (up / r), r = z / g =
// 2 sqrt(2/pi) (1 + 0.044715 g^2) > 0; `up` is overwritten.
inline void gelu_tanh_mul(float* gate, float* up, int n) {
    constexpr float kTwoSqrt2OverPi = 1.5957691216057308f;
    for (int i = 0; i < n; ++i) {
        const float g = gate[i];
        const float r = kTwoSqrt2OverPi * (1.0f + 0.044715f * g * g);
        gate[i] = r * g;
        up[i] /= r;
    }
    silu_mul(gate, up, n);
}

}  // namespace nibble

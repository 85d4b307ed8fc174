// The element-wise pieces of a LLaMA layer, written as plainly as the math.
#pragma once
#include <cmath>

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
// for its i-th pair; pairs are (2i, 2i+1) or (i, i + head_dim/2).
inline void rope(float* vec, int n_heads, int head_dim, int pos, const float* freq,
                 RopeStyle style) {
    const int half = head_dim / 2;
    for (int h = 0; h < n_heads; ++h) {
        float* head = vec + h * head_dim;
        for (int i = 0; i < half; ++i) {
            const float angle = float(pos) * freq[i];
            const float c = std::cos(angle), s = std::sin(angle);
            const int a = style == RopeStyle::adjacent_pairs ? 2 * i : i;
            const int b = style == RopeStyle::adjacent_pairs ? 2 * i + 1 : i + half;
            const float v0 = head[a], v1 = head[b];
            head[a] = v0 * c - v1 * s;
            head[b] = v0 * s + v1 * c;
        }
    }
}

// In-place softmax of x[0..n).
inline void softmax(float* x, int n) {
    float max_val = x[0];
    for (int i = 1; i < n; ++i) max_val = x[i] > max_val ? x[i] : max_val;
    float sum = 0.0f;
    for (int i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - max_val);
        sum += x[i];
    }
    for (int i = 0; i < n; ++i) x[i] /= sum;
}

// gate = silu(gate) * up, silu(z) = z * sigmoid(z)
inline void swiglu(float* gate, const float* up, int n) {
    for (int i = 0; i < n; ++i) {
        float g = gate[i];
        g *= (1.0f / (1.0f + std::exp(-g)));
        gate[i] = g * up[i];
    }
}

inline void add_into(float* x, const float* delta, int n) {
    for (int i = 0; i < n; ++i) x[i] += delta[i];
}

}  // namespace nibble

// Scalar vector kernels (reference and fallback) and the dispatching functions
// (the kernel table entry's vector ops).
#include "kernels/vec_ops.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/fp16.h"
#include "kernels/kernel_table.h"
#include "kernels/vec_exp.h"

namespace nibble {

namespace vec_scalar {

float dot_f32(const float* a, const float* b, int n) {
    float sum = 0.0f;
    for (int i = 0; i < n; ++i) sum += a[i] * b[i];
    return sum;
}

float dot_f16(const uint16_t* a, const float* b, int n) {
    float sum = 0.0f;
    for (int i = 0; i < n; ++i) sum += fp16_to_fp32(a[i]) * b[i];
    return sum;
}

float dot_i8(const int8_t* a, float scale, const float* b, int n) {
    float sum = 0.0f;
    for (int i = 0; i < n; ++i) sum += float(a[i]) * b[i];
    return scale * sum;
}

void axpy_f32(float alpha, const float* x, float* y, int n) {
    for (int i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void axpy_f16(float alpha, const uint16_t* x, float* y, int n) {
    for (int i = 0; i < n; ++i) y[i] += alpha * fp16_to_fp32(x[i]);
}

void axpy_i8(float alpha, const int8_t* x, float* y, int n) {
    for (int i = 0; i < n; ++i) y[i] += alpha * float(x[i]);
}

void convert_f32_to_f16(const float* x, uint16_t* y, int n) {
    for (int i = 0; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
}

float quantize_i8(const float* x, int8_t* y, int n) {
    float amax = 0.0f;
    for (int i = 0; i < n; ++i) amax = std::fmax(amax, std::fabs(x[i]));
    const float scale = amax / 127.0f;
    const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    for (int i = 0; i < n; ++i) y[i] = int8_t(std::lrintf(x[i] * inv));
    return scale;
}

// kernels/vec_exp.h, step by step.
float exp_poly(float x) {
    using namespace vec_exp;
    if (!(x > kMinInput)) return 0.0f;
    if (x > kMaxInput) return INFINITY;
    const float n = std::nearbyint(x * kLog2e);
    float r = std::fma(n, -kLn2Hi, x);
    r = std::fma(n, -kLn2Lo, r);
    float y = kC0;
    y = std::fma(y, r, kC1);
    y = std::fma(y, r, kC2);
    y = std::fma(y, r, kC3);
    y = std::fma(y, r, kC4);
    y = std::fma(y, r, kC5);
    y = std::fma(y, r * r, r);
    y = y + 1.0f;
    const uint32_t bits = uint32_t(int32_t(n) + 127) << 23;
    float two_n;
    std::memcpy(&two_n, &bits, sizeof two_n);
    return y * two_n;
}

void softmax(float* x, int n) {
    float max_val = x[0];
    for (int i = 1; i < n; ++i) max_val = std::fmax(max_val, x[i]);
    float sum = 0.0f;
    for (int i = 0; i < n; ++i) {
        x[i] = exp_poly(x[i] - max_val);
        sum += x[i];
    }
    for (int i = 0; i < n; ++i) x[i] /= sum;
}

void silu_mul(float* gate, const float* up, int n) {
    for (int i = 0; i < n; ++i) {
        const float g = gate[i];
        gate[i] = (g * (1.0f / (1.0f + exp_poly(-g)))) * up[i];
    }
}

}  // namespace vec_scalar

const VecOps& vec_ops_scalar() {
    static const VecOps ops{vec_scalar::dot_f32,
                            vec_scalar::dot_f16,
                            vec_scalar::dot_i8,
                            vec_scalar::axpy_f32,
                            vec_scalar::axpy_f16,
                            vec_scalar::axpy_i8,
                            vec_scalar::convert_f32_to_f16,
                            vec_scalar::quantize_i8,
                            vec_scalar::softmax,
                            vec_scalar::silu_mul,
                            attention_scores_scalar,
                            attention_values_scalar};
    return ops;
}

#if !(defined(__x86_64__) || defined(_M_X64))
const VecOps* vec_ops_avx2() {
    return nullptr;
}
#endif
#if !defined(__aarch64__)
const VecOps* vec_ops_neon() {
    return nullptr;
}
#endif

const VecOps& vec_ops() {
    // The active kernel table entry's, looked up per call: tests switch kernels.
    const auto vec_ops_of_entry = kernels::active_kernel_entry().vec_ops;
    const VecOps* ops = vec_ops_of_entry != nullptr ? vec_ops_of_entry() : nullptr;
    return ops != nullptr ? *ops : vec_ops_scalar();
}

float dot_f32(const float* a, const float* b, int n) {
    return vec_ops().dot_f32(a, b, n);
}
float dot_f16(const uint16_t* a, const float* b, int n) {
    return vec_ops().dot_f16(a, b, n);
}
float dot_i8(const int8_t* a, float scale, const float* b, int n) {
    return vec_ops().dot_i8(a, scale, b, n);
}
void axpy_f32(float alpha, const float* x, float* y, int n) {
    vec_ops().axpy_f32(alpha, x, y, n);
}
void axpy_f16(float alpha, const uint16_t* x, float* y, int n) {
    vec_ops().axpy_f16(alpha, x, y, n);
}
void axpy_i8(float alpha, const int8_t* x, float* y, int n) {
    vec_ops().axpy_i8(alpha, x, y, n);
}
void convert_f32_to_f16(const float* x, uint16_t* y, int n) {
    vec_ops().convert_f32_to_f16(x, y, n);
}
float quantize_i8(const float* x, int8_t* y, int n) {
    return vec_ops().quantize_i8(x, y, n);
}
void softmax(float* x, int n) {
    vec_ops().softmax(x, n);
}
void silu_mul(float* gate, const float* up, int n) {
    vec_ops().silu_mul(gate, up, n);
}
void attention_scores(const KeyBlocks& keys, int head_dim, const float* q, int n_queries, int n_pos,
                      float scale, float* scores, size_t score_stride) {
    vec_ops().attention_scores(keys, head_dim, q, n_queries, n_pos, scale, scores, score_stride);
}
void attention_values(const ValueRows& values, int head_dim, const float* w, size_t w_stride,
                      int n_queries, int n_pos, float* out) {
    vec_ops().attention_values(values, head_dim, w, w_stride, n_queries, n_pos, out);
}

}  // namespace nibble

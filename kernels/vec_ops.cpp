// Scalar vector kernels (reference and fallback).
#include "kernels/vec_ops.h"

#include <cmath>

#include "kernels/fp16.h"

namespace nibble {

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

}  // namespace nibble

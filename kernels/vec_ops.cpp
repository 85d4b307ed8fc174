// Scalar vector kernels (reference and fallback) and run-time dispatch.
#include "kernels/vec_ops.h"

#include <cmath>

#include "kernels/fp16.h"
#include "kernels/matmul_dispatch.h"

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

}  // namespace vec_scalar

const VecOps& vec_ops_scalar() {
    static const VecOps ops{vec_scalar::dot_f32,
                            vec_scalar::dot_f16,
                            vec_scalar::dot_i8,
                            vec_scalar::axpy_f32,
                            vec_scalar::axpy_f16,
                            vec_scalar::axpy_i8,
                            vec_scalar::convert_f32_to_f16,
                            vec_scalar::quantize_i8};
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
    // A table lookup per call: tests switch kernels at run time.
    const VecOps* ops = nullptr;
    switch (matmul_kernel()) {
        case MatmulKernel::avx2:
        case MatmulKernel::avx_vnni:
        case MatmulKernel::avx512:
            ops = vec_ops_avx2();
            break;
        case MatmulKernel::neon:
        case MatmulKernel::neon_nodot:
            ops = vec_ops_neon();
            break;
        default:
            break;
    }
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

}  // namespace nibble

// Small vector kernels used by attention and the rest of the layer.
// Scalar definitions here; dispatch to SIMD variants where they exist.
#pragma once
#include <cstdint>

namespace nibble {

float dot_f32(const float* a, const float* b, int n);
// sum_i fp16(a_i) * b_i
float dot_f16(const uint16_t* a, const float* b, int n);
// scale * sum_i a_i * b_i
float dot_i8(const int8_t* a, float scale, const float* b, int n);
// y += alpha * x
void axpy_f32(float alpha, const float* x, float* y, int n);
void axpy_f16(float alpha, const uint16_t* x, float* y, int n);
void axpy_i8(float alpha, const int8_t* x, float* y, int n);  // alpha includes the scale
void convert_f32_to_f16(const float* x, uint16_t* y, int n);
// y = round(x / scale) with scale = max|x| / 127 (returned); zero vector gives scale 0.
float quantize_i8(const float* x, int8_t* y, int n);

}  // namespace nibble

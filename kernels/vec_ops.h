// Small vector kernels used by attention and the rest of the layer.
// The functions in namespace nibble run the vector ops of the kernel table's
// entry in use (kernels/kernel_table.h, the same choice as matmul's): scalar and
// reference use the portable versions, the x86 kernels the AVX2 ones, neon and
// neon_nodot the NEON ones.
#pragma once
#include <cstdint>

#include "kernels/attention.h"

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
// In-place softmax of x[0..n): exp(x_i - max) / sum, with the exp of
// kernels/vec_exp.h (-inf gives 0). The sum's order differs between versions.
void softmax(float* x, int n);
// gate_i = silu(gate_i) * up_i, silu(z) = z * (1 / (1 + exp(-z))), the exp of
// kernels/vec_exp.h: every version gives the same bits.
void silu_mul(float* gate, const float* up, int n);

// One implementation of every function above.
struct VecOps {
    float (*dot_f32)(const float*, const float*, int);
    float (*dot_f16)(const uint16_t*, const float*, int);
    float (*dot_i8)(const int8_t*, float, const float*, int);
    void (*axpy_f32)(float, const float*, float*, int);
    void (*axpy_f16)(float, const uint16_t*, float*, int);
    void (*axpy_i8)(float, const int8_t*, float*, int);
    void (*convert_f32_to_f16)(const float*, uint16_t*, int);
    float (*quantize_i8)(const float*, int8_t*, int);
    void (*softmax)(float*, int);
    void (*silu_mul)(float*, const float*, int);
    AttentionScoresFn attention_scores;
    AttentionValuesFn attention_values;
};

const VecOps& vec_ops_scalar();
// nullptr when the CPU lacks AVX2/FMA/F16C or the build is not x86-64.
const VecOps* vec_ops_avx2();
// nullptr when the build is not aarch64.
const VecOps* vec_ops_neon();
// The table the dispatching functions use, for the current kernel choice.
const VecOps& vec_ops();

}  // namespace nibble

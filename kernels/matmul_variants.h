// Internal interface between matmul_dispatch.cpp and the per-ISA kernels.
//
// A kernel computes the outputs of rows [r0, r1) for every token; the dispatcher
// splits the rows over threads. Every output is produced by one call in an
// order that does not depend on r0/r1 or on how many tokens are processed
// together, so results are bitwise identical for any thread count and GEMM
// equals repeated GEMV.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/activation_quant.h"
#include "kernels/codebooks.h"
#include "kernels/formats.h"

namespace nibble::kernels {

// Per-thread scratch of at least n floats for decoded row parameters; grows
// only. Defined in a generic translation unit so that no std:: code is compiled
// for AVX2 / dotprod targets (an ODR-merged copy could run on a CPU without them).
float* kernel_scratch(size_t n);

// Int8-activation path for q8/q4/q4a/nf4/iq4nl; y is [qa.n_tokens][rows].
using Int8RowsFn = void (*)(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                            int64_t r1, float* y);
// FP32-activation path for every format; x is [n_tokens][x_stride] with
// x_stride = padded_cols and zeros in the padding columns.
using Fp32RowsFn = void (*)(const MatrixView& w, const float* x, int64_t x_stride, int n_tokens,
                            int64_t r0, int64_t r1, float* y);

// Int8 version of the NF4 code book: round(127 * NF4[q]). Weights become
// d/127 * kNf4Int8[q], off by at most d * 0.5/127 from d * NF4[q].
inline constexpr int8_t kNf4Int8[16] = {-127, -88, -67, -50, -36, -23, -12, 0,
                                        10,   20,  31,  43,  56,  71,  92,  127};
inline constexpr float kNf4Int8Scale = 1.0f / 127.0f;
// IQ4_NL's table is integer already: weights are d * kIq4nlInt8[q] exactly.
inline constexpr int8_t kIq4nlInt8[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                          1,    13,   25,  38,  53,  69,  89,  113};

// Int8 table of code-book format F and the factor back to its float table
// (weights = d * kCodeBookInt8Scale<F> * kCodeBookInt8<F>[q]).
template <WeightFormat F>
inline constexpr const int8_t* kCodeBookInt8 = F == WeightFormat::iq4nl ? kIq4nlInt8 : kNf4Int8;
template <WeightFormat F>
inline constexpr float kCodeBookInt8Scale = F == WeightFormat::iq4nl ? 1.0f : kNf4Int8Scale;

// q6k (kernels/q6k.h) has kernels of its own, picked by the dispatcher for a
// q6k matrix whatever the variant: the int8 path reads activations in natural
// order, the fp32 path (portable) dequantizes each row as the reference does.
// out[0..cols/16) = the sub-block scales d * sc of one q6k row (portable code).
void q6k_row_scales(const MatrixView& w, int64_t row, float* out);

// The ggml block formats (kernels/lowbit.h) have kernels of their own too, for
// every one of them (the format is read from the layout): the int8 path reads
// activations in natural order, the fp32 path (portable) dequantizes each row
// as the reference does.
namespace scalar {
void matmul_rows_int8_lowbit(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                             int64_t r1, float* y);
}  // namespace scalar

namespace scalar {
void matmul_rows_int8_q6k(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                          int64_t r1, float* y);
// The FP32 path of q6k and the ggml block formats: rows dequantized as the
// reference does, FP32 dot products (kernels/matmul_scalar.cpp).
void matmul_rows_fp32_dequantized(const MatrixView& w, const float* x, int64_t x_stride,
                                  int n_tokens, int64_t r0, int64_t r1, float* y);
void matmul_rows_int8(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
                      float* y);
void matmul_rows_fp32(const MatrixView& w, const float* x, int64_t x_stride, int n_tokens,
                      int64_t r0, int64_t r1, float* y);
}  // namespace scalar

#if defined(__x86_64__)
// AMX tiles (AMX-TILE and AMX-INT8, enabled for this process by the kernel):
// the kernel table's AMX entry takes over the AVX-512 entry's products of at
// least kAmxMinTokens tokens; its results are bitwise the AVX-512 kernel's.
// NIBBLE_AMX=0 in the environment turns it off. Defined in generic code.
bool amx_usable();
inline constexpr int kAmxMinTokens = 16;
namespace amx {
void matmul_rows_int8(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
                      float* y);
void matmul_rows_int8_q6k(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                          int64_t r1, float* y);
void matmul_rows_int8_lowbit(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                             int64_t r1, float* y);
void matmul_rows_int8_q2q3(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                           int64_t r1, float* y);
// Per-thread, grow-only, 64-byte aligned scratch for the AMX kernel (slot
// 0..4), defined in generic code so that no std:: code is compiled for AMX.
uint8_t* scratch(int slot, size_t bytes);
// The activation generation (QuantizedActivations::generation) the calling
// thread's repacked copy number `copy` (0: grouped formats, 1: q6k) was made from.
uint64_t& packed_generation(int copy);
}  // namespace amx
namespace avx512 {
void matmul_rows_int8_lowbit(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                             int64_t r1, float* y);
void matmul_rows_int8_q6k(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                          int64_t r1, float* y);
void matmul_rows_int8(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
                      float* y);
}  // namespace avx512
namespace avxvnni {
void matmul_rows_int8(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
                      float* y);
}  // namespace avxvnni
namespace avx2 {
void matmul_rows_int8_lowbit(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                             int64_t r1, float* y);
void matmul_rows_int8_q6k(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                          int64_t r1, float* y);
void matmul_rows_int8(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
                      float* y);
void matmul_rows_fp32(const MatrixView& w, const float* x, int64_t x_stride, int n_tokens,
                      int64_t r0, int64_t r1, float* y);
}  // namespace avx2
#endif

#if defined(__aarch64__)
namespace neon {
void matmul_rows_int8_dotprod(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                              int64_t r1, float* y);
void matmul_rows_int8(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
                      float* y);
void matmul_rows_fp32(const MatrixView& w, const float* x, int64_t x_stride, int n_tokens,
                      int64_t r0, int64_t r1, float* y);
// The ggml block formats, without and with SDOT (kernels/neon/matmul_lowbit_neon*.cpp).
void matmul_rows_int8_lowbit(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                             int64_t r1, float* y);
void matmul_rows_int8_lowbit_dotprod(const MatrixView& w, const QuantizedActivations& qa,
                                     int64_t r0, int64_t r1, float* y);
// q6k, without and with SDOT (kernels/neon/matmul_q6k_neon*.cpp).
void matmul_rows_int8_q6k(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                          int64_t r1, float* y);
void matmul_rows_int8_q6k_dotprod(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                                  int64_t r1, float* y);
}  // namespace neon
#endif

}  // namespace nibble::kernels

// Row kernels of q3 and q2 (kernels/q2q3.h), the kernel table's `q2q3`
// family (kernels/kernel_table.h): a portable pair (int8 and FP32 activations)
// an AVX2 int8 kernel, which the AVX2 and AVX-VNNI entries run (activations
// in natural code order), and an AVX-512 VNNI one, which the AVX-512 and AMX
// entries run (quad order), and NEON ones with and without SDOT (natural order).
//
// int8 path: per 32-column block the integer dot product of the codes (0..7,
// 0..3) with the int8 activations, times d_w d_x; the code offset of q3 (-4 d)
// and the minimum of q2 are added per group through the activations' group
// sums, as for q4 and q4a.
#pragma once
#include <cstdint>

#include "kernels/activation_quant.h"
#include "kernels/formats.h"

namespace nibble::kernels {

namespace scalar {
void matmul_rows_int8_q2q3(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                           int64_t r1, float* y);
void matmul_rows_fp32_q2q3(const MatrixView& w, const float* x, int64_t x_stride, int n_tokens,
                           int64_t r0, int64_t r1, float* y);
}  // namespace scalar

#if defined(__x86_64__)
namespace avx2 {
void matmul_rows_int8_q2q3(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                           int64_t r1, float* y);
}  // namespace avx2
namespace avx512 {
// Activations in quad order (kernels/activation_quant.h).
void matmul_rows_int8_q2q3(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                           int64_t r1, float* y);
}  // namespace avx512
#endif

#if defined(__aarch64__)
namespace neon {
// Without and with SDOT (kernels/neon/matmul_q2q3_neon*.cpp).
void matmul_rows_int8_q2q3(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                           int64_t r1, float* y);
void matmul_rows_int8_q2q3_dotprod(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                                   int64_t r1, float* y);
}  // namespace neon
#endif

}  // namespace nibble::kernels

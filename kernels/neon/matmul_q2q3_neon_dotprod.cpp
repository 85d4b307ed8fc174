// q3 and q2's int8 kernel on NEON with SDOT (FEAT_DotProd;
// kernels/neon/matmul_q2q3_neon_impl.h). Only the kernel code below is compiled
// for the dotprod target; dispatch calls it only when HWCAP_ASIMDDP is set.
#include "kernels/activation_quant.h"
#include "kernels/matmul_q2q3.h"
#include "kernels/matmul_variants.h"
#include "kernels/neon/neon_common.h"
#include "kernels/q2q3.h"

#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")
#define NIBBLE_NEON_DOTPROD 1
#include "kernels/neon/matmul_q2q3_neon_impl.h"

namespace nibble::kernels::neon {

void matmul_rows_int8_q2q3_dotprod(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                                   int64_t r1, float* y) {
    q2q3_rows_any(w, qa, r0, r1, y);
}

}  // namespace nibble::kernels::neon
#pragma GCC pop_options

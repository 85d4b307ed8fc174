// q6k's int8 kernel on NEON with SDOT (FEAT_DotProd;
// kernels/neon/matmul_q6k_neon_impl.h). Only the kernel code below is compiled
// for the dotprod target; dispatch calls it only when HWCAP_ASIMDDP is set.
#include "kernels/activation_quant.h"
#include "kernels/interleave.h"
#include "kernels/matmul_variants.h"
#include "kernels/q6k.h"

#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")
#define NIBBLE_NEON_DOTPROD 1
#include "kernels/neon/matmul_q6k_neon_impl.h"

namespace nibble::kernels::neon {

void matmul_rows_int8_q6k_dotprod(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                                  int64_t r1, float* y) {
    q6k_rows(w, qa, r0, r1, y);
}

}  // namespace nibble::kernels::neon
#pragma GCC pop_options

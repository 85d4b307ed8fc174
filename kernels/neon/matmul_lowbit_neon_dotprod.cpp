// The ggml block formats' int8 kernel on NEON with SDOT (FEAT_DotProd;
// kernels/neon/matmul_lowbit_neon_impl.h). Only the kernel code below is
// compiled for the dotprod target; dispatch calls it only when HWCAP_ASIMDDP is set.
#include "kernels/activation_quant.h"
#include "kernels/format_traits.h"
#include "kernels/lowbit.h"
#include "kernels/matmul_variants.h"

#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")
#define NIBBLE_NEON_DOTPROD 1
#include "kernels/neon/matmul_lowbit_neon_impl.h"

namespace nibble::kernels::neon {

void matmul_rows_int8_lowbit_dotprod(const MatrixView& w, const QuantizedActivations& qa,
                                     int64_t r0, int64_t r1, float* y) {
    lowbit_rows_any(w, qa, r0, r1, y);
}

}  // namespace nibble::kernels::neon
#pragma GCC pop_options

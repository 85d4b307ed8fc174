// NEON integer matmul with SDOT (FEAT_DotProd). Only the kernel code below is
// compiled for the dotprod target; dispatch calls it only when HWCAP_ASIMDDP is set.
#include "kernels/matmul_variants.h"
#include "kernels/neon/neon_common.h"

#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")
#define NIBBLE_NEON_DOTPROD 1
#include "kernels/neon/matmul_neon_int8_impl.h"

namespace nibble::kernels::neon {

void matmul_rows_int8_dotprod(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                              int64_t r1, float* y) {
    rows_int8_any(w, qa, r0, r1, y);
}

}  // namespace nibble::kernels::neon
#pragma GCC pop_options

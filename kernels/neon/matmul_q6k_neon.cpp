// q6k's int8 kernel on NEON without the dotprod extension (widening
// multiplies; kernels/neon/matmul_q6k_neon_impl.h).
#define NIBBLE_NEON_DOTPROD 0
#include "kernels/neon/matmul_q6k_neon_impl.h"

namespace nibble::kernels::neon {

void matmul_rows_int8_q6k(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                          int64_t r1, float* y) {
    q6k_rows(w, qa, r0, r1, y);
}

}  // namespace nibble::kernels::neon

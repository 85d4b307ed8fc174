// q3 and q2's int8 kernel on NEON without the dotprod extension (widening
// multiplies; kernels/neon/matmul_q2q3_neon_impl.h).
#define NIBBLE_NEON_DOTPROD 0
#include "kernels/neon/matmul_q2q3_neon_impl.h"

namespace nibble::kernels::neon {

void matmul_rows_int8_q2q3(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                           int64_t r1, float* y) {
    q2q3_rows_any(w, qa, r0, r1, y);
}

}  // namespace nibble::kernels::neon

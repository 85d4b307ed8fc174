// NEON integer matmul without the dotprod extension (widening multiplies).
#define NIBBLE_NEON_DOTPROD 0
#include "kernels/neon/matmul_neon_int8_impl.h"

namespace nibble::kernels::neon {

void matmul_rows_int8(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
                      float* y) {
    rows_int8_any(w, qa, r0, r1, y);
}

}  // namespace nibble::kernels::neon

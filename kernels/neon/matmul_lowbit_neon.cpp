// The ggml block formats' int8 kernel on NEON without the dotprod extension
// (widening multiplies; kernels/neon/matmul_lowbit_neon_impl.h).
#define NIBBLE_NEON_DOTPROD 0
#include "kernels/neon/matmul_lowbit_neon_impl.h"

namespace nibble::kernels::neon {

void matmul_rows_int8_lowbit(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                             int64_t r1, float* y) {
    lowbit_rows_any(w, qa, r0, r1, y);
}

}  // namespace nibble::kernels::neon

// Run-time selection of the matmul kernel for the CPU and the weight format.
#include "kernels/matmul.h"

namespace nibble {

void matmul(const MatrixView& w, const float* x, int n_tokens, float* y) {
    reference::matmul(w, x, n_tokens, y);
}

}  // namespace nibble

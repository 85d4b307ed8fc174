// q4k's parameter decoder compiled for AVX2 + F16C, out of line, for generic
// code that runs it after checking the CPU (decode_row_params_generic, which
// the AMX kernel calls per row and token tile).
#define NIBBLE_ISA_NAMESPACE avx2
#include "kernels/avx2/kquant_params_simd.h"
#include "kernels/matmul_variants.h"

namespace nibble::kernels::avx2 {

void decode_q4k_params(const uint8_t* sb, int64_t n_blocks, float* scales, float* mins) {
    decode_q4k_row(sb, n_blocks, scales, mins);
}

}  // namespace nibble::kernels::avx2

// The ggml block formats' int8 kernel for AVX2 (kernels/avx2/matmul_lowbit_256.inc),
// also run by the AVX-VNNI entry.
#define NIBBLE_ISA_NAMESPACE avx2
#include "kernels/avx2/matmul_lowbit_256.inc"

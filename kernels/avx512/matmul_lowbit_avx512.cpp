// The ggml block formats' int8 kernel (kernels/avx2/matmul_lowbit_256.inc)
// compiled for the AVX-512 entry (and AMX, which runs AVX-512's).
#define NIBBLE_ISA_NAMESPACE avx512
#include "kernels/avx2/matmul_lowbit_256.inc"

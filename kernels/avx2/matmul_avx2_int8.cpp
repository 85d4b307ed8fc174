// AVX2 integer matmul (vpmaddubsw + vpmaddwd); the body is shared with the
// AVX-VNNI kernel (kernels/avx2/matmul_int8_256.inc).
#define NIBBLE_ISA_NAMESPACE avx2
#define NIBBLE_AVX_VNNI 0
#include "kernels/avx2/matmul_int8_256.inc"

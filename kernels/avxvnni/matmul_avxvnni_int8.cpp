// AVX-VNNI integer matmul: the AVX2 kernel (kernels/avx2/matmul_int8_256.inc)
// with vpdpbusd for the u8 x s8 dot products, for CPUs with AVX-VNNI but no
// AVX-512 (compiled with -mavxvnni; chosen only when cpu_features().avx_vnni).
#define NIBBLE_ISA_NAMESPACE avxvnni
#define NIBBLE_AVX_VNNI 1
#include "kernels/avx2/matmul_int8_256.inc"

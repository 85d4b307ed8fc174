// Choosing the matmul kernel variant and the activation path (tests, benchmarks,
// command line). nibble::matmul (kernels/matmul.h) uses whatever is selected here.
//
// By default the fastest variant this CPU supports is used; the environment
// variable NIBBLE_KERNEL=reference|scalar|avx2|avxvnni|avx512|neon|neon_nodot forces one (read
// once, at the first matmul; an unknown or unsupported value throws
// std::runtime_error). set_matmul_kernel() takes precedence over both.
#pragma once
#include <vector>

namespace nibble {

enum class MatmulKernel {
    automatic,   // fastest supported (or NIBBLE_KERNEL)
    reference,   // reference::matmul (dequantize rows, FP32 dots)
    scalar,      // portable fast path, no intrinsics
    avx2,        // x86-64 AVX2 + FMA + F16C
    avx_vnni,    // x86-64 AVX2 kernels with AVX-VNNI dot products (256-bit)
    avx512,      // x86-64 AVX-512 F/BW/VL + VNNI (512-bit vpdpbusd)
    neon,        // aarch64 NEON, SDOT when the CPU has the dotprod extension
    neon_nodot,  // aarch64 NEON without SDOT (for testing that path)
};

// How activations enter the 4/8-bit kernels.
enum class ActivationMode {
    int8,  // quantized once per matmul to int8 per block of 32 (fast, default)
    fp32,  // exact FP32 activations, weights dequantized in registers
};

const char* matmul_kernel_name(MatmulKernel kernel);
bool matmul_kernel_supported(MatmulKernel kernel);
// All variants other than automatic that this CPU can run.
std::vector<MatmulKernel> supported_matmul_kernels();

// Forces a variant; throws std::runtime_error if this CPU cannot run it.
void set_matmul_kernel(MatmulKernel kernel);
// The variant matmul will use (automatic resolved).
MatmulKernel matmul_kernel();

void set_matmul_activation_mode(ActivationMode mode);
ActivationMode matmul_activation_mode();

}  // namespace nibble

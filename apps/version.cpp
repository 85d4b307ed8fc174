// nibble --version: everything a bug report needs about the binary and the
// machine, in the spirit of llama.cpp's system info line.
#include <cstdio>

#include "apps/build_info.h"
#include "apps/commands.h"
#include "kernels/cpu_features.h"
#include "kernels/matmul_dispatch.h"

namespace nibble::app {

namespace {

const char* compiler() {
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "GCC " __VERSION__;
#else
    return "an unknown compiler";
#endif
}

const char* architecture() {
#if defined(__x86_64__)
    return "x86_64";
#elif defined(__aarch64__)
    return "aarch64";
#else
    return "a portable build";
#endif
}

const char* activation_mode_name(ActivationMode mode) {
    return mode == ActivationMode::int8 ? "int8" : "fp32";
}

}  // namespace

void print_version(std::FILE* out) {
    const CpuFeatures& cpu = cpu_features();
    const MatmulKernel kernel = matmul_kernel();  // throws on a bad NIBBLE_KERNEL
    std::fprintf(out, "nibble %s (commit %s)\n", build_version(), build_commit());
    std::fprintf(out, "built with %s, C++%ld, for %s\n", compiler(), __cplusplus / 100 % 100,
                 architecture());
    std::fprintf(out,
                 "CPU: AVX2 = %d | AVX_VNNI = %d | AVX512_VNNI = %d | AMX_INT8 = %d | NEON = %d | "
                 "DOTPROD = %d\n",
                 int(cpu.avx2), int(cpu.avx_vnni), int(cpu.avx512), int(amx_tiles_usable()),
                 int(cpu.neon), int(cpu.dotprod));
    std::fprintf(out, "matmul kernel: %s (%s activations) | threads: %d\n",
                 matmul_kernel_name(kernel), activation_mode_name(matmul_activation_mode()),
                 set_threads(0));
}

}  // namespace nibble::app

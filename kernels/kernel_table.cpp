// The kernel table (kernels/kernel_table.h): one constant entry per
// instruction set. An entry names only functions; which entry runs is decided
// once by the dispatcher.
#include "kernels/kernel_table.h"

#include <stdexcept>

#include "kernels/cpu_features.h"
#include "kernels/matmul.h"

namespace nibble::kernels {

namespace {

bool always() {
    return true;
}
bool never() {
    return false;
}

// Portable row kernels: the scalar fast path, q6k's own portable kernels.
constexpr RowKernels kScalarRows{scalar::matmul_rows_int8, scalar::matmul_rows_fp32,
                                 CodeOrder::natural};
constexpr RowKernels kScalarQ6kRows{scalar::matmul_rows_int8_q6k,
                                    scalar::matmul_rows_fp32_dequantized, CodeOrder::natural};
constexpr RowKernels kScalarLowbitRows{scalar::matmul_rows_int8_lowbit,
                                       scalar::matmul_rows_fp32_dequantized, CodeOrder::natural};
constexpr RowKernels kScalarQ2q3Rows{scalar::matmul_rows_int8_q2q3, scalar::matmul_rows_fp32_q2q3,
                                     CodeOrder::natural};

#if defined(__x86_64__)
bool has_avx2() {
    return cpu_features().avx2;
}
bool has_avx_vnni() {
    return cpu_features().avx_vnni;
}
bool has_avx512() {
    return cpu_features().avx512;
}

constexpr RowKernels kAvx2Q6kRows{avx2::matmul_rows_int8_q6k, scalar::matmul_rows_fp32_dequantized,
                                  CodeOrder::natural};
constexpr RowKernels kAvx512Q6kRows{avx512::matmul_rows_int8_q6k,
                                    scalar::matmul_rows_fp32_dequantized, CodeOrder::natural};
constexpr RowKernels kAvx2LowbitRows{avx2::matmul_rows_int8_lowbit,
                                     scalar::matmul_rows_fp32_dequantized, CodeOrder::natural};
constexpr RowKernels kAvx512LowbitRows{avx512::matmul_rows_int8_lowbit,
                                       scalar::matmul_rows_fp32_dequantized, CodeOrder::natural};
constexpr RowKernels kAvx2Q2q3Rows{avx2::matmul_rows_int8_q2q3, scalar::matmul_rows_fp32_q2q3,
                                   CodeOrder::natural};
constexpr RowKernels kAvx512Q2q3Rows{avx512::matmul_rows_int8_q2q3, scalar::matmul_rows_fp32_q2q3,
                                     CodeOrder::quads};

// AMX tiles: int8 products of 16 tokens or more in every quantized format,
// bitwise the AVX-512 kernels' results (kernels/amx/); everything else as AVX-512.
constexpr KernelEntry kAmx{
    MatmulKernel::avx512,
    "amx",
    amx_usable,
    false,
    nullptr,
    {{amx::matmul_rows_int8, avx2::matmul_rows_fp32, CodeOrder::quads},
     {amx::matmul_rows_int8_q6k, scalar::matmul_rows_fp32_dequantized, CodeOrder::natural},
     {amx::matmul_rows_int8_lowbit, scalar::matmul_rows_fp32_dequantized, CodeOrder::natural},
     {amx::matmul_rows_int8_q2q3, scalar::matmul_rows_fp32_q2q3, CodeOrder::quads}},
    avx2::quantize_activation_row,
    vec_ops_avx2,
    nullptr,
    kAmxMinTokens};
#endif

#if defined(__aarch64__)
bool has_neon() {
    return cpu_features().neon;
}
bool has_dotprod() {
    return cpu_features().neon && cpu_features().dotprod;
}

constexpr RowKernels kNeonQ2q3Rows{neon::matmul_rows_int8_q2q3, scalar::matmul_rows_fp32_q2q3,
                                   CodeOrder::natural};
constexpr RowKernels kNeonDotprodQ2q3Rows{neon::matmul_rows_int8_q2q3_dotprod,
                                          scalar::matmul_rows_fp32_q2q3, CodeOrder::natural};
constexpr RowKernels kNeonQ6kRows{neon::matmul_rows_int8_q6k, scalar::matmul_rows_fp32_dequantized,
                                  CodeOrder::natural};
constexpr RowKernels kNeonDotprodQ6kRows{neon::matmul_rows_int8_q6k_dotprod,
                                         scalar::matmul_rows_fp32_dequantized, CodeOrder::natural};
constexpr RowKernels kNeonLowbitRows{neon::matmul_rows_int8_lowbit,
                                     scalar::matmul_rows_fp32_dequantized, CodeOrder::natural};
constexpr RowKernels kNeonDotprodLowbitRows{neon::matmul_rows_int8_lowbit_dotprod,
                                            scalar::matmul_rows_fp32_dequantized,
                                            CodeOrder::natural};

// NEON with SDOT (FEAT_DotProd), for any number of tokens.
constexpr KernelEntry kNeonDotprod{
    MatmulKernel::neon,
    "neon",
    has_dotprod,
    false,
    nullptr,
    {{neon::matmul_rows_int8_dotprod, neon::matmul_rows_fp32, CodeOrder::natural},
     kNeonDotprodQ6kRows,
     kNeonDotprodLowbitRows,
     kNeonDotprodQ2q3Rows},
    quantize_activation_row,
    vec_ops_neon,
    nullptr,
    0};
#endif

// A kernel of another architecture than this build's: known by name, never supported.
constexpr KernelEntry absent(MatmulKernel kernel, const char* name) {
    return {kernel,
            name,
            never,
            false,
            nullptr,
            {kScalarRows, kScalarQ6kRows, kScalarLowbitRows, kScalarQ2q3Rows},
            quantize_activation_row,
            nullptr,
            nullptr,
            0};
}

// In MatmulKernel order.
constexpr KernelEntry kTable[] = {
    {MatmulKernel::reference,
     "reference",
     always,
     false,
     reference::matmul,
     {kScalarRows, kScalarQ6kRows, kScalarLowbitRows, kScalarQ2q3Rows},
     quantize_activation_row,
     nullptr,
     nullptr,
     0},
    {MatmulKernel::scalar,
     "scalar",
     always,
     true,
     nullptr,
     {kScalarRows, kScalarQ6kRows, kScalarLowbitRows, kScalarQ2q3Rows},
     quantize_activation_row,
     nullptr,
     nullptr,
     0},
#if defined(__x86_64__)
    {MatmulKernel::avx2,
     "avx2",
     has_avx2,
     true,
     nullptr,
     {{avx2::matmul_rows_int8, avx2::matmul_rows_fp32, CodeOrder::pairs},
      kAvx2Q6kRows,
      kAvx2LowbitRows,
      kAvx2Q2q3Rows},
     avx2::quantize_activation_row,
     vec_ops_avx2,
     nullptr,
     0},
    {MatmulKernel::avx_vnni,
     "avxvnni",
     has_avx_vnni,
     true,
     nullptr,
     {{avxvnni::matmul_rows_int8, avx2::matmul_rows_fp32, CodeOrder::pairs},
      kAvx2Q6kRows,
      kAvx2LowbitRows,
      kAvx2Q2q3Rows},
     avx2::quantize_activation_row,
     vec_ops_avx2,
     nullptr,
     0},
    {MatmulKernel::avx512,
     "avx512",
     has_avx512,
     true,
     nullptr,
     {{avx512::matmul_rows_int8, avx2::matmul_rows_fp32, CodeOrder::quads},
      kAvx512Q6kRows,
      kAvx512LowbitRows,
      kAvx512Q2q3Rows},
     avx2::quantize_activation_row,
     vec_ops_avx2,
     &kAmx,
     0},
#else
    absent(MatmulKernel::avx2, "avx2"),
    absent(MatmulKernel::avx_vnni, "avxvnni"),
    absent(MatmulKernel::avx512, "avx512"),
#endif
#if defined(__aarch64__)
    // Without SDOT, unless the CPU has it (then kNeonDotprod).
    {MatmulKernel::neon,
     "neon",
     has_neon,
     true,
     nullptr,
     {{neon::matmul_rows_int8, neon::matmul_rows_fp32, CodeOrder::natural},
      kNeonQ6kRows,
      kNeonLowbitRows,
      kNeonQ2q3Rows},
     quantize_activation_row,
     vec_ops_neon,
     &kNeonDotprod,
     0},
    {MatmulKernel::neon_nodot,
     "neon_nodot",
     has_neon,
     false,
     nullptr,
     {{neon::matmul_rows_int8, neon::matmul_rows_fp32, CodeOrder::natural},
      kNeonQ6kRows,
      kNeonLowbitRows,
      kNeonQ2q3Rows},
     quantize_activation_row,
     vec_ops_neon,
     nullptr,
     0},
#else
    absent(MatmulKernel::neon, "neon"),
    absent(MatmulKernel::neon_nodot, "neon_nodot"),
#endif
};

}  // namespace

std::span<const KernelEntry> kernel_table() {
    return kTable;
}

const KernelEntry& kernel_entry(MatmulKernel kernel) {
    for (const KernelEntry& e : kTable) {
        if (e.kernel == kernel) return e;
    }
    throw std::runtime_error("no kernel table entry for this kernel");
}

}  // namespace nibble::kernels

// The kernel table: one constant entry per instruction set, holding every
// function the CPU-dependent code runs (the row kernels per format family,
// the activation quantizer, the vector ops) and the CPU check that allows it.
// The dispatcher (kernels/matmul_dispatch.cpp) chooses an entry once (the
// fastest supported, NIBBLE_KERNEL or set_matmul_kernel) and calls only its
// functions; no kernel calls another ISA's kernel. A new instruction set is a
// new entry in kernels/kernel_table.cpp plus its own files.
#pragma once
#include <span>

#include "kernels/activation_quant.h"
#include "kernels/format_traits.h"
#include "kernels/matmul_dispatch.h"
#include "kernels/matmul_q2q3.h"
#include "kernels/matmul_variants.h"
#include "kernels/vec_ops.h"

namespace nibble::kernels {

// Row kernels of one family of formats, and the code order in which their int8
// path reads the quantized activations (kernels/activation_quant.h).
struct RowKernels {
    Int8RowsFn int8_rows;
    Fp32RowsFn fp32_rows;
    CodeOrder order;
};

using QuantizeRowFn = void (*)(const float* x, int t, const QuantizedActivations& qa);
using WholeMatmulFn = void (*)(const MatrixView& w, const float* x, int n_tokens, float* y);

struct KernelEntry {
    MatmulKernel kernel;  // the value set_matmul_kernel takes
    const char* name;     // NIBBLE_KERNEL's value, shown by nibble --version
    bool (*supported)();  // can this CPU (and operating system) run it
    bool automatic;       // a candidate for the automatic choice: the last supported one
    // Computes whole products instead of the row kernels (the reference).
    WholeMatmulFn whole_matmul;
    // Per RowFamily (kernels/format_traits.h: row_family): grouped (q8, q4,
    // q4a, q4k, nf4, iq4nl, f16, f32), q6k (kernels/q6k.h), lowbit (the ggml
    // block formats, kernels/lowbit.h), q2q3 (nibble's q3 and q2, kernels/q2q3.h).
    RowKernels rows[kRowFamilies];
    QuantizeRowFn quantize_row;
    const VecOps* (*vec_ops)();  // nullptr (or a null result): the portable ones
    // An entry that takes over products of at least faster->min_tokens tokens
    // when its own CPU check passes (AMX tiles, NEON's SDOT), giving the same
    // results; nullptr when there is none.
    const KernelEntry* faster;
    int min_tokens;  // (for an entry that is some other's `faster`)
};

// An entry for every MatmulKernel but automatic, in MatmulKernel order (those
// of another architecture are listed, never supported).
std::span<const KernelEntry> kernel_table();
// The entry of a kernel other than automatic.
const KernelEntry& kernel_entry(MatmulKernel kernel);
// The entry in use (kernels/matmul_dispatch.h: set_matmul_kernel, else
// NIBBLE_KERNEL, else the last supported automatic one).
const KernelEntry& active_kernel_entry();

}  // namespace nibble::kernels

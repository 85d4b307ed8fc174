// Run-time selection of the matmul kernel for the CPU and the weight format,
// activation quantization and the split of output rows over OpenMP threads.
#include "kernels/matmul_dispatch.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "kernels/activation_quant.h"
#include "kernels/cpu_features.h"
#include "kernels/matmul.h"
#include "kernels/matmul_variants.h"

namespace nibble {

namespace {

constexpr MatmulKernel kAllKernels[] = {MatmulKernel::reference, MatmulKernel::scalar,
                                        MatmulKernel::avx2, MatmulKernel::neon,
                                        MatmulKernel::neon_nodot};

std::atomic<MatmulKernel> g_kernel{MatmulKernel::automatic};
std::atomic<ActivationMode> g_activation_mode{ActivationMode::int8};

MatmulKernel fastest_supported() {
    const CpuFeatures& f = cpu_features();
    if (f.avx2) return MatmulKernel::avx2;
    if (f.neon) return MatmulKernel::neon;
    return MatmulKernel::scalar;
}

// NIBBLE_KERNEL, read once; automatic when unset or empty.
MatmulKernel kernel_from_env() {
    static const MatmulKernel from_env = [] {
        const char* value = std::getenv("NIBBLE_KERNEL");
        if (value == nullptr || *value == '\0') return MatmulKernel::automatic;
        for (MatmulKernel k : kAllKernels) {
            if (std::string(value) == matmul_kernel_name(k)) {
                if (!matmul_kernel_supported(k)) {
                    throw std::runtime_error(std::string("NIBBLE_KERNEL: ") + value +
                                             " is not supported by this CPU");
                }
                return k;
            }
        }
        throw std::runtime_error(std::string("NIBBLE_KERNEL: unknown kernel '") + value +
                                 "' (reference, scalar, avx2, neon, neon_nodot)");
    }();
    return from_env;
}

// Below this many multiply-adds a matmul runs on the calling thread only.
constexpr int64_t kMinParallelWork = int64_t(1) << 18;
// Activation values below which quantization is not worth a parallel loop.
constexpr int64_t kMinParallelQuantize = int64_t(1) << 15;
// Rows per OpenMP work item (a multiple of every kernel's row block).
constexpr int64_t kRowsPerTask = 16;

}  // namespace

const char* matmul_kernel_name(MatmulKernel kernel) {
    switch (kernel) {
        case MatmulKernel::automatic:
            return "automatic";
        case MatmulKernel::reference:
            return "reference";
        case MatmulKernel::scalar:
            return "scalar";
        case MatmulKernel::avx2:
            return "avx2";
        case MatmulKernel::neon:
            return "neon";
        case MatmulKernel::neon_nodot:
            return "neon_nodot";
    }
    return "?";
}

bool matmul_kernel_supported(MatmulKernel kernel) {
    const CpuFeatures& f = cpu_features();
    switch (kernel) {
        case MatmulKernel::automatic:
        case MatmulKernel::reference:
        case MatmulKernel::scalar:
            return true;
#if defined(__x86_64__)
        case MatmulKernel::avx2:
            return f.avx2;
#endif
#if defined(__aarch64__)
        case MatmulKernel::neon:
            return f.neon;
        case MatmulKernel::neon_nodot:
            return f.neon;
#endif
        default:
            return false;
    }
}

std::vector<MatmulKernel> supported_matmul_kernels() {
    std::vector<MatmulKernel> out;
    for (MatmulKernel k : kAllKernels) {
        if (matmul_kernel_supported(k)) out.push_back(k);
    }
    return out;
}

void set_matmul_kernel(MatmulKernel kernel) {
    if (!matmul_kernel_supported(kernel)) {
        throw std::runtime_error(std::string("matmul kernel ") + matmul_kernel_name(kernel) +
                                 " is not supported by this CPU");
    }
    g_kernel.store(kernel);
}

MatmulKernel matmul_kernel() {
    const MatmulKernel chosen = g_kernel.load();
    if (chosen != MatmulKernel::automatic) return chosen;
    const MatmulKernel from_env = kernel_from_env();
    return from_env != MatmulKernel::automatic ? from_env : fastest_supported();
}

void set_matmul_activation_mode(ActivationMode mode) {
    g_activation_mode.store(mode);
}
ActivationMode matmul_activation_mode() {
    return g_activation_mode.load();
}

void matmul(const MatrixView& w, const float* x, int n_tokens, float* y) {
    const PackedLayout& l = w.layout;
    if (n_tokens <= 0 || l.rows <= 0) return;
    if (w.data == nullptr || x == nullptr || y == nullptr) {
        throw std::runtime_error("matmul: null weight, activation or output pointer");
    }
    const MatmulKernel kernel = matmul_kernel();
    if (kernel == MatmulKernel::reference) {
        reference::matmul(w, x, n_tokens, y);
        return;
    }
    kernels::Int8RowsFn int8_rows = kernels::scalar::matmul_rows_int8;
    kernels::Fp32RowsFn fp32_rows = kernels::scalar::matmul_rows_fp32;
#if defined(__x86_64__)
    if (kernel == MatmulKernel::avx2) {
        int8_rows = kernels::avx2::matmul_rows_int8;
        fp32_rows = kernels::avx2::matmul_rows_fp32;
    }
#endif
#if defined(__aarch64__)
    if (kernel == MatmulKernel::neon || kernel == MatmulKernel::neon_nodot) {
        int8_rows = kernel == MatmulKernel::neon && cpu_features().dotprod
                        ? kernels::neon::matmul_rows_int8_dotprod
                        : kernels::neon::matmul_rows_int8;
        fp32_rows = kernels::neon::matmul_rows_fp32;
    }
#endif

    const bool use_int8 = is_grouped(l.format) && matmul_activation_mode() == ActivationMode::int8;
    // Buffers of the calling thread, reused across calls (grow only).
    thread_local ActivationBuffer activation_buffer;
    thread_local std::vector<float> padded_x;
    QuantizedActivations qa;
    const float* xs = x;
    int64_t x_stride = l.cols;
    if (use_int8) {
        qa = activation_buffer.prepare(l, n_tokens, kernel == MatmulKernel::avx2);
    } else if (l.padded_cols != l.cols) {
        // The fp32 kernels read whole 32-column chunks: pad x with zeros.
        x_stride = l.padded_cols;
        const size_t n = size_t(n_tokens) * size_t(x_stride);
        if (padded_x.size() < n) padded_x.resize(n);
        for (int t = 0; t < n_tokens; ++t) {
            const float* src = x + size_t(t) * size_t(l.cols);
            float* dst = padded_x.data() + size_t(t) * size_t(x_stride);
            std::copy(src, src + l.cols, dst);
            std::fill(dst + l.cols, dst + x_stride, 0.0f);
        }
        xs = padded_x.data();
    }

    const int64_t n_tasks = (l.rows + kRowsPerTask - 1) / kRowsPerTask;
    const bool parallel = l.rows * l.padded_cols * n_tokens >= kMinParallelWork && n_tasks > 1;
    // Few tokens (decoding): quantize on the calling thread, which saves a barrier.
    const bool quantize_in_parallel =
        use_int8 && parallel && int64_t(n_tokens) * l.cols >= kMinParallelQuantize;
    if (use_int8 && !quantize_in_parallel) {
        for (int t = 0; t < n_tokens; ++t) quantize_activation_row(x, t, qa);
    }
#pragma omp parallel if (parallel)
    {
        if (quantize_in_parallel) {
#pragma omp for schedule(static)
            for (int t = 0; t < n_tokens; ++t) quantize_activation_row(x, t, qa);
        }
        // Static: each thread gets one contiguous range of rows, so it streams
        // one run of memory (like a read-bandwidth probe) and its prefetches
        // stay inside its range. Dynamic 16-row tasks interleaved the two
        // threads' reads and reached only ~26 GB/s of weights when decoding on
        // 2 threads against ~36 GB/s static (docs/BENCHMARKS.md, "Where the
        // time goes"). Each output is computed by one thread in a fixed order.
#pragma omp for schedule(static) nowait
        for (int64_t task = 0; task < n_tasks; ++task) {
            const int64_t r0 = task * kRowsPerTask;
            const int64_t r1 = std::min(l.rows, r0 + kRowsPerTask);
            if (use_int8) {
                int8_rows(w, qa, r0, r1, y);
            } else {
                fp32_rows(w, xs, x_stride, n_tokens, r0, r1, y);
            }
        }
    }
}

}  // namespace nibble

// Run-time choice of the kernel table's entry (kernels/kernel_table.h), the
// activation quantization and the split of output rows over OpenMP threads.
#include "kernels/matmul_dispatch.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/activation_quant.h"
#include "kernels/kernel_table.h"
#include "kernels/matmul.h"

namespace nibble {

namespace {

using kernels::KernelEntry;

// The chosen entry (nullptr: automatic, not resolved yet) and the entry that
// takes over its larger products when the CPU allows it (resolved with it).
struct ActiveKernel {
    const KernelEntry* entry = nullptr;
    const KernelEntry* faster = nullptr;
};
std::atomic<const KernelEntry*> g_entry{nullptr};
std::atomic<ActivationMode> g_activation_mode{ActivationMode::int8};

// The last supported entry that the automatic choice may take, found once.
const KernelEntry& fastest_supported() {
    static const KernelEntry& fastest = [&]() -> const KernelEntry& {
        const KernelEntry* best = &kernels::kernel_entry(MatmulKernel::scalar);
        for (const KernelEntry& e : kernels::kernel_table()) {
            if (e.automatic && e.supported()) best = &e;
        }
        return *best;
    }();
    return fastest;
}

// NIBBLE_KERNEL, read until it is read without error; nullptr when unset or empty.
const KernelEntry* kernel_from_env() {
    static const KernelEntry* const from_env = []() -> const KernelEntry* {
        const char* value = std::getenv("NIBBLE_KERNEL");
        if (value == nullptr || *value == '\0') return nullptr;
        for (const KernelEntry& e : kernels::kernel_table()) {
            if (std::string(value) != e.name) continue;
            if (!e.supported()) {
                throw std::runtime_error(std::string("NIBBLE_KERNEL: ") + value +
                                         " is not supported by this CPU");
            }
            return &e;
        }
        std::string names;
        for (const KernelEntry& e : kernels::kernel_table())
            names += names.empty() ? e.name : std::string(", ") + e.name;
        throw std::runtime_error(std::string("NIBBLE_KERNEL: unknown kernel '") + value + "' (" +
                                 names + ")");
    }();
    return from_env;
}

// The entry in use: set_matmul_kernel's, else NIBBLE_KERNEL's, else the fastest.
const KernelEntry& active_entry() {
    const KernelEntry* chosen = g_entry.load(std::memory_order_relaxed);
    if (chosen != nullptr) return *chosen;
    const KernelEntry* from_env = kernel_from_env();
    return from_env != nullptr ? *from_env : fastest_supported();
}

ActiveKernel active_kernel() {
    const KernelEntry& e = active_entry();
    return {&e, e.faster != nullptr && e.faster->supported() ? e.faster : nullptr};
}

// Below this many multiply-adds a matmul runs on the calling thread only.
constexpr int64_t kMinParallelWork = int64_t(1) << 18;
// Activation values below which quantization is not worth a parallel loop.
constexpr int64_t kMinParallelQuantize = int64_t(1) << 15;
// Rows per OpenMP work item (a multiple of every kernel's row block).
constexpr int64_t kRowsPerTask = 16;
// Tasks an owner claims at a time from the front of its range.
constexpr int64_t kOwnerChunk = 16;
// Threads with their own task range; beyond this the ranges are shared out.
constexpr int kMaxRanges = 64;

// A thread's tasks [front, back) packed into one word, so that the owner
// (taking from the front) and a thief (taking from the back) never both get
// a task.
struct alignas(64) TaskRange {
    std::atomic<uint64_t> span{0};

    void set(int64_t front, int64_t back) {
        span.store(uint64_t(front) << 32 | uint64_t(back), std::memory_order_relaxed);
    }
    // Claims up to n tasks from the front (from_front) or the back into [a, b).
    bool claim(bool from_front, int64_t n, int64_t& a, int64_t& b) {
        uint64_t cur = span.load(std::memory_order_relaxed);
        for (;;) {
            const int64_t f = int64_t(cur >> 32), k = int64_t(cur & 0xffffffffu);
            if (f >= k) return false;
            const int64_t nf = from_front ? std::min(f + n, k) : f;
            const int64_t nk = from_front ? k : std::max(k - n, f);
            if (span.compare_exchange_weak(cur, uint64_t(nf) << 32 | uint64_t(nk),
                                           std::memory_order_acq_rel)) {
                a = from_front ? f : nk;
                b = from_front ? nf : k;
                return true;
            }
        }
    }
};

}  // namespace

const char* matmul_kernel_name(MatmulKernel kernel) {
    return kernel == MatmulKernel::automatic ? "automatic" : kernels::kernel_entry(kernel).name;
}

bool matmul_kernel_supported(MatmulKernel kernel) {
    return kernel == MatmulKernel::automatic || kernels::kernel_entry(kernel).supported();
}

std::vector<MatmulKernel> supported_matmul_kernels() {
    std::vector<MatmulKernel> out;
    for (const KernelEntry& e : kernels::kernel_table()) {
        if (e.supported()) out.push_back(e.kernel);
    }
    return out;
}

void set_matmul_kernel(MatmulKernel kernel) {
    if (!matmul_kernel_supported(kernel)) {
        throw std::runtime_error(std::string("matmul kernel ") + matmul_kernel_name(kernel) +
                                 " is not supported by this CPU");
    }
    g_entry.store(kernel == MatmulKernel::automatic ? nullptr : &kernels::kernel_entry(kernel));
}

MatmulKernel matmul_kernel() {
    return active_entry().kernel;
}

namespace kernels {
const KernelEntry& active_kernel_entry() {
    return active_entry();
}
}  // namespace kernels

void set_matmul_activation_mode(ActivationMode mode) {
    g_activation_mode.store(mode);
}
ActivationMode matmul_activation_mode() {
    return g_activation_mode.load();
}

namespace {

// Same format, width and grouping: one quantized (or padded) X serves all.
bool share_input(const PackedLayout& a, const PackedLayout& b) {
    return a.format == b.format && a.cols == b.cols && a.padded_cols == b.padded_cols &&
           a.group_size == b.group_size && a.groups_per_row == b.groups_per_row;
}

// y_i = W_i x for products[0..n) whose layouts all share_input with the first.
// The steps: check the pointers, pick the row kernels, prepare x once
// (quantized or padded), plan the row-block tasks, run them on the threads.

void check_pointers(const MatmulProduct* products, int n_products, const float* x) {
    for (int i = 0; i < n_products; ++i) {
        const MatmulProduct& p = products[i];
        if (p.w->data == nullptr || x == nullptr || p.y == nullptr) {
            throw std::runtime_error("matmul: null weight, activation or output pointer");
        }
    }
}

// The functions one matmul runs: the active entry's, or those of the entry
// that takes over products of this many tokens; q6k's and q3/q2's own row kernels.
struct RowKernels {
    kernels::RowKernels rows;
    kernels::QuantizeRowFn quantize_row;
};

RowKernels row_kernels(const ActiveKernel& active, const PackedLayout& l, int n_tokens) {
    const KernelEntry& e = active.faster != nullptr && n_tokens >= active.faster->min_tokens
                               ? *active.faster
                               : *active.entry;
    if (is_q2q3(l.format)) return {e.q2q3, e.quantize_row};
    return {l.format == WeightFormat::q6k ? e.q6k : e.grouped, e.quantize_row};
}

// x as the row kernels read it: int8 rows read qa (quantized later, see
// quantize_input), fp32 rows read xs with x_stride floats per token.
struct MatmulInput {
    bool int8 = false;
    QuantizedActivations qa;
    const float* xs = nullptr;
    int64_t x_stride = 0;
};

MatmulInput prepare_input(const PackedLayout& l, const float* x, int n_tokens, CodeOrder order) {
    // Buffers of the calling thread, reused across calls (grow only).
    thread_local ActivationBuffer activation_buffer;
    thread_local std::vector<float> padded_x;
    MatmulInput in;
    in.int8 = is_grouped(l.format) && matmul_activation_mode() == ActivationMode::int8;
    in.xs = x;
    in.x_stride = l.cols;
    if (in.int8) {
        in.qa = activation_buffer.prepare(l, n_tokens, order);
    } else if (l.padded_cols != l.cols) {
        // The fp32 kernels read whole 32-column chunks: pad x with zeros.
        in.x_stride = l.padded_cols;
        const size_t n = size_t(n_tokens) * size_t(in.x_stride);
        if (padded_x.size() < n) padded_x.resize(n);
        for (int t = 0; t < n_tokens; ++t) {
            const float* src = x + size_t(t) * size_t(l.cols);
            float* dst = padded_x.data() + size_t(t) * size_t(in.x_stride);
            std::copy(src, src + l.cols, dst);
            std::fill(dst + l.cols, dst + in.x_stride, 0.0f);
        }
        in.xs = padded_x.data();
    }
    return in;
}

// Everything a task needs: the products, x as given and as prepared, the kernels.
struct SharedInputJob {
    const MatmulProduct* products;
    int n_products;
    const float* x;
    int n_tokens;
    RowKernels kernels;
    MatmulInput input;
};

// Work items: blocks of kRowsPerTask rows, numbered through all matrices in turn.
struct TaskPlan {
    int64_t n_tasks = 0;
    bool parallel = false;
    // Few tokens (decoding): quantize on the calling thread, which saves a barrier.
    bool quantize_in_parallel = false;
};

TaskPlan plan_tasks(const SharedInputJob& job) {
    TaskPlan plan;
    int64_t total_rows = 0;
    for (int i = 0; i < job.n_products; ++i) {
        plan.n_tasks += (job.products[i].w->layout.rows + kRowsPerTask - 1) / kRowsPerTask;
        total_rows += job.products[i].w->layout.rows;
    }
    const PackedLayout& l = job.products[0].w->layout;
    plan.parallel =
        total_rows * l.padded_cols * job.n_tokens >= kMinParallelWork && plan.n_tasks > 1;
    plan.quantize_in_parallel =
        job.input.int8 && plan.parallel && int64_t(job.n_tokens) * l.cols >= kMinParallelQuantize;
    return plan;
}

// Rows of tasks [t0, t1) of the whole list, matrix by matrix.
void run_tasks(const SharedInputJob& job, int64_t t0, int64_t t1) {
    const MatmulInput& in = job.input;
    int64_t first = 0;  // first task of matrix i
    for (int i = 0; i < job.n_products && first < t1; ++i) {
        const MatrixView& w = *job.products[i].w;
        const int64_t count = (w.layout.rows + kRowsPerTask - 1) / kRowsPerTask;
        const int64_t a = std::max(t0, first) - first, b = std::min(t1, first + count) - first;
        first += count;
        if (a >= b) continue;
        const int64_t r0 = a * kRowsPerTask, r1 = std::min(w.layout.rows, b * kRowsPerTask);
        if (in.int8) {
            job.kernels.rows.int8_rows(w, in.qa, r0, r1, job.products[i].y);
        } else {
            job.kernels.rows.fp32_rows(w, in.xs, in.x_stride, job.n_tokens, r0, r1,
                                       job.products[i].y);
        }
    }
}

// Static split with stealing: thread i owns the i-th contiguous range of
// tasks and works through it from the front, so it streams one run of
// memory (like a read-bandwidth probe) and its prefetches stay inside its
// range. Dynamic 16-row tasks interleaved the two threads' reads and
// reached only ~26 GB/s of weights when decoding on 2 threads against
// ~36 GB/s static (docs/BENCHMARKS.md, "Where the time goes"). A thread
// that has finished takes single tasks from the back of the others'
// ranges, so one the OS delays does not hold up the matmul. Each output is
// computed by one thread in a fixed order whatever the split (the kernels'
// results do not depend on r0, r1).
void run_split(const SharedInputJob& job, const TaskPlan& plan) {
    // One thread: no parallel region (libgomp allocates and frees a team of
    // one for every region, i.e. per matmul and token).
    if (!plan.parallel || omp_get_max_threads() == 1) {
        if (plan.quantize_in_parallel) {
            for (int t = 0; t < job.n_tokens; ++t) job.kernels.quantize_row(job.x, t, job.input.qa);
        }
        run_tasks(job, 0, plan.n_tasks);
        return;
    }
    const int n_ranges = std::min(omp_get_max_threads(), kMaxRanges);
    TaskRange ranges[kMaxRanges];
    for (int i = 0; i < n_ranges; ++i)
        ranges[i].set(plan.n_tasks * i / n_ranges, plan.n_tasks * (i + 1) / n_ranges);
#pragma omp parallel
    {
        if (plan.quantize_in_parallel) {
#pragma omp for schedule(static)
            for (int t = 0; t < job.n_tokens; ++t) job.kernels.quantize_row(job.x, t, job.input.qa);
        }
        const int me = omp_get_thread_num();
        int64_t a = 0, b = 0;
        if (me < n_ranges) {
            while (ranges[me].claim(true, kOwnerChunk, a, b)) run_tasks(job, a, b);
        }
        for (int k = 1; k < n_ranges; ++k) {
            TaskRange& other = ranges[(me + k) % n_ranges];
            while (other.claim(false, 1, a, b)) run_tasks(job, a, b);
        }
    }
}

void matmul_shared_input(const MatmulProduct* products, int n_products, const float* x,
                         int n_tokens) {
    check_pointers(products, n_products, x);
    const ActiveKernel active = active_kernel();
    if (active.entry->whole_matmul != nullptr) {
        for (int i = 0; i < n_products; ++i)
            active.entry->whole_matmul(*products[i].w, x, n_tokens, products[i].y);
        return;
    }
    const PackedLayout& layout = products[0].w->layout;
    SharedInputJob job{products, n_products, x, n_tokens, row_kernels(active, layout, n_tokens),
                       {}};
    job.input = prepare_input(layout, x, n_tokens, job.kernels.rows.order);
    const TaskPlan plan = plan_tasks(job);
    if (job.input.int8 && !plan.quantize_in_parallel) {
        for (int t = 0; t < n_tokens; ++t) job.kernels.quantize_row(x, t, job.input.qa);
    }
    run_split(job, plan);
}

}  // namespace

void matmul(const MatrixView& w, const float* x, int n_tokens, float* y) {
    if (n_tokens <= 0 || w.layout.rows <= 0) return;
    const MatmulProduct product{&w, y};
    matmul_shared_input(&product, 1, x, n_tokens);
}

void matmul(std::initializer_list<MatmulProduct> products, const float* x, int n_tokens) {
    if (n_tokens <= 0) return;
    constexpr int kMaxProducts = 8;
    MatmulProduct group[kMaxProducts];
    int n = 0;
    // Consecutive products that can share the input go in one call.
    for (const MatmulProduct& p : products) {
        if (p.w == nullptr) throw std::runtime_error("matmul: null weight matrix");
        if (p.w->layout.rows <= 0) continue;
        if (n > 0 && (n == kMaxProducts || !share_input(group[0].w->layout, p.w->layout))) {
            matmul_shared_input(group, n, x, n_tokens);
            n = 0;
        }
        group[n++] = p;
    }
    if (n > 0) matmul_shared_input(group, n, x, n_tokens);
}

}  // namespace nibble

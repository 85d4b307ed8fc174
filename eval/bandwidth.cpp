// Weight bytes per decoded token, and a plain OpenMP memory read probe.
#include "eval/bandwidth.h"

#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

namespace nibble {

uint64_t packed_row_bytes(const PackedLayout& l) {
    if (!is_grouped(l.format)) return uint64_t(l.cols) * (l.format == WeightFormat::f32 ? 4 : 2);
    if (l.format == WeightFormat::q4k || l.format == WeightFormat::q6k ||
        is_ggml_block_format(l.format))
        return uint64_t(l.total_bytes / uint64_t(l.rows));
    // Codes of the row, then one scale (and one minimum for q4a) per group:
    // fp16, or an int8 code when double-quantized (minimums: q4a, q2).
    const uint64_t per_param = l.double_quant ? 1 : 2;
    const uint64_t streams = has_mins(l.format) ? 2 : 1;
    return uint64_t(l.row_code_bytes()) + uint64_t(l.groups_per_row) * per_param * streams;
}

uint64_t decode_weight_bytes(const Model& model) {
    uint64_t total = packed_row_bytes(model.token_embedding.view.layout);
    // Every tensor but the embedding (one row per token) is read whole.
    for (const Tensor* t : model.tensors()) {
        if (t != &model.token_embedding && t != &model.output) total += t->view.layout.total_bytes;
    }
    total += model.output.view.layout.total_bytes;
    return total;
}

BandwidthResult measure_read_bandwidth(uint64_t bytes, int passes, int threads) {
    if (bytes < (uint64_t(1) << 20)) {
        throw std::invalid_argument("bandwidth buffer of " + std::to_string(bytes) +
                                    " bytes is smaller than 1 MiB");
    }
    if (passes < 1) throw std::invalid_argument("bandwidth passes must be >= 1");
    if (threads < 1) throw std::invalid_argument("bandwidth threads must be >= 1");
    // Whole 64-byte lines of 8 uint64 each.
    const int64_t n = int64_t(bytes / 64) * 8;
    // In 2 MiB pages where the kernel allows, like the mapped weights
    // (models/mapped_file.cpp): with 4 KiB pages the probe would also measure
    // page walks that decoding does not pay.
    const size_t buffer_bytes = size_t(n) * sizeof(uint64_t);
    void* mapping =
        mmap(nullptr, buffer_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapping == MAP_FAILED) throw std::bad_alloc();
    const std::unique_ptr<void, std::function<void(void*)>> buffer(
        mapping, [buffer_bytes](void* q) { munmap(q, buffer_bytes); });
    madvise(mapping, buffer_bytes, MADV_HUGEPAGE);
    auto* data = static_cast<uint64_t*>(mapping);
    // Each thread reads its own contiguous slice of whole lines; it also writes it
    // first, so its pages are its own (first touch).
    auto slice = [n](int t, int nt) {
        const int64_t lines = n / 8;
        return std::pair<int64_t, int64_t>{lines * t / nt * 8, lines * (t + 1) / nt * 8};
    };
#pragma omp parallel num_threads(threads)
    {
        const auto [lo, hi] = slice(omp_get_thread_num(), omp_get_num_threads());
        for (int64_t i = lo; i < hi; ++i) data[i] = uint64_t(i) * 0x9E3779B97F4A7C15ull;
    }

    BandwidthResult r;
    r.threads = threads;
    r.bytes = uint64_t(n) * 8;
    r.passes = passes;
    volatile uint64_t sink = 0;  // keeps the sums observable
    double total_gbs = 0.0;
    for (int pass = -1; pass < passes; ++pass) {
        const auto start = std::chrono::steady_clock::now();
        uint64_t sum = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sum)
        {
            // Eight independent sums, one per word of a 64-byte line: no add waits
            // for the previous one, and the compiler turns them into vector adds,
            // so the loop is limited by memory, not by the adder's latency. Lines
            // kPrefetchLines ahead are requested early, as the matmul kernels do
            // with their weights, so that the probe measures what a streaming
            // kernel can reach rather than the hardware prefetcher alone.
            constexpr int64_t kPrefetchWords = 8 * 64;  // 64 lines = 4 KiB ahead
            const auto [lo, hi] = slice(omp_get_thread_num(), omp_get_num_threads());
            uint64_t s[8] = {};
            for (int64_t i = lo; i < hi; i += 8) {
                if (i + kPrefetchWords < hi) __builtin_prefetch(data + i + kPrefetchWords);
                for (int k = 0; k < 8; ++k) s[k] += data[i + k];
            }
            for (const uint64_t part : s) sum += part;
        }
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        sink = sink + sum;
        if (pass < 0) continue;  // warm-up: page tables, thread start
        const double gbs = double(r.bytes) / seconds / 1e9;
        r.best_gbs = std::max(r.best_gbs, gbs);
        total_gbs += gbs;
    }
    r.mean_gbs = total_gbs / passes;
    return r;
}

}  // namespace nibble

// Matmul kernel microbenchmarks: GEMV (1 token) and GEMM (8, 64 tokens) on
// LLaMA-7B sized matrices, for each kernel variant, activation path and thread
// count. Reports bytes/s of packed weights read and tokens/s. "hot" runs reuse
// one matrix (it may stay in the L3 cache); "cold" GEMV runs cycle through
// 512 MB of copies in 2 MiB pages so the weights come from DRAM. The 1024x2048
// matrices fit in L2: their hot GEMV is the kernel's compute rate, not memory's.
// Runs named ".../il4" store the matrix in interleaved row blocks of 4 rows
// (kernels/interleave.h), as version-2 files and repacked GGUF files do.
//
//   bench_kernels --benchmark_filter='q4_g32/4096x4096/tok1/avx2/int8/threads:1/cold'
#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/fp16.h"
#include "kernels/interleave.h"
#include "kernels/matmul.h"
#include "kernels/matmul_dispatch.h"

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace nibble;

namespace {

struct Config {
    WeightFormat format;
    int group;
    int64_t rows, cols;
};

// A packed matrix with random codes and scales (the values do not matter for speed).
std::vector<uint8_t> random_blob(const PackedLayout& l) {
    std::vector<uint8_t> blob(l.total_bytes);
    std::mt19937 rng(42);
    for (auto& b : blob) b = uint8_t(rng());
    const auto fill_fp16 = [&](size_t offset, size_t count) {
        std::uniform_real_distribution<float> u(0.001f, 0.01f);
        for (size_t i = 0; i < count; ++i) {
            const uint16_t h = fp32_to_fp16(u(rng));
            std::memcpy(blob.data() + offset + 2 * i, &h, 2);
        }
    };
    if (is_grouped(l.format)) {
        fill_fp16(l.scales_offset, size_t(l.n_groups()));
        if (l.format == WeightFormat::q4a || l.format == WeightFormat::q2)
            fill_fp16(l.mins_offset, size_t(l.n_groups()));
    } else {
        fill_fp16(0, l.codes_bytes / 2);  // f16 weights (f32 is not benchmarked)
    }
    return blob;
}

// Working set of the cold-cache runs: copies of the matrix used in turn, so
// that every matmul streams its weights from DRAM rather than the L3.
constexpr size_t kColdBytes = size_t(512) << 20;

// The copies, in 2 MiB pages where the kernel gives them (MADV_HUGEPAGE), as
// the model's mapped weights are (models/mapped_file.cpp): with 4 KiB pages a
// stream pays a TLB miss every 4 KiB, which the decoder does not.
class Copies {
  public:
    Copies(const std::vector<uint8_t>& blob, size_t count)
        : stride_((blob.size() + 63) / 64 * 64), bytes_(stride_ * count) {
        void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) throw std::bad_alloc();
        madvise(p, bytes_, MADV_HUGEPAGE);
        base_ = static_cast<uint8_t*>(p);
        for (size_t i = 0; i < count; ++i)
            std::memcpy(base_ + i * stride_, blob.data(), blob.size());
    }
    ~Copies() { munmap(base_, bytes_); }
    Copies(const Copies&) = delete;
    Copies& operator=(const Copies&) = delete;
    const uint8_t* operator[](size_t i) const { return base_ + i * stride_; }

  private:
    size_t stride_, bytes_;
    uint8_t* base_ = nullptr;
};

struct Run {
    Config config;
    MatmulKernel kernel;
    ActivationMode mode;
    int n_tokens;
    int threads;
    bool cold;
    bool interleaved;
};

void run(benchmark::State& state, Run r) {
    const Config& c = r.config;
    const PackedLayout l = with_interleave(make_layout(c.format, c.rows, c.cols, c.group, false),
                                           r.interleaved ? kInterleaveRows : 1);
    const size_t copies = r.cold ? (kColdBytes + l.total_bytes - 1) / l.total_bytes : 1;
    const Copies blobs(random_blob(l), copies);
    std::vector<float> x(size_t(r.n_tokens) * size_t(c.cols));
    std::vector<float> y(size_t(r.n_tokens) * size_t(c.rows));
    std::mt19937 rng(1);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (float& v : x) v = n(rng);
    set_matmul_kernel(r.kernel);
    set_matmul_activation_mode(r.mode);
#ifdef _OPENMP
    omp_set_num_threads(r.threads);
#endif
    size_t next = 0;
    for (auto _ : state) {
        const MatrixView w{l, blobs[next]};
        next = next + 1 == copies ? 0 : next + 1;
        matmul(w, x.data(), r.n_tokens, y.data());
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(l.total_bytes));
    state.counters["tokens/s"] =
        benchmark::Counter(double(state.iterations()) * r.n_tokens, benchmark::Counter::kIsRate);
}

std::string run_name(const Run& r) {
    const Config& c = r.config;
    return std::string(format_name(c.format)) +
           (c.group ? "_g" + std::to_string(c.group) : std::string()) + "/" +
           std::to_string(c.rows) + "x" + std::to_string(c.cols) + "/tok" +
           std::to_string(r.n_tokens) + "/" + matmul_kernel_name(r.kernel) + "/" +
           (r.mode == ActivationMode::int8 && is_grouped(c.format) ? "int8" : "fp32") +
           "/threads:" + std::to_string(r.threads) + (r.cold ? "/cold" : "/hot") +
           (r.interleaved ? "/il4" : "");
}

void register_all() {
    const Config configs[] = {
        // 1.1 MB: stays in a 2 MB L2, so "hot" GEMV shows the kernel's compute rate.
        {WeightFormat::q4, 32, 1024, 2048},
        {WeightFormat::q8, 32, 1024, 2048},
        {WeightFormat::q3, 64, 1024, 2048},
        {WeightFormat::q2, 32, 1024, 2048},
        {WeightFormat::q4, 32, 4096, 4096},
        {WeightFormat::q4, 32, 11008, 4096},
        {WeightFormat::q4, 32, 4096, 11008},
        {WeightFormat::q4, 64, 4096, 4096},
        {WeightFormat::q4, 64, 11008, 4096},
        {WeightFormat::q8, 32, 4096, 4096},
        {WeightFormat::q8, 32, 11008, 4096},
        {WeightFormat::nf4, 64, 4096, 4096},
        {WeightFormat::nf4, 64, 11008, 4096},
        {WeightFormat::q4a, 64, 4096, 4096},
        {WeightFormat::f16, 0, 4096, 4096},
        // TinyLlama-1.1B's feed-forward matrices.
        {WeightFormat::q4, 32, 5632, 2048},
        {WeightFormat::q4, 32, 2048, 5632},
        {WeightFormat::q3, 64, 5632, 2048},
        {WeightFormat::q2, 32, 5632, 2048},
    };
    for (const Config& c : configs) {
        for (MatmulKernel k : supported_matmul_kernels()) {
            if (k == MatmulKernel::reference) continue;
            for (ActivationMode mode : {ActivationMode::int8, ActivationMode::fp32}) {
                if (!is_grouped(c.format) && mode == ActivationMode::fp32) continue;
                for (int n_tokens : {1, 8, 64}) {
                    for (int threads : {1, 2}) {
                        for (bool cold : {false, true}) {
                            if (cold && n_tokens != 1) continue;  // GEMM is compute bound
                            for (bool il : {false, true}) {
                                const PackedLayout l =
                                    make_layout(c.format, c.rows, c.cols, c.group, false);
                                if (il && !can_interleave(l)) continue;
                                const Run r{c, k, mode, n_tokens, threads, cold, il};
                                benchmark::RegisterBenchmark(run_name(r).c_str(), run, r)
                                    ->Unit(benchmark::kMillisecond)
                                    ->UseRealTime();
                            }
                        }
                    }
                }
            }
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    register_all();
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

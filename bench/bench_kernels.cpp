// Matmul kernel microbenchmarks: GEMV (1 token) and GEMM (8, 64 tokens) on
// LLaMA-7B sized matrices, for each kernel variant, activation path and thread
// count. Reports bytes/s of packed weights read and tokens/s.
//
//   bench_kernels --benchmark_filter='q4_g32/4096x4096/tok1/avx2'
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/fp16.h"
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
        if (l.format == WeightFormat::q4a) fill_fp16(l.mins_offset, size_t(l.n_groups()));
    } else {
        fill_fp16(0, l.codes_bytes / 2);  // f16 weights (f32 is not benchmarked)
    }
    return blob;
}

void run(benchmark::State& state, Config c, MatmulKernel kernel, ActivationMode mode, int n_tokens,
         int threads) {
    const PackedLayout l = make_layout(c.format, c.rows, c.cols, c.group, false);
    const std::vector<uint8_t> blob = random_blob(l);
    const MatrixView w{l, blob.data()};
    std::vector<float> x(size_t(n_tokens) * size_t(c.cols)), y(size_t(n_tokens) * size_t(c.rows));
    std::mt19937 rng(1);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (float& v : x) v = n(rng);
    set_matmul_kernel(kernel);
    set_matmul_activation_mode(mode);
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    for (auto _ : state) {
        matmul(w, x.data(), n_tokens, y.data());
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(l.total_bytes));
    state.counters["tokens/s"] =
        benchmark::Counter(double(state.iterations()) * n_tokens, benchmark::Counter::kIsRate);
}

void register_all() {
    const Config configs[] = {
        {WeightFormat::q4, 32, 4096, 4096},   {WeightFormat::q4, 32, 11008, 4096},
        {WeightFormat::q4, 32, 4096, 11008},  {WeightFormat::q4, 64, 4096, 4096},
        {WeightFormat::q4, 64, 11008, 4096},  {WeightFormat::q8, 32, 4096, 4096},
        {WeightFormat::q8, 32, 11008, 4096},  {WeightFormat::nf4, 64, 4096, 4096},
        {WeightFormat::nf4, 64, 11008, 4096}, {WeightFormat::q4a, 64, 4096, 4096},
        {WeightFormat::f16, 0, 4096, 4096},
    };
    for (const Config& c : configs) {
        for (MatmulKernel k : supported_matmul_kernels()) {
            if (k == MatmulKernel::reference) continue;
            for (ActivationMode mode : {ActivationMode::int8, ActivationMode::fp32}) {
                if (!is_grouped(c.format) && mode == ActivationMode::fp32) continue;
                for (int n_tokens : {1, 8, 64}) {
                    for (int threads : {1, 2}) {
                        const std::string name =
                            std::string(format_name(c.format)) +
                            (c.group ? "_g" + std::to_string(c.group) : std::string()) + "/" +
                            std::to_string(c.rows) + "x" + std::to_string(c.cols) + "/tok" +
                            std::to_string(n_tokens) + "/" + matmul_kernel_name(k) + "/" +
                            (mode == ActivationMode::int8 ? "int8" : "fp32") +
                            "/threads:" + std::to_string(threads);
                        benchmark::RegisterBenchmark(name.c_str(), run, c, k, mode, n_tokens,
                                                     threads)
                            ->Unit(benchmark::kMillisecond)
                            ->UseRealTime();
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

// nibble bench --parallel: aggregate throughput of B sequences decoded together
// (llama-batched-bench style).
#pragma once
#include <string>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/model.h"

namespace nibble::app {

struct ParallelBenchOptions {
    std::vector<int> parallel;  // B values
    int n_prompt = 32;          // prompt tokens per sequence (PP)
    int n_gen = 64;             // decoded tokens per sequence (TG)
    int repetitions = 1;
    int batch_size = 512;  // tokens per forward pass while reading the prompts
    int threads = 0;
    KvType kv = KvType::f16;
    bool json = false;
    uint64_t seed = 42;
};

// Prints one row per B: PP, TG, B, N_KV, prompt time and t/s, decode time and
// t/s (B * TG / time), total time and t/s.
void run_parallel_bench(const Model& model, const std::string& path,
                        const ParallelBenchOptions& options);

}  // namespace nibble::app

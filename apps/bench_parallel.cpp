// Batched decoding benchmark: B sequences each read a PP-token prompt (all
// prompts together, in batches of --batch-size tokens), then decode TG tokens
// in lockstep, one forward pass of B tokens per step: the weights are read once
// per step for all B sequences.
#include "apps/bench_parallel.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "apps/commands.h"
#include "apps/validate.h"
#include "engine/forward.h"

namespace nibble::app {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

struct Timing {
    double prompt = 0.0, decode = 0.0;
};

Timing run_once(InferenceState& state, int n_seq, int n_prompt, int n_gen,
                const std::vector<int32_t>& ids, std::vector<BatchToken>& batch) {
    const int max_batch = state.options().max_batch;
    Timing t;
    // Prompts: every sequence's tokens, sequence after sequence, in full batches.
    auto start = std::chrono::steady_clock::now();
    int n = 0;
    for (int s = 0; s < n_seq; ++s) {
        for (int pos = 0; pos < n_prompt; ++pos) {
            batch[size_t(n++)] = {ids[size_t(s * n_prompt + pos) % ids.size()], pos, s,
                                  pos + 1 == n_prompt};
            if (n == max_batch) {
                state.forward(std::span<const BatchToken>(batch.data(), size_t(n)));
                n = 0;
            }
        }
    }
    if (n > 0) state.forward(std::span<const BatchToken>(batch.data(), size_t(n)));
    t.prompt = seconds_since(start);
    // Decoding: one token of every sequence per forward pass, logits for all.
    start = std::chrono::steady_clock::now();
    for (int i = 0; i < n_gen; ++i) {
        for (int s = 0; s < n_seq; ++s) {
            batch[size_t(s)] = {ids[size_t(i * n_seq + s) % ids.size()], n_prompt + i, s, true};
        }
        state.forward(std::span<const BatchToken>(batch.data(), size_t(n_seq)));
    }
    t.decode = seconds_since(start);
    return t;
}

}  // namespace

void run_parallel_bench(const Model& model, const std::string& path,
                        const ParallelBenchOptions& o) {
    const int max_b = *std::max_element(o.parallel.begin(), o.parallel.end());
    const int threads = set_threads(o.threads);
    RuntimeOptions ro;
    ro.context = o.n_prompt + o.n_gen;
    ro.n_sequences = max_b;
    ro.max_batch = std::max(o.batch_size, max_b);
    ro.kv_type = o.kv;
    // Checked before allocating: B sequences of -p + -n positions each.
    check_state_memory(model, ro, "--parallel or --n-prompt/--n-gen", "--batch-size");
    InferenceState state(model, ro);
    std::vector<BatchToken> batch(size_t(ro.max_batch));
    std::mt19937_64 rng(o.seed);
    std::uniform_int_distribution<int32_t> pick(0, model.config.vocab_size - 1);
    std::vector<int32_t> ids(4096);
    for (int32_t& id : ids) id = pick(rng);

    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    if (!o.json) {
        std::printf(
            "| PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |\n");
        std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    }
    run_once(state, 1, std::min(o.n_prompt, 8), 2, ids, batch);  // warm-up
    for (int b : o.parallel) {
        Timing sum;
        for (int r = 0; r < o.repetitions; ++r) {
            const Timing t = run_once(state, b, o.n_prompt, o.n_gen, ids, batch);
            sum.prompt += t.prompt;
            sum.decode += t.decode;
        }
        const double t_pp = sum.prompt / o.repetitions, t_tg = sum.decode / o.repetitions;
        const double s_pp = double(b) * o.n_prompt / t_pp, s_tg = double(b) * o.n_gen / t_tg;
        const int n_kv = b * (o.n_prompt + o.n_gen);
        const double s_all = double(n_kv) / (t_pp + t_tg);
        if (o.json) {
            nlohmann::ordered_json row;
            row["model_filename"] = path;
            row["n_threads"] = threads;
            row["type_kv"] = kv_type_name(o.kv);
            row["pp"] = o.n_prompt;
            row["tg"] = o.n_gen;
            row["pl"] = b;
            row["n_kv"] = n_kv;
            row["t_pp"] = t_pp;
            row["speed_pp"] = s_pp;
            row["t_tg"] = t_tg;
            row["speed_tg"] = s_tg;
            row["t"] = t_pp + t_tg;
            row["speed"] = s_all;
            rows.push_back(row);
        } else {
            std::printf("| %d | %d | %d | %d | %.3f | %.2f | %.3f | %.2f | %.3f | %.2f |\n",
                        o.n_prompt, o.n_gen, b, n_kv, t_pp, s_pp, t_tg, s_tg, t_pp + t_tg, s_all);
            std::fflush(stdout);
        }
    }
    if (o.json) {
        std::printf("%s\n", rows.dump(2).c_str());
    } else {
        std::printf(
            "\nS_TG: aggregate decoding tokens/s of B sequences; %d thread%s, KV cache %s\n",
            threads, threads == 1 ? "" : "s", kv_type_name(o.kv));
    }
}

}  // namespace nibble::app

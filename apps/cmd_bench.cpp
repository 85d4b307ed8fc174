// nibble bench: prompt processing (ppN) and decoding (tgN) speed, llama-bench
// style, with the weight bytes each decoded token reads and, with --roofline,
// this machine's memory read bandwidth as the bound on decoding speed.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cxxopts.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "apps/bench_parallel.h"
#include "apps/commands.h"
#include "apps/validate.h"
#include "engine/bandwidth.h"
#include "engine/forward.h"
#include "engine/input_file.h"
#include "engine/memory_budget.h"
#include "models/loader.h"

namespace nibble::app {

namespace {

// "1,2,4" -> {1, 2, 4}; every entry an integer >= minimum.
std::vector<int> parse_int_list(const std::string& option, const std::string& text, int minimum) {
    std::vector<int> out;
    size_t at = 0;
    while (true) {
        const size_t comma = text.find(',', at);
        const std::string item =
            text.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
        size_t used = 0;
        int value = 0;
        try {
            value = std::stoi(item, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (item.empty() || used != item.size()) {
            throw UsageError(option + ": '" + text + "' is not a comma-separated list of integers");
        }
        if (value < minimum) {
            throw UsageError(option + ": " + std::to_string(value) + " is less than " +
                             std::to_string(minimum));
        }
        out.push_back(value);
        if (comma == std::string::npos) return out;
        at = comma + 1;
    }
}

struct Stats {
    double mean = 0.0, sd = 0.0;
};

// Mean and sample standard deviation (0 for a single sample).
Stats stats(const std::vector<double>& x) {
    Stats s;
    for (double v : x) s.mean += v;
    s.mean /= double(x.size());
    if (x.size() > 1) {
        double ss = 0.0;
        for (double v : x) ss += (v - s.mean) * (v - s.mean);
        s.sd = std::sqrt(ss / double(x.size() - 1));
    }
    return s;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// One ppN run: N tokens from position 0 in batches, logits of the last only.
double time_prompt(InferenceState& state, const std::vector<int32_t>& ids, int n,
                   std::vector<BatchToken>& batch) {
    const int max_batch = state.options().max_batch;
    const auto start = std::chrono::steady_clock::now();
    for (int at = 0; at < n; at += max_batch) {
        const int count = std::min(max_batch, n - at);
        for (int i = 0; i < count; ++i) {
            const int pos = at + i;
            batch[size_t(i)] = {ids[size_t(pos)], pos, 0, pos + 1 == n};
        }
        state.forward(std::span<const BatchToken>(batch.data(), size_t(count)));
    }
    return seconds_since(start);
}

// One tgN run: N single-token forward passes from position 0, with logits.
double time_decode(InferenceState& state, const std::vector<int32_t>& ids, int n) {
    const auto start = std::chrono::steady_clock::now();
    for (int pos = 0; pos < n; ++pos) {
        const BatchToken t{ids[size_t(pos)], pos, 0, true};
        state.forward(std::span<const BatchToken>(&t, 1));
    }
    return seconds_since(start);
}

// "3.56 GiB" or "12.3 MiB".
std::string size_text(uint64_t bytes) {
    char text[32];
    const double gib = double(bytes) / double(1ull << 30);
    if (gib >= 1.0) {
        std::snprintf(text, sizeof text, "%.2f GiB", gib);
    } else {
        std::snprintf(text, sizeof text, "%.2f MiB", double(bytes) / double(1ull << 20));
    }
    return text;
}

std::string model_label(const Model& m) {
    // "llama 6.7B q4": architecture, parameters, format of the linear layers.
    char params[32];
    const double p = double(m.parameter_count());
    if (p >= 1e9) {
        std::snprintf(params, sizeof params, "%.1fB", p / 1e9);
    } else {
        std::snprintf(params, sizeof params, p >= 1e7 ? "%.0fM" : "%.2fM", p / 1e6);
    }
    const char* format = m.layers.empty() ? "?" : format_name(m.layers[0].wq.format());
    return m.config.architecture + " " + params + " " + format;
}

}  // namespace

int bench_command(int argc, char** argv) {
    cxxopts::Options options(argv[0], "Measure prompt processing and decoding speed");
    options.add_options()("m,model", "model file", cxxopts::value<std::string>())(
        "p,n-prompt", "prompt lengths (comma list)",
        cxxopts::value<std::string>()->default_value("256"))(
        "n,n-gen", "decoded tokens (comma list)",
        cxxopts::value<std::string>()->default_value("32"))(
        "r,repetitions", "timed repetitions of each test",
        cxxopts::value<int>()->default_value("3"))(
        "t,threads", "thread counts (comma list)",
        cxxopts::value<std::string>()->default_value("0"))(
        "b,batch-size", "prompt tokens per forward pass",
        cxxopts::value<int>()->default_value("512"))(
        "kv", "KV cache type: f32, f16, int8", cxxopts::value<std::string>()->default_value("f16"))(
        "o,output", "output: md or json", cxxopts::value<std::string>()->default_value("md"))(
        "roofline", "measure memory read bandwidth and compare decoding with it")(
        "bw-mib", "roofline buffer size in MiB", cxxopts::value<int>()->default_value("1024"))(
        "s,seed", "seed of the random token ids", cxxopts::value<uint64_t>()->default_value("42"))(
        "parallel",
        "aggregate decoding of B sequences at once (comma list of B; uses the first -p and -n)",
        cxxopts::value<std::string>())("h,help", "show this help");
    const auto args = options.parse(argc, argv);
    if (args.count("help")) {
        std::fputs(options.help().c_str(), stdout);
        return 0;
    }
    reject_extra_arguments(args);
    if (!args.count("model")) throw UsageError("missing --model (-m)");
    const std::vector<int> prompts =
        parse_int_list("--n-prompt", args["n-prompt"].as<std::string>(), 1);
    const std::vector<int> gens = parse_int_list("--n-gen", args["n-gen"].as<std::string>(), 1);
    std::vector<int> threads = parse_int_list("--threads", args["threads"].as<std::string>(), 0);
    const int reps = args["repetitions"].as<int>();
    const int batch_size = batch_size_option(args);
    const std::string output = args["output"].as<std::string>();
    const KvType kv = kv_option(args);
    const int bw_mib = args["bw-mib"].as<int>();
    const bool roofline = args.count("roofline") > 0;
    if (reps < 1) throw UsageError("--repetitions must be >= 1");
    if (output != "md" && output != "json") throw UsageError("--output must be md or json");
    if (bw_mib < 16) throw UsageError("--bw-mib must be >= 16");
    const auto available = available_memory_bytes();
    if (roofline && available && (uint64_t(bw_mib) << 20) > *available / 2) {
        throw UsageError("--bw-mib " + std::to_string(bw_mib) + ": a buffer of " +
                         byte_size_text(uint64_t(bw_mib) << 20) + " is more than half of the " +
                         byte_size_text(*available) + " of memory available");
    }
    // 0: physical cores; more than the CPUs available: capped (with a message).
    for (int& t : threads) t = set_threads(t);
    if (args.count("parallel")) {
        ParallelBenchOptions p;
        p.parallel = parse_int_list("--parallel", args["parallel"].as<std::string>(), 1);
        if (*std::max_element(p.parallel.begin(), p.parallel.end()) > 256) {
            throw UsageError("--parallel: at most 256 sequences");
        }
        p.n_prompt = prompts[0];
        p.n_gen = gens[0];
        p.repetitions = reps;
        p.batch_size = batch_size;
        p.threads = threads[0];
        p.kv = kv;
        p.json = output == "json";
        p.seed = args["seed"].as<uint64_t>();
        const std::string path = args["model"].as<std::string>();
        run_parallel_bench(load_model(path), path, p);
        return 0;
    }

    const std::string path = args["model"].as<std::string>();
    const Model model = load_model_reporting(path);
    const int max_prompt = *std::max_element(prompts.begin(), prompts.end());
    const int max_gen = *std::max_element(gens.begin(), gens.end());
    RuntimeOptions ro;
    ro.context = std::max(max_prompt, max_gen);
    ro.max_batch = std::min(batch_size, max_prompt);
    ro.kv_type = kv;
    set_threads(*std::max_element(threads.begin(), threads.end()));
    check_state_memory(model, ro, "--n-prompt/--n-gen", "--batch-size");
    InferenceState state(model, ro);
    std::vector<BatchToken> batch(size_t(ro.max_batch));
    // Random token ids (llama-bench does the same): the speed does not depend on them.
    std::mt19937_64 rng(args["seed"].as<uint64_t>());
    std::uniform_int_distribution<int32_t> pick(0, model.config.vocab_size - 1);
    std::vector<int32_t> ids(size_t(ro.context));
    for (int32_t& id : ids) id = pick(rng);

    const uint64_t model_bytes = model.weight_bytes();
    const int64_t n_params = model.parameter_count();
    const uint64_t token_bytes = decode_weight_bytes(model);
    const std::string label = model_label(model);
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    std::string table = "| model | size | params | threads | test | t/s | GB/s |" +
                        std::string(roofline ? " roofline |" : "") +
                        "\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |" +
                        std::string(roofline ? " ---: |" : "") + "\n";
    std::string notes;
    char line[512];
    for (int nt : threads) {
        set_threads(nt);
        BandwidthResult bw;
        if (roofline) {
            bw = measure_read_bandwidth(uint64_t(bw_mib) << 20, 10, nt);
            std::snprintf(line, sizeof line,
                          "memory read bandwidth, %d thread%s: %.2f GB/s (best of %d passes over "
                          "%d MiB; mean %.2f) -> decode roofline %.2f t/s at %.1f MB/token\n",
                          nt, nt == 1 ? "" : "s", bw.best_gbs, bw.passes, bw_mib, bw.mean_gbs,
                          bw.best_gbs * 1e9 / double(token_bytes), double(token_bytes) / 1e6);
            notes += line;
        }
        struct Test {
            bool prompt;
            int n;
        };
        std::vector<Test> tests;
        for (int p : prompts) tests.push_back({true, p});
        for (int g : gens) tests.push_back({false, g});
        for (const Test& test : tests) {
            auto run = [&] {
                return test.prompt ? time_prompt(state, ids, test.n, batch)
                                   : time_decode(state, ids, test.n);
            };
            run();  // warm-up: page faults of the mapping, caches, thread pool
            std::vector<double> ts;
            for (int r = 0; r < reps; ++r) ts.push_back(double(test.n) / run());
            const Stats s = stats(ts);
            const std::string name = (test.prompt ? "pp" : "tg") + std::to_string(test.n);
            nlohmann::ordered_json row;
            row["model_filename"] = path;
            row["model_type"] = label;
            row["model_size"] = model_bytes;
            row["model_n_params"] = n_params;
            row["n_batch"] = ro.max_batch;
            row["n_threads"] = nt;
            row["type_kv"] = kv_type_name(kv);
            row["test"] = name;
            row["n_prompt"] = test.prompt ? test.n : 0;
            row["n_gen"] = test.prompt ? 0 : test.n;
            row["avg_ts"] = s.mean;
            row["stddev_ts"] = s.sd;
            row["samples_ts"] = ts;
            row["weight_bytes_per_token"] = token_bytes;
            // Decoding reads every weight once per token: achieved weight GB/s.
            const double gbs = test.prompt ? 0.0 : s.mean * double(token_bytes) / 1e9;
            if (!test.prompt) row["weight_gbs"] = gbs;
            if (roofline) {
                row["bandwidth_gbs"] = bw.best_gbs;
                if (!test.prompt) row["roofline_fraction"] = gbs / bw.best_gbs;
            }
            rows.push_back(row);
            char gbs_text[32] = "";
            char roof_text[32] = "";
            if (!test.prompt) std::snprintf(gbs_text, sizeof gbs_text, "%.2f", gbs);
            if (roofline && !test.prompt) {
                std::snprintf(roof_text, sizeof roof_text, "%.1f%%", 100.0 * gbs / bw.best_gbs);
            }
            std::snprintf(line, sizeof line, "| %s | %s | %.2f %s | %d | %s | %.2f ± %.2f | %s |",
                          label.c_str(), size_text(model_bytes).c_str(),
                          n_params >= 1e9 ? double(n_params) / 1e9 : double(n_params) / 1e6,
                          n_params >= 1e9 ? "B" : "M", nt, name.c_str(), s.mean, s.sd, gbs_text);
            table += line;
            if (roofline) table += std::string(" ") + roof_text + " |";
            table += "\n";
        }
    }
    if (output == "json") {
        std::printf("%s\n", rows.dump(2).c_str());
    } else {
        std::printf("%s", table.c_str());
        std::printf(
            "\nweight bytes per decoded token: %.1f MB (every linear layer, the output "
            "layer, norms, one embedding row); KV cache %s, batch %d\n",
            double(token_bytes) / 1e6, kv_type_name(kv), ro.max_batch);
        std::printf("%s", notes.c_str());
    }
    return 0;
}

}  // namespace nibble::app

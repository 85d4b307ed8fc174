// nibble bench: prompt processing (ppN) and decoding (tgN) speed, llama-bench
// style, with the weight bytes each decoded token reads and, with --roofline,
// this machine's memory read bandwidth as the bound on decoding speed.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cxxopts.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "apps/bench_parallel.h"
#include "apps/commands.h"
#include "apps/memory_budget.h"
#include "apps/validate.h"
#include "engine/forward.h"
#include "eval/bandwidth.h"
#include "models/input_file.h"
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

struct BenchOptions {
    std::string model_path;
    LoadOptions load;  // --repack / --no-repack
    std::vector<int> prompts, gens, threads;
    int repetitions = 3;
    int batch_size = 512;
    std::string output;  // md or json
    KvType kv = KvType::f16;
    int bw_mib = 1024;
    bool roofline = false;
    uint64_t seed = 42;
    std::vector<int> parallel;  // --parallel: B values (empty: the ppN/tgN tests)
};

// The shared model options bench takes: no tokenizer (the token ids are
// random), no context size (its tests set it), its own list of thread counts.
const ModelOptionSpec kBenchModelOptions{.default_batch = 512,
                                         .batch_help = "prompt tokens per forward pass",
                                         .tokenizer_and_context = false,
                                         .threads = false};

// Parses and validates the options; nullopt after printing --help.
std::optional<BenchOptions> parse_bench_options(int argc, char** argv) {
    cxxopts::Options options(argv[0], "Measure prompt processing and decoding speed");
    add_model_options(options, kBenchModelOptions);
    // clang-format off
    options.add_options()
        ("p,n-prompt", "prompt lengths (comma list)", cxxopts::value<std::string>()->default_value("256"))
        ("n,n-gen", "decoded tokens (comma list)", cxxopts::value<std::string>()->default_value("32"))
        ("r,repetitions", "timed repetitions of each test", cxxopts::value<int>()->default_value("3"))
        ("t,threads", "thread counts (comma list)", cxxopts::value<std::string>()->default_value("0"))
        ("o,output", "output: md or json", cxxopts::value<std::string>()->default_value("md"))
        ("roofline", "measure memory read bandwidth and compare decoding with it")
        ("bw-mib", "roofline buffer size in MiB", cxxopts::value<int>()->default_value("1024"))
        ("s,seed", "seed of the random token ids", cxxopts::value<uint64_t>()->default_value("42"))
        ("parallel", "aggregate decoding of B sequences at once (comma list of B; uses the first -p and -n)", cxxopts::value<std::string>())
        ("h,help", "show this help");
    // clang-format on
    const auto parsed = parse_command_line(options, argc, argv);
    if (!parsed) return std::nullopt;
    const cxxopts::ParseResult& args = *parsed;
    const ModelOptions mo = model_options(args, kBenchModelOptions);
    BenchOptions o;
    o.model_path = mo.model_path;
    o.load = load_options(mo);
    o.prompts = parse_int_list("--n-prompt", args["n-prompt"].as<std::string>(), 1);
    o.gens = parse_int_list("--n-gen", args["n-gen"].as<std::string>(), 1);
    o.threads = parse_int_list("--threads", args["threads"].as<std::string>(), 0);
    o.repetitions = args["repetitions"].as<int>();
    o.batch_size = mo.batch;
    o.output = args["output"].as<std::string>();
    o.kv = mo.kv;
    o.bw_mib = args["bw-mib"].as<int>();
    o.roofline = args.count("roofline") > 0;
    o.seed = args["seed"].as<uint64_t>();
    if (o.repetitions < 1) throw UsageError("--repetitions must be >= 1");
    if (o.output != "md" && o.output != "json") throw UsageError("--output must be md or json");
    if (o.bw_mib < 16) throw UsageError("--bw-mib must be >= 16");
    const auto available = available_memory_bytes();
    const uint64_t bw_bytes = uint64_t(o.bw_mib) << 20;
    if (o.roofline && available && bw_bytes > *available / 2) {
        throw UsageError("--bw-mib " + std::to_string(o.bw_mib) + ": a buffer of " +
                         byte_size_text(bw_bytes) + " is more than half of the " +
                         byte_size_text(*available) + " of memory available");
    }
    // 0: physical cores; more than the CPUs available: capped (with a message).
    for (int& t : o.threads) t = set_threads(t);
    if (args.count("parallel")) {
        o.parallel = parse_int_list("--parallel", args["parallel"].as<std::string>(), 1);
        if (*std::max_element(o.parallel.begin(), o.parallel.end()) > 256) {
            throw UsageError("--parallel: at most 256 sequences");
        }
    }
    return o;
}

struct BenchTest {
    bool prompt;  // ppN, else tgN
    int n;
    std::string name() const { return (prompt ? "pp" : "tg") + std::to_string(n); }
};

// One test's speed at one thread count.
struct BenchResult {
    BenchTest test;
    int threads = 0;
    std::vector<double> samples;  // tokens/s of each repetition
    Stats ts;
    double weight_gbs = 0.0;  // tg only: weights read per second
};

// The model, its inference state and the token ids every test feeds.
class BenchRun {
  public:
    explicit BenchRun(const BenchOptions& o)
        : options_(o),
          model_(load_model_reporting(o.model_path, o.load)),
          state_(model_, runtime_options(o, model_)) {
        batch_.resize(size_t(state_.options().max_batch));
        // Random token ids (llama-bench does the same): the speed does not depend on them.
        std::mt19937_64 rng(o.seed);
        std::uniform_int_distribution<int32_t> pick(0, model_.config.vocab_size - 1);
        ids_.resize(size_t(state_.options().context));
        for (int32_t& id : ids_) id = pick(rng);
        token_bytes_ = decode_weight_bytes(model_);
    }

    const Model& model() const { return model_; }
    int max_batch() const { return state_.options().max_batch; }
    uint64_t token_bytes() const { return token_bytes_; }

    // A warm-up run (page faults of the mapping, caches, thread pool), then the timed ones.
    BenchResult measure(const BenchTest& test, int threads) {
        auto run = [&] {
            return test.prompt ? time_prompt(state_, ids_, test.n, batch_)
                               : time_decode(state_, ids_, test.n);
        };
        run();
        BenchResult r{test, threads, {}, {}, 0.0};
        for (int i = 0; i < options_.repetitions; ++i) r.samples.push_back(double(test.n) / run());
        r.ts = stats(r.samples);
        // Decoding reads every weight once per token: achieved weight GB/s.
        if (!test.prompt) r.weight_gbs = r.ts.mean * double(token_bytes_) / 1e9;
        return r;
    }

  private:
    // Room for the longest test; the state is sized for the most threads asked
    // for, and must fit in memory.
    static RuntimeOptions runtime_options(const BenchOptions& o, const Model& model) {
        const int max_prompt = *std::max_element(o.prompts.begin(), o.prompts.end());
        const int max_gen = *std::max_element(o.gens.begin(), o.gens.end());
        RuntimeOptions ro;
        ro.context = std::max(max_prompt, max_gen);
        ro.max_batch = std::min(o.batch_size, max_prompt);
        ro.kv_type = o.kv;
        set_threads(*std::max_element(o.threads.begin(), o.threads.end()));
        check_state_memory(model, ro, "--n-prompt/--n-gen", "--batch-size");
        return ro;
    }

    const BenchOptions& options_;
    Model model_;
    InferenceState state_;
    std::vector<BatchToken> batch_;
    std::vector<int32_t> ids_;
    uint64_t token_bytes_ = 0;
};

// The results as llama-bench's JSON rows and as a markdown table.
class BenchReport {
  public:
    BenchReport(const BenchOptions& o, const BenchRun& run)
        : options_(o),
          label_(model_label(run.model())),
          model_bytes_(run.model().weight_bytes()),
          n_params_(run.model().parameter_count()),
          token_bytes_(run.token_bytes()),
          max_batch_(run.max_batch()) {}

    // The memory bandwidth measured at `threads`, and the decode speed it bounds.
    void add_bandwidth(int threads, const BandwidthResult& bw) {
        bandwidth_gbs_ = bw.best_gbs;
        char line[512];
        std::snprintf(line, sizeof line,
                      "memory read bandwidth, %d thread%s: %.2f GB/s (best of %d passes over "
                      "%d MiB; mean %.2f) -> decode roofline %.2f t/s at %.1f MB/token\n",
                      threads, threads == 1 ? "" : "s", bw.best_gbs, bw.passes, options_.bw_mib,
                      bw.mean_gbs, bw.best_gbs * 1e9 / double(token_bytes_),
                      double(token_bytes_) / 1e6);
        notes_ += line;
    }

    void add(const BenchResult& r) {
        rows_.push_back(json_row(r));
        table_ += table_row(r);
    }

    void print() const {
        if (options_.output == "json") {
            std::printf("%s\n", rows_.dump(2).c_str());
            return;
        }
        const bool roof = options_.roofline;
        std::printf("| model | size | params | threads | test | t/s | GB/s |%s\n",
                    roof ? " roofline |" : "");
        std::printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: |%s\n", roof ? " ---: |" : "");
        std::printf("%s", table_.c_str());
        std::printf(
            "\nweight bytes per decoded token: %.1f MB (every linear layer, the output "
            "layer, norms, one embedding row); KV cache %s, batch %d\n",
            double(token_bytes_) / 1e6, kv_type_name(options_.kv), max_batch_);
        std::printf("%s", notes_.c_str());
    }

  private:
    nlohmann::ordered_json json_row(const BenchResult& r) const {
        nlohmann::ordered_json row;
        row["model_filename"] = options_.model_path;
        row["model_type"] = label_;
        row["model_size"] = model_bytes_;
        row["model_n_params"] = n_params_;
        row["n_batch"] = max_batch_;
        row["n_threads"] = r.threads;
        row["type_kv"] = kv_type_name(options_.kv);
        row["test"] = r.test.name();
        row["n_prompt"] = r.test.prompt ? r.test.n : 0;
        row["n_gen"] = r.test.prompt ? 0 : r.test.n;
        row["avg_ts"] = r.ts.mean;
        row["stddev_ts"] = r.ts.sd;
        row["samples_ts"] = r.samples;
        row["weight_bytes_per_token"] = token_bytes_;
        if (!r.test.prompt) row["weight_gbs"] = r.weight_gbs;
        if (options_.roofline) {
            row["bandwidth_gbs"] = bandwidth_gbs_;
            if (!r.test.prompt) row["roofline_fraction"] = r.weight_gbs / bandwidth_gbs_;
        }
        return row;
    }

    std::string table_row(const BenchResult& r) const {
        char gbs_text[32] = "";
        char roof_text[32] = "";
        if (!r.test.prompt) std::snprintf(gbs_text, sizeof gbs_text, "%.2f", r.weight_gbs);
        if (options_.roofline && !r.test.prompt) {
            std::snprintf(roof_text, sizeof roof_text, "%.1f%%",
                          100.0 * r.weight_gbs / bandwidth_gbs_);
        }
        const bool billions = n_params_ >= 1e9;
        char line[512];
        std::snprintf(line, sizeof line, "| %s | %s | %.2f %s | %d | %s | %.2f ± %.2f | %s |",
                      label_.c_str(), size_text(model_bytes_).c_str(),
                      billions ? double(n_params_) / 1e9 : double(n_params_) / 1e6,
                      billions ? "B" : "M", r.threads, r.test.name().c_str(), r.ts.mean, r.ts.sd,
                      gbs_text);
        std::string text = line;
        if (options_.roofline) text += std::string(" ") + roof_text + " |";
        return text + "\n";
    }

    const BenchOptions& options_;
    std::string label_;
    uint64_t model_bytes_;
    int64_t n_params_;
    uint64_t token_bytes_;
    int max_batch_;
    double bandwidth_gbs_ = 0.0;  // of the thread count being measured
    nlohmann::ordered_json rows_ = nlohmann::ordered_json::array();
    std::string table_, notes_;
};

// bench --parallel: the first -p and -n for every B (apps/bench_parallel.h).
void run_parallel(const BenchOptions& o) {
    ParallelBenchOptions p;
    p.parallel = o.parallel;
    p.n_prompt = o.prompts[0];
    p.n_gen = o.gens[0];
    p.repetitions = o.repetitions;
    p.batch_size = o.batch_size;
    p.threads = o.threads[0];
    p.kv = o.kv;
    p.json = o.output == "json";
    p.seed = o.seed;
    run_parallel_bench(load_model_reporting(o.model_path, o.load), o.model_path, p);
}

}  // namespace

int bench_command(int argc, char** argv) {
    const std::optional<BenchOptions> options = parse_bench_options(argc, argv);
    if (!options) return 0;
    if (!options->parallel.empty()) {
        run_parallel(*options);
        return 0;
    }
    BenchRun run(*options);
    BenchReport report(*options, run);
    std::vector<BenchTest> tests;
    for (int p : options->prompts) tests.push_back({true, p});
    for (int g : options->gens) tests.push_back({false, g});
    for (int threads : options->threads) {
        set_threads(threads);
        if (options->roofline) {
            report.add_bandwidth(
                threads, measure_read_bandwidth(uint64_t(options->bw_mib) << 20, 10, threads));
        }
        for (const BenchTest& test : tests) report.add(run.measure(test, threads));
    }
    report.print();
    return 0;
}

}  // namespace nibble::app

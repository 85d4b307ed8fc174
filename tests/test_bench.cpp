// nibble bench: llama-bench style JSON and markdown output, the weight bytes a
// decoded token reads, the memory bandwidth probe, and clean option errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/bandwidth.h"
#include "models/loader.h"
#include "test_data.h"

using namespace nibble;
using nibble::test::data_path;

namespace {

using nibble::test::Capture;
using nibble::test::CliOutcome;

CliOutcome run_nibble(const std::string& args, bool want_stderr = false) {
    return nibble::test::run_nibble(args,
                                    want_stderr ? Capture::stderr_only : Capture::stdout_only);
}

const std::string kModel = data_path("stories260K.bin");

}  // namespace

TEST_CASE("bench -o json: one row per test with llama-bench's keys") {
    const CliOutcome o = run_nibble("bench -m " + kModel + " -p 16 -n 4 -r 2 -t 1 -o json");
    INFO(o.text);
    REQUIRE(o.exit_code == 0);
    const auto rows = nlohmann::json::parse(o.text);
    REQUIRE(rows.is_array());
    REQUIRE(rows.size() == 2);
    const Model m = load_model(kModel);
    // stories260K (f32, shared classifier): 5 layers of dim 64, hidden 172,
    // 4 kv heads of 8 (kv_dim 32). Per token: every layer's matrices and norms,
    // the final norm, the 512 x 64 classifier and one 64-float embedding row.
    const int64_t dim = 64, hidden = 172, kv = 32, vocab = 512, layers = 5;
    const int64_t per_layer = 2 * dim * dim + 2 * kv * dim + 3 * dim * hidden + 2 * dim;
    const uint64_t expected_token_bytes =
        uint64_t(4 * (layers * per_layer + dim + vocab * dim + dim));
    REQUIRE(m.config.dim == dim);
    REQUIRE(m.config.kv_dim() == kv);
    for (const auto& row : rows) {
        CAPTURE(row.dump());
        for (const char* key : {"test", "n_prompt", "n_gen", "n_threads", "avg_ts", "stddev_ts",
                                "model_size", "model_n_params", "weight_bytes_per_token"}) {
            CHECK(row.contains(key));
        }
        CHECK(row["n_threads"] == 1);
        CHECK(row["avg_ts"].get<double>() > 0.0);
        CHECK(row["stddev_ts"].get<double>() >= 0.0);
        CHECK(row["samples_ts"].size() == 2);
        CHECK(row["model_n_params"].get<int64_t>() == m.parameter_count());
        CHECK(row["model_n_params"].get<int64_t>() == 260032);
        CHECK(row["model_size"].get<uint64_t>() == m.weight_bytes());
        CHECK(row["weight_bytes_per_token"].get<uint64_t>() == expected_token_bytes);
    }
    CHECK(rows[0]["test"] == "pp16");
    CHECK(rows[0]["n_prompt"] == 16);
    CHECK(rows[0]["n_gen"] == 0);
    CHECK_FALSE(rows[0].contains("weight_gbs"));
    CHECK(rows[1]["test"] == "tg4");
    CHECK(rows[1]["n_prompt"] == 0);
    CHECK(rows[1]["n_gen"] == 4);
    // Achieved weight bandwidth of decoding = t/s x bytes per token.
    CHECK(rows[1]["weight_gbs"].get<double>() ==
          doctest::Approx(rows[1]["avg_ts"].get<double>() * double(expected_token_bytes) / 1e9));
}

TEST_CASE("bench: several thread counts and tests, roofline, markdown") {
    const CliOutcome j = run_nibble("bench -m " + kModel +
                                    " -p 8,16 -n 4 -r 1 -t 1,2 -o json --roofline --bw-mib 16");
    INFO(j.text);
    REQUIRE(j.exit_code == 0);
    const auto rows = nlohmann::json::parse(j.text);
    REQUIRE(rows.size() == 6);
    std::vector<std::string> names;
    for (const auto& row : rows) {
        names.push_back(row["test"].get<std::string>() + "@" +
                        std::to_string(row["n_threads"].get<int>()));
        CHECK(row["bandwidth_gbs"].get<double>() > 0.0);
        CHECK(row.contains("roofline_fraction") == (row["n_gen"] != 0));
    }
    CHECK(names ==
          std::vector<std::string>{"pp8@1", "pp16@1", "tg4@1", "pp8@2", "pp16@2", "tg4@2"});
    const double fraction = rows[2]["roofline_fraction"].get<double>();
    CHECK(fraction == doctest::Approx(rows[2]["weight_gbs"].get<double>() /
                                      rows[2]["bandwidth_gbs"].get<double>()));

    const CliOutcome md =
        run_nibble("bench -m " + kModel + " -p 16 -n 4 -r 1 -t 1 --roofline --bw-mib 16");
    INFO(md.text);
    REQUIRE(md.exit_code == 0);
    CHECK(md.text.find("| model | size | params | threads | test | t/s | GB/s | roofline |") == 0);
    CHECK(md.text.find("| 1 | pp16 | ") != std::string::npos);
    CHECK(md.text.find("| 1 | tg4 | ") != std::string::npos);
    CHECK(md.text.find("weight bytes per decoded token") != std::string::npos);
    CHECK(md.text.find("memory read bandwidth, 1 thread: ") != std::string::npos);
}

TEST_CASE("decode_weight_bytes and the bandwidth probe") {
    const Model m = load_model(kModel);
    // Shared classifier: the whole model plus one more embedding row.
    CHECK(decode_weight_bytes(m) == m.weight_bytes() + 64 * 4);
    CHECK(packed_row_bytes(make_layout(WeightFormat::q4, 10, 4096, 32)) == 2048 + 128 * 2);
    CHECK(packed_row_bytes(make_layout(WeightFormat::q8, 10, 100, 64)) == 128 + 2 * 2);
    CHECK(packed_row_bytes(make_layout(WeightFormat::q4a, 10, 256, 32, true)) == 128 + 8 * 2);
    CHECK(packed_row_bytes(make_layout(WeightFormat::f16, 10, 100)) == 200);

    const BandwidthResult bw = measure_read_bandwidth(16ull << 20, 2, 1);
    CHECK(bw.bytes == 16ull << 20);
    CHECK(bw.passes == 2);
    CHECK(bw.best_gbs > 0.0);
    CHECK(bw.best_gbs >= bw.mean_gbs);
    CHECK_THROWS_AS(measure_read_bandwidth(1000, 2, 1), std::invalid_argument);
    CHECK_THROWS_AS(measure_read_bandwidth(16ull << 20, 0, 1), std::invalid_argument);
    CHECK_THROWS_AS(measure_read_bandwidth(16ull << 20, 2, 0), std::invalid_argument);
}

TEST_CASE("bench: bad options exit 2 with one line; a bad model exits 1") {
    struct Case {
        std::string args;
        int code;
        std::string message;
    };
    const std::string m = " -m " + kModel;
    const std::vector<Case> cases{
        {"bench -p 16", 2, "--model"},
        {"bench" + m + " -p 0", 2, "--n-prompt"},
        {"bench" + m + " -n 0", 2, "--n-gen"},
        {"bench" + m + " -p 16,x", 2, "--n-prompt"},
        {"bench" + m + " -t 1,,2", 2, "--threads"},
        {"bench" + m + " -t -1", 2, "--threads"},
        {"bench" + m + " -t two", 2, "--threads"},
        {"bench" + m + " -r 0", 2, "--repetitions"},
        {"bench" + m + " -o xml", 2, "--output"},
        {"bench" + m + " --kv q4", 2, "--kv"},
        {"bench" + m + " -b 0", 2, "--batch-size"},
        {"bench" + m + " --bw-mib 1", 2, "--bw-mib"},
        {"bench -m /nonexistent/model.bin", 1, "/nonexistent/model.bin"},
        {"bench -m " + data_path("tokenizer.model"), 1, data_path("tokenizer.model")},
    };
    for (const Case& c : cases) {
        CAPTURE(c.args);
        const CliOutcome o = run_nibble(c.args, true);
        CAPTURE(o.text);
        CHECK(o.exit_code == c.code);
        CHECK(o.text.find(c.message) != std::string::npos);
        CHECK(std::count(o.text.begin(), o.text.end(), '\n') == 1);
    }
}

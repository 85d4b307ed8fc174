// nibble bench --parallel on stories260K: one row per B with consistent
// counts and timings, JSON output, bad values rejected.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "test_data.h"

using nibble::test::data_path;
using nibble::test::run_nibble;

TEST_CASE("bench --parallel reports aggregate throughput per B") {
    const auto r = run_nibble("bench -m " + data_path("stories260K.bin") +
                                  " --parallel 1,4,8 -p 16 -n 8 -r 1 -t 1 -o json",
                              nibble::test::Capture::stdout_only);
    REQUIRE(r.exit_code == 0);
    const auto rows = nlohmann::json::parse(r.text);
    REQUIRE(rows.size() == 3);
    const int expected_b[] = {1, 4, 8};
    for (size_t i = 0; i < rows.size(); ++i) {
        const auto& row = rows[i];
        const int b = expected_b[i];
        CHECK(row["pl"] == b);
        CHECK(row["pp"] == 16);
        CHECK(row["tg"] == 8);
        CHECK(row["n_kv"] == b * 24);
        const double t_pp = row["t_pp"], t_tg = row["t_tg"];
        CHECK(t_pp > 0.0);
        CHECK(t_tg > 0.0);
        CHECK(row["speed_tg"].get<double>() == doctest::Approx(b * 8 / t_tg));
        CHECK(row["speed_pp"].get<double>() == doctest::Approx(b * 16 / t_pp));
        CHECK(row["speed"].get<double>() == doctest::Approx(b * 24 / (t_pp + t_tg)));
    }
}

TEST_CASE("bench --parallel markdown table and bad values") {
    const auto md =
        run_nibble("bench -m " + data_path("stories260K.bin") + " --parallel 2 -p 8 -n 4 -r 1 -t 1",
                   nibble::test::Capture::stdout_only);
    CHECK(md.exit_code == 0);
    CHECK(md.text.rfind("| PP | TG | B | N_KV |", 0) == 0);
    CHECK(md.text.find("\n| 8 | 4 | 2 | 24 |") != std::string::npos);
    const auto bad = run_nibble("bench -m " + data_path("stories260K.bin") + " --parallel 0",
                                nibble::test::Capture::stderr_only);
    CHECK(bad.exit_code == 2);
    CHECK(bad.text == "nibble bench: --parallel: 0 is less than 1\n");
    const auto big = run_nibble("bench -m " + data_path("stories260K.bin") + " --parallel 1,999",
                                nibble::test::Capture::stderr_only);
    CHECK(big.exit_code == 2);
    CHECK(big.text == "nibble bench: --parallel: at most 256 sequences\n");
}

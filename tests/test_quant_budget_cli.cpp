// nibble quantize --target-size: the written file is within 2% of the target
// (and never above it), the chosen table is printed, and the mix holds
// several formats; q3 and q2 files run and `nibble info` names their formats.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "test_data.h"

using nibble::test::CliStreams;
using nibble::test::data_path;
using nibble::test::run_nibble_streams;

namespace {

std::string temp_path(const std::string& name) {
    return (nibble::test::temp_dir("nibble_test_quant_budget_cli") / name).string();
}

}  // namespace

TEST_CASE("quantize --target-size writes a file within 2% of the target") {
    const std::string src = data_path("stories260K.bin");
    const std::string calib = data_path("corpus/tinystories_excerpt.txt");
    for (const char* size : {"150000", "170K"}) {
        const std::string out = temp_path(std::string("budget_") + size + ".nbl");
        const CliStreams q =
            run_nibble_streams("quantize '" + src + "' '" + out + "' --double-quant --calib '" +
                               calib + "' --calib-tokens 256 -q --target-size " + size);
        CAPTURE(q.err);
        REQUIRE(q.exit_code == 0);
        const double target = std::string(size) == "170K" ? 170000.0 : 150000.0;
        const double bytes = double(std::filesystem::file_size(out));
        CAPTURE(bytes);
        CHECK(bytes <= target);
        CHECK(bytes >= 0.98 * target);
        CHECK(q.out.find("measured") != std::string::npos);
        const CliStreams info = run_nibble_streams("info '" + out + "'");
        REQUIRE(info.exit_code == 0);
        CHECK(info.out.find(" q3 ") != std::string::npos);
    }
    // --bpw: the linear layers' average, within 2% below the target.
    const std::string out = temp_path("bpw.nbl");
    const CliStreams q =
        run_nibble_streams("quantize '" + src + "' '" + out + "' --double-quant --calib '" + calib +
                           "' --calib-tokens 256 --bpw 3.0");
    CAPTURE(q.err);
    REQUIRE(q.exit_code == 0);
    const size_t at = q.out.find("linear layers ");
    REQUIRE(at != std::string::npos);
    const double bpw = std::stod(q.out.substr(at + 14));
    CHECK(bpw <= 3.0);
    CHECK(bpw >= 0.98 * 3.0);
    CHECK(q.out.find("blk.4.ffn_down.weight") != std::string::npos);
    // Below the smallest mix: a one-line usage error.
    const CliStreams bad = run_nibble_streams("quantize '" + src + "' '" + temp_path("x.nbl") +
                                              "' --calib '" + calib + "' --bpw 2.1");
    CHECK(bad.exit_code == 2);
    CHECK(bad.err.find("--target-size/--bpw") != std::string::npos);
}

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

TEST_CASE("quantize --target-size also budgets the embedding and the classifier") {
    // tiny256 stores them apart (512 x 256 each): in q8 they alone leave too
    // little for every linear layer in q2 at llama.cpp's Q2_K size (744352
    // bytes); the budget gives them fewer bits where that costs the least KL.
    const std::string src = data_path("gguf-quant/tiny256-F32.gguf");
    const std::string calib = data_path("corpus/tinystories_excerpt.txt");
    const std::string out = temp_path("ends.nbl");
    const CliStreams q =
        run_nibble_streams("quantize '" + src + "' '" + out + "' --double-quant --calib '" + calib +
                           "' --calib-tokens 512 --target-size 744352");
    CAPTURE(q.err);
    REQUIRE(q.exit_code == 0);
    const double bytes = double(std::filesystem::file_size(out));
    CAPTURE(bytes);
    CHECK(bytes <= 744352.0);
    CHECK(bytes >= 0.98 * 744352.0);
    const size_t embd = q.out.find("  token_embd.weight ");
    const size_t output = q.out.find("  output.weight ");
    REQUIRE(embd != std::string::npos);
    REQUIRE(output != std::string::npos);
    // Budgeted: neither is left in the recipe's q8.
    CHECK(q.out.substr(embd + 31, 3) != "q8:");
    CHECK(q.out.substr(output + 31, 3) != "q8:");
    // A --keep rule on either keeps both as the recipe says: then at 0.8x that
    // size the linear layers alone cannot fit.
    const CliStreams kept = run_nibble_streams(
        "quantize '" + src + "' '" + temp_path("kept.nbl") + "' --double-quant --calib '" + calib +
        "' --calib-tokens 512 --target-size 596794 --keep output.weight=q8");
    CHECK(kept.exit_code == 2);
    CHECK(kept.err.find("below the smallest mix") != std::string::npos);
}

TEST_CASE("quantize --target-size chooses larger groups where the budget is smallest") {
    // At 2.6 bits per parameter of tiny256 every tensor in q2 with groups of 32
    // only just fits; groups of 64 and 128 (fewer parameters) leave bytes for
    // the tensors that matter most.
    const std::string src = data_path("gguf-quant/tiny256-F32.gguf");
    const std::string calib = data_path("corpus/tinystories_excerpt.txt");
    const std::string out = temp_path("small.nbl");
    const CliStreams q =
        run_nibble_streams("quantize '" + src + "' '" + out + "' --double-quant --calib '" + calib +
                           "' --calib-tokens 512 --target-size 596794");
    CAPTURE(q.err);
    REQUIRE(q.exit_code == 0);
    CAPTURE(q.out);
    const double bytes = double(std::filesystem::file_size(out));
    CHECK(bytes <= 596794.0);
    CHECK(bytes >= 0.98 * 596794.0);
    CHECK(q.out.find(" q2:128 ") != std::string::npos);  // in the chosen table
    CHECK(q.out.find(" q4:32 ") != std::string::npos);   // and bits kept elsewhere
    const CliStreams info = run_nibble_streams("info '" + out + "'");
    REQUIRE(info.exit_code == 0);
    CHECK(info.out.find("128+dq") != std::string::npos);
}

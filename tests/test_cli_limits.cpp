// Limits checked before they are hit: thread counts, context, -n, batch, bench
// sizes and memory, sampling options and stray arguments. Each refusal is one
// line on stderr naming the option, with exit code 1 or 2, never a crash.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli_expect.h"
#include "test_data.h"

using nibble::test::Capture;
using nibble::test::CliOutcome;
using nibble::test::count_lines;
using nibble::test::data_path;
using nibble::test::expect_refusal;
using nibble::test::run_nibble;

namespace {

const std::string kModel = " -m " + data_path("stories260K.bin");
const std::string kRun = "run" + kModel + " --tokenizer " + data_path("tok512.model");

// A run that succeeds with one notice line on stderr containing `notice`.
void expect_notice(const std::string& args, const std::string& notice) {
    CAPTURE(args);
    const CliOutcome o = run_nibble(args, Capture::stderr_only);
    CAPTURE(o.text);
    CHECK(o.exit_code == 0);
    CHECK(o.text.find(notice) != std::string::npos);
    // said once, even when the option is used several times (bench -t list)
    CHECK(o.text.find(notice) == o.text.rfind(notice));
}

}  // namespace

TEST_CASE("thread counts: negative refused, huge capped with one message") {
    expect_refusal(kRun + " -p hi -n 2 -t -5", 2, "--threads -5");
    expect_refusal(
        "perplexity" + kModel + " -f " + data_path("corpus/tinystories_excerpt.txt") + " -t -1", 2,
        "--threads");
    expect_refusal("synth --shape stories15m -o /tmp/nibble_never_written.nbl -t -3", 2,
                   "--threads -3");
    expect_notice(kRun + " -p hi -n 2 --temp 0 -t 100000", "--threads 100000 is more than");
    expect_notice(kRun + " -p hi -n 2 --temp 0 -t 2000", "--threads 2000 is more than");
    expect_notice("bench" + kModel + " -p 4 -n 2 -r 1 -t 100000,5000",
                  "--threads 100000 is more than");
    // perplexity used to die in libgomp ("Thread creation failed") at -t 2000
    const CliOutcome ppl =
        run_nibble("perplexity" + kModel + " --tokenizer " + data_path("tok512.model") +
                       " -c 32 -t 2000 -f " + data_path("corpus/tinystories_excerpt.txt"),
                   Capture::stdout_only);
    CHECK(ppl.exit_code == 0);
    CHECK(ppl.text.find("perplexity") != std::string::npos);
}

TEST_CASE("-n beyond the context is clipped to it and said once") {
    const CliOutcome o =
        run_nibble(kRun + " -p hi -n 2147483647 -c 64 --temp 0", Capture::stderr_only);
    CAPTURE(o.text);
    CHECK(o.exit_code == 0);
    CHECK(o.text.find("--n-predict 2147483647 does not fit in the context of 64") !=
          std::string::npos);
    CHECK(count_lines(o.text) == 2);  // the notice and the speed line
    // generation stops at the context: prompt + generated <= 64 tokens
    const size_t at = o.text.find("generation: ");
    REQUIRE(at != std::string::npos);
    CHECK(std::stoi(o.text.substr(at + 12)) <= 64);
}

TEST_CASE("generate: -n beyond the context is clipped once, each completion ends in it") {
    const auto dir = nibble::test::temp_dir("cli_limits_generate");
    const std::string prompts = (dir / "prompts.txt").string();
    const std::string out = (dir / "out.jsonl").string();
    { std::ofstream(prompts) << "Once upon a time\nLily went\nThe cat\n"; }
    const CliOutcome o =
        run_nibble("generate" + kModel + " --tokenizer " + data_path("tok512.model") + " -f " +
                       prompts + " --out " + out + " -n 2147483647 -c 64 --temp 0 --parallel 2",
                   Capture::stderr_only);
    CAPTURE(o.text);
    CHECK(o.exit_code == 0);
    const std::string notice = "--n-predict 2147483647 does not fit in the context of 64";
    CHECK(o.text.find(notice) != std::string::npos);
    CHECK(o.text.find(notice) == o.text.rfind(notice));
    std::ifstream in(out);
    int lines = 0;
    for (std::string line; std::getline(in, line); ++lines) {
        const auto j = nlohmann::json::parse(line);
        CHECK(j["n_prompt"].get<int>() + j["n_completion"].get<int>() <= 64);
    }
    CHECK(lines == 3);
}

TEST_CASE("context, batch and bench sizes that cannot fit in memory are refused up front") {
    const std::string gen = "generate" + kModel + " -f " +
                            data_path("corpus/tinystories_excerpt.txt") +
                            " --out /tmp/nibble_never_written.jsonl";
    expect_refusal(gen + " -c 2000000000", 1, "lower --ctx-size or --parallel");
    expect_refusal("chat" + kModel + " -c 2000000000", 1, "lower --ctx-size");
    // 2e9 positions of stories260K's KV cache are >1 TiB: refused, naming the option.
    expect_refusal(kRun + " -p hi -c 2000000000", 1, "lower --ctx-size");
    expect_refusal("perplexity" + kModel + " -f " + data_path("corpus/tinystories_excerpt.txt") +
                       " -c 2000000000",
                   1, "lower --ctx-size");
    expect_refusal("bench" + kModel + " -p 2000000000 -n 1", 1, "lower --n-prompt/--n-gen");
    expect_refusal("bench" + kModel + " -p 1 -n 2147483647", 1, "lower --n-prompt/--n-gen");
    expect_refusal("bench" + kModel + " -p 1 -n 1 --roofline --bw-mib 2000000000", 2, "--bw-mib");
    expect_refusal(kRun + " -p hi -b 0", 2, "--batch-size");
    expect_refusal(kRun + " -p hi -b 5000", 2, "--batch-size");
    expect_refusal(kRun + " -p hi -c -3", 2, "--ctx-size");
    expect_refusal("bench" + kModel + " -p 0", 2, "--n-prompt");
    expect_refusal("bench" + kModel + " -n -4", 2, "--n-gen");
}

TEST_CASE("sampling options outside their meaning and stray arguments are refused") {
    expect_refusal(kRun + " -p hi --top-k -1", 2, "--top-k");
    expect_refusal(kRun + " -p hi --repeat-last-n -2", 2, "--repeat-last-n");
    // -1 keeps llama.cpp's meaning: the penalty looks at the whole context
    const CliOutcome whole =
        run_nibble(kRun + " -p hi -n 4 --temp 0 --repeat-penalty 1.1 --repeat-last-n -1",
                   Capture::stderr_only);
    CHECK(whole.exit_code == 0);
    expect_refusal("info " + data_path("stories260K.bin") + " " + data_path("tok512.model"), 2,
                   "unexpected argument '" + data_path("tok512.model") + "'");
    expect_refusal(kRun + " -p hi stray", 2, "unexpected argument 'stray'");
    expect_refusal("chat" + kModel + " stray", 2, "unexpected argument 'stray'");
    expect_refusal("generate" + kModel + " -f x --out y stray", 2, "unexpected argument 'stray'");
    expect_refusal("quantize " + data_path("stories260K.bin") + " /tmp/a.nbl /tmp/b.nbl", 2,
                   "unexpected argument '/tmp/b.nbl'");
}

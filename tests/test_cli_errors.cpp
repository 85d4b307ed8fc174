// Bad input through the command line: one line on stderr naming the file or
// option, a non-zero exit code, never a crash.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "test_data.h"

using nibble::test::data_path;
using nibble::test::read_text;

namespace {

using nibble::test::Capture;
using nibble::test::CliOutcome;
using nibble::test::run_nibble;

void expect_error(const std::string& args, int code, const std::string& must_contain) {
    CAPTURE(args);
    const CliOutcome o = run_nibble(args, Capture::stderr_only);
    CAPTURE(o.text);
    CHECK_FALSE(o.signalled);
    CHECK(o.exit_code == code);
    CHECK(o.text.find(must_contain) != std::string::npos);
    // exactly one line
    CHECK(std::count(o.text.begin(), o.text.end(), '\n') == 1);
    CHECK(o.text.back() == '\n');
}

std::string temp_file(const std::string& name, const std::string& bytes) {
    return nibble::test::write_file(nibble::test::temp_dir("nibble_cli_errors") / name, bytes);
}

const std::string kTok = " --tokenizer " + data_path("tok512.model");

}  // namespace

TEST_CASE("missing, truncated and corrupted model files") {
    const std::string model = read_text(data_path("stories260K.bin"));
    expect_error("run -m /nonexistent/model.bin -p hi", 1, "/nonexistent/model.bin: cannot open");
    const auto truncated = temp_file("truncated.bin", model.substr(0, 5000));
    expect_error("run -m " + truncated + kTok, 1, truncated + ": ");
    expect_error("run -m " + truncated + kTok, 1, "truncated");
    const auto longer = temp_file("longer.bin", model + std::string(100, '\0'));
    expect_error("run -m " + longer + kTok, 1, "do not add up");
    std::string bad_header = model;
    const int32_t heads = 7;  // dim 64 is not a multiple of 7 heads
    std::memcpy(bad_header.data() + 12, &heads, 4);
    const auto bad = temp_file("bad_heads.bin", bad_header);
    expect_error("run -m " + bad + kTok, 1, "not a multiple of 7 heads");
    std::string huge_header = model;
    const int32_t huge = 1 << 30;
    std::memcpy(huge_header.data(), &huge, 4);
    const auto huge_path = temp_file("huge_dim.bin", huge_header);
    expect_error("info " + huge_path, 1, huge_path + ": ");
    const auto garbage = temp_file("garbage.bin", std::string(3000, 'x'));
    expect_error("info " + garbage, 1, "not a GGUF, nibble, safetensors or llama2.c runq file");
    const auto tiny = temp_file("tiny.bin", "GGUF");
    expect_error("info " + tiny, 1, "too small");
    const std::string gguf = read_text(data_path("stories260K.gguf"));
    const auto cut_gguf = temp_file("cut.gguf", gguf.substr(0, gguf.size() / 2));
    expect_error("run -m " + cut_gguf, 1, cut_gguf + ": ");
    const std::string q80 = read_text(data_path("stories260K_q80.bin"));
    const auto cut_q80 = temp_file("cut_q80.bin", q80.substr(0, q80.size() - 10));
    expect_error("run -m " + cut_q80 + kTok, 1, cut_q80 + ": truncated");
}

TEST_CASE("missing, corrupted and mismatched tokenizers") {
    const std::string model = " -m " + data_path("stories260K.bin");
    expect_error("run" + model + " --tokenizer /nonexistent/tok.model", 1,
                 "/nonexistent/tok.model");
    const auto junk = temp_file("junk.model", std::string(500, '\x07'));
    expect_error("run" + model + " --tokenizer " + junk, 1, junk + ": ");
    expect_error("run" + model + " --tokenizer " + data_path("tokenizer.model"), 1,
                 "tokenizer has 32000 tokens, the model 512");
    // stories260K.bin carries no tokenizer; none lies next to a copy in /tmp.
    const auto lonely = temp_file("lonely.bin", read_text(data_path("stories260K.bin")));
    expect_error("run -m " + lonely, 1, "pass --tokenizer");
}

TEST_CASE("invalid options and prompts longer than the context") {
    const std::string model = " -m " + data_path("stories260K.bin") + kTok;
    expect_error("run" + model + " -c 4 -p \"Once upon a time there was\"", 2,
                 "--prompt has 7 tokens, more than the context size 4");
    expect_error("run" + model + " --temp -1", 2, "--temp");
    expect_error("run" + model + " -n -5", 2, "--n-predict");
    expect_error("run" + model + " --top-p 2", 2, "--top-p");
    expect_error("run" + model + " --kv q3", 2, "--kv");
    expect_error("run" + model + " --frobnicate", 2, "frobnicate");
    expect_error("run" + model + " -t abc", 2, "abc");
    expect_error("run -p hello", 2, "--model");
    expect_error("perplexity" + model, 2, "--file");
    expect_error("perplexity" + model + " -f /nonexistent/text.txt", 1, "/nonexistent/text.txt");
    expect_error("frobnicate", 2, "unknown command 'frobnicate'");
}

TEST_CASE("the quick-start run works and reports speed") {
    const CliOutcome o = run_nibble(
        "run -m " + data_path("stories260K.bin") + kTok + " -p \"Once upon a time\" -n 20 --temp 0",
        Capture::stderr_only);
    CHECK(o.exit_code == 0);
    CHECK(o.text.find("tokens/s") != std::string::npos);
}

TEST_CASE("every model command refuses a bad shared option with the same line") {
    const std::string model = " -m " + data_path("stories260K.bin") + kTok;
    struct Case {
        std::string args, message;
    };
    const std::vector<Case> cases = {
        {" --kv q3", "--kv must be f32, f16 or int8"},
        {" -b 0", "--batch-size must be in 1..4096"},
        {" --batch-size 5000", "--batch-size must be in 1..4096"},
    };
    for (const std::string command : {"run", "generate", "chat", "serve", "perplexity", "bench"}) {
        const bool bench = command == "bench";
        for (const Case& c : cases) {
            // (bench takes no --tokenizer: it feeds random token ids)
            const std::string args =
                command + (bench ? " -m " + data_path("stories260K.bin") : model) + c.args;
            CAPTURE(args);
            const CliOutcome o = run_nibble(args, Capture::stderr_only);
            CHECK(o.exit_code == 2);
            CHECK(o.text == "nibble " + command + ": " + c.message + "\n");
        }
        const CliOutcome missing = run_nibble(command + " --kv f16", Capture::stderr_only);
        CHECK(missing.exit_code == 2);
        CHECK(missing.text == "nibble " + command + ": missing --model (-m)\n");
        if (!bench) {
            const CliOutcome ctx = run_nibble(command + model + " -c -1", Capture::stderr_only);
            CHECK(ctx.exit_code == 2);
            CHECK(ctx.text == "nibble " + command + ": --ctx-size must be >= 0\n");
        }
    }
    for (const std::string command : {"chat", "serve"}) {
        const CliOutcome o =
            run_nibble(command + model + " --template klingon", Capture::stderr_only);
        CHECK(o.exit_code == 2);
        CHECK(o.text == "nibble " + command +
                            ": --template must be llama2, chatml, zephyr, mistral, llama3, gemma, "
                            "phi3 or plain\n");
    }
}

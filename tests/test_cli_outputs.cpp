// Every file a command writes, as a careless or hostile user names it: an
// output that is one of the command's inputs (by a hard link, a symlink or
// another spelling) is refused with the input untouched; FIFOs and devices are
// refused at once; a write that fails part-way ends with exit 1 and an honest
// count; --resume never edits a file that is not its own output; ids of any
// JSON type survive the round trip; bytes from input never reach the terminal
// raw; and sizes that cannot fit in memory are refused naming the option.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli_expect.h"
#include "test_data.h"

namespace fs = std::filesystem;
using nibble::test::CliOutcome;
using nibble::test::count_lines;
using nibble::test::data_path;
using nibble::test::expect_refusal;
using nibble::test::read_text;
using nibble::test::run_cli;
using nibble::test::terminal_safe;
using Json = nlohmann::json;

namespace {

const std::string kModelPath = data_path("stories260K.bin");
const std::string kTokPath = data_path("tok512.model");
const std::string kText = data_path("corpus/tinystories_excerpt.txt");

fs::path work_dir() {
    static const fs::path dir = nibble::test::temp_dir("nibble_cli_outputs");
    return dir;
}

std::string write_file(const std::string& name, const std::string& bytes) {
    return nibble::test::write_file(work_dir() / name, bytes);
}

// Three other names of `file`: a hard link, a symlink, and "<folder>/./<name>".
std::vector<std::string> other_names(const std::string& file) {
    const fs::path p(file);
    const fs::path hard = p.parent_path() / ("hard_" + p.filename().string());
    const fs::path soft = p.parent_path() / ("soft_" + p.filename().string());
    fs::remove(hard);
    fs::remove(soft);
    fs::create_hard_link(p, hard);
    fs::create_symlink(p, soft);
    return {file, hard.string(), soft.string(), (p.parent_path() / "." / p.filename()).string()};
}

// `nibble ARGS` under shell `limits` (e.g. "ulimit -f 8"), stderr captured;
// SIGXFSZ is ignored so that a write beyond the file size limit fails with
// EFBIG as it would on a full disk.
CliOutcome run_limited(const std::string& limits, const std::string& args, int seconds = 120) {
    const std::string err = (work_dir() / "limited_stderr.txt").string();
    const std::string cmd = "(trap '' XFSZ; " + limits + "; exec timeout -s KILL " +
                            std::to_string(seconds) + " '" + NIBBLE_BINARY + "' " + args +
                            ") >/dev/null 2>'" + err + "'";
    const int status = std::system(cmd.c_str());
    CliOutcome r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.signalled = WIFSIGNALED(status);
    r.text = read_text(err);
    return r;
}

std::vector<Json> json_lines(const std::string& text) {
    std::vector<Json> out;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) out.push_back(Json::parse(line));
    return out;
}

std::string story_prompts(int n) {
    std::string text;
    for (int i = 0; i < n; ++i) text += "Once upon a time " + std::to_string(i) + "\n";
    return text;
}

}  // namespace

TEST_CASE("generate --out and perplexity --save-logits refuse any input, by any name") {
    const std::string model = write_file("model.bin", read_text(kModelPath));
    const std::string tok = write_file("tok.model", read_text(kTokPath));
    const std::string prompts = write_file("prompts.txt", "Once upon a time\nThe cat\n");
    const std::string text = write_file("text.txt", read_text(kText));
    const std::string model_tok = " -m " + model + " --tokenizer " + tok;
    for (const std::string& input : {model, tok, prompts}) {
        const std::string original = read_text(input);
        for (const std::string& out : other_names(input)) {
            expect_refusal("generate" + model_tok + " -f " + prompts + " -n 4 --out " + out, 1,
                           "is the same file as the input");
            CHECK(read_text(input) == original);
            if (read_text(input) != original) write_file(fs::path(input).filename(), original);
        }
    }
    for (const std::string& input : {model, tok, text}) {
        const std::string original = read_text(input);
        for (const std::string& out : other_names(input)) {
            expect_refusal("perplexity" + model_tok + " -f " + text + " --save-logits " + out, 1,
                           "is the same file as the input");
            CHECK(read_text(input) == original);
            if (read_text(input) != original) write_file(fs::path(input).filename(), original);
        }
    }
    // a prompts file is also the --resume output only by mistake: refused untouched
    const std::string jsonl = write_file("p.jsonl", R"({"id": 1, "prompt": "Tom"})");
    expect_refusal("generate" + model_tok + " -f " + jsonl + " --out " + jsonl + " --resume", 1,
                   "is the same file as the input");
    CHECK(read_text(jsonl) == R"({"id": 1, "prompt": "Tom"})");
}

TEST_CASE("quantize refuses the calibration text and every file of a model folder") {
    const std::string model = write_file("qmodel.bin", read_text(kModelPath));
    const std::string calib = write_file("cal.txt", read_text(kText));
    const std::string original_calib = read_text(calib);
    expect_refusal("quantize " + model + " " + calib + " --method gptq --calib " + calib +
                       " --tokenizer " + kTokPath,
                   1, "is the same file as the input " + calib);
    CHECK(read_text(calib) == original_calib);

    // The refusal comes before the folder is read, so its files need not be valid.
    const fs::path hf = work_dir() / "hf";
    fs::create_directories(hf);
    const std::string weights = nibble::test::write_file(hf / "model.safetensors", "weights");
    const std::string config = nibble::test::write_file(hf / "config.json", "{}");
    const std::string hf_tok = nibble::test::write_file(hf / "tokenizer.model", "tokenizer");
    for (const std::string& out : {weights, config, hf_tok}) {
        expect_refusal("quantize " + hf.string() + " " + out, 1, "is the same file as the input");
        expect_refusal("quantize " + weights + " " + out, 1, "is the same file as the input");
    }
    CHECK(read_text(weights) == "weights");
    CHECK(read_text(config) == "{}");
    CHECK(read_text(hf_tok) == "tokenizer");
}

TEST_CASE("FIFO and device outputs and a FIFO --kl-base are refused at once") {
    const fs::path fifo = work_dir() / "fifo";
    fs::remove(fifo);
    REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
    const std::string prompts = write_file("fifo_prompts.txt", "Once upon a time\n");
    const std::string model_tok = " -m " + kModelPath + " --tokenizer " + kTokPath;
    const std::vector<std::string> cases = {
        "generate" + model_tok + " -f " + prompts + " --out " + fifo.string(),
        "generate" + model_tok + " -f " + prompts + " --out /dev/full",
        "generate" + model_tok + " -f " + prompts + " --out /dev/zero --resume",
        "perplexity" + model_tok + " -f " + kText + " --save-logits " + fifo.string(),
        "perplexity" + model_tok + " -f " + kText + " --kl-base " + fifo.string(),
    };
    for (const std::string& args : cases) {
        CAPTURE(args);
        // A hang is killed after 10 s (exit -1); a refusal comes before the model loads.
        const CliOutcome r = run_cli(args, 10);
        CAPTURE(r.text);
        CHECK(r.exit_code == 1);
        CHECK(count_lines(r.text) == 1);
        CHECK((r.text.find("FIFO") != std::string::npos ||
               r.text.find("device") != std::string::npos));
    }
}

TEST_CASE("a write that fails part-way ends with exit 1, an honest count and no partial file") {
    const std::string prompts = write_file("full_prompts.txt", story_prompts(40));
    const std::string out = (work_dir() / "full.jsonl").string();
    fs::remove(out);
    // 4 blocks (of 512 or 1024 bytes, as the shell counts): room for some output lines, not all 40.
    const CliOutcome r =
        run_limited("ulimit -f 4", "generate -m " + kModelPath + " --tokenizer " + kTokPath +
                                       " -f " + prompts + " -n 24 --temp 0 -t 1 --out " + out);
    CAPTURE(r.text);
    CHECK(r.exit_code == 1);
    const std::string written = read_text(out);
    const int lines = count_lines(written);
    CHECK(lines > 0);
    CHECK(lines < 40);
    CHECK((written.empty() || written.back() == '\n'));  // no cut line left behind
    for (const Json& j : json_lines(written)) CHECK(j.contains("completion"));
    CHECK(r.text.find(std::to_string(lines) + " results are safely in " + out) !=
          std::string::npos);

    // a whole-file output: nothing at the path, no temporary left
    const std::string logits = (work_dir() / "logits.bin").string();
    fs::remove(logits);
    const CliOutcome p =
        run_limited("ulimit -f 4", "perplexity -m " + kModelPath + " --tokenizer " + kTokPath +
                                       " -f " + kText + " -q --save-logits " + logits);
    CAPTURE(p.text);
    CHECK(p.exit_code == 1);
    CHECK(count_lines(p.text) == 1);
    CHECK(p.text.find("logits.bin") != std::string::npos);
    CHECK_FALSE(fs::exists(logits));
    for (const auto& e : fs::directory_iterator(work_dir())) {
        CHECK(e.path().filename().string().rfind("logits.bin.tmp", 0) != 0);
    }

    // quantize: the failure is on its own line, not the progress bar's
    const std::string q = (work_dir() / "q.nbl").string();
    const CliOutcome qr =
        run_limited("ulimit -f 4", "quantize " + kModelPath + " " + q + " --format q8");
    CAPTURE(qr.text);
    CHECK(qr.exit_code == 1);
    const size_t at = qr.text.find("nibble quantize: error:");
    REQUIRE(at != std::string::npos);
    CHECK((at == 0 || qr.text[at - 1] == '\n'));
    CHECK_FALSE(fs::exists(q));
}

TEST_CASE("--resume keeps a last line without newline and never edits a file it did not write") {
    const std::string model_tok = " -m " + kModelPath + " --tokenizer " + kTokPath;
    const std::string three = write_file("three.txt", story_prompts(3));
    const std::string five = write_file("five.txt", story_prompts(5));
    const std::string out = (work_dir() / "resume.jsonl").string();
    fs::remove(out);
    const std::string common = "generate" + model_tok + " -n 8 --temp 0 -t 1 --out " + out;
    REQUIRE(run_cli(common + " -f " + three).exit_code == 0);
    std::string first = read_text(out);
    REQUIRE(count_lines(first) == 3);
    first.pop_back();  // the last line loses its newline
    write_file("resume.jsonl", first);
    const CliOutcome r = run_cli(common + " -f " + five + " --resume");
    CAPTURE(r.text);
    CHECK(r.exit_code == 0);
    const std::vector<Json> lines = json_lines(read_text(out));
    CHECK(lines.size() == 5);
    std::set<std::string> ids;
    for (const Json& j : lines) ids.insert(j["id"].dump());
    CHECK(ids.size() == 5);

    // not an output of generate: refused, not one byte changed
    for (const std::string& notes : {std::string("hello\nworld"), std::string("world"),
                                     std::string("{\"id\": 1}\nplain text")}) {
        const std::string path = write_file("notes.txt", notes);
        expect_refusal(common.substr(0, common.find(" --out")) + " -f " + three + " --out " + path +
                           " --resume",
                       1, "notes.txt");
        CHECK(read_text(path) == notes);
    }
}

TEST_CASE("ids of any JSON type and size are kept as given; \"3\" and 3 are distinct") {
    const std::string prompts =
        write_file("ids.jsonl", R"({"id": 9223372036854775808, "prompt": "Tom"})"
                                "\n"
                                R"({"id": 18446744073709551615, "prompt": "Tom"})"
                                "\n"
                                R"({"id": "3", "prompt": "Tom"})"
                                "\n"
                                R"({"id": 3, "prompt": "Tom"})"
                                "\n"
                                R"({"id": -9223372036854775808, "prompt": "Tom"})"
                                "\n"
                                R"({"id": ["a", {"z": 1, "b": 2}], "prompt": "Tom"})"
                                "\n");
    const std::string out = (work_dir() / "ids_out.jsonl").string();
    fs::remove(out);
    const std::string args = "generate -m " + kModelPath + " --tokenizer " + kTokPath + " -f " +
                             prompts + " -n 4 -t 1 --out " + out;
    CliOutcome r = run_cli(args);
    CAPTURE(r.text);
    CHECK(r.exit_code == 0);
    std::set<std::string> ids;
    for (const std::string& line : [&] {
             std::vector<std::string> v;
             std::istringstream s(read_text(out));
             for (std::string l; std::getline(s, l);) v.push_back(l);
             return v;
         }()) {
        const size_t start = line.find("\"id\":") + 5;
        const size_t end = line.find(",\"prompt\"");
        ids.insert(line.substr(start, end - start));
    }
    CHECK(ids == std::set<std::string>{"9223372036854775808", "18446744073709551615", "\"3\"", "3",
                                       "-9223372036854775808", R"(["a",{"z":1,"b":2}])"});
    // resuming finds every one of them done
    r = run_cli(args + " --resume");
    CAPTURE(r.text);
    CHECK(r.exit_code == 0);
    CHECK(count_lines(read_text(out)) == 6);
}

TEST_CASE("per-prompt options get the checks of the flags; all prompts skipped is a failure") {
    const std::string prompts =
        write_file("bad_opts.jsonl", R"({"id": 1, "prompt": "Tom", "top_k": -5})"
                                     "\n"
                                     R"({"id": 2, "prompt": "Tom", "n_predict": -2})"
                                     "\n");
    const std::string out = (work_dir() / "bad_opts.jsonl.out").string();
    const CliOutcome r = run_cli("generate -m " + kModelPath + " --tokenizer " + kTokPath + " -f " +
                                 prompts + " -n 4 -t 1 --out " + out);
    CAPTURE(r.text);
    CHECK(r.text.find("\"top_k\"") != std::string::npos);
    CHECK(r.exit_code == 1);
}

TEST_CASE("escape bytes in ids and paths never reach the terminal raw") {
    const std::string esc_id = R"(\u001b[2J\u001b]0;pwned\u0007)";
    const std::string name = "p\x1b]0;pwned\x07.jsonl";
    const std::string line = R"({"id": ")" + esc_id + R"(", "prompt": "Tom"})" + "\n";
    write_file(name, line + line + "not json\n");
    const std::string shell_path =
        "\"$(printf '" + work_dir().string() + "/p\\033]0;pwned\\007.jsonl')\"";
    const std::string out_name = "o\x1b[2J.jsonl";
    const std::string shell_out = "\"$(printf '" + work_dir().string() + "/o\\033[2J.jsonl')\"";
    const std::string args = "generate -m " + kModelPath + " --tokenizer " + kTokPath + " -f " +
                             shell_path + " -n 4 -t 1 --out " + shell_out;
    CliOutcome r = run_cli(args);
    CAPTURE(r.text);
    CHECK(r.exit_code == 0);
    CHECK(r.text.find("duplicate id") != std::string::npos);
    CHECK(terminal_safe(r.text));
    r = run_cli(args + " --resume");
    CAPTURE(r.text);
    CHECK(terminal_safe(r.text));
    CHECK(fs::exists(work_dir() / out_name));
}

// AddressSanitizer reserves terabytes of shadow address space at start, so a
// binary built with it cannot run under the address-space limits below.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif

TEST_CASE("bench --parallel and endless input are bounded before allocating" *
          doctest::skip(kAddressSanitizer)) {
    const std::string model = " -m " + kModelPath;
    // Under a 4 GiB address-space limit, so that the unchecked path fails fast.
    const std::string limit = "ulimit -v 4194304";
    for (const std::string& args :
         {std::string("bench") + model + " --parallel 16 -p 1000000 -n 8",
          std::string("bench") + model + " --parallel 256 -p 100000 -n 100000"}) {
        const CliOutcome r = run_limited(limit, args);
        CAPTURE(args);
        CAPTURE(r.text);
        CHECK(r.exit_code == 1);
        CHECK(count_lines(r.text) == 1);
        CHECK(r.text.find("--parallel") != std::string::npos);
    }
    const CliOutcome chat = run_limited(
        "ulimit -v 1048576", "chat" + model + " --tokenizer " + kTokPath + " -t 1 < /dev/zero");
    CAPTURE(chat.text);
    CHECK(chat.exit_code == 1);
    CHECK(chat.text.find("stdin: line 1") != std::string::npos);
}

TEST_CASE("chat --system longer than the context fails at start; -c beyond training warns") {
    std::string system;
    for (int i = 0; i < 100; ++i) system += "the cat sat on the mat ";
    const CliOutcome r = run_limited("true", "chat -m " + kModelPath + " --tokenizer " + kTokPath +
                                                 " -c 64 --system '" + system + "' < /dev/null");
    CAPTURE(r.text);
    CHECK(r.exit_code == 1);
    CHECK(r.text.find("--system") != std::string::npos);

    const CliOutcome w =
        run_cli("run -m " + kModelPath + " --tokenizer " + kTokPath + " -p hi -n 2 -c 2048 -t 1");
    CAPTURE(w.text);
    CHECK(w.exit_code == 0);
    CHECK(w.text.find("trained") != std::string::npos);
}

TEST_CASE("a non-finite weight is reported with the file it is in") {
    // stories260K.bin: a 7-int header, then the token embedding in f32.
    std::string bytes = read_text(kModelPath);
    const uint32_t nan_bits = 0x7fc00000;
    std::memcpy(bytes.data() + 28 + 4 * 100, &nan_bits, 4);
    const std::string model = write_file("nan.bin", bytes);
    const std::string out = (work_dir() / "nan.nbl").string();
    const CliOutcome r = run_cli("quantize " + model + " " + out + " --tokenizer " + kTokPath +
                                 " --format q8 --no-default-keep -q");
    CAPTURE(r.text);
    CHECK(r.exit_code == 1);
    CHECK(r.text.find("not finite") != std::string::npos);
    CHECK(r.text.find("nan.bin") != std::string::npos);
}

TEST_CASE("a huge prompt or document line is never tokenized whole") {
    // 4 MiB of words in one line: the prompt is refused by its size alone (it
    // cannot fit in 512 tokens), the document is cut before tokenizing, with
    // the same score as the document cut by hand well past its context.
    std::string words;
    while (words.size() < (size_t(4) << 20)) words += "the cat sat on the mat. ";
    const std::string prompts = write_file("huge.txt", words + "\nOnce upon a time\n");
    const std::string out = (work_dir() / "huge_out.jsonl").string();
    const CliOutcome g = run_cli("generate -m " + kModelPath + " --tokenizer " + kTokPath + " -f " +
                                 prompts + " -n 4 -t 1 --out " + out);
    CAPTURE(g.text);
    CHECK(g.exit_code == 0);
    CHECK(
        g.text.find("huge.txt:1: the prompt of 4.0 MiB cannot fit in the context of 512 tokens") !=
        std::string::npos);
    CHECK(count_lines(read_text(out)) == 1);

    const std::string head = read_text(kText).substr(0, 3000);
    REQUIRE(head.find('\n') != std::string::npos);
    const std::string one_line = head.substr(0, head.find('\n'));
    REQUIRE(one_line.size() > 200);
    const std::string short_doc =
        write_file("short_doc.txt", one_line + " " + words.substr(0, 2000));
    const std::string long_doc = write_file("long_doc.txt", one_line + " " + words);
    const std::string ppl =
        "perplexity -m " + kModelPath + " --tokenizer " + kTokPath + " -c 64 -q -t 1 -f ";
    const CliOutcome a =
        nibble::test::run_nibble(ppl + short_doc, nibble::test::Capture::stdout_only);
    const CliOutcome b =
        nibble::test::run_nibble(ppl + long_doc, nibble::test::Capture::stdout_only);
    CHECK(a.exit_code == 0);
    CHECK(b.exit_code == 0);
    CHECK(a.text.find("truncated 1") != std::string::npos);
    CHECK(a.text == b.text);
}

// Files as a hostile user gives them: FIFOs, devices, directories, oversized
// and corrupted files as inputs (refused at once, one line naming the file,
// no raw bytes), and outputs that would destroy an input or a folder (refused
// before any work; an interrupted write leaves no temporary file and the
// existing output untouched).
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "cli_expect.h"
#include "fuzz_findings.h"
#include "spm_proto_bytes.h"
#include "test_data.h"

namespace fs = std::filesystem;
using nibble::test::Capture;
using nibble::test::CliOutcome;
using nibble::test::count_lines;
using nibble::test::data_path;
using nibble::test::expect_refusal;
using nibble::test::read_text;
using nibble::test::run_cli;
using nibble::test::run_nibble;
using nibble::test::spawn_nibble;
using nibble::test::terminal_safe;

namespace {

const std::string kModelPath = data_path("stories260K.bin");
const std::string kTokPath = data_path("tok512.model");
const std::string kText = data_path("corpus/tinystories_excerpt.txt");

fs::path work_dir() {
    static const fs::path dir = nibble::test::temp_dir("nibble_cli_files");
    return dir;
}

std::string write_file(const std::string& name, const std::string& bytes) {
    return nibble::test::write_file(work_dir() / name, bytes);
}

// Temporary files an output at `out` may leave: "<out>.tmp*".
int leftover_temporaries(const fs::path& out) {
    int n = 0;
    for (const auto& e : fs::directory_iterator(out.parent_path())) {
        if (e.path().filename().string().rfind(out.filename().string() + ".tmp", 0) == 0) ++n;
    }
    return n;
}

}  // namespace

TEST_CASE("FIFOs, devices and directories are refused at once as inputs") {
    const std::string fifo = (work_dir() / "fifo").string();
    fs::remove(fifo);
    REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
    const std::string tok = " --tokenizer " + kTokPath;
    // each would block forever (FIFO) or read without end (devices) before
    const auto start = std::chrono::steady_clock::now();
    expect_refusal("info " + fifo, 1, fifo + ": is a FIFO");
    expect_refusal("run -m " + fifo + " -p hi", 1, fifo + ": is a FIFO");
    expect_refusal("run -m " + kModelPath + " --tokenizer " + fifo + " -p hi", 1,
                   fifo + ": is a FIFO");
    expect_refusal("perplexity -m " + kModelPath + tok + " -f " + fifo, 1, fifo + ": is a FIFO");
    const std::string gen_out = " --out " + (work_dir() / "gen.jsonl").string();
    expect_refusal("generate -m " + kModelPath + tok + " -f " + fifo + gen_out, 1,
                   fifo + ": is a FIFO");
    expect_refusal("generate -m " + kModelPath + tok + " -f /dev/zero" + gen_out, 1,
                   "/dev/zero: is a character device");
    expect_refusal("quantize " + fifo + " " + (work_dir() / "q.nbl").string(), 1,
                   fifo + ": is a FIFO");
    expect_refusal(
        "synth --shape stories15m --tokenizer " + fifo + " -o " + (work_dir() / "s.nbl").string(),
        1, fifo + ": is a FIFO");
    expect_refusal("run -m " + kModelPath + " --tokenizer /dev/zero -p hi", 1,
                   "/dev/zero: is a device");
    expect_refusal("run -m " + kModelPath + " --tokenizer /dev/urandom -p hi", 1,
                   "/dev/urandom: is a device");
    expect_refusal("perplexity -m " + kModelPath + tok + " -f /dev/zero", 1,
                   "/dev/zero: is a character device");
    expect_refusal("perplexity -m " + kModelPath + tok + " -f /dev/urandom", 1,
                   "/dev/urandom: is a character device");
    expect_refusal("info /dev/zero", 1, "/dev/zero: is a character device");
    const std::string dir = work_dir().string();
    expect_refusal("run -m " + kModelPath + " --tokenizer " + dir + " -p hi", 1,
                   dir + ": is a directory");
    // a directory as the model is a Hugging Face checkpoint folder: it needs config.json
    expect_refusal("run -m " + dir + " -p hi", 1, dir + ": no config.json");
    expect_refusal("perplexity -m " + kModelPath + tok + " -f " + dir, 1, dir + ": is a directory");
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(30));
}

TEST_CASE("oversized tokenizer and text files are refused; stdin is read with the same bound") {
    // Sparse files: the size is what counts, no disk is used.
    const std::string big_tok = (work_dir() / "big.model").string();
    { std::ofstream(big_tok) << "x"; }
    fs::resize_file(big_tok, (uint64_t(64) << 20) + 1);
    expect_refusal("run -m " + kModelPath + " --tokenizer " + big_tok + " -p hi", 1,
                   big_tok + ": is larger than");
    const std::string big_text = (work_dir() / "big.txt").string();
    { std::ofstream(big_text) << "x"; }
    fs::resize_file(big_text, (uint64_t(256) << 20) + 1);
    const std::string tok = " --tokenizer " + kTokPath;
    expect_refusal("perplexity -m " + kModelPath + tok + " -f " + big_text, 1,
                   big_text + ": text of 256.0 MiB is larger than the limit");
    expect_refusal("perplexity -m " + kModelPath + tok + " -f - < /dev/zero", 1,
                   "stdin: text is larger than the limit");
    // stdin itself works: the same text gives the same perplexity from - and from the file
    const std::string cmd = "perplexity -m " + kModelPath + tok + " -c 64 -t 1 -f ";
    auto ppl = [&](const std::string& source) {
        const CliOutcome o = run_nibble(cmd + source, Capture::stdout_only);
        CHECK(o.exit_code == 0);
        return o.text;
    };
    const std::string from_file = ppl(kText);
    CHECK(from_file.find("perplexity") != std::string::npos);
    CHECK(ppl("- < " + kText) == from_file);
}

TEST_CASE("corrupted headers and vocabularies give one escaped line, not a library's text") {
    // nibble file: a raw byte inside the JSON header used to bring nlohmann's whole message
    const std::string nbl = (work_dir() / "ok.nbl").string();
    REQUIRE(
        run_cli("quantize " + kModelPath + " " + nbl + " -q --tokenizer " + kTokPath).exit_code ==
        0);
    std::string bytes = read_text(nbl);
    const size_t at = bytes.find("architecture");
    REQUIRE(at != std::string::npos);
    bytes[at] = '\xff';
    bytes[at + 1] = '\x1b';
    const std::string bad = write_file("bad_header.nbl", bytes);
    expect_refusal("info " + bad, 1, "header is not valid JSON (syntax error at byte");
    const CliOutcome r = run_cli("info " + bad);
    CHECK(r.text.find("json.exception") == std::string::npos);
    CHECK(r.text.find("last read") == std::string::npos);

    // GGUF: an escape sequence as the tokenizer model's name
    std::string gguf = read_text(data_path("stories260K.gguf"));
    const size_t key = gguf.find("tokenizer.ggml.model");
    REQUIRE(key != std::string::npos);
    const size_t value = gguf.find("llama", key);
    REQUIRE(value != std::string::npos);
    gguf.replace(value, 5, "\x1b[2J\x07");
    const std::string bad_gguf = write_file("bad_vocab.gguf", gguf);
    expect_refusal("info " + bad_gguf, 1, "\\x1b[2J\\x07");

    // a SentencePiece model that does not parse: no libsentencepiece source lines
    const std::string junk = write_file("junk.model", std::string("\x0a\xff\xfe\x01", 4) + "zz");
    expect_refusal("run -m " + kModelPath + " --tokenizer " + junk + " -p hi", 1,
                   junk + ": not a usable SentencePiece model");
    CHECK(run_cli("run -m " + kModelPath + " --tokenizer " + junk).text.find(".cc(") ==
          std::string::npos);
    // a piece libsentencepiece aborted on (fuzz_sentencepiece's finding)
    const std::string nul_piece =
        write_file("nul_piece.model", nibble::test::kSentencePieceNulPiece);
    expect_refusal("run -m " + kModelPath + " --tokenizer " + nul_piece + " -p hi", 1,
                   nul_piece + ": not a usable SentencePiece model (piece 7 contains a NUL byte)");
    // a normalizer charsmap whose trie loops (the library hung or crashed on "aaa...")
    const std::string loop =
        write_file("loop.model", read_text(kTokPath) + nibble::test::self_loop_charsmap(3));
    expect_refusal(
        "run -m " + kModelPath + " --tokenizer " + loop + " -p " + std::string(100, 'a'), 1,
        loop + ": not a usable SentencePiece model (normalizer charsmap: trie has a cycle)");
    // an unknown command is escaped too
    expect_refusal("\"$(printf '\\033[31mfrob')\"", 2, "unknown command '\\x1b[31mfrob'");
}

TEST_CASE("quantize and synth refuse outputs that are inputs, folders or unwritable") {
    const std::string in = write_file("input.bin", read_text(kModelPath));
    const std::string original = read_text(in);
    const fs::path link = work_dir() / "link.bin";
    fs::remove(link);
    fs::create_symlink(in, link);
    const std::string other_spelling = (work_dir() / "." / "input.bin").string();
    const std::string tok = " --tokenizer " + kTokPath;
    expect_refusal("quantize " + in + " " + in + tok, 1, "is the same file as the input");
    expect_refusal("quantize " + in + " " + link.string() + tok, 1,
                   "is the same file as the input");
    expect_refusal("quantize " + in + " " + other_spelling + tok, 1,
                   "is the same file as the input");
    const std::string tok_copy = write_file("tok_copy.model", read_text(kTokPath));
    expect_refusal("quantize " + in + " " + tok_copy + " --tokenizer " + tok_copy, 1,
                   "is the same file as the input " + tok_copy);
    CHECK(read_text(in) == original);
    CHECK(read_text(tok_copy) == read_text(kTokPath));
    expect_refusal("synth --shape stories15m --tokenizer " + tok_copy + " -o " + tok_copy, 1,
                   "is the same file as the input");
    CHECK(read_text(tok_copy) == read_text(kTokPath));

    const fs::path dir = work_dir() / "outdir";
    fs::create_directories(dir);
    expect_refusal("quantize " + in + " " + dir.string() + tok, 1, "is a directory");
    expect_refusal("synth --shape stories15m -o " + dir.string(), 1, "is a directory");
    expect_refusal("quantize " + in + " /nonexistent/folder/out.nbl" + tok, 1,
                   "folder /nonexistent/folder does not exist");
    expect_refusal("quantize " + in + " /dev/null" + tok, 1,
                   "/dev/null: is a character device, not a file to write");
    CHECK(leftover_temporaries(dir / "x") == 0);
    CHECK(read_text(in) == original);
}

TEST_CASE("an interrupted quantize or synth leaves no temporary file and the old output intact") {
    // A large enough input that quantizing takes seconds: stories15m in f32.
    const fs::path big_in = work_dir() / "stories15m_f32.nbl";
    REQUIRE(run_cli("synth --shape stories15m --format f32 -t 1 -o " + big_in.string(), 300)
                .exit_code == 0);
    const std::string big_original = read_text(big_in.string());
    const fs::path out = work_dir() / "interrupted.nbl";
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
        for (bool synth : {false, true}) {
            CAPTURE(sig);
            CAPTURE(synth);
            { std::ofstream(out) << "previous output"; }
            const pid_t pid = synth ? spawn_nibble({"synth", "--shape", "tinyllama-1.1b", "-t", "1",
                                                    "-o", out.string()})
                                    : spawn_nibble({"quantize", big_in.string(), out.string(), "-q",
                                                    "--rule", "search", "--no-default-keep"});
            // Kill once the temporary file exists and has data in it (mid-write).
            bool writing = false;
            for (int i = 0; i < 600 && !writing; ++i) {
                for (const auto& e : fs::directory_iterator(work_dir())) {
                    const std::string name = e.path().filename().string();
                    if (name.rfind("interrupted.nbl.tmp", 0) == 0 && fs::file_size(e.path()) > 0) {
                        writing = true;
                    }
                }
                if (!writing) std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
            CHECK(writing);
            kill(pid, sig);
            int status = 0;
            REQUIRE(waitpid(pid, &status, 0) == pid);
            CHECK(WIFSIGNALED(status));
            if (WIFSIGNALED(status)) CHECK(WTERMSIG(status) == sig);
            CHECK(leftover_temporaries(out) == 0);
            CHECK(read_text(out.string()) == "previous output");
        }
    }
    CHECK(read_text(big_in.string()) == big_original);
    fs::remove_all(work_dir());
}

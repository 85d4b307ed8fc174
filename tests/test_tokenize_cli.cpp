// nibble tokenize: llama-tokenize's output formats on the byte-pair fixtures
// (expected ids from llama.cpp's test vectors, shared/data/tokenizers), and
// one-line refusals for bad vocabularies.
#include <doctest/doctest.h>

#include <sstream>
#include <string>

#include "cli_expect.h"
#include "test_data.h"

using namespace nibble::test;

namespace {

const std::string kTokenizers = data_path("tokenizers");

std::string quote(const std::string& path) {
    return "'" + path + "'";
}

// Case `index` of a vector file and its ids as llama-tokenize --ids prints
// them, with `bos` in front when >= 0.
std::pair<std::string, std::string> vector_case(const std::string& gguf, size_t index, int bos) {
    const std::string inputs = read_text(gguf + ".inp");
    const std::string sep = "\n__ggml_vocab_test__\n";
    size_t start = 0;
    for (size_t i = 0; i < index; ++i) start = inputs.find(sep, start) + sep.size();
    const std::string text = inputs.substr(start, inputs.find(sep, start) - start);
    std::istringstream outputs(read_text(gguf + ".out"));
    std::string line;
    for (size_t i = 0; i <= index; ++i) std::getline(outputs, line);
    std::istringstream ids(line);
    std::string list = "[";
    if (bos >= 0) list += std::to_string(bos);
    for (int id; ids >> id;) list += (list.size() > 1 ? ", " : "") + std::to_string(id);
    return {text, list + "]\n"};
}

}  // namespace

TEST_CASE("--ids prints llama.cpp's ids for the GGUF vocabulary and tokenizer.json") {
    const auto dir = temp_dir("nibble_tokenize_cli");
    const std::string llama = kTokenizers + "/ggml-vocab-llama-bpe.gguf";
    const std::string qwen = kTokenizers + "/ggml-vocab-qwen2.gguf";
    for (size_t index : {0, 7, 20, 33, 45}) {
        CAPTURE(index);
        const auto [text, llama_ids] = vector_case(llama, index, 128000);  // with BOS
        const std::string file = write_file(dir / "text.txt", text);
        CHECK(run_nibble("tokenize --no-escape --ids -m " + quote(llama) + " -f " + quote(file),
                         Capture::stdout_only)
                  .text == llama_ids);
        CHECK(run_nibble("tokenize --no-escape --ids -m " +
                             quote(kTokenizers + "/llama3/tokenizer.json") + " -f " + quote(file),
                         Capture::stdout_only)
                  .text == llama_ids);
        const auto [same_text, qwen_ids] = vector_case(qwen, index, -1);  // Qwen: no BOS
        CHECK(run_nibble("tokenize --no-escape --ids -m " + quote(qwen) + " -f " + quote(file),
                         Capture::stdout_only)
                  .text == qwen_ids);
        const auto [text_again, no_bos] = vector_case(llama, index, -1);
        CHECK(run_nibble(
                  "tokenize --no-bos --no-escape --ids -m " + quote(llama) + " -f " + quote(file),
                  Capture::stdout_only)
                  .text == no_bos);
    }
}

TEST_CASE("pieces per line, escapes and special tokens as llama-tokenize prints them") {
    const std::string llama = quote(kTokenizers + "/ggml-vocab-llama-bpe.gguf");
    CHECK(run_nibble("tokenize -m " + llama + " -p 'Hello world\\n'", Capture::stdout_only).text ==
          "128000 -> '<|begin_of_text|>'\n  9906 -> 'Hello'\n  1917 -> ' world'\n   198 -> '\n'\n");
    // Control tokens written in the text are parsed unless --no-parse-special.
    CHECK(
        run_nibble("tokenize --ids --no-bos -m " + llama + " -p '<|eot_id|>'", Capture::stdout_only)
            .text == "[128009]\n");
    CHECK(run_nibble("tokenize --ids --no-bos --no-parse-special -m " + llama + " -p '<|eot_id|>'",
                     Capture::stdout_only)
              .text != "[128009]\n");
    // A SentencePiece vocabulary works the same way.
    CHECK(run_nibble("tokenize --ids -m " + quote(data_path("tok512.model")) + " -p 'Hello'",
                     Capture::stdout_only)
              .text.rfind("[1, ", 0) == 0);
}

TEST_CASE("bad vocabularies and options: one line, the key named") {
    const auto dir = temp_dir("nibble_tokenize_cli_bad");
    std::string gguf = read_text(kTokenizers + "/ggml-vocab-llama-bpe.gguf");
    const size_t key = gguf.find("tokenizer.ggml.pre");
    REQUIRE(key != std::string::npos);
    const size_t pre = gguf.find("llama-bpe", key);  // its value (general.name comes earlier)
    REQUIRE(pre != std::string::npos);
    gguf.replace(pre, 9, "llama-xyz");
    const std::string bad_pre = write_file(dir / "bad-pre.gguf", gguf);
    expect_refusal("tokenize -m " + quote(bad_pre) + " -p hi", 1,
                   "tokenizer.ggml.pre \"llama-xyz\" is not a known pre-tokenizer");
    const std::string json =
        write_file(dir / "tokenizer.json",
                   R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]},
            "pre_tokenizer": {"type": "ByteLevel"}})");
    expect_refusal("tokenize -m " + quote(json) + " -p hi", 1, "merged token \"ab\"");
    expect_refusal("tokenize -p hi", 2, "-m");
    expect_refusal("tokenize -m " + quote(json), 2, "-p");
}

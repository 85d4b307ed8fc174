// The LLaMA tokenizer against llama.cpp's test vectors (ggml-vocab-llama-spm
// .inp/.out), loaded from tokenizer.model and converted from tokenizer.bin.
#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/llama2c_vocab.h"
#include "tokenizer/tokenizer.h"

namespace {

const std::string data_dir = NIBBLE_DATA_DIR;

std::string read_file(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    REQUIRE(file.good());
    return std::string((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
}

struct Case {
    std::string text;
    std::vector<int32_t> ids;
};

// .inp: cases each followed by "\n__ggml_vocab_test__\n"; .out: one line of
// space-separated ids per case.
std::vector<Case> load_cases() {
    const std::string inp = read_file(data_dir + "/ggml-vocab-llama-spm.gguf.inp");
    const std::string out = read_file(data_dir + "/ggml-vocab-llama-spm.gguf.out");
    const std::string separator = "\n__ggml_vocab_test__\n";
    std::vector<Case> cases;
    size_t pos = 0;
    while (pos < inp.size()) {
        const size_t end = inp.find(separator, pos);
        REQUIRE(end != std::string::npos);
        cases.push_back({inp.substr(pos, end - pos), {}});
        pos = end + separator.size();
    }
    std::istringstream lines(out);
    std::string line;
    size_t i = 0;
    while (std::getline(lines, line)) {
        REQUIRE(i < cases.size());
        std::istringstream numbers(line);
        int32_t id;
        while (numbers >> id) cases[i].ids.push_back(id);
        ++i;
    }
    REQUIRE(i == cases.size());
    return cases;
}

void check_all_cases(const nibble::Tokenizer& tokenizer) {
    const std::vector<Case> cases = load_cases();
    CHECK(cases.size() == 46);
    size_t matched = 0;
    for (const Case& c : cases) {
        const std::vector<int32_t> ids = tokenizer.encode(c.text, false);
        CHECK_MESSAGE(ids == c.ids, "text: \"" << c.text << "\"");
        matched += ids == c.ids;
    }
    CHECK(matched == 46);
}

}  // namespace

TEST_CASE("tokenizer.model matches llama.cpp's llama-spm vectors") {
    const auto tokenizer = nibble::Tokenizer::from_file(data_dir + "/tokenizer.model");
    CHECK(tokenizer.vocab_size() == 32000);
    CHECK(tokenizer.bos_id() == 1);
    CHECK(tokenizer.eos_id() == 2);
    check_all_cases(tokenizer);
}

TEST_CASE("tokenizer.bin through from_vocab matches llama.cpp's llama-spm vectors") {
    const nibble::Vocab vocab = nibble::read_llama2c_vocab(data_dir + "/tokenizer.bin");
    REQUIRE(vocab.pieces.size() == 32000);
    CHECK(vocab.pieces[1] == "<s>");
    CHECK(vocab.types[1] == nibble::PieceType::control);
    CHECK(vocab.types[0] == nibble::PieceType::unknown);
    CHECK(vocab.pieces[3] == "<0x00>");
    CHECK(vocab.types[258] == nibble::PieceType::byte);
    CHECK(vocab.pieces[259] == "\xe2\x96\x81\xe2\x96\x81");  // "▁▁"
    const auto tokenizer = nibble::Tokenizer::from_vocab(vocab);
    CHECK(tokenizer.vocab_size() == 32000);
    CHECK(tokenizer.bos_id() == 1);
    CHECK(tokenizer.eos_id() == 2);
    check_all_cases(tokenizer);
    // The same tokenizer straight from the file (content detection).
    check_all_cases(nibble::Tokenizer::from_file(data_dir + "/tokenizer.bin"));
}

TEST_CASE("tokenizer.model and converted tokenizer.bin agree on a corpus excerpt") {
    const auto model = nibble::Tokenizer::from_file(data_dir + "/tokenizer.model");
    const auto bin = nibble::Tokenizer::from_file(data_dir + "/tokenizer.bin");
    const std::string text = read_file(data_dir + "/corpus/wikitext2-test.txt").substr(0, 20000);
    const std::vector<int32_t> a = model.encode(text, true);
    const std::vector<int32_t> b = bin.encode(text, true);
    CHECK(a.size() > 3000);
    CHECK(a == b);
    CHECK(model.decode(a) == bin.decode(b));

    // Streaming the whole excerpt token by token gives the same text.
    nibble::StreamDecoder stream(bin);
    std::string streamed;
    for (int32_t id : b) streamed += stream.push(id);
    streamed += stream.flush();
    CHECK(streamed == bin.decode(b));
}

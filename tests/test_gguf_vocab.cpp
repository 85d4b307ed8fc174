// The vocab-only ggml-vocab-llama-spm.gguf read by read_gguf_vocab and turned
// into a SentencePiece tokenizer reproduces llama.cpp's 46 tokenizer test
// vectors (.inp/.out, format in shared/data/MANIFEST.md; no BOS).
#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "models/gguf_reader.h"
#include "tokenizer/tokenizer.h"

using namespace nibble;

namespace {

const std::string kVocab = std::string(NIBBLE_DATA_DIR) + "/ggml-vocab-llama-spm.gguf";

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// Cases are cut at every separator; the piece after the final separator is empty.
std::vector<std::string> read_inputs(const std::string& path) {
    const std::string text = read_text(path);
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> cases;
    size_t start = 0;
    for (size_t at = text.find(sep); at != std::string::npos; at = text.find(sep, start)) {
        cases.push_back(text.substr(start, at - start));
        start = at + sep.size();
    }
    REQUIRE(start == text.size());  // the file ends with the separator
    return cases;
}

std::vector<std::vector<int32_t>> read_outputs(const std::string& path) {
    std::istringstream in(read_text(path));
    std::vector<std::vector<int32_t>> out;
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream ids(line);
        std::vector<int32_t> row;
        for (int32_t id; ids >> id;) row.push_back(id);
        out.push_back(row);
    }
    return out;
}

}  // namespace

TEST_CASE("llama-spm vocab GGUF reproduces llama.cpp's tokenizer test vectors") {
    const GgufFile g = GgufFile::parse(MappedFile::open(kVocab));
    const Vocab vocab = read_gguf_vocab(g);
    REQUIRE(vocab.pieces.size() == 32000);
    const Tokenizer tok = Tokenizer::from_vocab(vocab);
    CHECK(tok.vocab_size() == 32000);
    CHECK(tok.bos_id() == 1);
    CHECK(tok.eos_id() == 2);

    const auto inputs = read_inputs(kVocab + ".inp");
    const auto outputs = read_outputs(kVocab + ".out");
    REQUIRE(inputs.size() == 46);
    REQUIRE(outputs.size() == inputs.size());
    int matched = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
        CAPTURE(i);
        CAPTURE(inputs[i]);
        const auto ids = tok.encode(inputs[i], false);
        CHECK(ids == outputs[i]);
        matched += ids == outputs[i];
    }
    CHECK(matched == 46);
    // Spot checks from MANIFEST.md.
    CHECK(tok.encode("Hello world", false) == std::vector<int32_t>{15043, 3186});
    CHECK(tok.encode(" Hello world", false) == std::vector<int32_t>{29871, 15043, 3186});
    CHECK(tok.encode("\t", false) == std::vector<int32_t>{29871, 12});
}

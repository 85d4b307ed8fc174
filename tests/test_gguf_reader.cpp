// GGUF v3 parser: the real stories260K.gguf and the vocab-only llama-spm file
// (expected values from shared/data/MANIFEST.md), and corrupted copies that
// must fail with a runtime_error naming the file.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/ggml_blocks.h"
#include "models/gguf_reader.h"
#include "test_data.h"

using namespace nibble;

namespace {

const std::string kData = NIBBLE_DATA_DIR;
const std::string kStories = kData + "/stories260K.gguf";
const std::string kVocabOnly = kData + "/ggml-vocab-llama-spm.gguf";

GgufFile parse_path(const std::string& path) {
    return GgufFile::parse(MappedFile::open(path));
}

std::vector<uint8_t> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::string temp_path(const std::string& name) {
    return (nibble::test::temp_dir("nibble_test_gguf_reader") / name).string();
}

void write_bytes(const std::string& path, const uint8_t* data, size_t n) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), std::streamsize(n));
    REQUIRE(out.good());
}

// Parsing `path` must throw a runtime_error whose message starts with the path.
void expect_parse_error(const std::string& path, const std::string& fragment = "") {
    bool threw = false;
    try {
        parse_path(path);
    } catch (const std::runtime_error& e) {
        threw = true;
        const std::string msg = e.what();
        CHECK_MESSAGE(msg.rfind(path + ": ", 0) == 0, msg);
        if (!fragment.empty()) CHECK_MESSAGE(msg.find(fragment) != std::string::npos, msg);
    }
    CHECK_MESSAGE(threw, path);
}

// Offset of the first byte after the key string `key` (i.e. its type field).
size_t find_key(const std::vector<uint8_t>& bytes, const std::string& key) {
    for (size_t i = 8; i + key.size() <= bytes.size(); ++i) {
        uint64_t len;
        std::memcpy(&len, &bytes[i - 8], 8);
        if (len == key.size() && std::memcmp(&bytes[i], key.data(), key.size()) == 0) {
            return i + key.size();
        }
    }
    FAIL("key not found: " << key);
    return 0;
}

}  // namespace

TEST_CASE("stories260K.gguf header, metadata and tensor infos") {
    const GgufFile g = parse_path(kStories);
    CHECK(g.version() == 3);
    CHECK(g.alignment() == 32);
    CHECK(g.data_offset() % 32 == 0);
    CHECK(g.tensors().size() == 48);
    CHECK(g.metadata().size() == 19);

    CHECK(g.get_string("general.architecture") == "llama");
    CHECK(g.get_string("tokenizer.ggml.model") == "llama");
    CHECK(g.get_int("llama.context_length") == 2048);
    CHECK(g.get_int("llama.embedding_length") == 64);
    CHECK(g.get_int("llama.feed_forward_length") == 172);
    CHECK(g.get_int("llama.block_count") == 5);
    CHECK(g.get_int("llama.attention.head_count") == 8);
    CHECK(g.get_int("llama.attention.head_count_kv") == 4);
    CHECK(g.get_int("llama.rope.dimension_count") == 8);
    CHECK(g.get_real("llama.attention.layer_norm_rms_epsilon") == double(1e-5f));
    CHECK(g.find("llama.attention.head_count")->type == GgufType::u32);
    CHECK_FALSE(g.get_int("llama.rope.freq_base").has_value());  // absent key
    // A uint32 with all bits set stays unsigned.
    CHECK(g.get_int("tokenizer.ggml.padding_token_id") == 4294967295LL);

    const auto* tokens = g.get_string_array("tokenizer.ggml.tokens");
    REQUIRE(tokens != nullptr);
    REQUIRE(tokens->size() == 512);
    CHECK((*tokens)[0] == "<unk>");
    CHECK((*tokens)[1] == "<s>");
    CHECK((*tokens)[2] == "</s>");
    CHECK((*tokens)[3] == "<0x00>");
    CHECK((*tokens)[258] == "<0xFF>");
    REQUIRE(g.get_real_array("tokenizer.ggml.scores") != nullptr);
    CHECK(g.get_real_array("tokenizer.ggml.scores")->size() == 512);
    const auto* types = g.get_int_array("tokenizer.ggml.token_type");
    REQUIRE(types != nullptr);
    REQUIRE(types->size() == 512);
    CHECK((*types)[0] == 2);  // unknown
    CHECK((*types)[1] == 3);  // control
    CHECK((*types)[3] == 6);  // byte

    // Wrong-type access is an error naming the file and key.
    CHECK_THROWS_WITH_AS(g.get_int("general.architecture"),
                         doctest::Contains("general.architecture"), std::runtime_error);
    CHECK_THROWS_AS(g.get_string_array("tokenizer.ggml.scores"), std::runtime_error);

    // Tensors: dims innermost first, all F32, data inside the mapping.
    const GgufTensorInfo* embd = g.find_tensor("token_embd.weight");
    REQUIRE(embd != nullptr);
    CHECK(embd->dims == std::vector<int64_t>{64, 512});
    CHECK(embd->type == ggml::F32);
    CHECK(embd->n_bytes == 64 * 512 * 4);
    const GgufTensorInfo* ffn_down = g.find_tensor("blk.0.ffn_down.weight");
    REQUIRE(ffn_down != nullptr);
    CHECK(ffn_down->dims == std::vector<int64_t>{172, 64});
    const GgufTensorInfo* norm = g.find_tensor("output_norm.weight");
    REQUIRE(norm != nullptr);
    CHECK(norm->dims == std::vector<int64_t>{64});
    size_t total = 0;
    for (const auto& t : g.tensors()) {
        CHECK(t.type == ggml::F32);
        CHECK(t.offset % 32 == 0);
        CHECK(g.file()->contains(t.data, t.n_bytes));
        CHECK(t.data == g.file()->data() + g.data_offset() + t.offset);
        total += t.n_bytes;
    }
    // 264128 floats of weights without the RoPE tables, plus the separate output copy.
    CHECK(total == (264128 - 512 * 8 / 2 * 2 + 512 * 64) * 4);
    CHECK(g.find_tensor("no.such.tensor") == nullptr);
}

TEST_CASE("stories260K.gguf embedded vocabulary") {
    const Vocab v = read_gguf_vocab(parse_path(kStories));
    REQUIRE(v.pieces.size() == 512);
    CHECK(v.scores.size() == 512);
    CHECK(v.types.size() == 512);
    CHECK(v.bos_id == 1);
    CHECK(v.eos_id == 2);
    CHECK(v.unk_id == 0);
    CHECK(v.types[0] == PieceType::unknown);
    CHECK(v.types[1] == PieceType::control);
    CHECK(v.types[100] == PieceType::byte);
    CHECK(v.types[300] == PieceType::normal);
    CHECK(v.add_dummy_prefix);  // no add_space_prefix key: SentencePiece default
}

TEST_CASE("vocab-only llama-spm GGUF") {
    const GgufFile g = parse_path(kVocabOnly);
    CHECK(g.tensors().empty());
    CHECK(g.metadata().size() == 22);
    CHECK(g.get_bool("tokenizer.ggml.add_bos_token") == true);
    CHECK(g.get_bool("tokenizer.ggml.add_eos_token") == false);
    CHECK(g.get_int("llama.vocab_size") == 32000);
    const Vocab v = read_gguf_vocab(g);
    REQUIRE(v.pieces.size() == 32000);
    // Token types per MANIFEST.md: normal 31741, byte 256, control 2, unknown 1.
    int counts[7] = {};
    for (PieceType t : v.types) ++counts[int(t)];
    CHECK(counts[1] == 31741);
    CHECK(counts[6] == 256);
    CHECK(counts[3] == 2);
    CHECK(counts[2] == 1);
    CHECK(v.pieces[15043] == "\xe2\x96\x81Hello");  // ▁Hello
}

TEST_CASE("a non-llama tokenizer model is refused") {
    auto bytes = read_bytes(kStories);
    // Rewrite the 5-byte value "llama" of tokenizer.ggml.model as "gpt2x".
    const size_t at = find_key(bytes, "tokenizer.ggml.model") + 4 + 8;
    REQUIRE(std::memcmp(&bytes[at], "llama", 5) == 0);
    std::memcpy(&bytes[at], "gpt2x", 5);
    const std::string path = temp_path("gpt2_tokenizer.gguf");
    write_bytes(path, bytes.data(), bytes.size());
    const GgufFile g = parse_path(path);
    CHECK_THROWS_WITH_AS(read_gguf_vocab(g), doctest::Contains("gpt2x"), std::runtime_error);
}

TEST_CASE("truncated copies fail cleanly") {
    const auto bytes = read_bytes(kStories);
    const GgufFile g = parse_path(kStories);
    const size_t tokens_value = find_key(bytes, "tokenizer.ggml.tokens");
    const std::vector<size_t> cuts = {
        0,
        3,                   // inside the magic
        6,                   // inside the version
        20,                  // inside the counts
        tokens_value + 2,    // inside the first value type
        tokens_value + 200,  // inside the token strings
        find_key(bytes, "llama.context_length") + 2,
        g.data_offset() - 100,   // inside the tensor infos
        g.data_offset() - 1,     // in the padding before the data section
        g.data_offset() + 1000,  // inside the first tensor
        bytes.size() / 2,
        bytes.size() - 1,  // last byte of the last tensor missing
    };
    for (size_t cut : cuts) {
        CAPTURE(cut);
        const std::string path = temp_path("cut_" + std::to_string(cut) + ".gguf");
        write_bytes(path, bytes.data(), cut);
        expect_parse_error(path);
    }
}

TEST_CASE("corrupted headers fail cleanly") {
    const auto original = read_bytes(kStories);
    auto patched = [&](const std::string& name, auto patch, const std::string& fragment) {
        auto bytes = original;
        patch(bytes);
        const std::string path = temp_path(name);
        write_bytes(path, bytes.data(), bytes.size());
        expect_parse_error(path, fragment);
    };
    auto put_u32 = [](std::vector<uint8_t>& b, size_t at, uint32_t v) {
        std::memcpy(&b[at], &v, 4);
    };
    auto put_u64 = [](std::vector<uint8_t>& b, size_t at, uint64_t v) {
        std::memcpy(&b[at], &v, 8);
    };

    patched(
        "bad_magic.gguf", [](auto& b) { b[0] = 'X'; }, "magic");
    patched(
        "version2.gguf", [&](auto& b) { put_u32(b, 4, 2); }, "version 2");
    patched(
        "version4.gguf", [&](auto& b) { put_u32(b, 4, 4); }, "version 4");
    patched(
        "huge_tensor_count.gguf", [&](auto& b) { put_u64(b, 8, uint64_t(1) << 60); },
        "tensor count");
    patched(
        "huge_kv_count.gguf", [&](auto& b) { put_u64(b, 16, ~uint64_t(0)); }, "metadata count");
    // The first key's length field sits right after the 24-byte header.
    patched(
        "huge_key_length.gguf", [&](auto& b) { put_u64(b, 24, uint64_t(1) << 62); }, "length");
    // The first token string (inside the tokens array) gets an absurd length.
    const size_t tokens_value = find_key(original, "tokenizer.ggml.tokens");
    patched(
        "huge_token_length.gguf",
        [&](auto& b) { put_u64(b, tokens_value + 4 + 4 + 8, uint64_t(1) << 40); }, "length");
    patched(
        "huge_array_count.gguf",
        [&](auto& b) { put_u64(b, tokens_value + 4 + 4, uint64_t(1) << 58); }, "count");
    patched(
        "bad_value_type.gguf", [&](auto& b) { put_u32(b, tokens_value, 99); }, "type 99");
    patched(
        "bad_element_type.gguf", [&](auto& b) { put_u32(b, tokens_value + 4, 13); }, "type 13");

    // Tensor infos: locate the first (token_embd.weight) after the metadata.
    const GgufFile g = parse_path(kStories);
    size_t info = 0;
    for (size_t i = 8; i + 17 < original.size(); ++i) {
        uint64_t len;
        std::memcpy(&len, &original[i - 8], 8);
        if (len == 17 && std::memcmp(&original[i], "token_embd.weight", 17) == 0) info = i + 17;
    }
    REQUIRE(info > 0);
    patched(
        "five_dims.gguf", [&](auto& b) { put_u32(b, info, 5); }, "dimensions");
    patched(
        "huge_dims.gguf", [&](auto& b) { put_u64(b, info + 4 + 8, uint64_t(1) << 40); }, "outside");
    patched(
        "overflow_dims.gguf",
        [&](auto& b) {
            put_u64(b, info + 4, uint64_t(1) << 32);
            put_u64(b, info + 4 + 8, uint64_t(1) << 32);
        },
        "impossible size");
    patched(
        "negative_dim.gguf", [&](auto& b) { put_u64(b, info + 4, ~uint64_t(0)); }, "negative");
    patched(
        "unknown_ggml_type.gguf", [&](auto& b) { put_u32(b, info + 4 + 16, 77); }, "GGML type 77");
    patched(
        "misaligned_offset.gguf", [&](auto& b) { put_u64(b, info + 4 + 16 + 4, 4); }, "alignment");
    patched(
        "offset_past_end.gguf", [&](auto& b) { put_u64(b, info + 4 + 16 + 4, uint64_t(1) << 20); },
        "outside");
    patched(
        "huge_offset.gguf", [&](auto& b) { put_u64(b, info + 4 + 16 + 4, ~uint64_t(31)); },
        "outside");
}

TEST_CASE("a missing file is an error with its path") {
    expect_parse_error(temp_path("does_not_exist.gguf"));
}

// Bad tokenizer files and vocabularies throw std::runtime_error naming the file.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>

#include "fuzz_findings.h"
#include "spm_proto_bytes.h"
#include "test_data.h"
#include "tokenizer/llama2c_vocab.h"
#include "tokenizer/tokenizer.h"

namespace {

const std::string data_dir = NIBBLE_DATA_DIR;
using nibble::test::bytes_field;
using nibble::test::charsmap_field;
using nibble::test::extra_piece;
using nibble::test::trie_unit;
using nibble::test::varint;

std::string read_file(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    REQUIRE(file.good());
    return std::string((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
}

std::string write_temp(const std::string& name, const std::string& bytes) {
    return nibble::test::write_file(nibble::test::temp_dir("nibble_test_tokenizer") / name, bytes);
}

// Loading `path` must throw a runtime_error whose message starts with the path.
void check_load_fails(const std::string& path) {
    CAPTURE(path);
    bool threw = false;
    try {
        (void)nibble::Tokenizer::from_file(path);
    } catch (const std::runtime_error& e) {
        threw = true;
        const std::string message = e.what();
        CAPTURE(message);
        CHECK(message.rfind(path + ": ", 0) == 0);
        CHECK(message.find('\n') == std::string::npos);
    }
    CHECK(threw);
}

// Loading the ModelProto `proto` must throw a one-line runtime_error that
// names the origin and says `reason`.
void check_proto_refused(const std::string& proto, const std::string& reason) {
    CAPTURE(reason);
    bool threw = false;
    try {
        (void)nibble::Tokenizer::from_serialized_proto(proto, "bad.model");
    } catch (const std::runtime_error& e) {
        threw = true;
        const std::string message = e.what();
        CAPTURE(message);
        CHECK(message.rfind("bad.model: not a usable SentencePiece model (", 0) == 0);
        CHECK(message.find(reason) != std::string::npos);
        CHECK(message.find('\n') == std::string::npos);
        CHECK(message.find('\0') == std::string::npos);
    }
    CHECK(threw);
}

}  // namespace

TEST_CASE("missing and empty files") {
    check_load_fails(data_dir + "/no_such_tokenizer.model");
    const std::string empty = write_temp("empty.bin", "");
    check_load_fails(empty);
    std::remove(empty.c_str());
}

TEST_CASE("truncated tokenizer.bin at every kind of boundary") {
    const std::string bytes = read_file(data_dir + "/tok512.bin");
    for (size_t size : {size_t{1}, size_t{3}, size_t{4}, size_t{6}, size_t{10}, size_t{20},
                        bytes.size() / 2, bytes.size() - 1}) {
        const std::string path = write_temp("truncated.bin", bytes.substr(0, size));
        check_load_fails(path);
        std::remove(path.c_str());
    }
    // Still whole: loads.
    const std::string whole = write_temp("whole.bin", bytes);
    CHECK(nibble::Tokenizer::from_file(whole).vocab_size() == 512);
    std::remove(whole.c_str());
}

TEST_CASE("corrupted tokenizer.bin lengths") {
    std::string bytes = read_file(data_dir + "/tok512.bin");
    // Length of token 0 (offset 8): negative, huge, beyond max_token_length.
    for (uint32_t length : {0xFFFFFFFFu, 0x7FFFFFFFu, 8u, 0u}) {
        std::string bad = bytes;
        for (int i = 0; i < 4; ++i) bad[8 + i] = static_cast<char>(length >> (8 * i));
        const std::string path = write_temp("badlen.bin", bad);
        check_load_fails(path);
        std::remove(path.c_str());
    }
}

TEST_CASE("random bytes and truncated .model") {
    std::mt19937 rng(7);
    std::string noise(4096, '\0');
    for (char& c : noise) c = static_cast<char>(rng());
    noise[0] = '\x0a';  // not a plausible tokenizer.bin header either way
    const std::string path = write_temp("random.model", noise);
    check_load_fails(path);
    std::remove(path.c_str());

    const std::string model = read_file(data_dir + "/tok512.model");
    for (size_t size : {size_t{2}, size_t{100}, model.size() / 2, model.size() - 3}) {
        const std::string cut = write_temp("cut.model", model.substr(0, size));
        check_load_fails(cut);
        std::remove(cut.c_str());
    }
}

TEST_CASE("bad vocabularies and ids") {
    nibble::Vocab vocab;
    CHECK_THROWS_AS(nibble::Tokenizer::from_vocab(vocab), std::runtime_error);
    vocab.pieces = {"<unk>", "<s>", "</s>", "a"};
    vocab.scores = {0, 0, 0};
    vocab.types = {nibble::PieceType::unknown, nibble::PieceType::control,
                   nibble::PieceType::control, nibble::PieceType::normal};
    CHECK_THROWS_AS(nibble::Tokenizer::from_vocab(vocab), std::runtime_error);
    vocab.scores.push_back(0);
    CHECK(nibble::Tokenizer::from_vocab(vocab).vocab_size() == 4);
    vocab.bos_id = 9;
    CHECK_THROWS_AS(nibble::Tokenizer::from_vocab(vocab), std::runtime_error);
    vocab.bos_id = 1;
    vocab.pieces[3] = "<s>";  // duplicate piece
    CHECK_THROWS_AS(nibble::Tokenizer::from_vocab(vocab), std::runtime_error);

    const auto tokenizer = nibble::Tokenizer::from_file(data_dir + "/tok512.bin");
    CHECK_THROWS_AS(tokenizer.decode({1, 512}), std::runtime_error);
    CHECK_THROWS_AS(tokenizer.decode({-1}), std::runtime_error);
    nibble::StreamDecoder stream(tokenizer);
    CHECK_THROWS_AS(stream.push(100000), std::runtime_error);
}

// libsentencepiece builds its tries from the pieces as C strings: a piece
// starting with NUL is a zero-length key, on which its trie builder throws
// Darts::Details::Exception (not a runtime_error, and naming the library's
// source file). Found by fuzz_sentencepiece.
TEST_CASE("ModelProto pieces that libsentencepiece aborts on are refused") {
    check_proto_refused(nibble::test::kSentencePieceNulPiece, "piece 7 contains a NUL byte");

    // tok512.model with one more piece: a repeated field may come anywhere.
    const std::string model = read_file(data_dir + "/tok512.model");
    REQUIRE(nibble::Tokenizer::from_serialized_proto(model, "tok512").vocab_size() == 512);
    for (int type : {1, 2, 3, 4, 5}) {
        CAPTURE(type);
        check_proto_refused(model + extra_piece(std::string("\0x", 2), type),
                            "piece 512 contains a NUL byte");
        check_proto_refused(model + extra_piece(std::string("\xe2\x96\x81"
                                                            "a\0b",
                                                            6),
                                                type),
                            "piece 512 contains a NUL byte");
        check_proto_refused(model + extra_piece("", type), "piece 512 is empty");
    }
    // no text at all (only a type)
    check_proto_refused(model + bytes_field(1, varint(3 << 3) + varint(1)), "piece 512 is empty");
    // the last text of a piece counts (protobuf merges a repeated scalar field)
    check_proto_refused(model + bytes_field(1, bytes_field(1, "zq") + bytes_field(1, {"\0", 1})),
                        "piece 512 contains a NUL byte");
    const std::string fine = "\xe2\x96\x81zqzq";
    CHECK(nibble::Tokenizer::from_serialized_proto(
              model + bytes_field(1, bytes_field(1, {"\0", 1}) + bytes_field(1, fine)), "tok512")
              .vocab_size() == 513);

    // bytes that are not protobuf wire format
    check_proto_refused(model + "\x0a", "varint cut short");
    check_proto_refused(model + "\x0a\x05zz", "length beyond the end");
    check_proto_refused(model + "\x0b", "wire type 3");
    check_proto_refused(model + std::string("\x00\x00", 2), "field number 0");
    check_proto_refused(model + "\x09\x01\x02", "field beyond the end");
    check_proto_refused(model + std::string(11, '\xff'), "varint longer than 10 bytes");
    check_proto_refused(model + bytes_field(1, "\x0a\x09zz"),
                        "length beyond the end at byte " + std::to_string(model.size() + 2));
}

// libsentencepiece walks a precompiled charsmap's double array as it is:
// offsets outside it, values outside the strings, a loop or more than 32
// matches on one path (its result array) read out of bounds or hang.
TEST_CASE("precompiled charsmaps the normalizer would read out of bounds are refused") {
    const std::string model = read_file(data_dir + "/tok512.model");
    const std::string x(std::string("x\0", 2));
    for (uint32_t spec : {3u, 5u}) {
        CAPTURE(spec);
        const std::string which = spec == 3 ? "(normalizer charsmap: " : "(denormalizer charsmap: ";
        check_proto_refused(model + nibble::test::self_loop_charsmap(spec),
                            which + "trie has a cycle");
        // the root's children beyond the array
        check_proto_refused(model + charsmap_field(spec, std::vector<uint32_t>(256, 256 << 10), x),
                            which + "points outside its trie");
        // 'a' matches, and its value indexes past the strings
        std::vector<uint32_t> units(256, 0);
        units['a'] = trie_unit('a', true, 'a' ^ 200);
        units[200] = 0x80000000u | 1000;
        check_proto_refused(model + charsmap_field(spec, units, x),
                            which + "value outside its strings");
        units[200] = 0x80000000u | 1;  // "" at the end of the strings: fine
        CHECK(nibble::Tokenizer::from_serialized_proto(model + charsmap_field(spec, units, x), "t")
                  .vocab_size() == 512);
        check_proto_refused(model + charsmap_field(spec, units, "x"),
                            which + "strings do not end in NUL");
        check_proto_refused(model + charsmap_field(spec, {}, x), which + "no trie");
        check_proto_refused(
            model + bytes_field(spec, bytes_field(2, std::string("\x0a\0\0\0", 4) +
                                                         std::string("abcdefg\0", 8))),
            which + "trie beyond its end");

        // A chain of matches on "aaa...": 32 load and normalize (the library's
        // limit), 33 are refused. Base k is block k; its 'a' child leads to
        // block k + 1, whose unit 0 is the value (0: "x").
        for (uint32_t matches : {32u, 33u}) {
            CAPTURE(matches);
            std::vector<uint32_t> chain((matches + 2) * 256, 0);
            for (uint32_t k = 0; k < matches; ++k) {
                chain[256 * k + 'a'] = trie_unit('a', true, (256 * k + 'a') ^ (256 * (k + 1)));
                chain[256 * (k + 1)] = 0x80000000u;
            }
            const std::string proto = model + charsmap_field(spec, chain, x);
            if (matches > 32) {
                check_proto_refused(proto, which + "trie has more than 32 matches on one path");
                continue;
            }
            const auto t = nibble::Tokenizer::from_serialized_proto(proto, "t");
            const std::string text(200, 'a');
            const auto ids = t.encode(text, false);
            CHECK_FALSE(ids.empty());
            (void)t.decode(ids);
        }
    }
}

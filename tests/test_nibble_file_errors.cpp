// nibble model files that are truncated, corrupted or from a future version are
// refused with a std::runtime_error whose message starts with the file path.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "models/loader.h"
#include "models/nibble_file.h"
#include "models/quantize_model.h"
#include "test_data.h"
#include "tokenizer/tokenizer.h"

using namespace nibble;
using nibble::test::data_path;
using ordered_json = nlohmann::ordered_json;

namespace {

std::string temp_path(const std::string& name) {
    return (nibble::test::temp_dir("nibble_test_nibble_file_errors") / name).string();
}

void write_bytes(const std::string& path, const std::string& bytes) {
    nibble::test::write_file(path, bytes);
}

// A valid q4 stories260K file of the newest version (interleaved matrices), as bytes.
const std::string& good_file() {
    static const std::string bytes = [] {
        Model m = load_model(data_path("stories260K.bin"));
        m.tokenizer_proto = Tokenizer::from_file(data_path("tok512.model")).serialized_proto();
        const std::string path = temp_path("good.nbl");
        save_nibble_file(quantize_model(m, QuantizeRecipe{}).model, path);  // (version 2)
        return nibble::test::read_text(path);
    }();
    return bytes;
}

uint64_t header_length(const std::string& bytes) {
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    return n;
}

// Rewrites the JSON header with `edit` applied, re-padded to 64 bytes; the data
// section is kept as it is.
std::string with_header(const std::function<void(ordered_json&)>& edit) {
    const std::string& bytes = good_file();
    const uint64_t n = header_length(bytes);
    ordered_json header = ordered_json::parse(bytes.substr(8, n));
    edit(header);
    std::string text = header.dump();
    text.append((64 - (8 + text.size()) % 64) % 64, ' ');
    std::string out(8, '\0');
    const uint64_t len = text.size();
    std::memcpy(out.data(), &len, 8);
    return out + text + bytes.substr(8 + n);
}

// Edits the JSON string nibble.tensors inside the metadata.
std::string with_tensor_info(const std::function<void(ordered_json&)>& edit) {
    return with_header([&](ordered_json& h) {
        ordered_json infos =
            ordered_json::parse(h["__metadata__"]["nibble.tensors"].get<std::string>());
        edit(infos);
        h["__metadata__"]["nibble.tensors"] = infos.dump();
    });
}

void expect_refused(const std::string& name, const std::string& bytes, const std::string& problem) {
    const std::string path = temp_path(name);
    write_bytes(path, bytes);
    CAPTURE(name);
    bool threw = false;
    try {
        (void)load_model(path);
    } catch (const std::runtime_error& e) {
        threw = true;
        const std::string msg = e.what();
        CAPTURE(msg);
        CHECK(msg.rfind(path + ": ", 0) == 0);
        CHECK(msg.find(problem) != std::string::npos);
        CHECK(msg.find('\n') == std::string::npos);
    } catch (...) {
        FAIL("not a std::runtime_error");
    }
    CHECK(threw);
}

}  // namespace

TEST_CASE("the good file loads (the corruptions below are the only change)") {
    const std::string path = temp_path("good_copy.nbl");
    write_bytes(path, good_file());
    CHECK_NOTHROW((void)load_model(path));
    const std::string rebuilt = with_header([](ordered_json&) {});
    write_bytes(path, rebuilt);
    CHECK_NOTHROW((void)load_model(path));
}

TEST_CASE("truncated files are refused") {
    const std::string& bytes = good_file();
    const uint64_t n = header_length(bytes);
    const size_t cuts[] = {0,
                           5,
                           30,
                           60,
                           size_t(n / 2),
                           size_t(8 + n - 1),
                           size_t(8 + n),
                           size_t(8 + n + 100),
                           bytes.size() / 2,
                           bytes.size() - 64,
                           bytes.size() - 1};
    for (size_t cut : cuts) {
        CAPTURE(cut);
        expect_refused("cut_" + std::to_string(cut) + ".nbl", bytes.substr(0, cut), "");
    }
    // Cut inside the data section: the nibble loader names the problem.
    expect_refused("cut_data.nbl", bytes.substr(0, bytes.size() - 64), "truncated");
}

TEST_CASE("absurd header lengths are refused") {
    for (uint64_t n : {uint64_t(1) << 62, uint64_t(~0ull), uint64_t(good_file().size())}) {
        std::string bytes = good_file();
        std::memcpy(bytes.data(), &n, 8);
        expect_refused("hlen.nbl", bytes, "header length");
    }
    std::string bytes = good_file();
    const uint64_t n = header_length(bytes) - 1;  // data no longer 64-aligned
    std::memcpy(bytes.data(), &n, 8);
    expect_refused("hlen_unaligned.nbl", bytes, "multiple of 64");
}

TEST_CASE("garbage JSON is refused") {
    std::string bytes = good_file();
    const size_t at = 8 + 70;  // after the magic prefix, inside the metadata
    bytes.replace(at, 6, "\x01@@}{\"");
    expect_refused("garbage.nbl", bytes, "not valid JSON");
    expect_refused("config_garbage.nbl", with_header([](ordered_json& h) {
                       h["__metadata__"]["nibble.config"] = "{\"dim\": 64,";
                   }),
                   "nibble.config is not valid JSON");
    expect_refused(
        "config_type.nbl", with_header([](ordered_json& h) {
            auto c = ordered_json::parse(h["__metadata__"]["nibble.config"].get<std::string>());
            c["dim"] = "sixty-four";
            h["__metadata__"]["nibble.config"] = c.dump();
        }),
        "dim");
    expect_refused("no_meta.nbl",
                   with_header([](ordered_json& h) { h["__metadata__"].erase("nibble.tensors"); }),
                   "nibble.tensors");
}

TEST_CASE("offsets out of range, gaps and misalignment are refused") {
    expect_refused("offset_range.nbl", with_header([](ordered_json& h) {
                       h["output_norm.weight"]["data_offsets"][1] = uint64_t(1) << 40;
                   }),
                   "outside the data section");
    expect_refused("offset_negative.nbl", with_header([](ordered_json& h) {
                       h["output_norm.weight"]["data_offsets"][0] = -64;
                   }),
                   "non-negative");
    expect_refused("offset_misaligned.nbl", with_header([](ordered_json& h) {
                       auto& o = h["blk.0.attn_q.weight"]["data_offsets"];
                       o[0] = o[0].get<uint64_t>() + 4;
                   }),
                   "not a multiple of 64");
    expect_refused("offset_overlap.nbl", with_header([](ordered_json& h) {
                       h["blk.0.attn_q.weight"]["data_offsets"] =
                           h["token_embd.weight"]["data_offsets"];
                   }),
                   "gap or overlap");
    expect_refused("missing_tensor.nbl",
                   with_header([](ordered_json& h) { h.erase("blk.2.ffn_up.weight"); }), "");
}

TEST_CASE("wrong sizes, unknown formats and shapes that contradict the config are refused") {
    expect_refused("wrong_group.nbl", with_tensor_info([](ordered_json& t) {
                       t["blk.0.attn_q.weight"]["group_size"] = 64;
                   }),
                   "layout needs");
    expect_refused("bad_group.nbl", with_tensor_info([](ordered_json& t) {
                       t["blk.0.attn_q.weight"]["group_size"] = 48;
                   }),
                   "group size 48");
    expect_refused("unknown_format.nbl", with_tensor_info([](ordered_json& t) {
                       t["blk.1.ffn_down.weight"]["format"] = "q5";
                   }),
                   "unknown format 'q5'");
    expect_refused("wrong_dq.nbl", with_tensor_info([](ordered_json& t) {
                       t["blk.1.ffn_down.weight"]["double_quant"] = true;
                   }),
                   "layout needs");
    // Swap the shapes of two tensors of equal size: sizes agree, the config does not.
    expect_refused("wrong_shape.nbl", with_tensor_info([](ordered_json& t) {
                       t["blk.0.attn_k.weight"]["rows"] = 64;
                       t["blk.0.attn_k.weight"]["cols"] = 32;
                   }),
                   "shape");
    expect_refused(
        "wrong_config.nbl", with_header([](ordered_json& h) {
            auto c = ordered_json::parse(h["__metadata__"]["nibble.config"].get<std::string>());
            c["n_layers"] = 6;
            h["__metadata__"]["nibble.config"] = c.dump();
        }),
        "blk.5");
    expect_refused("bad_dtype.nbl",
                   with_header([](ordered_json& h) { h["blk.0.attn_q.weight"]["dtype"] = "I64"; }),
                   "dtype I64");
    expect_refused("bad_tokenizer_size.nbl", with_header([](ordered_json& h) {
                       h["__metadata__"]["nibble.tokenizer_bytes"] = "999999";
                   }),
                   "tokenizer.sentencepiece");
}

TEST_CASE("a file from a future version is refused clearly") {
    const std::string bytes =
        with_header([](ordered_json& h) { h["__metadata__"]["nibble_version"] = "3"; });
    const std::string path = temp_path("future.nbl");
    write_bytes(path, bytes);
    auto file = MappedFile::open(path);
    CHECK(is_nibble_file(*file));  // still recognised as a nibble file ...
    expect_refused("future.nbl", bytes,
                   "nibble file version 3 is not supported");  // ... and refused
}

TEST_CASE("a bad interleave entry is refused with the tensor's name") {
    expect_refused("interleave_8.nbl", with_tensor_info([](ordered_json& t) {
                       t["blk.0.attn_q.weight"]["interleave"] = 8;
                   }),
                   "nibble.tensors[blk.0.attn_q.weight]: interleave 8 is not 1 or 4");
    expect_refused("interleave_text.nbl", with_tensor_info([](ordered_json& t) {
                       t["blk.0.attn_q.weight"]["interleave"] = "4";
                   }),
                   "\"interleave\" is not an integer");
    expect_refused("interleave_vector.nbl", with_tensor_info([](ordered_json& t) {
                       t["blk.0.attn_norm.weight"]["interleave"] = 4;
                   }),
                   "cannot be interleaved");
    expect_refused("interleave_v1.nbl",
                   with_header([](ordered_json& h) { h["__metadata__"]["nibble_version"] = "1"; }),
                   "needs nibble file version 2");
}

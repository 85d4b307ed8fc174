// Every real model and tokenizer file, truncated at every boundary of its
// header (every field of a GGUF header, every byte of the others) and at 100 random points, and
// with 1,000 random single-byte corruptions of its header region: loading gives a clean
// std::runtime_error / std::invalid_argument naming the file, or a model that
// then runs two tokens. Never a crash, another exception type, or a hang.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/forward.h"
#include "models/loader.h"
#include "models/nibble_file.h"
#include "test_data.h"
#include "tokenizer/llama2c_vocab.h"
#include "tokenizer/tokenizer.h"

using namespace nibble;
using nibble::test::data_path;
using nibble::test::read_text;

namespace {

struct Tally {
    int errors = 0;  // clean refusals
    int loaded = 0;  // loaded and ran
};

std::string scratch_path(const std::string& name) {
    const auto dir = nibble::test::temp_dir("nibble_robustness_" + std::to_string(getpid()));
    return (dir / name).string();
}

// Loads the model at `path`; when it loads, runs two tokens through it (and its
// tokenizer, if it carries one). Anything but success or a runtime_error /
// invalid_argument that names the file fails the test.
void load_and_run(const std::string& path, Tally& tally) {
    try {
        const Model model = load_model(path);
        RuntimeOptions ro;
        ro.context = 8;
        ro.max_batch = 2;
        InferenceState state(model, ro);
        const BatchToken batch[2] = {{1 % model.config.vocab_size, 0, 0, false}, {0, 1, 0, true}};
        state.forward(std::span<const BatchToken>(batch, 2));
        // The tokenizer it carries, unless it is the one already checked (building a
        // 32000-piece SentencePiece model for each harmless corruption would dominate).
        static std::string last_checked_proto;
        if (!model.tokenizer_proto.empty() && model.tokenizer_proto != last_checked_proto) {
            const Tokenizer t = Tokenizer::from_serialized_proto(model.tokenizer_proto, path);
            (void)t.decode(t.encode("Once upon a time", true));
            last_checked_proto = model.tokenizer_proto;
        }
        ++tally.loaded;
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()).rfind(path + ": ", 0) == 0);
        ++tally.errors;
    } catch (const std::invalid_argument& e) {
        ++tally.errors;
    }
}

// Offsets just after each field of a GGUF header (magic, version, counts, every
// metadata key/type/value and every tensor info), so truncating there cuts at
// each boundary. Inside arrays, the boundaries of the first 64 elements and the
// array's end (the elements repeat one structure). Returns the end of the tensor infos.
size_t gguf_boundaries(const std::string& bytes, std::vector<size_t>& cuts) {
    size_t at = 0;
    auto u64 = [&] {
        uint64_t v = 0;
        std::memcpy(&v, bytes.data() + at, 8);
        at += 8;
        return v;
    };
    auto u32 = [&] {
        uint32_t v = 0;
        std::memcpy(&v, bytes.data() + at, 4);
        at += 4;
        return v;
    };
    auto mark = [&] { cuts.push_back(at); };
    static const size_t scalar_size[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    std::function<void(uint32_t, bool)> value = [&](uint32_t type, bool record) {
        if (type == 8) {  // string
            const uint64_t n = u64();
            if (record) mark();
            at += n;
        } else if (type == 9) {  // array
            const uint32_t element = u32();
            mark();
            const uint64_t count = u64();
            mark();
            for (uint64_t i = 0; i < count; ++i) {
                value(element, i < 64);
                if (i < 64) mark();
            }
        } else {
            at += scalar_size[type];
        }
    };
    at = 4;
    mark();
    u32();
    mark();
    const uint64_t n_tensors = u64();
    mark();
    const uint64_t n_kv = u64();
    mark();
    for (uint64_t i = 0; i < n_kv; ++i) {
        const uint64_t key = u64();
        mark();
        at += key;
        mark();
        const uint32_t type = u32();
        mark();
        value(type, true);
        mark();
    }
    for (uint64_t i = 0; i < n_tensors; ++i) {
        at += u64();
        mark();
        const uint32_t dims = u32();
        mark();
        for (uint32_t d = 0; d < dims; ++d) {
            u64();
            mark();
        }
        u32();
        mark();
        u64();
        mark();
    }
    return at;
}

// Truncation points at the header's boundaries; returns the header region's end,
// where a single-byte change alters structure rather than a weight.
size_t header_cuts(const std::string& bytes, const std::string& name, std::vector<size_t>& cuts) {
    if (name.find(".gguf") != std::string::npos) return gguf_boundaries(bytes, cuts);
    size_t header = 28;  // llama2.c Config: 7 int32 fields
    if (bytes.size() > 16 && std::memcmp(bytes.data() + 8, "{\"__metadata__\"", 15) == 0) {
        uint64_t n = 0;  // nibble file: the length prefix, then every byte of the JSON header
        std::memcpy(&n, bytes.data(), 8);
        header = size_t(std::min<uint64_t>(8 + n, bytes.size()));
    } else if (std::memcmp(bytes.data(), "24ka", 4) == 0) {
        header = 256;  // runq: magic, version, Config, shared flag, group size, padding
    }
    for (size_t cut = 0; cut <= header; ++cut) cuts.push_back(cut);
    return header;
}

void check_model_file(const std::string& name, const std::string& bytes, Tally& tally) {
    CAPTURE(name);
    const std::string path = scratch_path(name);
    std::mt19937_64 rng(0x5eed ^ bytes.size());

    // Truncation: write once, then cut shorter and shorter (ftruncate is cheap).
    std::vector<size_t> cuts;
    const size_t header = header_cuts(bytes, name, cuts);
    REQUIRE(header <= bytes.size());
    MESSAGE(name << ": header " << header << " bytes, " << cuts.size() << " header cuts");
    std::uniform_int_distribution<size_t> anywhere(0, bytes.size() - 1);
    for (int i = 0; i < 100; ++i) cuts.push_back(anywhere(rng));
    std::sort(cuts.rbegin(), cuts.rend());
    { std::ofstream(path, std::ios::binary) << bytes; }
    const int loaded_before = tally.loaded;
    load_and_run(path, tally);
    REQUIRE(tally.loaded == loaded_before + 1);  // the intact file works
    for (size_t cut : cuts) {
        REQUIRE(truncate(path.c_str(), off_t(cut)) == 0);
        load_and_run(path, tally);
    }

    // 1,000 single-byte corruptions of the header region, each undone after.
    { std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes; }
    const int fd = open(path.c_str(), O_WRONLY);
    REQUIRE(fd >= 0);
    std::uniform_int_distribution<size_t> in_header(0, header - 1);
    std::uniform_int_distribution<int> byte_value(0, 255);
    for (int i = 0; i < 1000; ++i) {
        const size_t at = in_header(rng);
        uint8_t value = uint8_t(byte_value(rng));
        if (value == uint8_t(bytes[at])) value ^= 0x80;
        REQUIRE(pwrite(fd, &value, 1, off_t(at)) == 1);
        load_and_run(path, tally);
        REQUIRE(pwrite(fd, &bytes[at], 1, off_t(at)) == 1);
    }
    close(fd);
    std::filesystem::remove(path);
}

// Tokenizer bytes (a SentencePiece model or a llama2.c tokenizer.bin), parsed
// in memory: a clean error or a tokenizer that encodes and decodes.
void load_tokenizer_bytes(const std::string& bytes, Tally& tally) {
    try {
        const Tokenizer t = looks_like_llama2c_vocab(bytes)
                                ? Tokenizer::from_vocab(parse_llama2c_vocab(bytes, "tok"))
                                : Tokenizer::from_serialized_proto(bytes, "tok");
        (void)t.decode(t.encode("Once upon a time", true));
        ++tally.loaded;
    } catch (const std::runtime_error&) {
        ++tally.errors;
    }
}

void check_tokenizer_file(const std::string& name, const std::string& bytes, Tally& tally) {
    CAPTURE(name);
    std::mt19937_64 rng(0x70c ^ bytes.size());
    const size_t header = std::min<size_t>(bytes.size(), 4096);
    for (size_t cut = 0; cut < header; cut += 7) load_tokenizer_bytes(bytes.substr(0, cut), tally);
    std::uniform_int_distribution<size_t> anywhere(0, bytes.size() - 1);
    for (int i = 0; i < 100; ++i) load_tokenizer_bytes(bytes.substr(0, anywhere(rng)), tally);
    std::uniform_int_distribution<size_t> in_header(0, header - 1);
    for (int i = 0; i < 1000; ++i) {
        std::string copy = bytes;
        copy[in_header(rng)] = char(rng() & 0xff);
        load_tokenizer_bytes(copy, tally);
    }
}

}  // namespace

TEST_CASE("truncated and corrupted model files: clean errors or working models") {
    std::vector<std::pair<std::string, std::string>> files = {
        {"stories260K.bin", read_text(data_path("stories260K.bin"))},
        {"stories260K_q80.bin", read_text(data_path("stories260K_q80.bin"))},
        {"stories260K.gguf", read_text(data_path("stories260K.gguf"))},
        {"aidreams260K.bin", read_text(data_path("extra/aidreams260K.bin"))},
    };
    // A nibble file written by this build (q4, with its tokenizer).
    {
        Model m = load_model(data_path("stories260K.bin"));
        m.tokenizer_proto = Tokenizer::from_file(data_path("tok512.model")).serialized_proto();
        const std::string path = scratch_path("source.nbl");
        save_nibble_file(m, path);
        files.emplace_back("stories260K.nbl", read_text(path));
    }
    for (const auto& [name, bytes] : files) {
        REQUIRE_FALSE(bytes.empty());
        Tally tally;
        const auto start = std::chrono::steady_clock::now();
        check_model_file(name, bytes, tally);
        MESSAGE(
            name << ": " << tally.errors << " clean errors, " << tally.loaded << " loaded and ran, "
                 << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()
                 << " s");
        CHECK(tally.errors > 0);
        CHECK(tally.loaded > 0);  // the untruncated cut and harmless corruptions load
    }
}

TEST_CASE("truncated and corrupted tokenizer files: clean errors or working tokenizers") {
    for (const char* name : {"tok512.model", "tok512.bin", "tokenizer.bin"}) {
        Tally tally;
        check_tokenizer_file(name, read_text(data_path(name)), tally);
        MESSAGE(std::string(name) << ": " << tally.errors << " clean errors, " << tally.loaded
                                  << " loaded");
        CHECK(tally.errors > 0);
        CHECK(tally.loaded > 0);
    }
}

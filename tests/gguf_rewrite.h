// Rewriting stories260K.gguf with other tensor types, for GGUF import tests.
#pragma once
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "models/gguf_reader.h"

namespace nibble::test {

inline std::vector<uint8_t> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

template <typename T>
void append(std::vector<uint8_t>& out, T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out.insert(out.end(), p, p + sizeof v);
}

// A tensor's new GGML type (-1 drops it) and the bytes of its data in that type,
// given its F32 values.
struct Rewrite {
    int type = 0;
    std::vector<uint8_t> data;
};
using RewriteFn = std::function<Rewrite(const GgufTensorInfo& t, const float* values)>;

// Further metadata entries in GGUF's encoding (key, value type, value), and how many.
struct ExtraMetadata {
    std::vector<uint8_t> bytes;
    uint64_t count = 0;

    void add_key(const std::string& key, uint32_t type) {
        append<uint64_t>(bytes, key.size());
        bytes.insert(bytes.end(), key.begin(), key.end());
        append<uint32_t>(bytes, type);
        ++count;
    }
    void add_bool(const std::string& key, bool v) {
        add_key(key, 7);  // GGUF_TYPE_BOOL
        append<uint8_t>(bytes, v ? 1 : 0);
    }
    void add_u32(const std::string& key, uint32_t v) {
        add_key(key, 4);  // GGUF_TYPE_UINT32
        append<uint32_t>(bytes, v);
    }
};

// Writes `source` (an all-F32 GGUF) to `path` with the same metadata (and
// `extra` after it) and each tensor as `rewrite` says.
inline void rewrite_gguf(const std::string& source, const std::string& path,
                         const RewriteFn& rewrite, const ExtraMetadata& extra = {}) {
    const auto original = read_bytes(source);
    const GgufFile g = GgufFile::parse(MappedFile::open(source));
    // The metadata ends where the first tensor name's length field starts.
    const std::string first = g.tensors().front().name;
    size_t infos = 0;
    for (size_t i = 8; i + first.size() <= original.size() && infos == 0; ++i) {
        uint64_t len;
        std::memcpy(&len, &original[i - 8], 8);
        if (len == first.size() && std::memcmp(&original[i], first.data(), first.size()) == 0) {
            infos = i - 8;
        }
    }
    REQUIRE(infos > 0);
    std::vector<uint8_t> out(original.begin(), original.begin() + std::ptrdiff_t(infos));
    out.insert(out.end(), extra.bytes.begin(), extra.bytes.end());
    uint64_t n_kv;
    std::memcpy(&n_kv, &out[16], 8);
    n_kv += extra.count;
    std::memcpy(&out[16], &n_kv, 8);  // metadata count
    std::vector<uint8_t> data;
    uint64_t kept = 0;
    for (const auto& t : g.tensors()) {
        REQUIRE(t.type == 0);
        const Rewrite r = rewrite(t, reinterpret_cast<const float*>(t.data));
        if (r.type < 0) continue;
        ++kept;
        append<uint64_t>(out, t.name.size());
        out.insert(out.end(), t.name.begin(), t.name.end());
        append<uint32_t>(out, uint32_t(t.dims.size()));
        for (int64_t d : t.dims) append<int64_t>(out, d);
        append<uint32_t>(out, uint32_t(r.type));
        append<uint64_t>(out, data.size());
        data.insert(data.end(), r.data.begin(), r.data.end());
        data.resize((data.size() + 31) / 32 * 32, 0);
    }
    std::memcpy(&out[8], &kept, 8);  // tensor count
    out.resize((out.size() + 31) / 32 * 32, 0);
    out.insert(out.end(), data.begin(), data.end());
    std::ofstream file(path, std::ios::binary | std::ios::trunc);
    file.write(reinterpret_cast<const char*>(out.data()), std::streamsize(out.size()));
    REQUIRE(file.good());
}

}  // namespace nibble::test

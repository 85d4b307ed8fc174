// Shared by the Hugging Face harnesses: a tiny LLaMA checkpoint (1 layer, dim
// 32, grouped-query attention) and a directory whose config.json and
// model.safetensors are symlinks to memfds, so each run rewrites them without
// touching the disk. Also writes the harnesses' seeds (see write_seeds).
#pragma once
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor_registry.h"
#include "fuzz/fuzz_input.h"

namespace nibble::fuzz {

inline constexpr int kConfigSlot = 1, kWeightsSlot = 2;

// config.json of the tiny checkpoint.
inline nlohmann::json tiny_config() {
    return {{"architectures", {"LlamaForCausalLM"}},
            {"hidden_size", 32},
            {"intermediate_size", 64},
            {"num_hidden_layers", 1},
            {"num_attention_heads", 4},
            {"num_key_value_heads", 2},
            {"vocab_size", 32},
            {"max_position_embeddings", 64},
            {"rms_norm_eps", 1e-5},
            {"rope_theta", 10000.0},
            {"tie_word_embeddings", false}};
}

// The data section (every tensor as F32 small values, canonical order) and the
// matching safetensors header JSON text.
inline std::pair<std::string, std::string> tiny_weights() {
    ModelConfig c;
    c.dim = 32;
    c.hidden_dim = 64;
    c.n_layers = 1;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.vocab_size = 32;
    c.max_seq_len = 64;
    nlohmann::json header = nlohmann::json::object();
    std::string data;
    int k = 0;
    for (const TensorSlot& slot : tensor_slots(c)) {
        const auto [rows, cols] = tensor_shape(c, slot.shape);
        const size_t begin = data.size();
        for (int64_t i = 0; i < rows * cols; ++i) {
            const float v = slot.is_norm() ? 1.0f : 0.1f * std::sin(0.37f * float(k++));
            data.append(reinterpret_cast<const char*>(&v), 4);
        }
        nlohmann::json shape = slot.is_norm() ? nlohmann::json{cols} : nlohmann::json{rows, cols};
        header[slot.hf_name] = {
            {"dtype", "F32"}, {"shape", shape}, {"data_offsets", {begin, data.size()}}};
    }
    // mlp.down_proj (32 x 64) also as a GPTQ 4-bit tensor, group 32, for the
    // configs with a quantization_config.
    auto add = [&](const std::string& name, const char* dtype, nlohmann::json shape,
                   const std::vector<uint32_t>& words, size_t bytes_per) {
        const size_t begin = data.size();
        for (uint32_t w : words) data.append(reinterpret_cast<const char*>(&w), bytes_per);
        header[name] = {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {begin, data.size()}}};
    };
    const std::string down = "model.layers.0.mlp.down_proj.";
    std::vector<uint32_t> qweight(8 * 32), g_idx(64);
    for (size_t i = 0; i < qweight.size(); ++i) qweight[i] = uint32_t(i) * 2654435761u;
    for (size_t i = 0; i < g_idx.size(); ++i) g_idx[i] = uint32_t(i / 32);
    add(down + "qweight", "I32", {8, 32}, qweight, 4);
    add(down + "qzeros", "I32", {2, 4}, std::vector<uint32_t>(8, 0x77777777u), 4);
    add(down + "scales", "F16", {2, 32}, std::vector<uint32_t>(64, 0x211fu), 2);  // 0.01
    add(down + "g_idx", "I32", {64}, g_idx, 4);
    header["__metadata__"] = {{"format", "pt"}};
    return {header.dump(), data};
}

// A safetensors file: 8-byte little-endian header length, header, data.
inline std::string safetensors_bytes(const std::string& header, const std::string& data) {
    std::string out(8, '\0');
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xff);
    return out + header + data;
}

// The checkpoint directory (created once, removed at exit): config.json and
// model.safetensors point at memfd slots kConfigSlot and kWeightsSlot.
inline const std::string& checkpoint_dir() {
    static const std::string dir = [] {
        char name[] = "/tmp/nibble_fuzz_hf.XXXXXX";
        if (mkdtemp(name) == nullptr) __builtin_trap();
        std::string d = name;
        const uint8_t empty = 0;
        auto link = [&](int slot, const char* file) {
            const std::string target = as_file(&empty, 0, slot);  // creates the memfd
            const std::string fd_path =
                "/proc/" + std::to_string(getpid()) + target.substr(std::strlen("/proc/self"));
            if (symlink(fd_path.c_str(), (d + "/" + file).c_str()) != 0) __builtin_trap();
        };
        link(kConfigSlot, "config.json");
        link(kWeightsSlot, "model.safetensors");
        static const std::string removed = d;
        std::atexit([] {
            std::error_code ec;
            std::filesystem::remove_all(removed, ec);
        });
        return d;
    }();
    return dir;
}

inline void set_config(const std::string& text) {
    as_file(reinterpret_cast<const uint8_t*>(text.data()), text.size(), kConfigSlot);
}
inline void set_weights(const std::string& bytes) {
    as_file(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), kWeightsSlot);
}

// With NIBBLE_FUZZ_WRITE_SEEDS=DIR, `files` (name, content) are written into DIR
// and the harness exits: scripts/ci-extra.sh builds the seed corpora this way.
inline void write_seeds_if_asked(const std::vector<std::pair<std::string, std::string>>& files) {
    const char* dir = std::getenv("NIBBLE_FUZZ_WRITE_SEEDS");
    if (dir == nullptr) return;
    std::filesystem::create_directories(dir);
    for (const auto& [name, content] : files) {
        std::ofstream(std::string(dir) + "/" + name, std::ios::binary) << content;
    }
    std::exit(0);
}

}  // namespace nibble::fuzz

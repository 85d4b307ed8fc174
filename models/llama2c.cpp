// llama2.c checkpoints (format in shared/data/MANIFEST.md).
//
// Legacy v0: 7 x int32 header (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
// vocab_size, seq_len; a negative vocab_size means a separate classifier), then
// fp32 arrays: embedding, rms_att[L], wq[L], wk[L], wv[L], wo[L], rms_ffn[L],
// w1[L], w2[L], w3[L], rms_final, two skipped RoPE tables of seq_len*head/2
// floats, and wcls when not shared.
//
// runq v2: 256-byte header (magic "ak42", version 2, the 7 ints, uint8 shared
// classifier, int32 group size), fp32 norms, then each matrix as int8 q[n]
// followed by fp32 scales[n / group].
#include "models/llama2c.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "engine/tensor_registry.h"

namespace nibble {

namespace {

struct Llama2cHeader {
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

ModelConfig config_from_header(const Llama2cHeader& h, const std::string& path) {
    ModelConfig c;
    c.dim = h.dim;
    c.hidden_dim = h.hidden_dim;
    c.n_layers = h.n_layers;
    c.n_heads = h.n_heads;
    c.n_kv_heads = h.n_kv_heads;
    c.vocab_size = std::abs(h.vocab_size);
    c.max_seq_len = h.seq_len;
    try {
        c.validate();
    } catch (const std::exception& e) {
        throw std::runtime_error(path + ": " + e.what());
    }
    return c;
}

// Walks through a file's bytes, refusing to read past the end.
struct Cursor {
    const MappedFile& file;
    size_t at;
    const uint8_t* take(size_t bytes, const char* what) {
        if (bytes > file.size() || at > file.size() - bytes) {
            throw std::runtime_error(file.path() + ": truncated: " + what + " needs " +
                                     std::to_string(bytes) + " bytes at offset " +
                                     std::to_string(at) + ", file has " +
                                     std::to_string(file.size()));
        }
        const uint8_t* p = file.data() + at;
        at += bytes;
        return p;
    }
};

Tensor f32_view(const std::string& name, const uint8_t* data, int64_t rows, int64_t cols) {
    Tensor t;
    t.name = name;
    t.view.layout = make_layout(WeightFormat::f32, rows, cols);
    t.view.data = data;
    return t;
}

}  // namespace

Model load_llama2c(const std::shared_ptr<MappedFile>& file) {
    const std::string& path = file->path();
    Cursor cur{*file, 0};
    Llama2cHeader h;
    std::memcpy(&h, cur.take(sizeof h, "header"), sizeof h);
    Model m;
    m.config = config_from_header(h, path);
    m.source_path = path;
    m.source_format = "llama2c";
    const ModelConfig& c = m.config;
    const int64_t dim = c.dim, L = c.n_layers;

    // Each tensor of all layers is stored one after another: [L][rows][cols].
    m.layers.resize(size_t(L));
    m.token_embedding =
        f32_view("token_embd.weight", cur.take(size_t(c.vocab_size * dim) * 4, "token embedding"),
                 c.vocab_size, dim);
    for (Tensor LayerWeights::*member : kLlama2cLayerOrder) {
        const LayerTensorSpec& spec = layer_tensor_spec(member);
        const auto [rows, cols] = tensor_shape(c, spec.shape);
        const uint8_t* base = cur.take(size_t(L * rows * cols) * 4, spec.gguf);
        for (int64_t l = 0; l < L; ++l) {
            m.layers[size_t(l)].*member = f32_view(gguf_layer_name(int(l), spec.gguf),
                                                   base + size_t(l * rows * cols) * 4, rows, cols);
        }
    }
    m.output_norm = f32_view("output_norm.weight", cur.take(size_t(dim) * 4, "final norm"), 1, dim);
    cur.take(size_t(c.max_seq_len) * size_t(c.head_dim()) * 4, "RoPE tables");  // unused
    if (h.vocab_size > 0) {
        m.output = m.token_embedding;
        m.output.name = "output.weight";
    } else {
        m.output = f32_view("output.weight", cur.take(size_t(c.vocab_size * dim) * 4, "classifier"),
                            c.vocab_size, dim);
    }
    if (cur.at != file->size()) {
        throw std::runtime_error(path + ": " + std::to_string(file->size() - cur.at) +
                                 " unexpected bytes after the weights; the shapes do not add up");
    }
    m.storage.push_back(file);
    m.validate();
    return m;
}

Model load_llama2c_q80(const std::shared_ptr<MappedFile>& file) {
    const std::string& path = file->path();
    Cursor cur{*file, 0};
    const uint8_t* header = cur.take(256, "header");
    int32_t version = 0, group = 0;
    std::memcpy(&version, header + 4, 4);
    if (version != 2) {
        throw std::runtime_error(path + ": runq checkpoint version " + std::to_string(version) +
                                 " is not supported (only 2)");
    }
    Llama2cHeader h;
    std::memcpy(&h, header + 8, sizeof h);
    const uint8_t shared_classifier = header[8 + sizeof h];
    std::memcpy(&group, header + 8 + sizeof h + 1, 4);
    Model m;
    m.config = config_from_header(h, path);
    m.source_path = path;
    m.source_format = "llama2c-q80";
    const ModelConfig& c = m.config;
    const int64_t dim = c.dim, L = c.n_layers;
    if (group <= 0 || group > 4096) {
        throw std::runtime_error(path + ": group size " + std::to_string(group) + " is invalid");
    }
    m.layers.resize(size_t(L));

    auto copy_f32 = [&](const std::string& name, int64_t n, const char* what) {
        Tensor t = make_owned_tensor(m, name, make_layout(WeightFormat::f32, 1, n));
        std::memcpy(writable(t), cur.take(size_t(n) * 4, what), size_t(n) * 4);
        return t;
    };
    // The norms of every layer first, in llama2.c's order, then the matrices.
    auto is_norm = [](const LayerTensorSpec& s) { return s.shape == TensorShape::norm; };
    for (Tensor LayerWeights::*member : kLlama2cLayerOrder) {
        const LayerTensorSpec& spec = layer_tensor_spec(member);
        if (!is_norm(spec)) continue;
        for (int64_t l = 0; l < L; ++l) {
            m.layers[size_t(l)].*member =
                copy_f32(gguf_layer_name(int(l), spec.gguf), dim, spec.gguf);
        }
    }
    m.output_norm = copy_f32("output_norm.weight", dim, "rms_final");

    // int8 q[rows*cols] then fp32 s[rows*cols/group]; w = q * s[i / group].
    auto dequantize = [&](const std::string& name, int64_t rows, int64_t cols) {
        const int64_t n = rows * cols;
        if (n % group != 0) {  // groups run over the flattened tensor
            throw std::runtime_error(path + ": " + name + " has " + std::to_string(n) +
                                     " weights, not a multiple of the group size " +
                                     std::to_string(group));
        }
        const auto* q = reinterpret_cast<const int8_t*>(cur.take(size_t(n), name.c_str()));
        const uint8_t* s = cur.take(size_t(n / group) * 4, name.c_str());
        Tensor t = make_owned_tensor(m, name, make_layout(WeightFormat::f32, rows, cols));
        float* out = reinterpret_cast<float*>(writable(t));
        for (int64_t i = 0; i < n; ++i) {
            float scale;
            std::memcpy(&scale, s + 4 * size_t(i / group), 4);
            out[i] = float(q[i]) * scale;
        }
        return t;
    };
    m.token_embedding = dequantize("token_embd.weight", c.vocab_size, dim);
    for (Tensor LayerWeights::*member : kLlama2cLayerOrder) {
        const LayerTensorSpec& spec = layer_tensor_spec(member);
        if (is_norm(spec)) continue;
        const auto [rows, cols] = tensor_shape(c, spec.shape);
        for (int64_t l = 0; l < L; ++l) {
            m.layers[size_t(l)].*member =
                dequantize(gguf_layer_name(int(l), spec.gguf), rows, cols);
        }
    }
    if (shared_classifier) {
        m.output = m.token_embedding;
        m.output.name = "output.weight";
    } else {
        m.output = dequantize("output.weight", c.vocab_size, dim);
    }
    if (cur.at != file->size()) {
        throw std::runtime_error(path + ": " + std::to_string(file->size() - cur.at) +
                                 " unexpected bytes after the weights; the shapes do not add up");
    }
    m.validate();
    return m;
}

}  // namespace nibble

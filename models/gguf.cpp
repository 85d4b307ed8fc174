// LLaMA models from GGUF v3 files (F32 and F16 tensors).
//
// GGUF lists tensor dims innermost first, so a weight with dims [cols, rows] is
// our row-major [rows][cols] matrix and its bytes can be viewed in place: F32
// and F16 matrices are zero-copy views into the mapping. Norm vectors must be
// f32 for the forward pass, so F16 norms are widened into owned buffers.
// llama.cpp's converter stores Q/K in the adjacent-pair RoPE layout (it permutes
// Hugging Face weights), which is also llama2.c's: rope_style = adjacent_pairs.
#include "models/gguf.h"

#include <cstring>
#include <limits>
#include <stdexcept>

#include "kernels/fp16.h"
#include "models/gguf_reader.h"
#include "tokenizer/tokenizer.h"

namespace nibble {

namespace {

[[noreturn]] void fail(const GgufFile& g, const std::string& problem) {
    throw std::runtime_error(g.path() + ": " + problem);
}

int to_int(const GgufFile& g, const std::string& key, int64_t v) {
    if (v <= 0 || v > std::numeric_limits<int>::max()) {
        fail(g, key + " = " + std::to_string(v) + " is out of range");
    }
    return int(v);
}

int required_int(const GgufFile& g, const std::string& key) {
    const auto v = g.get_int(key);
    if (!v) fail(g, "missing metadata " + key);
    return to_int(g, key, *v);
}

// Rows and columns of a tensor with GGUF dims [cols, rows, 1, 1].
std::pair<int64_t, int64_t> matrix_shape(const GgufFile& g, const GgufTensorInfo& info) {
    for (size_t d = 2; d < info.dims.size(); ++d) {
        if (info.dims[d] != 1) fail(g, "tensor " + info.name + " has more than 2 dimensions");
    }
    const int64_t cols = info.dims[0];
    const int64_t rows = info.dims.size() > 1 ? info.dims[1] : 1;
    return {rows, cols};
}

class TensorLoader {
  public:
    TensorLoader(const GgufFile& g, Model& m) : g_(g), m_(m) {}

    const GgufTensorInfo& info(const std::string& name) const {
        const GgufTensorInfo* t = g_.find_tensor(name);
        if (!t) fail(g_, "tensor " + name + " is missing");
        return *t;
    }

    // A weight matrix: F32 or F16 viewed in place.
    Tensor matrix(const std::string& name) const { return load(info(name), false); }
    // A norm vector: always f32 (F16 converted into an owned buffer).
    Tensor vector(const std::string& name) const { return load(info(name), true); }

  private:
    Tensor load(const GgufTensorInfo& t, bool need_f32) const {
        const auto [rows, cols] = matrix_shape(g_, t);
        if (t.type != ggml_type::f32 && t.type != ggml_type::f16) {
            fail(g_, "tensor " + t.name + " has GGML type " + std::to_string(t.type) +
                         ", which is not supported yet");
        }
        const bool is_f32 = t.type == ggml_type::f32;
        const size_t element = is_f32 ? 4 : 2;
        if (!g_.file()->contains(t.data, t.n_bytes) ||
            t.n_bytes != size_t(rows) * size_t(cols) * element) {
            fail(g_, "tensor " + t.name + " data lies outside the file");
        }
        PackedLayout layout;
        try {
            layout = make_layout(is_f32 ? WeightFormat::f32 : WeightFormat::f16, rows, cols);
        } catch (const std::exception& e) {
            fail(g_, "tensor " + t.name + ": " + e.what());
        }
        const bool aligned = reinterpret_cast<uintptr_t>(t.data) % element == 0;
        if (aligned && (is_f32 || !need_f32)) {  // zero copy
            Tensor out;
            out.name = t.name;
            out.view.layout = layout;
            out.view.data = t.data;
            return out;
        }
        if (is_f32 || !need_f32) {  // misaligned (general.alignment < element size): copy
            Tensor out = make_owned_tensor(m_, t.name, layout);
            std::memcpy(writable(out), t.data, t.n_bytes);
            return out;
        }
        // F16 norm -> f32.
        Tensor out = make_owned_tensor(m_, t.name, make_layout(WeightFormat::f32, rows, cols));
        float* dst = reinterpret_cast<float*>(writable(out));
        for (size_t i = 0; i < size_t(rows * cols); ++i) {
            uint16_t h;
            std::memcpy(&h, t.data + 2 * i, 2);
            dst[i] = fp16_to_fp32(h);
        }
        return out;
    }

    const GgufFile& g_;
    Model& m_;
};

}  // namespace

Model load_gguf(std::shared_ptr<MappedFile> file) {
    const GgufFile g = GgufFile::parse(file);
    const std::string arch = g.get_string("general.architecture").value_or("");
    if (arch != "llama") {
        fail(g, "architecture \"" + arch + "\" is not supported (only \"llama\")");
    }

    Model m;
    m.source_path = file->path();
    m.source_format = "gguf";
    ModelConfig& c = m.config;
    c.architecture = arch;
    c.dim = required_int(g, "llama.embedding_length");
    c.hidden_dim = required_int(g, "llama.feed_forward_length");
    c.n_layers = required_int(g, "llama.block_count");
    c.n_heads = required_int(g, "llama.attention.head_count");
    c.n_kv_heads = c.n_heads;
    if (const auto kv = g.get_int("llama.attention.head_count_kv")) {
        c.n_kv_heads = to_int(g, "llama.attention.head_count_kv", *kv);
    }
    c.max_seq_len = required_int(g, "llama.context_length");
    c.rope_theta = float(g.get_real("llama.rope.freq_base").value_or(10000.0));
    c.norm_eps = float(g.get_real("llama.attention.layer_norm_rms_epsilon").value_or(1e-5));
    c.rope_style = RopeStyle::adjacent_pairs;
    if (!(c.rope_theta > 0.0f) || !(c.norm_eps > 0.0f)) {
        fail(g, "rope.freq_base and layer_norm_rms_epsilon must be positive");
    }

    TensorLoader load(g, m);
    const auto [vocab_rows, embd_cols] = matrix_shape(g, load.info("token_embd.weight"));
    if (vocab_rows <= 0 || vocab_rows > std::numeric_limits<int>::max()) {
        fail(g, "token_embd.weight has " + std::to_string(vocab_rows) + " rows");
    }
    c.vocab_size = int(vocab_rows);
    try {
        c.validate();
    } catch (const std::exception& e) {
        fail(g, e.what());
    }

    m.token_embedding = load.matrix("token_embd.weight");
    m.layers.resize(size_t(c.n_layers));
    for (int l = 0; l < c.n_layers; ++l) {
        LayerWeights& w = m.layers[size_t(l)];
        w.attn_norm = load.vector(layer_tensor_name(l, "attn_norm"));
        w.wq = load.matrix(layer_tensor_name(l, "attn_q"));
        w.wk = load.matrix(layer_tensor_name(l, "attn_k"));
        w.wv = load.matrix(layer_tensor_name(l, "attn_v"));
        w.wo = load.matrix(layer_tensor_name(l, "attn_output"));
        w.ffn_norm = load.vector(layer_tensor_name(l, "ffn_norm"));
        w.w_gate = load.matrix(layer_tensor_name(l, "ffn_gate"));
        w.w_up = load.matrix(layer_tensor_name(l, "ffn_up"));
        w.w_down = load.matrix(layer_tensor_name(l, "ffn_down"));
    }
    m.output_norm = load.vector("output_norm.weight");
    if (g.find_tensor("output.weight")) {
        m.output = load.matrix("output.weight");
    } else {  // tied classifier
        m.output = m.token_embedding;
        m.output.name = "output.weight";
    }
    m.storage.push_back(file);
    try {
        m.validate();
    } catch (const std::exception& e) {
        fail(g, e.what());
    }

    if (const auto chat_template = g.get_string("tokenizer.chat_template")) {
        m.chat_template = *chat_template;
    }
    if (g.find("tokenizer.ggml.tokens")) {
        const Vocab vocab = read_gguf_vocab(g);  // throws with the path
        try {
            m.tokenizer_proto = Tokenizer::from_vocab(vocab).serialized_proto();
        } catch (const std::exception& e) {
            fail(g, std::string("embedded vocabulary: ") + e.what());
        }
    }
    return m;
}

}  // namespace nibble

// LLaMA models from GGUF v3 files.
//
// GGUF lists tensor dims innermost first, so a weight with dims [cols, rows] is
// our row-major [rows][cols] matrix: F32 and F16 matrices are zero-copy views
// into the mapping; quantized types are converted into owned nibble blobs
// (models/gguf_import.h). Norm vectors must be f32 for the forward pass.
// llama.cpp's converter stores Q/K in the adjacent-pair RoPE layout (it permutes
// Hugging Face weights), which is also llama2.c's: rope_style = adjacent_pairs.
#include "models/gguf.h"

#include <limits>
#include <map>
#include <stdexcept>

#include "engine/tensor_registry.h"
#include "models/gguf_import.h"
#include "models/gguf_reader.h"
#include "models/gguf_tokenizer.h"
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
    TensorLoader(const GgufFile& g, Model& m, bool defer) : g_(g), m_(m), defer_(defer) {}

    const GgufTensorInfo& info(const std::string& name) const {
        const GgufTensorInfo* t = g_.find_tensor(name);
        if (!t) fail(g_, "tensor " + name + " is missing");
        return *t;
    }

    // A weight matrix: F32/F16 viewed in place, other types converted
    // (models/gguf_import.h).
    Tensor matrix(const std::string& name) { return load(info(name), false); }
    // A norm vector: always f32.
    Tensor vector(const std::string& name) { return load(info(name), true); }

    // One line per GGML type met: how many tensors and what became of them.
    std::vector<std::string> notes() const {
        std::vector<std::string> out;
        for (const auto& [type, count] : counts_) {
            out.push_back(std::to_string(count) + " tensor" + (count > 1 ? "s" : "") + " " +
                          ggml_conversion_note(type));
        }
        return out;
    }

  private:
    Tensor load(const GgufTensorInfo& t, bool need_f32) {
        const auto [rows, cols] = matrix_shape(g_, t);
        if (!g_.file()->contains(t.data, t.n_bytes)) {
            fail(g_, "tensor " + t.name + " data lies outside the file");
        }
        try {
            if (defer_) {
                Tensor out = defer_ggml_tensor(m_, g_.file(), t.name, t.type, rows, cols, t.data,
                                               t.n_bytes, need_f32);
                ++counts_[t.type];
                return out;
            }
            Tensor out = import_ggml_tensor(m_, t.name, t.type, rows, cols, t.data, need_f32);
            ++counts_[t.type];
            // A converted tensor no longer needs its source pages resident.
            if (!g_.file()->contains(out.view.data, 1)) g_.file()->release(t.data, t.n_bytes);
            return out;
        } catch (const std::exception& e) {
            fail(g_, e.what());
        }
    }

    const GgufFile& g_;
    Model& m_;
    bool defer_;
    std::map<uint32_t, int> counts_;
};

}  // namespace

Model load_gguf(const std::shared_ptr<MappedFile>& file, bool defer) {
    const GgufFile g = GgufFile::parse(file);
    const std::string arch = g.get_string("general.architecture").value_or("");
    if (arch != "llama") {
        fail(g, "architecture \"" + arch + R"(" is not supported (only "llama"))");
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

    TensorLoader load(g, m, defer);
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

    m.layers.resize(size_t(c.n_layers));
    for (const TensorSlot& slot : tensor_slots(c)) {
        if (slot.optional && !g.find_tensor(slot.gguf_name)) continue;
        slot.in(m) = slot.is_norm() ? load.vector(slot.gguf_name) : load.matrix(slot.gguf_name);
    }
    if (m.output.empty()) {  // tied classifier
        m.output = m.token_embedding;
        m.output.name = "output.weight";
    }
    m.storage.push_back(file);
    m.import_notes = load.notes();
    try {
        m.validate();
    } catch (const std::exception& e) {
        fail(g, e.what());
    }

    if (const auto chat_template = g.get_string("tokenizer.chat_template")) {
        m.chat_template = *chat_template;
    }
    if (g.find("tokenizer.ggml.tokens")) {
        const Tokenizer tokenizer = gguf_tokenizer(g);  // throws with the path
        m.tokenizer_proto = tokenizer.serialized_proto();
        m.generation.add_bos_token = tokenizer.add_bos_token();
    }
    // Generation settings (GenerationSettings): BOS in front of prompts or not,
    // end-of-turn as a further EOS.
    if (const auto add_bos = g.get_bool("tokenizer.ggml.add_bos_token")) {
        m.generation.add_bos_token = *add_bos;
    }
    if (const auto eot = g.get_int("tokenizer.ggml.eot_token_id")) {
        if (*eot < 0 || *eot >= int64_t(c.vocab_size)) {
            fail(g, "tokenizer.ggml.eot_token_id " + std::to_string(*eot) +
                        " is not a token id (vocab " + std::to_string(c.vocab_size) + ")");
        }
        m.generation.extra_eos_ids.push_back(int32_t(*eot));
    }
    return m;
}

}  // namespace nibble

// Models from GGUF v3 files: architectures llama (Llama-1/2/3, Mistral), qwen2,
// qwen3, gemma2, gemma3 and phi3, with llama.cpp's keys and tensor names.
//
// GGUF lists tensor dims innermost first, so a weight with dims [cols, rows] is
// our row-major [rows][cols] matrix: F32 and F16 matrices are zero-copy views
// into the mapping; quantized types are converted into owned nibble blobs
// (models/gguf_import.h), row-major or, repacked, in interleaved row blocks,
// each tensor's source pages released once converted. Norm vectors must be
// f32 for the forward pass.
// llama.cpp's converter stores llama's Q/K in the adjacent-pair RoPE layout (it
// permutes Hugging Face weights), which is also llama2.c's; the other
// architectures keep Hugging Face's rows and rotate halves (llama.cpp's NEOX).
// Gemma's norm weights are stored with the 1 of (1 + w) already added.
#include "models/gguf.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
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
    TensorLoader(const GgufFile& g, Model& m, bool defer, bool repack)
        : g_(g), m_(m), defer_(defer), repack_(repack) {}

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
    // Rows [first, first + n) of a matrix, as tensor `name` (GGML rows are
    // whole blocks, stored one after another).
    Tensor rows(const GgufTensorInfo& t, int64_t first, int64_t n, const std::string& name) {
        const auto [rows, cols] = matrix_shape(g_, t);
        if (first + n > rows) {
            fail(g_, "tensor " + t.name + " has " + std::to_string(rows) + " rows, expected " +
                         std::to_string(first + n));
        }
        const size_t row_bytes = t.n_bytes / size_t(rows);
        return load(t, name, n, cols, t.data + size_t(first) * row_bytes, size_t(n) * row_bytes,
                    false);
    }

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
        return load(t, t.name, rows, cols, t.data, t.n_bytes, need_f32);
    }
    Tensor load(const GgufTensorInfo& t, const std::string& name, int64_t rows, int64_t cols,
                const uint8_t* data, size_t n_bytes, bool need_f32) {
        if (!g_.file()->contains(t.data, t.n_bytes)) {
            fail(g_, "tensor " + t.name + " data lies outside the file");
        }
        try {
            const SourceTensor source = ggml_source_tensor(name, t.type, rows, cols, data, n_bytes);
            if (defer_) {
                Tensor out = defer_tensor(m_, g_.file(), source, need_f32);
                ++counts_[t.type];
                return out;
            }
            Tensor out = convert_tensor(m_, source, need_f32, repack_, g_.file().get());
            if (need_f32 && g_.file()->contains(out.view.data, 1)) {
                // A norm vector used in place would keep its page-cache folio
                // mapped, 2 MiB with read-only file THP (MappedFile), for each
                // of them: a copy of a few KiB instead.
                Tensor copy = make_owned_tensor(m_, out.name, out.view.layout);
                std::memcpy(writable(copy), out.view.data, out.view.layout.total_bytes);
                out = copy;
            }
            ++counts_[t.type];
            // A converted tensor no longer needs its source pages resident.
            if (!g_.file()->contains(out.view.data, 1)) g_.file()->release(data, n_bytes);
            return out;
        } catch (const std::exception& e) {
            fail(g_, e.what());
        }
    }

    const GgufFile& g_;
    Model& m_;
    bool defer_, repack_;
    std::map<uint32_t, int> counts_;
};

float real_or(const GgufFile& g, const std::string& key, double fallback) {
    return float(g.get_real(key).value_or(fallback));
}

// The options of each architecture (ModelConfig), from its keys and llama.cpp's
// fixed choices for it; llama's own keys are read already.
void read_architecture_options(const GgufFile& g, const std::string& arch, ModelConfig& c) {
    const std::string p = arch + ".";
    c.rope_style = arch == "llama" ? RopeStyle::adjacent_pairs : RopeStyle::halves;
    if (const auto k = g.get_int(p + "attention.key_length")) {
        c.head_size = to_int(g, p + "attention.key_length", *k);
        const auto v = g.get_int(p + "attention.value_length");
        if (v && *v != *k) fail(g, p + "attention.value_length differs from key_length");
    }
    if (const auto w = g.get_int(p + "attention.sliding_window"); w && *w > 0) {
        c.sliding_window = to_int(g, p + "attention.sliding_window", *w);
    }
    if (arch == "llama") {
        if (g.find_tensor("rope_freqs.weight")) c.rope_factors = RopeFactors::single;
    } else if (arch == "qwen2") {
        c.qkv_bias = true;
    } else if (arch == "qwen3") {
        c.qk_norm = true;
    } else if (arch == "gemma2" || arch == "gemma3") {
        c.embedding_scale = std::sqrt(float(c.dim));
        c.activation = FfnActivation::gelu_tanh;
        c.post_norms = true;
        // Queries are scaled by 1/sqrt(head_dim), except in the 27B models
        // (46 and 62 layers) where query_pre_attn_scalar is dim / heads.
        const bool is_27b = c.n_layers == (arch == "gemma2" ? 46 : 62);
        c.query_scale = 1.0f / std::sqrt(float(is_27b ? c.dim / c.n_heads : c.head_dim()));
        if (arch == "gemma2") {
            c.attn_logit_softcap = real_or(g, p + "attn_logit_softcapping", 50.0);
            c.final_logit_softcap = real_or(g, p + "final_logit_softcapping", 30.0);
            if (c.sliding_window == 0) c.sliding_window = 4096;
            c.sliding_window_pattern = 2;
        } else {
            c.qk_norm = true;
            c.sliding_window_pattern = 6;
            c.rope_theta_local = 10000.0f;
            if (const auto f = g.get_real(p + "rope.scaling.factor"); f && *f > 1.0) {
                c.rope_scale = float(*f);
            }
        }
    } else if (arch == "phi3") {
        if (g.find_tensor("rope_factors_long.weight") ||
            g.find_tensor("rope_factors_short.weight")) {
            c.rope_factors = RopeFactors::long_short;
            c.rope_original_context = c.max_seq_len;
            if (const auto n = g.get_int(p + "rope.scaling.original_context_length")) {
                c.rope_original_context = to_int(g, p + "rope.scaling.original_context_length", *n);
            }
            c.rope_attn_factor = real_or(g, p + "rope.scaling.attn_factor", 1.0);
        }
    }
}

constexpr const char* kArchitectures[] = {"llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"};

}  // namespace

Model load_gguf(const std::shared_ptr<MappedFile>& file, bool defer, bool repack) {
    const GgufFile g = GgufFile::parse(file);
    const std::string arch = g.get_string("general.architecture").value_or("");
    if (std::find(std::begin(kArchitectures), std::end(kArchitectures), arch) ==
        std::end(kArchitectures)) {
        fail(g, "general.architecture \"" + arch +
                    "\" is not supported (llama, qwen2, qwen3, gemma2, gemma3, phi3)");
    }
    const std::string p = arch + ".";

    Model m;
    m.source_path = file->path();
    m.source_format = "gguf";
    ModelConfig& c = m.config;
    c.architecture = arch;
    c.dim = required_int(g, p + "embedding_length");
    c.hidden_dim = required_int(g, p + "feed_forward_length");
    c.n_layers = required_int(g, p + "block_count");
    c.n_heads = required_int(g, p + "attention.head_count");
    c.n_kv_heads = c.n_heads;
    if (const auto kv = g.get_int(p + "attention.head_count_kv")) {
        c.n_kv_heads = to_int(g, p + "attention.head_count_kv", *kv);
    }
    c.max_seq_len = required_int(g, p + "context_length");
    c.rope_theta = real_or(g, p + "rope.freq_base", 10000.0);
    c.norm_eps = real_or(g, p + "attention.layer_norm_rms_epsilon", 1e-5);
    read_architecture_options(g, arch, c);
    if (!(c.rope_theta > 0.0f) || !(c.norm_eps > 0.0f)) {
        fail(g, "rope.freq_base and layer_norm_rms_epsilon must be positive");
    }

    TensorLoader load(g, m, defer, repack);
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
    const bool fused = arch == "phi3";
    if (fused) {  // split attn_qkv and ffn_up by rows
        for (int l = 0; l < c.n_layers; ++l) {
            for (const FusedTensorSpec& f : kFusedTensors) {
                const GgufTensorInfo& info = load.info(gguf_layer_name(l, f.gguf));
                int64_t first = 0;
                for (int i = 0; i < f.n_parts; ++i) {
                    const int64_t n = tensor_shape(c, f.part_shapes[i]).first;
                    std::string name;
                    for (const LayerTensorSpec& s : kLayerTensors) {
                        if (s.member == f.parts[i]) name = gguf_layer_name(l, s.gguf);
                    }
                    m.layers[size_t(l)].*f.parts[i] = load.rows(info, first, n, name);
                    first += n;
                }
                if (first != matrix_shape(g, info).first) {
                    fail(g, "tensor " + info.name + " has " +
                                std::to_string(matrix_shape(g, info).first) + " rows, expected " +
                                std::to_string(first));
                }
            }
        }
    }
    for (const TensorSlot& slot : tensor_slots(c)) {
        if (fused && slot.layer >= 0 && is_fused_part(slot.layer_member)) continue;
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

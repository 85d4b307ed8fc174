// Model bookkeeping: validation, tensor listing, owned tensors.
#include "engine/model.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <set>
#include <stdexcept>
#include <utility>

#include "engine/tensor_registry.h"
#include "tokenizer/tokenizer.h"

namespace nibble {

void ModelConfig::validate() const {
    auto fail = [](const std::string& what) {
        throw std::runtime_error("invalid model hyperparameters: " + what);
    };
    if (dim <= 0 || hidden_dim <= 0 || n_layers <= 0 || n_heads <= 0 || n_kv_heads <= 0 ||
        vocab_size <= 0 || max_seq_len <= 0) {
        fail("dim " + std::to_string(dim) + ", hidden " + std::to_string(hidden_dim) + ", layers " +
             std::to_string(n_layers) + ", heads " + std::to_string(n_heads) + ", kv heads " +
             std::to_string(n_kv_heads) + ", vocab " + std::to_string(vocab_size) + ", seq_len " +
             std::to_string(max_seq_len) + " must all be positive");
    }
    if (head_size < 0 || sliding_window_pattern < 0 || rope_original_context < 0 ||
        !(embedding_scale > 0.0f) || !(query_scale >= 0.0f) || !(attn_logit_softcap >= 0.0f) ||
        !(final_logit_softcap >= 0.0f) || !(rope_theta_local >= 0.0f) ||
        !(rope_attn_factor > 0.0f)) {
        fail("head size, window pattern, scales and soft-caps must not be negative");
    }
    if (!(rope_scale >= 1.0f) || sliding_window < 0) {
        fail("rope_scale " + std::to_string(rope_scale) + " must be >= 1 and sliding_window " +
             std::to_string(sliding_window) + " >= 0");
    }
    if (head_size == 0 && dim % n_heads != 0)
        fail("dim " + std::to_string(dim) + " is not a multiple of " + std::to_string(n_heads) +
             " heads");
    if (head_dim() % 2 != 0) fail("head size " + std::to_string(head_dim()) + " is odd");
    if (n_heads % n_kv_heads != 0) {
        fail(std::to_string(n_heads) + " heads are not a multiple of " +
             std::to_string(n_kv_heads) + " kv heads");
    }
    if (dim > (1 << 20) || hidden_dim > (1 << 22) || n_layers > 4096 || vocab_size > (1 << 24) ||
        max_seq_len > (1 << 24)) {
        fail("sizes are implausibly large");
    }
}

std::string ModelConfig::describe_options() const {
    std::vector<std::string> parts;
    auto number = [](double v) {
        char text[32];
        std::snprintf(text, sizeof text, "%g", v);
        return std::string(text);
    };
    if (qkv_bias) parts.emplace_back("q/k/v biases");
    if (qk_norm) parts.emplace_back("q/k head norms");
    if (post_norms) parts.emplace_back("post-attention and post-FFN norms");
    if (activation == FfnActivation::gelu_tanh) parts.emplace_back("GeGLU (tanh GELU)");
    if (embedding_scale != 1.0f) parts.push_back("embeddings x " + number(embedding_scale));
    if (query_scale > 0.0f) parts.push_back("query scale " + number(query_scale));
    if (attn_logit_softcap > 0.0f) parts.push_back("score soft-cap " + number(attn_logit_softcap));
    if (final_logit_softcap > 0.0f)
        parts.push_back("logit soft-cap " + number(final_logit_softcap));
    if (sliding_window > 0) {
        parts.push_back(
            "sliding window " + std::to_string(sliding_window) +
            (sliding_window_pattern > 1
                 ? " (one global layer in " + std::to_string(sliding_window_pattern) + ")"
                 : ""));
    }
    if (rope_theta_local > 0.0f) parts.push_back("local RoPE base " + number(rope_theta_local));
    if (rope_factors == RopeFactors::single) parts.emplace_back("RoPE frequency factors");
    if (rope_factors == RopeFactors::long_short) {
        parts.push_back("LongRoPE factors (original context " +
                        std::to_string(rope_original_context) + ", attention factor " +
                        number(rope_attn_factor) + ")");
    }
    std::string out;
    for (const std::string& p : parts) out += (out.empty() ? "" : ", ") + p;
    return out;
}

std::string layer_tensor_name(int layer, const char* short_name) {
    return "blk." + std::to_string(layer) + "." + short_name + ".weight";
}

std::vector<const Tensor*> Model::tensors() const {
    std::vector<const Tensor*> out;
    if (int(layers.size()) != config.n_layers) return out;  // (validate() says so)
    for (const TensorSlot& slot : tensor_slots(config)) out.push_back(&slot.in(*this));
    return out;
}

std::vector<Tensor*> Model::tensors() {
    std::vector<Tensor*> out;
    for (const Tensor* t : std::as_const(*this).tensors()) out.push_back(const_cast<Tensor*>(t));
    return out;
}

void Model::validate() const {
    config.validate();
    if (int(layers.size()) != config.n_layers) {
        throw std::runtime_error("model has " + std::to_string(layers.size()) +
                                 " layers, hyperparameters say " + std::to_string(config.n_layers));
    }
    for (const TensorSlot& slot : tensor_slots(config)) {
        const Tensor& t = slot.in(*this);
        const auto [rows, cols] = tensor_shape(config, slot.shape);
        if (t.empty()) throw std::runtime_error("tensor " + slot.gguf_name + " is missing");
        if (t.rows() != rows || t.cols() != cols) {
            throw std::runtime_error("tensor " + t.name + " has shape " + std::to_string(t.rows()) +
                                     "x" + std::to_string(t.cols()) + ", expected " +
                                     std::to_string(rows) + "x" + std::to_string(cols));
        }
        if (slot.is_norm() && t.format() != WeightFormat::f32) {
            throw std::runtime_error("tensor " + t.name + " must be f32");
        }
        if (t.column_order != nullptr && (slot.layer < 0 || slot.is_norm())) {
            throw std::runtime_error("tensor " + t.name + " cannot have a column order");
        }
    }
    // Matrices sharing one input (q/k/v, gate/up) are multiplied together, so
    // their column orders must agree.
    auto same_order = [](const Tensor& a, const Tensor& b) {
        if (a.column_order == b.column_order) return true;
        if (a.column_order == nullptr || b.column_order == nullptr) return false;
        return std::equal(a.column_order, a.column_order + a.cols(), b.column_order);
    };
    for (const auto& l : layers) {
        if (!same_order(l.wq, l.wk) || !same_order(l.wq, l.wv) || !same_order(l.w_gate, l.w_up)) {
            throw std::runtime_error("tensors of layer " + l.wq.name +
                                     "'s block that share an input have different column orders");
        }
    }
}

size_t Model::weight_bytes() const {
    std::set<const void*> seen;
    size_t total = 0;
    for (const Tensor* t : tensors()) {
        if (seen.insert(t->blob_id()).second) total += t->view.layout.total_bytes;
    }
    return total;
}

int64_t Model::parameter_count() const {
    std::set<const void*> seen;
    int64_t total = 0;
    for (const Tensor* t : tensors()) {
        if (seen.insert(t->blob_id()).second) total += t->rows() * t->cols();
    }
    return total;
}

FetchedTensor fetch_tensor(const Tensor& t) {
    FetchedTensor out{t, {}};
    if (!t.deferred) return out;
    out.tensor.view = t.deferred->fetch(out.keep);
    out.tensor.deferred = nullptr;
    const PackedLayout& a = t.view.layout;
    const PackedLayout& b = out.tensor.view.layout;
    if (a.format != b.format || a.rows != b.rows || a.cols != b.cols ||
        a.group_size != b.group_size || a.double_quant != b.double_quant ||
        out.tensor.view.data == nullptr) {
        throw std::logic_error("tensor " + t.name +
                               ": fetched bytes differ from the announced layout");
    }
    return out;
}

void release_source(const Tensor& t) {
    if (t.deferred && t.deferred->release) t.deferred->release();
}

Tensor make_owned_tensor(Model& model, const std::string& name, const PackedLayout& layout) {
    const size_t bytes = align_up(layout.total_bytes, kSectionAlign);
    void* p = std::aligned_alloc(kSectionAlign, bytes > 0 ? bytes : kSectionAlign);
    if (p == nullptr) throw std::runtime_error("out of memory allocating " + name);
    std::memset(p, 0, bytes);
    model.storage.emplace_back(p, [](const void* q) { std::free(const_cast<void*>(q)); });
    Tensor t;
    t.name = name;
    t.view.layout = layout;
    t.view.data = static_cast<const uint8_t*>(p);
    return t;
}

void apply_generation_settings(const Model& model, Tokenizer& tokenizer) {
    tokenizer.set_add_bos_token(model.generation.add_bos_token);
    std::vector<int32_t> ids;
    for (int32_t id : model.generation.extra_eos_ids) {
        if (id >= 0 && id < tokenizer.vocab_size()) ids.push_back(id);
    }
    tokenizer.set_extra_eos_ids(std::move(ids));
}

}  // namespace nibble

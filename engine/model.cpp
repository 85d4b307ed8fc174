// Model bookkeeping: validation, tensor listing, owned tensors.
#include "engine/model.h"

#include <cstdlib>
#include <cstring>
#include <set>
#include <stdexcept>
#include <utility>

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
    if (dim % n_heads != 0)
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

std::string layer_tensor_name(int layer, const char* short_name) {
    return "blk." + std::to_string(layer) + "." + short_name + ".weight";
}

std::vector<const Tensor*> Model::tensors() const {
    std::vector<const Tensor*> out{&token_embedding};
    for (const auto& l : layers) {
        for (const Tensor* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_norm, &l.w_gate,
                                &l.w_up, &l.w_down}) {
            out.push_back(t);
        }
    }
    out.push_back(&output_norm);
    out.push_back(&output);
    return out;
}

std::vector<Tensor*> Model::tensors() {
    std::vector<Tensor*> out;
    for (const Tensor* t : std::as_const(*this).tensors()) out.push_back(const_cast<Tensor*>(t));
    return out;
}

void Model::validate() const {
    config.validate();
    const int64_t dim = config.dim, hidden = config.hidden_dim, kv = config.kv_dim(),
                  vocab = config.vocab_size;
    if (int(layers.size()) != config.n_layers) {
        throw std::runtime_error("model has " + std::to_string(layers.size()) +
                                 " layers, hyperparameters say " + std::to_string(config.n_layers));
    }
    auto check = [](const Tensor& t, int64_t rows, int64_t cols, bool must_be_f32) {
        if (t.empty()) throw std::runtime_error("tensor " + t.name + " is missing");
        if (t.rows() != rows || t.cols() != cols) {
            throw std::runtime_error("tensor " + t.name + " has shape " + std::to_string(t.rows()) +
                                     "x" + std::to_string(t.cols()) + ", expected " +
                                     std::to_string(rows) + "x" + std::to_string(cols));
        }
        if (must_be_f32 && t.format() != WeightFormat::f32) {
            throw std::runtime_error("tensor " + t.name + " must be f32");
        }
    };
    check(token_embedding, vocab, dim, false);
    for (const auto& l : layers) {
        check(l.attn_norm, 1, dim, true);
        check(l.wq, dim, dim, false);
        check(l.wk, kv, dim, false);
        check(l.wv, kv, dim, false);
        check(l.wo, dim, dim, false);
        check(l.ffn_norm, 1, dim, true);
        check(l.w_gate, hidden, dim, false);
        check(l.w_up, hidden, dim, false);
        check(l.w_down, dim, hidden, false);
    }
    check(output_norm, 1, dim, true);
    check(output, vocab, dim, false);
}

size_t Model::weight_bytes() const {
    std::set<const uint8_t*> seen;
    size_t total = 0;
    for (const Tensor* t : tensors()) {
        if (seen.insert(t->view.data).second) total += t->view.layout.total_bytes;
    }
    return total;
}

int64_t Model::parameter_count() const {
    std::set<const uint8_t*> seen;
    int64_t total = 0;
    for (const Tensor* t : tensors()) {
        if (seen.insert(t->view.data).second) total += t->rows() * t->cols();
    }
    return total;
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

}  // namespace nibble

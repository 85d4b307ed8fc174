// The tensor list (tensor_registry.h) expanded for a model's hyperparameters.
#include "engine/tensor_registry.h"

namespace nibble {

std::pair<int64_t, int64_t> tensor_shape(const ModelConfig& c, TensorShape shape) {
    switch (shape) {
        case TensorShape::norm:
            return {1, c.dim};
        case TensorShape::embedding:
            return {c.vocab_size, c.dim};
        case TensorShape::square:
            return {c.dim, c.dim};
        case TensorShape::kv:
            return {c.kv_dim(), c.dim};
        case TensorShape::ffn_in:
            return {c.hidden_dim, c.dim};
        case TensorShape::ffn_out:
            return {c.dim, c.hidden_dim};
    }
    return {0, 0};
}

std::string gguf_layer_name(int layer, const LayerTensorSpec& spec) {
    return "blk." + std::to_string(layer) + "." + spec.gguf + ".weight";
}

std::string hf_layer_name(int layer, const LayerTensorSpec& spec) {
    return "model.layers." + std::to_string(layer) + "." + spec.hf + ".weight";
}

std::vector<TensorSlot> tensor_slots(const ModelConfig& c) {
    std::vector<TensorSlot> out;
    auto model_slot = [&](const ModelTensorSpec& s) {
        TensorSlot t;
        t.gguf_name = s.gguf;
        t.hf_name = s.hf;
        t.shape = s.shape;
        t.optional = s.optional;
        t.model_member = s.member;
        out.push_back(std::move(t));
    };
    model_slot(kEmbeddingTensor);
    for (int l = 0; l < c.n_layers; ++l) {
        for (const LayerTensorSpec& s : kLayerTensors) {
            TensorSlot t;
            t.gguf_name = gguf_layer_name(l, s);
            t.hf_name = hf_layer_name(l, s);
            t.layer = l;
            t.shape = s.shape;
            t.optional = s.optional;
            t.layer_member = s.member;
            out.push_back(std::move(t));
        }
    }
    for (const ModelTensorSpec& s : kFinalTensors) model_slot(s);
    return out;
}

}  // namespace nibble

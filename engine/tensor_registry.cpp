// The tensor list (tensor_registry.h) expanded for a model's hyperparameters.
#include "engine/tensor_registry.h"

#include <stdexcept>

namespace nibble {

std::pair<int64_t, int64_t> tensor_shape(const ModelConfig& c, TensorShape shape) {
    switch (shape) {
        case TensorShape::norm:
            return {1, c.dim};
        case TensorShape::embedding:
            return {c.vocab_size, c.dim};
        case TensorShape::head_norm:
            return {1, c.head_dim()};
        case TensorShape::q_bias:
            return {1, c.q_dim()};
        case TensorShape::kv_bias:
            return {1, c.kv_dim()};
        case TensorShape::rope_factors:
            return {1, c.head_dim() / 2};
        case TensorShape::query:
            return {c.q_dim(), c.dim};
        case TensorShape::attn_output:
            return {c.dim, c.q_dim()};
        case TensorShape::kv:
            return {c.kv_dim(), c.dim};
        case TensorShape::ffn_in:
            return {c.hidden_dim, c.dim};
        case TensorShape::ffn_out:
            return {c.dim, c.hidden_dim};
    }
    return {0, 0};
}

bool tensor_used(const ModelConfig& c, TensorUse use) {
    switch (use) {
        case TensorUse::always:
        case TensorUse::optional:
            return true;
        case TensorUse::qkv_bias:
            return c.qkv_bias;
        case TensorUse::qk_norm:
            return c.qk_norm;
        case TensorUse::post_norms:
            return c.post_norms;
        case TensorUse::rope_freqs:
            return c.rope_factors == RopeFactors::single;
        case TensorUse::rope_long_short:
            return c.rope_factors == RopeFactors::long_short;
    }
    return false;
}

const LayerTensorSpec& layer_tensor_spec(Tensor LayerWeights::*member) {
    for (const LayerTensorSpec& s : kLayerTensors) {
        if (s.member == member) return s;
    }
    throw std::logic_error("a LayerWeights member missing from kLayerTensors");
}

bool is_fused_part(Tensor LayerWeights::*member) {
    for (const FusedTensorSpec& f : kFusedTensors) {
        for (int i = 0; i < f.n_parts; ++i) {
            if (f.parts[i] == member) return true;
        }
    }
    return false;
}

std::string gguf_layer_name(int layer, const char* suffix) {
    return "blk." + std::to_string(layer) + "." + suffix;
}

std::string hf_layer_name(int layer, const char* suffix) {
    return "model.layers." + std::to_string(layer) + "." + suffix;
}

std::vector<TensorSlot> tensor_slots(const ModelConfig& c) {
    std::vector<TensorSlot> out;
    auto model_slot = [&](const ModelTensorSpec& s) {
        if (!tensor_used(c, s.use)) return;
        TensorSlot t;
        t.gguf_name = s.gguf;
        t.hf_name = s.hf;
        t.shape = s.shape;
        t.optional = s.use == TensorUse::optional;
        t.model_member = s.member;
        out.push_back(std::move(t));
    };
    model_slot(kEmbeddingTensor);
    for (int l = 0; l < c.n_layers; ++l) {
        for (const LayerTensorSpec& s : kLayerTensors) {
            if (!tensor_used(c, s.use)) continue;
            TensorSlot t;
            t.gguf_name = gguf_layer_name(l, s.gguf);
            t.hf_name = hf_layer_name(l, c.post_norms && s.hf_post_norms ? s.hf_post_norms : s.hf);
            t.layer = l;
            t.shape = s.shape;
            t.layer_member = s.member;
            out.push_back(std::move(t));
        }
    }
    for (const ModelTensorSpec& s : kFinalTensors) model_slot(s);
    return out;
}

size_t tensor_slot_index(const std::vector<TensorSlot>& slots, int layer,
                         Tensor LayerWeights::*member) {
    for (size_t i = 0; i < slots.size(); ++i) {
        if (slots[i].layer == layer && slots[i].layer_member == member) return i;
    }
    throw std::logic_error("no such layer tensor in this model");
}

size_t tensor_slot_index(const std::vector<TensorSlot>& slots, Tensor Model::*member) {
    for (size_t i = 0; i < slots.size(); ++i) {
        if (slots[i].layer < 0 && slots[i].model_member == member) return i;
    }
    throw std::logic_error("no such tensor in this model");
}

}  // namespace nibble

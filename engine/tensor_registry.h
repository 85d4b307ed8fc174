// The one list of a LLaMA model's tensors: names in GGUF / nibble files and in
// Hugging Face checkpoints, the Model member each fills, its shape from the
// hyperparameters, and whether it may be absent. Every loader, writer, synth and
// the bandwidth count walk this list instead of spelling the tensors out.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/model.h"

namespace nibble {

// Shapes [rows][cols] of the tensors, as functions of the hyperparameters.
enum class TensorShape : uint8_t {
    norm,       // 1 x dim
    embedding,  // vocab x dim
    square,     // dim x dim (wq, wo)
    kv,         // kv_dim x dim (wk, wv)
    ffn_in,     // hidden x dim (gate, up)
    ffn_out,    // dim x hidden (down)
};
std::pair<int64_t, int64_t> tensor_shape(const ModelConfig& c, TensorShape shape);

// A tensor of every layer. Names: GGUF/nibble "blk.N.<gguf>.weight", Hugging
// Face "model.layers.N.<hf>.weight".
struct LayerTensorSpec {
    const char* gguf;
    const char* hf;
    Tensor LayerWeights::*member;
    TensorShape shape;
    bool optional;  // (none yet; biases of the architectures that come next)
};

// A tensor outside the layers.
struct ModelTensorSpec {
    const char* gguf;  // full name, e.g. "token_embd.weight"
    const char* hf;    // full name, e.g. "model.embed_tokens.weight"
    Tensor Model::*member;
    TensorShape shape;
    bool optional;  // output.weight: absent means tied to the embedding
};

// In canonical (file) order: token_embd, then each layer's nine tensors, then
// output_norm and output.
inline constexpr ModelTensorSpec kEmbeddingTensor{"token_embd.weight", "model.embed_tokens.weight",
                                                  &Model::token_embedding, TensorShape::embedding,
                                                  false};
inline constexpr LayerTensorSpec kLayerTensors[] = {
    {"attn_norm", "input_layernorm", &LayerWeights::attn_norm, TensorShape::norm, false},
    {"attn_q", "self_attn.q_proj", &LayerWeights::wq, TensorShape::square, false},
    {"attn_k", "self_attn.k_proj", &LayerWeights::wk, TensorShape::kv, false},
    {"attn_v", "self_attn.v_proj", &LayerWeights::wv, TensorShape::kv, false},
    {"attn_output", "self_attn.o_proj", &LayerWeights::wo, TensorShape::square, false},
    {"ffn_norm", "post_attention_layernorm", &LayerWeights::ffn_norm, TensorShape::norm, false},
    {"ffn_gate", "mlp.gate_proj", &LayerWeights::w_gate, TensorShape::ffn_in, false},
    {"ffn_up", "mlp.up_proj", &LayerWeights::w_up, TensorShape::ffn_in, false},
    {"ffn_down", "mlp.down_proj", &LayerWeights::w_down, TensorShape::ffn_out, false},
};
inline constexpr ModelTensorSpec kFinalTensors[] = {
    {"output_norm.weight", "model.norm.weight", &Model::output_norm, TensorShape::norm, false},
    {"output.weight", "lm_head.weight", &Model::output, TensorShape::embedding, true},
};

std::string gguf_layer_name(int layer, const LayerTensorSpec& spec);
std::string hf_layer_name(int layer, const LayerTensorSpec& spec);

// One entry per tensor of a model with these hyperparameters, in canonical order.
struct TensorSlot {
    std::string gguf_name, hf_name;
    int layer = -1;  // -1 outside the layers
    TensorShape shape = TensorShape::norm;
    bool optional = false;
    Tensor LayerWeights::*layer_member = nullptr;
    Tensor Model::*model_member = nullptr;

    bool is_norm() const { return shape == TensorShape::norm; }
    Tensor& in(Model& m) const {
        return layer >= 0 ? m.layers[size_t(layer)].*layer_member : m.*model_member;
    }
    const Tensor& in(const Model& m) const {
        return layer >= 0 ? m.layers[size_t(layer)].*layer_member : m.*model_member;
    }
};
std::vector<TensorSlot> tensor_slots(const ModelConfig& c);

}  // namespace nibble

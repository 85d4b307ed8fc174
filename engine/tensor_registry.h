// The one list of the tensors of every supported architecture: names in GGUF / nibble files and in
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
    norm,          // 1 x dim
    head_norm,     // 1 x head_dim (q/k norms)
    q_bias,        // 1 x q_dim
    kv_bias,       // 1 x kv_dim
    rope_factors,  // 1 x head_dim / 2
    embedding,     // vocab x dim
    query,         // q_dim x dim (wq)
    kv,            // kv_dim x dim (wk, wv)
    attn_output,   // dim x q_dim (wo)
    ffn_in,        // hidden x dim (gate, up)
    ffn_out,       // dim x hidden (down)
};
std::pair<int64_t, int64_t> tensor_shape(const ModelConfig& c, TensorShape shape);

// Which models have a tensor (ModelConfig's options).
enum class TensorUse : uint8_t {
    always,
    optional,         // output.weight: absent means tied to the embedding
    qkv_bias,         // ModelConfig::qkv_bias
    qk_norm,          // ModelConfig::qk_norm
    post_norms,       // ModelConfig::post_norms
    rope_freqs,       // rope_factors == single
    rope_long_short,  // rope_factors == long_short
};
// Whether a model with these hyperparameters has (or may have, for optional)
// tensors of this use.
bool tensor_used(const ModelConfig& c, TensorUse use);

// A tensor of every layer. Names: GGUF/nibble "blk.N.<gguf>", Hugging Face
// "model.layers.N.<hf>"; Gemma's checkpoints name ffn_norm hf_post_norms.
struct LayerTensorSpec {
    const char* gguf;
    const char* hf;
    Tensor LayerWeights::*member;
    TensorShape shape;
    TensorUse use;
    const char* hf_post_norms = nullptr;
};

// A tensor outside the layers.
struct ModelTensorSpec {
    const char* gguf;  // full name, e.g. "token_embd.weight"
    const char* hf;  // full name, e.g. "model.embed_tokens.weight" ("": computed from config.json)
    Tensor Model::*member;
    TensorShape shape;
    TensorUse use;
};

// In canonical (file) order: token_embd, then each layer's tensors, then
// output_norm, output and the RoPE factors. A model lists the ones its options use.
inline constexpr ModelTensorSpec kEmbeddingTensor{"token_embd.weight", "model.embed_tokens.weight",
                                                  &Model::token_embedding, TensorShape::embedding,
                                                  TensorUse::always};
inline constexpr LayerTensorSpec kLayerTensors[] = {
    {"attn_norm.weight", "input_layernorm.weight", &LayerWeights::attn_norm, TensorShape::norm,
     TensorUse::always},
    {"attn_q.weight", "self_attn.q_proj.weight", &LayerWeights::wq, TensorShape::query,
     TensorUse::always},
    {"attn_k.weight", "self_attn.k_proj.weight", &LayerWeights::wk, TensorShape::kv,
     TensorUse::always},
    {"attn_v.weight", "self_attn.v_proj.weight", &LayerWeights::wv, TensorShape::kv,
     TensorUse::always},
    {"attn_output.weight", "self_attn.o_proj.weight", &LayerWeights::wo, TensorShape::attn_output,
     TensorUse::always},
    {"ffn_norm.weight", "post_attention_layernorm.weight", &LayerWeights::ffn_norm,
     TensorShape::norm, TensorUse::always, "pre_feedforward_layernorm.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight", &LayerWeights::w_gate, TensorShape::ffn_in,
     TensorUse::always},
    {"ffn_up.weight", "mlp.up_proj.weight", &LayerWeights::w_up, TensorShape::ffn_in,
     TensorUse::always},
    {"ffn_down.weight", "mlp.down_proj.weight", &LayerWeights::w_down, TensorShape::ffn_out,
     TensorUse::always},
    {"attn_q.bias", "self_attn.q_proj.bias", &LayerWeights::bq, TensorShape::q_bias,
     TensorUse::qkv_bias},
    {"attn_k.bias", "self_attn.k_proj.bias", &LayerWeights::bk, TensorShape::kv_bias,
     TensorUse::qkv_bias},
    {"attn_v.bias", "self_attn.v_proj.bias", &LayerWeights::bv, TensorShape::kv_bias,
     TensorUse::qkv_bias},
    {"attn_q_norm.weight", "self_attn.q_norm.weight", &LayerWeights::q_norm, TensorShape::head_norm,
     TensorUse::qk_norm},
    {"attn_k_norm.weight", "self_attn.k_norm.weight", &LayerWeights::k_norm, TensorShape::head_norm,
     TensorUse::qk_norm},
    {"post_attention_norm.weight", "post_attention_layernorm.weight", &LayerWeights::attn_post_norm,
     TensorShape::norm, TensorUse::post_norms},
    {"post_ffw_norm.weight", "post_feedforward_layernorm.weight", &LayerWeights::ffn_post_norm,
     TensorShape::norm, TensorUse::post_norms},
};
inline constexpr ModelTensorSpec kFinalTensors[] = {
    {"output_norm.weight", "model.norm.weight", &Model::output_norm, TensorShape::norm,
     TensorUse::always},
    {"output.weight", "lm_head.weight", &Model::output, TensorShape::embedding,
     TensorUse::optional},
    {"rope_freqs.weight", "", &Model::rope_freqs, TensorShape::rope_factors, TensorUse::rope_freqs},
    {"rope_factors_long.weight", "", &Model::rope_factors_long, TensorShape::rope_factors,
     TensorUse::rope_long_short},
    {"rope_factors_short.weight", "", &Model::rope_factors_short, TensorShape::rope_factors,
     TensorUse::rope_long_short},
};

// The registry entry of a layer tensor (one of kLayerTensors).
const LayerTensorSpec& layer_tensor_spec(Tensor LayerWeights::*member);

// llama2.c checkpoints (models/llama2c.cpp) hold these, each for all layers in
// turn, between the embedding and the final norm (llama2.c's w1, w2, w3 are
// gate, down, up); the runq files store the norms first, then the matrices,
// each in this order.
inline constexpr Tensor LayerWeights::*kLlama2cLayerOrder[] = {
    &LayerWeights::attn_norm, &LayerWeights::wq,     &LayerWeights::wk,
    &LayerWeights::wv,        &LayerWeights::wo,     &LayerWeights::ffn_norm,
    &LayerWeights::w_gate,    &LayerWeights::w_down, &LayerWeights::w_up,
};

// Phi-3's files hold a layer's q, k, v projections as one matrix (rows q | k |
// v) and gate and up as one (rows gate | up); the GGUF and Hugging Face loaders
// split them by rows into the members below (nibble files store the parts).
struct FusedTensorSpec {
    const char* gguf;
    const char* hf;
    Tensor LayerWeights::*parts[3];
    TensorShape part_shapes[3];
    int n_parts;
};
inline constexpr FusedTensorSpec kFusedTensors[] = {
    {"attn_qkv.weight",
     "self_attn.qkv_proj.weight",
     {&LayerWeights::wq, &LayerWeights::wk, &LayerWeights::wv},
     {TensorShape::query, TensorShape::kv, TensorShape::kv},
     3},
    {"ffn_up.weight",
     "mlp.gate_up_proj.weight",
     {&LayerWeights::w_gate, &LayerWeights::w_up, nullptr},
     {TensorShape::ffn_in, TensorShape::ffn_in, TensorShape::ffn_in},
     2},
};
// Whether `member` is a part of one of kFusedTensors.
bool is_fused_part(Tensor LayerWeights::*member);

// "blk.N.<suffix>" and "model.layers.N.<suffix>".
std::string gguf_layer_name(int layer, const char* suffix);
std::string hf_layer_name(int layer, const char* suffix);

// One entry per tensor of a model with these hyperparameters, in canonical order.
struct TensorSlot {
    std::string gguf_name, hf_name;
    int layer = -1;  // -1 outside the layers
    TensorShape shape = TensorShape::norm;
    bool optional = false;  // output.weight
    Tensor LayerWeights::*layer_member = nullptr;
    Tensor Model::*model_member = nullptr;

    // An f32 vector (norms, biases, RoPE factors): never quantized.
    bool is_norm() const {
        return shape == TensorShape::norm || shape == TensorShape::head_norm ||
               shape == TensorShape::q_bias || shape == TensorShape::kv_bias ||
               shape == TensorShape::rope_factors;
    }
    Tensor& in(Model& m) const {
        return layer >= 0 ? m.layers[size_t(layer)].*layer_member : m.*model_member;
    }
    const Tensor& in(const Model& m) const {
        return layer >= 0 ? m.layers[size_t(layer)].*layer_member : m.*model_member;
    }
};
std::vector<TensorSlot> tensor_slots(const ModelConfig& c);

// The position of a tensor in `slots` (from tensor_slots): a layer's member, or
// one outside the layers. Throws std::logic_error when it is not there.
size_t tensor_slot_index(const std::vector<TensorSlot>& slots, int layer,
                         Tensor LayerWeights::*member);
size_t tensor_slot_index(const std::vector<TensorSlot>& slots, Tensor Model::*member);

}  // namespace nibble

// The in-memory model: hyperparameters and weight tensors, independent of the
// file they came from. Loaders (models/) fill it; the forward pass reads it.
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/formats.h"

namespace nibble {

// How RoPE pairs the dimensions of a head: llama2.c and GGUF rotate adjacent
// pairs (x[2i], x[2i+1]); Hugging Face checkpoints rotate halves (x[i], x[i+d/2]).
enum class RopeStyle : uint8_t { adjacent_pairs, halves };

// The FFN's gate activation: SwiGLU (silu(gate) * up, LLaMA, Qwen, Phi) or
// GeGLU with the tanh approximation of GELU (Gemma).
enum class FfnActivation : uint8_t { silu, gelu_tanh };

// Per-frequency RoPE divisors read from tensors: none; one set (Llama-3.1's
// rope_freqs.weight); or LongRoPE's long and short sets (Phi-3), the long one
// used when the context exceeds rope_original_context.
enum class RopeFactors : uint8_t { none, single, long_short };

struct ModelConfig {
    std::string architecture = "llama";
    int dim = 0;         // embedding width
    int hidden_dim = 0;  // FFN width
    int n_layers = 0;
    int n_heads = 0;
    int n_kv_heads = 0;  // < n_heads: grouped-query attention
    int vocab_size = 0;
    int max_seq_len = 0;  // context the model was trained for
    float rope_theta = 10000.0f;
    float norm_eps = 1e-5f;
    RopeStyle rope_style = RopeStyle::adjacent_pairs;
    // Linear RoPE scaling (Hugging Face rope_scaling {"type": "linear"}): the
    // rotation angle of position p is that of p / rope_scale.
    float rope_scale = 1.0f;
    // Mistral's sliding-window attention: each position attends to itself and
    // the sliding_window - 1 before it; 0 attends to every earlier position.
    int sliding_window = 0;

    // ---- options of the architectures after LLaMA-2 (defaults: LLaMA) ----
    int head_size = 0;        // 0: dim / n_heads (Qwen3 and Gemma set their own)
    bool qkv_bias = false;    // q, k, v projections add a bias (Qwen2)
    bool qk_norm = false;     // RMSNorm of each q and k head before RoPE (Qwen3, Gemma-3)
    bool post_norms = false;  // RMSNorm of the attention and FFN outputs too (Gemma-2/3)
    FfnActivation activation = FfnActivation::silu;
    float embedding_scale = 1.0f;      // embeddings are multiplied by it (Gemma: sqrt(dim))
    float query_scale = 0.0f;          // scores = scale * q.k; 0: 1 / sqrt(head_dim)
    float attn_logit_softcap = 0.0f;   // scores -> cap * tanh(scores / cap); 0: off
    float final_logit_softcap = 0.0f;  // logits -> cap * tanh(logits / cap); 0: off
    // Layer l uses the sliding window when sliding_window > 0 and
    // sliding_window_pattern <= 1 (every layer: Mistral) or (l + 1) % pattern != 0
    // (Gemma-2: 2, even layers local; Gemma-3: 6, five local to one global).
    int sliding_window_pattern = 0;
    // RoPE base of the sliding-window layers (Gemma-3: 10000); 0: rope_theta.
    // rope_scale applies to the global layers only.
    float rope_theta_local = 0.0f;
    RopeFactors rope_factors = RopeFactors::none;
    int rope_original_context = 0;  // LongRoPE: the trained context of the short factors
    float rope_attn_factor = 1.0f;  // LongRoPE: cos and sin are multiplied by it

    int head_dim() const { return head_size > 0 ? head_size : dim / n_heads; }
    int q_dim() const { return n_heads * head_dim(); }
    int kv_dim() const { return n_kv_heads * head_dim(); }
    bool layer_is_sliding(int layer) const {
        return sliding_window > 0 &&
               (sliding_window_pattern <= 1 || (layer + 1) % sliding_window_pattern != 0);
    }
    float attention_scale() const {
        return query_scale > 0.0f ? query_scale : 1.0f / std::sqrt(float(head_dim()));
    }
    // Throws std::runtime_error naming the first inconsistency.
    void validate() const;
    // The options in force beyond LLaMA-2's block, for `nibble info`
    // ("q/k/v biases, GeGLU, ..."), or "" for none.
    std::string describe_options() const;
};

// The bytes of a tensor that a loader asked to defer its work (models/loader.h,
// LoadOptions::defer_conversion) has left in the source file: `nibble quantize`
// fetches one tensor, writes it and releases it before the next, so a converted
// model never has to be in memory at once.
struct DeferredTensor {
    // The tensor's packed bytes: a view into the mapped file, or a conversion
    // into buffers appended to `keep` (valid while they are).
    std::function<MatrixView(std::vector<std::shared_ptr<const void>>& keep)> fetch;
    // Drops the source bytes' pages from resident memory (MappedFile::release).
    std::function<void()> release;
};

// A named weight: a packed matrix (vectors such as norm weights are 1 x n, f32).
struct Tensor {
    std::string name;
    MatrixView view;
    // Act-order (GPTQ g_idx) column permutation, or nullptr: stored column j of
    // the packed matrix is column column_order[j] of the model's matrix, so the
    // forward pass gathers x[column_order[j]] before the matmul. Lets groups that
    // act-order scatters over the row be stored contiguously (docs/FORMAT.md).
    const int32_t* column_order = nullptr;
    // Non-null: the bytes are not loaded yet; view.layout is the layout they will
    // have and view.data is nullptr (fetch_tensor()).
    std::shared_ptr<const DeferredTensor> deferred;

    bool empty() const { return view.data == nullptr && deferred == nullptr; }
    // Identifies the blob: tensors with the same id share their bytes.
    const void* blob_id() const {
        return deferred ? static_cast<const void*>(deferred.get()) : view.data;
    }
    int64_t rows() const { return view.layout.rows; }
    int64_t cols() const { return view.layout.cols; }
    WeightFormat format() const { return view.layout.format; }
    const float* f32() const { return reinterpret_cast<const float*>(view.data); }
};

struct LayerWeights {
    Tensor attn_norm;             // [dim]
    Tensor wq, wk, wv, wo;        // [q_dim][dim], [kv_dim][dim] x2, [dim][q_dim]
    Tensor bq, bk, bv;            // [q_dim], [kv_dim] x2 (qkv_bias)
    Tensor q_norm, k_norm;        // [head_dim] (qk_norm)
    Tensor attn_post_norm;        // [dim] (post_norms)
    Tensor ffn_norm;              // [dim]
    Tensor w_gate, w_up, w_down;  // [hidden][dim] x2, [dim][hidden]
    Tensor ffn_post_norm;         // [dim] (post_norms)
};

// Tokenizer settings a model's files give besides the vocabulary: whether
// prompts start with BOS (Hugging Face tokenizer_config.json add_bos_token, GGUF
// tokenizer.ggml.add_bos_token) and ids besides EOS that end generation (the
// rest of generation_config.json's eos_token_id list, GGUF
// tokenizer.ggml.eot_token_id). Tokenizer::set_add_bos_token/set_extra_eos_ids
// apply them (apply_generation_settings).
struct GenerationSettings {
    bool add_bos_token = true;
    std::vector<int32_t> extra_eos_ids;
};

struct Model {
    ModelConfig config;
    Tensor token_embedding;  // [vocab][dim]
    std::vector<LayerWeights> layers;
    Tensor output_norm;  // [dim]
    Tensor output;       // [vocab][dim]; may share data with token_embedding
    // RoPE frequency divisors [head_dim / 2] (ModelConfig::rope_factors).
    Tensor rope_freqs, rope_factors_long, rope_factors_short;
    // Serialized SentencePiece ModelProto when the file carries a vocabulary.
    std::string tokenizer_proto;
    // The Jinja chat template the file carries (GGUF tokenizer.chat_template), if any.
    std::string chat_template;
    GenerationSettings generation;
    std::string source_path;
    std::string source_format;  // "llama2c", "llama2c-q80", "gguf", "nibble"
    // What the loader converted, one line per source tensor type (e.g. GGUF
    // "Q4_K -> q4k, ..."); the command line prints them.
    std::vector<std::string> import_notes;
    // Keeps mmaps and owned buffers that tensors point into alive.
    std::vector<std::shared_ptr<const void>> storage;

    // Every tensor in canonical order (the output is listed even when shared).
    std::vector<const Tensor*> tensors() const;
    std::vector<Tensor*> tensors();
    // Checks config and every tensor's shape; throws std::runtime_error.
    void validate() const;
    // Total bytes of the distinct weight blobs.
    size_t weight_bytes() const;
    int64_t parameter_count() const;
};

// Canonical tensor names (GGUF's): "token_embd.weight", "blk.3.attn_q.weight", ...
std::string layer_tensor_name(int layer, const char* short_name);

// Allocates an owned, zeroed, 64-byte aligned blob for `layout`, registers it in
// model.storage and returns a tensor pointing at it (writable through data()).
Tensor make_owned_tensor(Model& model, const std::string& name, const PackedLayout& layout);
inline uint8_t* writable(const Tensor& t) {
    return const_cast<uint8_t*>(t.view.data);
}

// A tensor whose bytes can be read: `t` itself, or `t` with its deferred bytes
// fetched (the buffers they live in are in `keep`).
struct FetchedTensor {
    Tensor tensor;
    std::vector<std::shared_ptr<const void>> keep;
};
// Throws std::logic_error when a fetch gives another layout than announced.
FetchedTensor fetch_tensor(const Tensor& t);
// Releases a deferred tensor's source pages (nothing for a loaded tensor).
void release_source(const Tensor& t);

class Tokenizer;
// Gives `tokenizer` the model's GenerationSettings (extra EOS ids outside its
// vocabulary are left out).
void apply_generation_settings(const Model& model, Tokenizer& tokenizer);

}  // namespace nibble

// The transformer forward pass over a batch of tokens that may belong to several
// sequences, each with its own positions in its own KV cache slot.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/model.h"

namespace nibble {

// One token of a batch: its id, its position in its sequence, the sequence's
// KV cache slot, and whether its logits are wanted.
struct BatchToken {
    int32_t token = 0;
    int32_t pos = 0;
    int32_t seq = 0;
    bool want_logits = false;
};

struct RuntimeOptions {
    int context = 0;      // 0: the model's max_seq_len
    int max_batch = 64;   // tokens per forward call
    int n_sequences = 1;  // KV cache slots
    // Tokens of one forward call whose logits may be wanted (0: max_batch). A
    // scheduler wants at most one per sequence; a perplexity run, every token.
    int max_logit_rows = 0;
    KvType kv_type = KvType::f32;
};

// All activation buffers and the KV cache, allocated once. forward() allocates nothing.
class InferenceState {
  public:
    InferenceState(const Model& model, const RuntimeOptions& options);

    // Runs the model on `batch` (at most max_batch tokens). Within a batch the
    // tokens of one sequence must come in increasing positions, and every earlier
    // position of that sequence must already be in the cache (or in this batch).
    // Returns the logits of the tokens with want_logits (at most
    // logit_rows()), one row of vocab_size floats each, in batch order.
    const float* forward(std::span<const BatchToken> batch);

    const Model& model() const { return *model_; }
    const RuntimeOptions& options() const { return options_; }
    int context() const { return options_.context; }
    int logit_rows() const { return options_.max_logit_rows; }
    const KvCache& kv_cache() const { return kv_; }
    KvCache& kv_cache() { return kv_; }

  private:
    void attention(std::span<const BatchToken> batch, int layer);
    // x += W_down (act(W_gate xn) * (W_up xn)) for the n rows of the batch.
    void feed_forward(int n, int layer);
    // Bias, per-head q/k norm and RoPE of the batch's q and k rows of a layer.
    void prepare_qk(std::span<const BatchToken> batch, int layer);
    // The n activation rows x in w's stored column order (act-order GPTQ:
    // gathered into gathered_); x itself when w has no column order.
    const float* in_column_order(const Tensor& w, const float* x, int n);

    const Model* model_;
    RuntimeOptions options_;
    KvCache kv_;
    // [max_batch][...] activation rows
    std::vector<float> x_, xb_, q_, k_, v_, att_out_, hidden_gate_, hidden_up_, logits_;
    std::vector<float> final_rows_;  // normalised rows whose logits are wanted
    std::vector<float> gathered_;    // [max_batch][widest ordered input] column-ordered rows
    std::vector<float> scores_;  // [threads][query heads per kv head][context] attention weights
    // RoPE frequencies [head_dim / 2] of the global and the sliding-window
    // layers (equal unless rope_theta_local is set), divided by the model's
    // RoPE factors, and the factor on cos and sin (LongRoPE's attention factor).
    std::vector<float> rope_freq_, rope_freq_local_;
    float rope_magnitude_ = 1.0f;
};

}  // namespace nibble

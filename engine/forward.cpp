// The LLaMA forward pass (RMSNorm, RoPE, grouped-query attention over the KV
// cache, SwiGLU FFN), for a batch of tokens from one or more sequences, with
// the options of the later architectures (ModelConfig): q/k/v biases (Qwen2),
// per-head q/k norms (Qwen3, Gemma-3), post-attention and post-FFN norms,
// scaled embeddings, GeGLU, soft-capped scores and logits and sliding-window
// layers with their own RoPE base (Gemma-2/3), RoPE frequency factors
// (Llama-3.1, Phi-3 LongRoPE).
#include "engine/forward.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "engine/layer_ops.h"
#include "engine/profile.h"
#include "kernels/matmul.h"
#include "kernels/vec_ops.h"

namespace nibble {

InferenceState::InferenceState(const Model& model, const RuntimeOptions& options)
    : model_(&model),
      options_(options),
      kv_(model.config, options.n_sequences,
          options.context > 0 ? options.context : model.config.max_seq_len, options.kv_type) {
    const ModelConfig& c = model.config;
    if (options_.context <= 0) options_.context = c.max_seq_len;
    if (options_.max_batch <= 0) throw std::invalid_argument("max_batch must be positive");
    const size_t b = size_t(options_.max_batch);
    if (options_.max_logit_rows <= 0 || options_.max_logit_rows > options_.max_batch) {
        options_.max_logit_rows = options_.max_batch;
    }
    const size_t logit_rows = size_t(options_.max_logit_rows);
    x_.resize(b * size_t(c.dim));
    xb_.resize(b * size_t(c.dim));
    q_.resize(b * size_t(c.q_dim()));
    k_.resize(b * size_t(c.kv_dim()));
    v_.resize(b * size_t(c.kv_dim()));
    att_out_.resize(b * size_t(c.q_dim()));
    hidden_gate_.resize(b * size_t(c.hidden_dim));
    // Rows gathered into a stored column order: only act-order (GPTQ) models need them.
    int64_t gathered_width = 0;
    for (const LayerWeights& w : model.layers) {
        for (const Tensor* t : {&w.wq, &w.wo, &w.w_gate, &w.w_down}) {
            if (t->column_order != nullptr) gathered_width = std::max(gathered_width, t->cols());
        }
    }
    gathered_.resize(b * size_t(gathered_width));
    hidden_up_.resize(b * size_t(c.hidden_dim));
    final_rows_.resize(logit_rows * size_t(c.dim));
    logits_.resize(logit_rows * size_t(c.vocab_size));
    scores_.resize(size_t(omp_get_max_threads()) * size_t(c.n_heads / c.n_kv_heads) *
                   size_t(options_.context));
    // Frequency i of a head: base^(-2i / head_dim) / factor_i, the factors
    // being rope_freqs (Llama-3.1) or LongRoPE's long or short set (Phi-3: long
    // when the context exceeds the trained one, as llama.cpp chooses).
    const float* factors = nullptr;
    if (c.rope_factors == RopeFactors::single) factors = model.rope_freqs.f32();
    if (c.rope_factors == RopeFactors::long_short) {
        factors = options_.context > c.rope_original_context ? model.rope_factors_long.f32()
                                                             : model.rope_factors_short.f32();
        rope_magnitude_ = c.rope_attn_factor;
    }
    const int head_dim = c.head_dim();
    const float local_theta = c.rope_theta_local > 0.0f ? c.rope_theta_local : c.rope_theta;
    for (int i = 0; i < head_dim / 2; ++i) {
        const float exponent = float(2 * i) / float(head_dim);
        const float factor = factors != nullptr ? factors[i] : 1.0f;
        rope_freq_.push_back(1.0f / std::pow(c.rope_theta, exponent) / c.rope_scale / factor);
        rope_freq_local_.push_back(c.rope_theta_local > 0.0f
                                       ? 1.0f / std::pow(local_theta, exponent) / factor
                                       : rope_freq_.back());
    }
}

// For every (token, head): softmax(scale q k^T) v over the cache positions
// 0..pos of the token's sequence (scale 1/sqrt(head_dim) unless the model sets
// one; Gemma-2 soft-caps the scores: cap * tanh(scores / cap)). Query heads h = kv_head * group ..
// (kv_head + 1) * group - 1 read kv head kv_head, so they are done together:
// the kernels read each cached key and value once for the whole group.
void InferenceState::attention(std::span<const BatchToken> batch, int layer) {
    const ModelConfig& c = model_->config;
    const int head_dim = c.head_dim();
    const int group = c.n_heads / c.n_kv_heads;
    const float scale = c.attention_scale();
    const float cap = c.attn_logit_softcap;
    const int window = c.layer_is_sliding(layer) ? c.sliding_window : 0;
    const int n_work = int(batch.size()) * c.n_kv_heads;
    const size_t context = size_t(options_.context);
    // Threads only pay off above ~2^18 multiply-adds (scores plus weighted values).
    int64_t positions = 0;
    for (const BatchToken& tok : batch) positions += tok.pos + 1;
    const bool parallel = positions * c.n_heads * head_dim * 2 > (int64_t(1) << 18);
    const auto one = [&](int work) {
        const int b = work / c.n_kv_heads;
        const int kv_head = work % c.n_kv_heads;
        const BatchToken& tok = batch[size_t(b)];
        const size_t first = size_t(b) * size_t(c.q_dim()) + size_t(kv_head * group * head_dim);
        float* scores = &scores_[size_t(omp_get_thread_num()) * size_t(group) * context];
        const int n_pos = tok.pos + 1;
        attention_scores(kv_.keys(tok.seq, layer, kv_head), head_dim, &q_[first], group, n_pos,
                         scale, scores, context);
        for (int g = 0; g < group; ++g) {
            float* row = scores + size_t(g) * context;
            if (cap > 0.0f) soft_cap(row, n_pos, cap);
            // Sliding window: positions before pos - window + 1 get no weight.
            if (window > 0) {
                for (int p = 0; p + window < n_pos; ++p) row[p] = -INFINITY;
            }
            softmax(row, n_pos);
        }
        attention_values(kv_.values(tok.seq, layer, kv_head), head_dim, scores, context, group,
                         n_pos, &att_out_[first]);
    };
    // (No parallel region for one thread: libgomp allocates a team for each.)
    if (parallel && omp_get_max_threads() > 1) {
#pragma omp parallel for schedule(dynamic, 1)
        for (int work = 0; work < n_work; ++work) one(work);
    } else {
        for (int work = 0; work < n_work; ++work) one(work);
    }
}

namespace {

// Runs row(b) for every token b of the batch: on all threads when the batch
// holds enough work (at least 2^15 elements of rows of row_length), else on
// this one (no parallel region of one thread: libgomp allocates a team for
// each). Each token's row is computed by one thread as it would be alone, so
// results do not depend on the thread count.
template <class Row>
void for_each_token(int n, int64_t row_length, const Row& row) {
    if (n > 1 && int64_t(n) * row_length >= (int64_t(1) << 15) && omp_get_max_threads() > 1) {
#pragma omp parallel for schedule(static)
        for (int b = 0; b < n; ++b) row(b);
    } else {
        for (int b = 0; b < n; ++b) row(b);
    }
}

}  // namespace

const float* InferenceState::in_column_order(const Tensor& w, const float* x, int n) {
    if (w.column_order == nullptr) return x;
    const size_t cols = size_t(w.cols());
    for (size_t b = 0; b < size_t(n); ++b) {
        const float* src = x + b * cols;
        float* dst = &gathered_[b * cols];
        for (size_t j = 0; j < cols; ++j) dst[j] = src[w.column_order[j]];
    }
    return gathered_.data();
}

const float* InferenceState::forward(std::span<const BatchToken> batch) {
    const ModelConfig& c = model_->config;
    const int n = int(batch.size());
    if (n <= 0 || n > options_.max_batch) {
        throw std::invalid_argument("batch of " + std::to_string(n) + " tokens (max " +
                                    std::to_string(options_.max_batch) + ")");
    }
    int wanted = 0;
    for (const BatchToken& t : batch) wanted += t.want_logits ? 1 : 0;
    if (wanted > options_.max_logit_rows) {
        throw std::invalid_argument("batch wants the logits of " + std::to_string(wanted) +
                                    " tokens (max " + std::to_string(options_.max_logit_rows) +
                                    ")");
    }
    for (const BatchToken& t : batch) {
        if (t.token < 0 || t.token >= c.vocab_size || t.pos < 0 || t.pos >= options_.context ||
            t.seq < 0 || t.seq >= options_.n_sequences) {
            throw std::out_of_range("token " + std::to_string(t.token) + " at position " +
                                    std::to_string(t.pos) + " of sequence " +
                                    std::to_string(t.seq) + " is outside the model or context");
        }
    }
    const size_t dim = size_t(c.dim), kv_dim = size_t(c.kv_dim());
    float* x = x_.data();
    // Each Timed block adds its wall time to the NIBBLE_PROFILE=1 report.
    using Op = ProfileOp;
    profile_count_call(n);
    {
        Timed t(Op::embedding, n);
        for (int b = 0; b < n; ++b) {
            dequantize_row(model_->token_embedding.view, batch[size_t(b)].token,
                           x + size_t(b) * dim);
            if (c.embedding_scale != 1.0f)
                scale_into(x + size_t(b) * dim, c.embedding_scale, c.dim);
        }
    }

    for (int l = 0; l < c.n_layers; ++l) {
        const LayerWeights& w = model_->layers[size_t(l)];
        // Attention block: x += Wo attention(RoPE(Wq xn), RoPE(Wk xn), Wv xn)
        {
            Timed t(Op::rmsnorm, n);
            for_each_token(n, c.dim, [&](int b) {
                rmsnorm(&xb_[size_t(b) * dim], x + size_t(b) * dim, w.attn_norm.f32(), c.dim,
                        c.norm_eps);
            });
        }
        {
            Timed t(Op::matmul_qkv, n);
            matmul({{&w.wq.view, q_.data()}, {&w.wk.view, k_.data()}, {&w.wv.view, v_.data()}},
                   in_column_order(w.wq, xb_.data(), n), n);
        }
        prepare_qk(batch, l);
        {
            Timed t(Op::rope_kv_store, n);
            // One thread: the int8 cache quantizes through a shared scratch row.
            for (int b = 0; b < n; ++b) {
                const BatchToken& tok = batch[size_t(b)];
                kv_.store(tok.seq, l, tok.pos, &k_[size_t(b) * kv_dim], &v_[size_t(b) * kv_dim]);
            }
        }
        {
            Timed t(Op::attention, n);
            attention(batch, l);
        }
        {
            Timed t(Op::matmul_wo, n);
            matmul(w.wo.view, in_column_order(w.wo, att_out_.data(), n), n, xb_.data());
        }
        if (c.post_norms) {
            Timed t(Op::post_norm, n);
            for_each_token(n, c.dim, [&](int b) {
                float* row = &xb_[size_t(b) * dim];
                rmsnorm(row, row, w.attn_post_norm.f32(), c.dim, c.norm_eps);
            });
        }
        {
            Timed t(Op::residual, n);
            for_each_token(n, c.dim, [&](int b) {
                add_into(x + size_t(b) * dim, &xb_[size_t(b) * dim], c.dim);
            });
        }

        feed_forward(n, l);
    }

    // Final norm and classifier, only for the tokens whose logits are wanted.
    int n_out = 0;
    {
        Timed t(Op::matmul_output, n);
        for (int b = 0; b < n; ++b) {
            if (!batch[size_t(b)].want_logits) continue;
            rmsnorm(&final_rows_[size_t(n_out) * dim], x + size_t(b) * dim,
                    model_->output_norm.f32(), c.dim, c.norm_eps);
            ++n_out;
        }
        if (n_out > 0) matmul(model_->output.view, final_rows_.data(), n_out, logits_.data());
    }
    if (c.final_logit_softcap > 0.0f) {
        Timed t(Op::soft_cap, n);
        soft_cap(logits_.data(), int64_t(n_out) * c.vocab_size, c.final_logit_softcap);
    }
    return logits_.data();
}

void InferenceState::feed_forward(int n, int layer) {
    const ModelConfig& c = model_->config;
    const LayerWeights& w = model_->layers[size_t(layer)];
    const size_t dim = size_t(c.dim);
    float* x = x_.data();
    using Op = ProfileOp;
    // Feed-forward block: x += W_down (act(W_gate xn) * (W_up xn)), act = silu
    // (SwiGLU) or tanh-GELU (GeGLU)
    {
        Timed t(Op::rmsnorm, n);
        for_each_token(n, c.dim, [&](int b) {
            rmsnorm(&xb_[size_t(b) * dim], x + size_t(b) * dim, w.ffn_norm.f32(), c.dim,
                    c.norm_eps);
        });
    }
    {
        Timed t(Op::matmul_gate_up, n);
        matmul({{&w.w_gate.view, hidden_gate_.data()}, {&w.w_up.view, hidden_up_.data()}},
               in_column_order(w.w_gate, xb_.data(), n), n);
    }
    {
        Timed t(Op::swiglu, n);
        const size_t hidden = size_t(c.hidden_dim);
        for_each_token(n, c.hidden_dim, [&](int b) {
            float* gate = &hidden_gate_[size_t(b) * hidden];
            float* up = &hidden_up_[size_t(b) * hidden];
            if (c.activation == FfnActivation::gelu_tanh) {
                gelu_tanh_mul(gate, up, c.hidden_dim);
            } else {
                silu_mul(gate, up, c.hidden_dim);
            }
        });
    }
    {
        Timed t(Op::matmul_down, n);
        matmul(w.w_down.view, in_column_order(w.w_down, hidden_gate_.data(), n), n, xb_.data());
    }
    if (c.post_norms) {
        Timed t(Op::post_norm, n);
        for_each_token(n, c.dim, [&](int b) {
            float* row = &xb_[size_t(b) * dim];
            rmsnorm(row, row, w.ffn_post_norm.f32(), c.dim, c.norm_eps);
        });
    }
    {
        Timed t(Op::residual, n);
        for_each_token(n, c.dim,
                       [&](int b) { add_into(x + size_t(b) * dim, &xb_[size_t(b) * dim], c.dim); });
    }
}

void InferenceState::prepare_qk(std::span<const BatchToken> batch, int layer) {
    const ModelConfig& c = model_->config;
    const LayerWeights& w = model_->layers[size_t(layer)];
    const int n = int(batch.size()), head_dim = c.head_dim();
    const size_t q_dim = size_t(c.q_dim()), kv_dim = size_t(c.kv_dim());
    using Op = ProfileOp;
    if (c.qkv_bias) {
        Timed t(Op::bias, n);
        for_each_token(n, c.q_dim(), [&](int b) {
            add_into(&q_[size_t(b) * q_dim], w.bq.f32(), c.q_dim());
            add_into(&k_[size_t(b) * kv_dim], w.bk.f32(), c.kv_dim());
            add_into(&v_[size_t(b) * kv_dim], w.bv.f32(), c.kv_dim());
        });
    }
    if (c.qk_norm) {  // each head of q and k: RMSNorm over head_dim
        Timed t(Op::qk_norm, n);
        for_each_token(n, c.q_dim(), [&](int b) {
            for (int h = 0; h < c.n_heads; ++h) {
                float* head = &q_[size_t(b) * q_dim + size_t(h * head_dim)];
                rmsnorm(head, head, w.q_norm.f32(), head_dim, c.norm_eps);
            }
            for (int h = 0; h < c.n_kv_heads; ++h) {
                float* head = &k_[size_t(b) * kv_dim + size_t(h * head_dim)];
                rmsnorm(head, head, w.k_norm.f32(), head_dim, c.norm_eps);
            }
        });
    }
    Timed t(Op::rope_kv_store, n);
    const float* freq = c.layer_is_sliding(layer) ? rope_freq_local_.data() : rope_freq_.data();
    for_each_token(n, c.q_dim(), [&](int b) {
        const int pos = batch[size_t(b)].pos;
        rope(&q_[size_t(b) * q_dim], c.n_heads, head_dim, pos, freq, rope_magnitude_, c.rope_style);
        rope(&k_[size_t(b) * kv_dim], c.n_kv_heads, head_dim, pos, freq, rope_magnitude_,
             c.rope_style);
    });
}

}  // namespace nibble

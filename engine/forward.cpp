// The LLaMA forward pass (RMSNorm, RoPE, grouped-query attention over the KV
// cache, SwiGLU FFN), for a batch of tokens from one or more sequences.
#include "engine/forward.h"

#include <omp.h>

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
    x_.resize(b * size_t(c.dim));
    xb_.resize(b * size_t(c.dim));
    q_.resize(b * size_t(c.dim));
    k_.resize(b * size_t(c.kv_dim()));
    v_.resize(b * size_t(c.kv_dim()));
    att_out_.resize(b * size_t(c.dim));
    hidden_gate_.resize(b * size_t(c.hidden_dim));
    gathered_.resize(b * size_t(std::max(c.dim, c.hidden_dim)));
    hidden_up_.resize(b * size_t(c.hidden_dim));
    final_rows_.resize(b * size_t(c.dim));
    logits_.resize(b * size_t(c.vocab_size));
    scores_.resize(size_t(omp_get_max_threads()) * size_t(c.n_heads / c.n_kv_heads) *
                   size_t(options_.context));
    const int head_dim = c.head_dim();
    for (int i = 0; i < head_dim / 2; ++i) {
        rope_freq_.push_back(1.0f / std::pow(c.rope_theta, float(2 * i) / float(head_dim)) /
                             c.rope_scale);
    }
}

// For every (token, head): softmax(q k^T / sqrt(head_dim)) v over the cache
// positions 0..pos of the token's sequence. Query heads h = kv_head * group ..
// (kv_head + 1) * group - 1 read kv head kv_head, so they are done together:
// the kernels read each cached key and value once for the whole group.
void InferenceState::attention(std::span<const BatchToken> batch, int layer) {
    const ModelConfig& c = model_->config;
    const int head_dim = c.head_dim();
    const int group = c.n_heads / c.n_kv_heads;
    const float inv_sqrt = 1.0f / std::sqrt(float(head_dim));
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
        const size_t first = size_t(b) * size_t(c.dim) + size_t(kv_head * group * head_dim);
        float* scores = &scores_[size_t(omp_get_thread_num()) * size_t(group) * context];
        const int n_pos = tok.pos + 1;
        attention_scores(kv_.keys(tok.seq, layer, kv_head), head_dim, &q_[first], group, n_pos,
                         inv_sqrt, scores, context);
        for (int g = 0; g < group; ++g) {
            float* row = scores + size_t(g) * context;
            // Sliding window: positions before pos - window + 1 get no weight.
            if (c.sliding_window > 0) {
                for (int p = 0; p + c.sliding_window < n_pos; ++p) row[p] = -INFINITY;
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
        {
            Timed t(Op::rope_kv_store, n);
            for_each_token(n, c.dim, [&](int b) {
                const int pos = batch[size_t(b)].pos;
                rope(&q_[size_t(b) * dim], c.n_heads, c.head_dim(), pos, rope_freq_.data(),
                     c.rope_style);
                rope(&k_[size_t(b) * kv_dim], c.n_kv_heads, c.head_dim(), pos, rope_freq_.data(),
                     c.rope_style);
            });
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
        {
            Timed t(Op::residual, n);
            for_each_token(n, c.dim, [&](int b) {
                add_into(x + size_t(b) * dim, &xb_[size_t(b) * dim], c.dim);
            });
        }

        // Feed-forward block: x += W_down (silu(W_gate xn) * (W_up xn))
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
                silu_mul(&hidden_gate_[size_t(b) * hidden], &hidden_up_[size_t(b) * hidden],
                         c.hidden_dim);
            });
        }
        {
            Timed t(Op::matmul_down, n);
            matmul(w.w_down.view, in_column_order(w.w_down, hidden_gate_.data(), n), n, xb_.data());
        }
        {
            Timed t(Op::residual, n);
            for_each_token(n, c.dim, [&](int b) {
                add_into(x + size_t(b) * dim, &xb_[size_t(b) * dim], c.dim);
            });
        }
    }

    // Final norm and classifier, only for the tokens whose logits are wanted.
    Timed t(Op::matmul_output, n);
    int n_out = 0;
    for (int b = 0; b < n; ++b) {
        if (!batch[size_t(b)].want_logits) continue;
        rmsnorm(&final_rows_[size_t(n_out) * dim], x + size_t(b) * dim, model_->output_norm.f32(),
                c.dim, c.norm_eps);
        ++n_out;
    }
    if (n_out > 0) matmul(model_->output.view, final_rows_.data(), n_out, logits_.data());
    return logits_.data();
}

}  // namespace nibble

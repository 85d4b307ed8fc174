// Attention kernels over one kv head of a KV cache: the scores of a group of
// query heads that share the kv head (grouped-query attention), and the
// weighted sum of the values. No model knowledge: the caller passes where the
// keys and values of the head are and how they are laid out.
//
// Key layout (blocks of kKeyBlock positions, transposed inside a block):
//   element d of position p is at data[(p / 16) * block_stride + d * 16 + p % 16]
// so that one 16-element row d of a block holds 16 positions' element d, and a
// score is computed for 16 positions at once with the query element broadcast
// (no horizontal sums). INT8 keys have one scale per position at
//   scales[(p / 16) * scale_block_stride + p % 16].
// Value layout (one row per position):
//   element d of position p is at data[p * stride + d]; int8 scale at scales[p * scale_stride].
//
// Order of operations (every implementation, so results are bitwise equal to
// the scalar reference and do not depend on how many tokens or heads a call
// covers):
//   score(g, p) = (sum_d q[g][d] k_p[d]) * scale, the sum one fused
//                 multiply-add chain over d = 0, 1, ... starting from 0;
//                 INT8: ((sum_d q[g][d] k_p[d]) * key_scale_p) * scale.
//   out(g, d)   = sum_p w[g][p] v_p[d], one fused multiply-add chain over
//                 p = 0, 1, ... starting from 0; INT8: the weight is
//                 w[g][p] * value_scale_p, then the chain.
#pragma once
#include <cstddef>
#include <cstdint>

namespace nibble {

// Positions per key block.
constexpr int kKeyBlock = 16;

// Element type of a cached key or value.
enum class CacheElement : uint8_t { f32, f16, i8 };

struct KeyBlocks {
    const void* data;
    size_t block_stride;  // elements from one block of kKeyBlock positions to the next
    const float* scales;  // INT8 only
    size_t scale_block_stride;
    CacheElement type;
};

struct ValueRows {
    const void* data;
    size_t stride;        // elements from one position to the next
    const float* scales;  // INT8 only
    size_t scale_stride;
    CacheElement type;
};

// scores[g * score_stride + p] for g < n_queries, p < n_pos; query g is
// q[g * head_dim .. g * head_dim + head_dim). Writes nothing past n_pos.
using AttentionScoresFn = void (*)(const KeyBlocks& keys, int head_dim, const float* q,
                                   int n_queries, int n_pos, float scale, float* scores,
                                   size_t score_stride);
// out[g * head_dim + d] for g < n_queries, d < head_dim, from the weights
// w[g * w_stride + p], p < n_pos.
using AttentionValuesFn = void (*)(const ValueRows& values, int head_dim, const float* w,
                                   size_t w_stride, int n_queries, int n_pos, float* out);

// Portable reference versions (kernels/attention_scalar.cpp).
void attention_scores_scalar(const KeyBlocks& keys, int head_dim, const float* q, int n_queries,
                             int n_pos, float scale, float* scores, size_t score_stride);
void attention_values_scalar(const ValueRows& values, int head_dim, const float* w, size_t w_stride,
                             int n_queries, int n_pos, float* out);

// Dispatching versions: the current kernel choice's table (kernels/vec_ops.h).
void attention_scores(const KeyBlocks& keys, int head_dim, const float* q, int n_queries, int n_pos,
                      float scale, float* scores, size_t score_stride);
void attention_values(const ValueRows& values, int head_dim, const float* w, size_t w_stride,
                      int n_queries, int n_pos, float* out);

}  // namespace nibble

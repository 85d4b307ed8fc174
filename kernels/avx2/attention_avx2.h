// AVX2 attention kernels (kernels/avx2/attention_avx2.cpp), for the AVX2
// vector-op table.
#pragma once
#include "kernels/attention.h"

namespace nibble::vec_avx2 {

void attention_scores(const KeyBlocks& keys, int head_dim, const float* q, int n_queries, int n_pos,
                      float scale, float* scores, size_t score_stride);
void attention_values(const ValueRows& values, int head_dim, const float* w, size_t w_stride,
                      int n_queries, int n_pos, float* out);

}  // namespace nibble::vec_avx2

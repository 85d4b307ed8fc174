// Matrix products with packed weights: Y[t] = W X[t] for several activation rows.
//
// Every kernel takes n_tokens activation vectors at once (prompt processing and
// batched decoding); a single token is n_tokens = 1. X is [n_tokens][cols] and
// Y is [n_tokens][rows], both row-major FP32. Kernels never materialise a
// dequantized copy of W.
#pragma once
#include <cstdint>
#include <initializer_list>

#include "kernels/formats.h"

namespace nibble {

// Dispatching entry point: picks the fastest variant for this CPU and format and
// splits the rows over the OpenMP threads.
void matmul(const MatrixView& w, const float* x, int n_tokens, float* y);

// One product y = W x of a multi-matrix matmul.
struct MatmulProduct {
    const MatrixView* w;
    float* y;  // [n_tokens][w->layout.rows]
};

// Several products sharing one input X, e.g. Wq, Wk, Wv of a layer: the same
// results as one matmul() per product, but X is quantized once and all rows of
// all matrices are split over the threads in one parallel region. Matrices of
// different formats or widths are run one after the other.
void matmul(std::initializer_list<MatmulProduct> products, const float* x, int n_tokens);

// Dequantizes row `row` of w into out[0..cols).
void dequantize_row(const MatrixView& w, int64_t row, float* out);

namespace reference {
// Scalar reference: dequantize each row, then FP32 dot products. The fast
// kernels are tested against this.
void matmul(const MatrixView& w, const float* x, int n_tokens, float* y);
}  // namespace reference

}  // namespace nibble

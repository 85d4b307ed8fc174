// A LLaMA block in dense FP32 over a whole calibration set at once, for the
// calibrated quantizers: the same math as engine/forward.cpp (RMSNorm, RoPE,
// causal grouped-query attention, SwiGLU), written with Eigen matrix products
// over [tokens][channels] activations so every linear layer's input can be
// captured, and any layer swapped for its quantized version.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/model.h"
#include "models/quant_grid.h"

namespace nibble {

// Calibration tokens: sequences laid end to end; sequence i is
// tokens[starts[i] .. starts[i+1]) and its tokens sit at positions 0, 1, ...
struct CalibSequences {
    std::vector<int32_t> tokens;
    std::vector<int64_t> starts{0};
    int64_t size() const { return int64_t(tokens.size()); }
    int64_t count() const { return int64_t(starts.size()) - 1; }
};

// One block's weights, dequantized to FP32.
struct DenseBlock {
    std::vector<float> attn_norm, ffn_norm;
    RowMatrix wq, wk, wv, wo, w_gate, w_up, w_down;
};

RowMatrix dense_matrix(const Tensor& t);
std::vector<float> dense_vector(const Tensor& t);
DenseBlock load_block(const Model& model, int layer);

// The embedding rows of every calibration token, [tokens][dim].
RowMatrix embed(const Model& model, const CalibSequences& calib);

// Every row of x normalised: w * x / sqrt(mean(x^2) + eps).
RowMatrix rmsnorm_rows(const RowMatrix& x, const std::vector<float>& w, float eps);

// x W^T: the linear layer W [out][in] on the rows of x [tokens][in].
inline RowMatrix linear(const RowMatrix& x, const RowMatrix& w) {
    return x * w.transpose();
}

// Attention from projected q [tokens][dim], k and v [tokens][kv_dim]: RoPE on q
// and k by position within each sequence, causal softmax(q k^T / sqrt(head_dim)) v
// per head; returns the input of the output projection, [tokens][dim].
RowMatrix attention(const ModelConfig& c, const CalibSequences& calib, RowMatrix q, RowMatrix k,
                    const RowMatrix& v);

// silu(gate) * up, element-wise.
RowMatrix swiglu_rows(const RowMatrix& gate, const RowMatrix& up);

}  // namespace nibble

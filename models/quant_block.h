// A LLaMA block in dense FP32 over a whole calibration set at once, for the
// calibrated quantizers: the same math as engine/forward.cpp (RMSNorm, RoPE,
// causal grouped-query attention, SwiGLU), written with Eigen matrix products
// over [tokens][channels] activations so every linear layer's input can be
// captured, and any layer swapped for its quantized version.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/model.h"
#include "engine/tensor_registry.h"
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

// One block's weights dequantized to FP32: every tensor of the layer the
// model has (tensor_registry.h), norms as 1-row matrices; b[&LayerWeights::wq].
struct DenseBlock {
    std::vector<RowMatrix> tensors;  // indexed like kLayerTensors (empty: not in the model)
    RowMatrix& operator[](Tensor LayerWeights::*member) {
        return tensors[size_t(&layer_tensor_spec(member) - kLayerTensors)];
    }
    const RowMatrix& operator[](Tensor LayerWeights::*member) const {
        return tensors[size_t(&layer_tensor_spec(member) - kLayerTensors)];
    }
};

RowMatrix dense_matrix(const Tensor& t);
DenseBlock load_block(const Model& model, int layer);

// The embedding rows of every calibration token, [tokens][dim].
RowMatrix embed(const Model& model, const CalibSequences& calib);

// Every row of x normalised: w * x / sqrt(mean(x^2) + eps); w is 1 x cols.
RowMatrix rmsnorm_rows(const RowMatrix& x, const RowMatrix& w, float eps);

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

// Dense FP32 LLaMA block pieces for calibration (see quant_block.h).
#include "models/quant_block.h"

#include <cmath>
#include <iterator>

#include "engine/layer_ops.h"
#include "kernels/matmul.h"
#include "kernels/vec_ops.h"

namespace nibble {

RowMatrix dense_matrix(const Tensor& t) {
    return dequantize(t.view);
}

DenseBlock load_block(const Model& model, int layer) {
    const LayerWeights& l = model.layers[size_t(layer)];
    DenseBlock b;
    b.tensors.resize(std::size(kLayerTensors));
    for (size_t i = 0; i < std::size(kLayerTensors); ++i) {
        const LayerTensorSpec& spec = kLayerTensors[i];
        if (tensor_used(model.config, spec.use)) b.tensors[i] = dense_matrix(l.*spec.member);
    }
    return b;
}

RowMatrix embed(const Model& model, const CalibSequences& calib) {
    RowMatrix x(calib.size(), model.config.dim);
    for (int64_t i = 0; i < calib.size(); ++i) {
        dequantize_row(model.token_embedding.view, calib.tokens[size_t(i)], x.row(i).data());
    }
    return x;
}

RowMatrix rmsnorm_rows(const RowMatrix& x, const RowMatrix& w, float eps) {
    RowMatrix out(x.rows(), x.cols());
#pragma omp parallel for schedule(static) if (x.size() > (1 << 16))
    for (Eigen::Index r = 0; r < x.rows(); ++r) {
        rmsnorm(out.row(r).data(), x.row(r).data(), w.data(), int(x.cols()), eps);
    }
    return out;
}

RowMatrix attention(const ModelConfig& c, const CalibSequences& calib, RowMatrix q, RowMatrix k,
                    const RowMatrix& v) {
    const int hd = c.head_dim(), group = c.n_heads / c.n_kv_heads;
    std::vector<float> freq;
    freq.reserve(size_t(hd / 2));
    for (int i = 0; i < hd / 2; ++i) {
        freq.push_back(1.0f / std::pow(c.rope_theta, float(2 * i) / float(hd)));
    }
    for (int64_t s = 0; s < calib.count(); ++s) {
        for (int64_t t = calib.starts[size_t(s)]; t < calib.starts[size_t(s) + 1]; ++t) {
            const int pos = int(t - calib.starts[size_t(s)]);
            rope(q.row(t).data(), c.n_heads, hd, pos, freq.data(), 1.0f, c.rope_style);
            rope(k.row(t).data(), c.n_kv_heads, hd, pos, freq.data(), 1.0f, c.rope_style);
        }
    }
    RowMatrix out(q.rows(), q.cols());
    const float inv_sqrt = 1.0f / std::sqrt(float(hd));
    const int64_t n_work = calib.count() * c.n_heads;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t work = 0; work < n_work; ++work) {
        const int64_t s = work / c.n_heads;
        const int h = int(work % c.n_heads), kv = h / group;
        const int64_t t0 = calib.starts[size_t(s)], n = calib.starts[size_t(s) + 1] - t0;
        const auto qh = q.block(t0, h * hd, n, hd);
        const auto kh = k.block(t0, kv * hd, n, hd);
        const auto vh = v.block(t0, kv * hd, n, hd);
        RowMatrix scores = (qh * kh.transpose()) * inv_sqrt;
        for (int64_t i = 0; i < n; ++i) {
            float* row = scores.row(i).data();
            softmax(row, int(i + 1));
            for (int64_t j = i + 1; j < n; ++j) row[j] = 0.0f;
        }
        out.block(t0, h * hd, n, hd) = scores * vh;
    }
    return out;
}

RowMatrix swiglu_rows(const RowMatrix& gate, const RowMatrix& up) {
    RowMatrix out = gate;
    silu_mul(out.data(), up.data(), int(out.size()));
    return out;
}

}  // namespace nibble

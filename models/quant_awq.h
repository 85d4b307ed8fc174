// AWQ (Lin et al. 2023; mit-han-lab/llm-awq auto_scale.py, auto_clip.py) for the
// linear layers that read one input:
//
// Scale search. x_mean[j] = mean |x_j| over the calibration rows; for each
// ratio a in {0, 1/grid, ..., (grid-1)/grid}: s = max(x_mean, 1e-4)^a,
// normalised by sqrt(max(s) min(s)); the candidate weights are Q(W diag(s))
// applied to diag(1/s) x, and the caller's loss (the block output's mean
// squared error against full precision) picks the best a. a = 0 is the identity
// (s = 1), so the search never does worse than RTN on that loss. The winner is
// folded into the operation before the layer (the RMSNorm weight, or the rows
// of the linear layer producing x, divided by s) and the layer's columns are
// multiplied by s: in exact arithmetic the model computes the same function.
//
// Clipping search. Per row and group, the weights are clipped to
// +-max|w| (1 - i/grid), i = 0 .. grid*max_shrink - 1, fit and rounded with the
// RTN fit, and the clip whose output error e^T H_gg e is least is kept (H the
// input Gram matrix of the layer, H_gg its block on the group's columns). i = 0
// is plain RTN.
#pragma once
#include <Eigen/Dense>
#include <functional>
#include <vector>

#include "models/quant_grid.h"

namespace nibble {

// Per-column mean |x| over the rows of x.
std::vector<float> mean_abs(const RowMatrix& x);

// s = max(x_mean, 1e-4)^alpha / sqrt(max(s) min(s)).
std::vector<float> awq_scales(const std::vector<float>& x_mean, float alpha);

struct AwqSearch {
    float alpha = 0.0f;
    std::vector<float> scales;   // the winner (all ones when alpha == 0)
    double loss = 0.0;           // its loss
    double identity_loss = 0.0;  // the loss at alpha = 0
};

// Evaluates loss(s) for every ratio of the grid and keeps the least.
AwqSearch awq_search(const std::vector<float>& x_mean,
                     const std::function<double(const std::vector<float>& s)>& loss, int grid = 20);

// w[:, j] *= s[j]
void scale_columns(RowMatrix& w, const std::vector<float>& s);
// w[i, :] /= s[i]
void divide_rows(RowMatrix& w, const std::vector<float>& s);
// x[:, j] /= s[j] (activations [tokens][channels])
void divide_columns(RowMatrix& x, const std::vector<float>& s);

// RTN of W diag(s), in the scaled space: what the layer computes on diag(1/s) x.
RowMatrix rtn_scaled(const RowMatrix& w, const std::vector<float>& s, const PackedLayout& layout,
                     ScaleRule rule);

// sum over rows of d_r^T H d_r: ||D X^T||^2 / n * 2 when H = (2/n) X^T X.
double output_error(const RowMatrix& d, const Eigen::MatrixXf& h);

// Clipping search and RTN with the chosen clips (values: the clipped weights).
QuantizedMatrix awq_clip_quantize(const RowMatrix& w, const Eigen::MatrixXf& h,
                                  const PackedLayout& layout, ScaleRule rule, int grid = 20,
                                  float max_shrink = 0.5f);

}  // namespace nibble

// GPTQ (Frantar et al. 2022; IST-DASLab/gptq gptq.py) for one linear layer:
// quantizes the columns of W one by one, and after each column spreads its
// rounding error over the columns not yet quantized, weighted by the inverse
// Hessian of the layer's reconstruction loss ||W X - Q(W) X||^2.
//
//   1. H = (2/n) X^T X over the n calibration rows of X [n][cols] (hessian()).
//   2. Dead inputs (H[i,i] == 0): H[i,i] = 1 and W[:, i] = 0.
//   3. Act-order (optional): columns in order of decreasing H[i,i]
//      (act_order_permutation), or in a given order (GptqOptions::order: the
//      layers sharing one input, hence one H, share one order).
//   4. Dampening: H += damp * mean(diag H) * I.
//   5. U = upper Cholesky factor of H^-1 (H^-1 = U^T U).
//   6. Columns in blocks of 128 (or the group size, if larger): for column i, at
//      a group boundary fit the group's parameters (the RTN fit of
//      quant_grid.h) to the group's current, already updated weights; q = the
//      grid value of w; err = (w - q) / U[i,i]; the block's later columns get
//      W[:, j] -= err * U[i, j]; after the block, all later columns get
//      W[:, end:] -= Err U[block, end:] in one matrix product.
//   7. Undo the permutation.
//
// Groups are consecutive columns of the stored order. With act-order the
// groups can be taken in the original order ("static groups": every group's
// parameters are fit to the original weights before the walk), which needs no
// extra storage; otherwise they are consecutive columns of the permuted order,
// and the result is stored permuted (result.column_order).
#pragma once
#include <Eigen/Dense>
#include <cstdint>
#include <vector>

#include "models/quant_grid.h"

namespace nibble {

struct GptqOptions {
    float damp = 0.01f;  // fraction of mean(diag H) added to the diagonal
    bool act_order = false;
    bool static_groups = false;
    int block_size = 128;
    ScaleRule rule = ScaleRule::search;
    // With act_order: the column order to walk (a permutation of 0..cols-1);
    // empty: act_order_permutation(H).
    std::vector<int32_t> order;
};

struct GptqResult {
    // values on the grid of its parameters; with act-order and non-static
    // groups its columns are in column_order (stored column j = original
    // column column_order[j]) and its groups are consecutive in that order.
    QuantizedMatrix matrix;
    std::vector<int32_t> column_order;  // empty: the original order
};

// H = (2/n) X^T X, X [n][cols]; accumulate several batches with hessian_add.
Eigen::MatrixXf hessian(const RowMatrix& x);
// h = (h * n_before + (2) X^T X) / (n_before + n), the running average of gptq.py.
void hessian_add(Eigen::MatrixXf& h, int64_t& n_before, const RowMatrix& x);

// Upper Cholesky factor U of H^-1 (H^-1 = U^T U), from one Cholesky
// factorization of H with its order reversed: if J H J = L L^T (J reverses the
// order) then U = J L^-1 J. Throws std::runtime_error if H is not positive
// definite.
Eigen::MatrixXf inverse_cholesky_upper(const Eigen::MatrixXf& h);

// Act-order: the columns by decreasing H[i,i] (dead columns, H[i,i] == 0,
// count as 1), ties in index order.
std::vector<int32_t> act_order_permutation(const Eigen::MatrixXf& h);

// Quantizes w [rows][cols] into `layout` (a grouped format of w's shape) given
// its Hessian h [cols][cols]. Throws std::runtime_error if the dampened
// Hessian is not positive definite, std::invalid_argument if the shapes or
// options.order do not fit.
GptqResult gptq_quantize(const RowMatrix& w, const Eigen::MatrixXf& h, const PackedLayout& layout,
                         const GptqOptions& options = {});

}  // namespace nibble

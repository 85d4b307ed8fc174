// GPTQ for one linear layer (see quant_gptq.h).
#include "models/quant_gptq.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

namespace nibble {

Eigen::MatrixXf hessian(const RowMatrix& x) {
    Eigen::MatrixXf h = Eigen::MatrixXf::Zero(x.cols(), x.cols());
    int64_t n = 0;
    hessian_add(h, n, x);
    return h;
}

void hessian_add(Eigen::MatrixXf& h, int64_t& n_before, const RowMatrix& x) {
    if (x.rows() == 0) return;
    const int64_t n = n_before + x.rows();
    h *= float(double(n_before) / double(n));
    h.selfadjointView<Eigen::Lower>().rankUpdate(x.transpose(), float(2.0 / double(n)));
    h.triangularView<Eigen::StrictlyUpper>() = h.transpose();
    n_before = n;
}

Eigen::MatrixXf inverse_cholesky_upper(const Eigen::MatrixXf& h) {
    const Eigen::Index n = h.rows();
    const Eigen::MatrixXf reversed = h.reverse();  // J H J: both orders reversed
    Eigen::LLT<Eigen::MatrixXf> llt(reversed);
    if (llt.info() != Eigen::Success) {
        throw std::runtime_error("GPTQ: the dampened Hessian is not positive definite");
    }
    Eigen::MatrixXf l_inv = Eigen::MatrixXf::Identity(n, n);
    llt.matrixL().solveInPlace(l_inv);
    Eigen::MatrixXf u = l_inv.reverse();  // J L^-1 J, upper triangular
    u.triangularView<Eigen::StrictlyLower>().setZero();
    return u;
}

std::vector<int32_t> act_order_permutation(const Eigen::MatrixXf& h) {
    std::vector<int32_t> perm(static_cast<size_t>(h.cols()));
    std::iota(perm.begin(), perm.end(), 0);
    auto diag = [&](int32_t i) { return h(i, i) == 0.0f ? 1.0f : h(i, i); };
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int32_t a, int32_t b) { return diag(a) > diag(b); });
    return perm;
}

namespace {

bool is_permutation_of_columns(const std::vector<int32_t>& order, int64_t cols) {
    if (int64_t(order.size()) != cols) return false;
    std::vector<bool> seen(order.size(), false);
    for (int32_t c : order) {
        if (c < 0 || c >= cols || seen[size_t(c)]) return false;
        seen[size_t(c)] = true;
    }
    return true;
}

// Per-row parameters of every group, [rows][groups_per_row].
struct GroupTable {
    std::vector<float> scales, mins;
    int64_t gpr = 0;
    GroupParams at(int64_t r, int64_t g) const {
        const size_t i = size_t(r * gpr + g);
        return {scales[i], mins.empty() ? 0.0f : mins[i]};
    }
    void set(int64_t r, int64_t g, const GroupParams& p) {
        const size_t i = size_t(r * gpr + g);
        scales[i] = p.scale;
        if (!mins.empty()) mins[i] = p.min;
    }
};

GroupTable make_table(const PackedLayout& l) {
    GroupTable t;
    t.gpr = l.groups_per_row;
    t.scales.assign(size_t(l.n_groups()), 0.0f);
    if (has_mins(l.format)) t.mins.assign(size_t(l.n_groups()), 0.0f);
    return t;
}

// Fits group g (columns c0..c0+n of the column-major w) of every row into t.
void fit_columns(const Eigen::MatrixXf& w, int64_t c0, int n, int64_t g, WeightFormat format,
                 ScaleRule rule, GroupTable& t) {
#pragma omp parallel for schedule(static) if (w.rows() >= 256)
    for (Eigen::Index r = 0; r < w.rows(); ++r) {
        float buf[256];
        for (int j = 0; j < n; ++j) buf[j] = w(r, c0 + j);
        t.set(r, g, fit_group(format, buf, n, rule));
    }
}

}  // namespace

GptqResult gptq_quantize(const RowMatrix& w_in, const Eigen::MatrixXf& h_in,
                         const PackedLayout& layout, const GptqOptions& o) {
    const int64_t rows = w_in.rows(), cols = w_in.cols();
    if (!is_grouped(layout.format) || layout.rows != rows || layout.cols != cols ||
        h_in.rows() != cols || h_in.cols() != cols) {
        throw std::invalid_argument("gptq_quantize: shapes of W, H and the layout do not match");
    }
    if (o.act_order && !o.order.empty() && !is_permutation_of_columns(o.order, cols)) {
        throw std::invalid_argument("gptq_quantize: the given order is not a column permutation");
    }
    const int64_t g_size = layout.group_size;
    Eigen::MatrixXf w = w_in;  // column-major: columns are contiguous
    Eigen::MatrixXf h = h_in;
    for (int64_t i = 0; i < cols; ++i) {
        if (h(i, i) == 0.0f) {
            h(i, i) = 1.0f;
            w.col(i).setZero();
        }
    }
    GroupTable table = make_table(layout);
    const bool static_groups = o.act_order && o.static_groups;
    if (static_groups) {
        for (int64_t g = 0; g < layout.groups_per_row; ++g) {
            const int n = int(std::min(g_size, cols - g * g_size));
            fit_columns(w, g * g_size, n, g, layout.format, o.rule, table);
        }
    }
    std::vector<int32_t> perm(static_cast<size_t>(cols));
    std::iota(perm.begin(), perm.end(), 0);
    if (o.act_order) {
        perm = o.order.empty() ? act_order_permutation(h) : o.order;
        Eigen::MatrixXf wp(rows, cols), hp(cols, cols);
        for (int64_t j = 0; j < cols; ++j) wp.col(j) = w.col(perm[size_t(j)]);
        for (int64_t j = 0; j < cols; ++j) {
            for (int64_t i = 0; i < cols; ++i) hp(i, j) = h(perm[size_t(i)], perm[size_t(j)]);
        }
        w.swap(wp);
        h.swap(hp);
    }
    h.diagonal().array() += o.damp * h.diagonal().mean();
    const Eigen::MatrixXf u = inverse_cholesky_upper(h);

    Eigen::MatrixXf q(rows, cols);
    const int64_t block = std::max<int64_t>(o.block_size, g_size);  // a group never spans blocks
    Eigen::MatrixXf err(rows, block);
    for (int64_t i1 = 0; i1 < cols; i1 += block) {
        const int64_t i2 = std::min(cols, i1 + block), count = i2 - i1;
        for (int64_t c = i1; c < i2; ++c) {
            // The group of column c: static groups keep the original columns'.
            const int64_t g = static_groups ? perm[size_t(c)] / g_size : c / g_size;
            if (!static_groups && c % g_size == 0) {
                fit_columns(w, c, int(std::min(g_size, cols - c)), g, layout.format, o.rule, table);
            }
            const float d = u(c, c);
            for (int64_t r = 0; r < rows; ++r) {
                const float v = w(r, c);
                const float qv = grid_value(layout.format, v, table.at(r, g));
                q(r, c) = qv;
                err(r, c - i1) = (v - qv) / d;
            }
            if (c + 1 < i2) {
                w.middleCols(c + 1, i2 - c - 1).noalias() -=
                    err.col(c - i1) * u.row(c).segment(c + 1, i2 - c - 1);
            }
        }
        if (i2 < cols) {
            w.rightCols(cols - i2).noalias() -=
                err.leftCols(count) * u.block(i1, i2, count, cols - i2);
        }
    }

    GptqResult result;
    QuantizedMatrix& m = result.matrix;
    m.layout = layout;
    m.scales = std::move(table.scales);
    m.mins = std::move(table.mins);
    m.values.resize(rows, cols);
    if (o.act_order && !static_groups) {
        m.values = q;  // stored permuted
        result.column_order = perm;
    } else {
        for (int64_t j = 0; j < cols; ++j) m.values.col(perm[size_t(j)]) = q.col(j);
    }
    return result;
}

}  // namespace nibble

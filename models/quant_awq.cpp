// AWQ scale and clipping searches (see quant_awq.h).
#include "models/quant_awq.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace nibble {

std::vector<float> mean_abs(const RowMatrix& x) {
    std::vector<float> m(size_t(x.cols()), 0.0f);
    if (x.rows() == 0) return m;
    const Eigen::RowVectorXf s = x.cwiseAbs().colwise().sum() / float(x.rows());
    for (Eigen::Index j = 0; j < x.cols(); ++j) m[size_t(j)] = s(j);
    return m;
}

std::vector<float> awq_scales(const std::vector<float>& x_mean, float alpha) {
    std::vector<float> s(x_mean.size());
    float lo = INFINITY, hi = 0.0f;
    for (size_t j = 0; j < s.size(); ++j) {
        s[j] = std::pow(std::max(x_mean[j], 1e-4f), alpha);
        lo = std::min(lo, s[j]);
        hi = std::max(hi, s[j]);
    }
    const float norm = std::sqrt(hi * lo);
    for (float& v : s) v /= norm;
    return s;
}

AwqSearch awq_search(const std::vector<float>& x_mean,
                     const std::function<double(const std::vector<float>&)>& loss, int grid) {
    AwqSearch best;
    for (int i = 0; i < grid; ++i) {
        const float alpha = float(i) / float(grid);
        std::vector<float> s = awq_scales(x_mean, alpha);
        const double l = loss(s);
        if (i == 0) best.identity_loss = l;
        if (i == 0 || l < best.loss) {
            best.alpha = alpha;
            best.scales = std::move(s);
            best.loss = l;
        }
    }
    return best;
}

void scale_columns(RowMatrix& w, const std::vector<float>& s) {
    for (Eigen::Index j = 0; j < w.cols(); ++j) w.col(j) *= s[size_t(j)];
}

void divide_rows(RowMatrix& w, const std::vector<float>& s) {
    for (Eigen::Index i = 0; i < w.rows(); ++i) w.row(i) /= s[size_t(i)];
}

void divide_columns(RowMatrix& x, const std::vector<float>& s) {
    for (Eigen::Index j = 0; j < x.cols(); ++j) x.col(j) /= s[size_t(j)];
}

RowMatrix rtn_scaled(const RowMatrix& w, const std::vector<float>& s, const PackedLayout& layout,
                     ScaleRule rule) {
    RowMatrix scaled = w;
    scale_columns(scaled, s);
    return grid_values(rtn_quantize(scaled, layout, rule));
}

double output_error(const RowMatrix& d, const Eigen::MatrixXf& h) {
    // (Eigen checks the product's shape only with assertions on; in a release
    // build a wrong-sized H gave a meaningless number.)
    if (h.rows() != d.cols() || h.cols() != d.cols()) {
        throw std::invalid_argument("output_error: H is " + std::to_string(h.rows()) + " x " +
                                    std::to_string(h.cols()) + ", the difference has " +
                                    std::to_string(d.cols()) + " columns");
    }
    const RowMatrix dh = d * h;
    return double(dh.cwiseProduct(d).sum());
}

QuantizedMatrix awq_clip_quantize(const RowMatrix& w, const Eigen::MatrixXf& h,
                                  const PackedLayout& layout, ScaleRule rule, int grid,
                                  float max_shrink) {
    QuantizedMatrix q = rtn_quantize(w, layout, rule);  // i = 0: no clipping
    const int64_t gpr = layout.groups_per_row, g_size = layout.group_size;
    const int n_try = std::max(1, int(float(grid) * max_shrink));
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t r = 0; r < layout.rows; ++r) {
        float clipped[256];
        Eigen::VectorXf e(g_size);
        for (int64_t g = 0; g < gpr; ++g) {
            const int64_t c0 = g * g_size;
            const int n = int(std::min(g_size, layout.cols - c0));
            const float* wg = w.data() + r * w.cols() + c0;
            const auto hg = h.block(c0, c0, n, n);
            float amax = 0.0f;
            for (int j = 0; j < n; ++j) amax = std::max(amax, std::fabs(wg[j]));
            if (amax == 0.0f) continue;
            double best = INFINITY;
            for (int i = 0; i < n_try; ++i) {
                const float limit = amax * (1.0f - float(i) / float(grid));
                for (int j = 0; j < n; ++j) clipped[j] = std::clamp(wg[j], -limit, limit);
                const GroupParams p = fit_group(layout.format, clipped, n, rule);
                for (int j = 0; j < n; ++j) e(j) = wg[j] - grid_value(layout.format, clipped[j], p);
                const double err = double(e.head(n).dot(hg * e.head(n)));
                if (err < best) {
                    best = err;
                    const size_t gi = size_t(r * gpr + g);
                    q.scales[gi] = p.scale;
                    if (!q.mins.empty()) q.mins[gi] = p.min;
                    for (int j = 0; j < n; ++j) q.values(r, c0 + j) = clipped[j];
                }
            }
        }
    }
    return q;
}

}  // namespace nibble

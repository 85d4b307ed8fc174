// Group fits, RTN and packing for the calibrated quantizers (see quant_grid.h).
#include "models/quant_grid.h"

#include <stdexcept>

#include "kernels/format_traits.h"
#include "kernels/fp16.h"
#include "kernels/matmul.h"

namespace nibble {

GroupParams fit_group(WeightFormat format, const float* w, int n, ScaleRule rule) {
    bool fp16_grid = false;
    visit_any_format(format,
                     [&](auto tag) { fp16_grid = FormatTraits<decltype(tag)::value>::fp16_grid; });
    if (!fp16_grid) {
        throw std::invalid_argument(std::string("no group grid for format ") + format_name(format));
    }
    const GroupFit fit = fit_format_group(format, w, n, rule);
    return {round_to_fp16(fit.scale), has_mins(format) ? round_to_fp16(fit.min) : 0.0f};
}

QuantizedMatrix rtn_quantize(const RowMatrix& w, const PackedLayout& layout, ScaleRule rule) {
    if (!is_grouped(layout.format) || layout.rows != w.rows() || layout.cols != w.cols()) {
        throw std::invalid_argument("rtn_quantize: layout does not match the matrix");
    }
    QuantizedMatrix q;
    q.layout = layout;
    q.values = w;
    const int64_t gpr = layout.groups_per_row, g_size = layout.group_size;
    q.scales.assign(size_t(layout.n_groups()), 0.0f);
    if (has_mins(layout.format)) q.mins.assign(size_t(layout.n_groups()), 0.0f);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < layout.rows; ++r) {
        for (int64_t g = 0; g < gpr; ++g) {
            const int64_t c0 = g * g_size;
            const int n = int(std::min<int64_t>(g_size, layout.cols - c0));
            const GroupParams p = fit_group(layout.format, w.data() + r * w.cols() + c0, n, rule);
            q.scales[size_t(r * gpr + g)] = p.scale;
            if (!q.mins.empty()) q.mins[size_t(r * gpr + g)] = p.min;
        }
    }
    return q;
}

std::vector<uint8_t> pack(const QuantizedMatrix& q) {
    std::vector<uint8_t> blob(q.layout.total_bytes);
    quantize_matrix_with_params(q.values.data(), q.layout, q.scales, q.mins, blob.data());
    return blob;
}

RowMatrix dequantize(const MatrixView& view) {
    RowMatrix out(view.layout.rows, view.layout.cols);
    for (int64_t r = 0; r < view.layout.rows; ++r)
        dequantize_row(view, r, out.data() + r * out.cols());
    return out;
}

RowMatrix grid_values(const QuantizedMatrix& q) {
    const PackedLayout& l = q.layout;
    RowMatrix out(l.rows, l.cols);
    for (int64_t r = 0; r < l.rows; ++r) {
        for (int64_t c = 0; c < l.cols; ++c) {
            const size_t gi = size_t(r * l.groups_per_row + c / l.group_size);
            const GroupParams p{q.scales[gi], q.mins.empty() ? 0.0f : q.mins[gi]};
            out(r, c) = grid_value(l.format, q.values(r, c), p);
        }
    }
    return out;
}

}  // namespace nibble

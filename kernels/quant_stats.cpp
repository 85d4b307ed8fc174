// Error statistics of a quantized matrix, row by row through dequantize_row.
#include "kernels/quant_stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/matmul.h"

namespace nibble {

QuantError quantization_error(const float* original, const MatrixView& quantized) {
    const PackedLayout& l = quantized.layout;
    std::vector<float> row(size_t(l.cols));
    double err2 = 0.0, ref2 = 0.0, max_abs = 0.0;
    bool has_nan = false;  // std::max would silently drop a NaN error
    for (int64_t r = 0; r < l.rows; ++r) {
        dequantize_row(quantized, r, row.data());
        const float* w = original + r * l.cols;
        for (int64_t c = 0; c < l.cols; ++c) {
            const double e = double(w[c]) - double(row[size_t(c)]);
            if (std::isnan(e)) has_nan = true;
            max_abs = std::max(max_abs, std::fabs(e));
            err2 += e * e;
            ref2 += double(w[c]) * double(w[c]);
        }
    }
    QuantError q;
    const double n = double(l.rows * l.cols);
    q.mse = n > 0 ? err2 / n : 0.0;
    q.rel_rms = ref2 > 0 ? std::sqrt(err2 / ref2) : (err2 > 0 ? INFINITY : 0.0);
    q.max_abs = has_nan ? std::numeric_limits<double>::quiet_NaN() : max_abs;
    return q;
}

}  // namespace nibble

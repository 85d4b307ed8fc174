// The quantization grid of one weight matrix, shared by RTN, GPTQ and AWQ:
// per-group parameters chosen by the same least-squares fits as the RTN
// quantizer (kernels/quantize_group.h), rounded to fp16 (their stored precision
// without double quantization), and the value each weight takes on that grid.
//
// A method produces a QuantizedMatrix: the weights it wants stored (`values`,
// [rows][cols]) and every group's parameters. pack() stores the parameters
// (fp16 or double-quantized) and gives each value its nearest code, exactly as
// pass 2 of quantize_matrix does; when the values already lie on the grid of
// fp16 parameters (GPTQ's output), the blob dequantizes back to them exactly.
#pragma once
#include <Eigen/Dense>
#include <cstdint>
#include <vector>

#include "kernels/format_traits.h"
#include "kernels/formats.h"
#include "kernels/quantize.h"
#include "kernels/quantize_group.h"

namespace nibble {

// Row-major FP32 matrix, the memory order of weights [out][in] and activations [tokens][dim].
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Parameters of one group as stored (fp16-rounded): w ~ grid value of (scale, min).
struct GroupParams {
    float scale = 0.0f;
    float min = 0.0f;  // q4a only
};

// The fit of the RTN quantizer for one group of n weights, rounded to fp16.
GroupParams fit_group(WeightFormat format, const float* w, int n, ScaleRule rule);

// The value of the code nearest w for the parameters p (w itself for a format
// without an fp16 group grid).
inline float grid_value(WeightFormat format, float w, const GroupParams& p) {
    float value = w;
    visit_any_format(format, [&](auto tag) {
        using Traits = FormatTraits<decltype(tag)::value>;
        if constexpr (Traits::fp16_grid) {
            value = Traits::value(Traits::code(w, p.scale, p.min), p.scale, p.min);
        }
    });
    return value;
}

struct QuantizedMatrix {
    PackedLayout layout;
    RowMatrix values;           // [rows][cols], what the codes are chosen for
    std::vector<float> scales;  // [rows][groups_per_row]
    std::vector<float> mins;    // q4a only
};

// Round to nearest with the RTN fits: values = w (the codes are the nearest ones).
// `layout` must be a grouped format of w's shape.
QuantizedMatrix rtn_quantize(const RowMatrix& w, const PackedLayout& layout, ScaleRule rule);

// The stored blob of a quantized matrix (layout.total_bytes).
std::vector<uint8_t> pack(const QuantizedMatrix& q);

// Every weight of a packed matrix, as the kernels decode it.
RowMatrix dequantize(const MatrixView& view);

// Every weight of a quantized matrix on its grid (the fp16 parameters, no
// double quantization): what pack() stores when double_quant is off.
RowMatrix grid_values(const QuantizedMatrix& q);

}  // namespace nibble

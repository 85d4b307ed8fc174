// Error statistics of a quantized matrix against its FP32 original.
#pragma once
#include <cstdint>

#include "kernels/formats.h"

namespace nibble {

struct QuantError {
    double mse = 0.0;      // mean over all weights of (w - w')^2
    double rel_rms = 0.0;  // sqrt(sum (w - w')^2 / sum w^2); 0 when both sums are 0
    double max_abs = 0.0;  // max |w - w'|
};

// Dequantizes every row of `quantized` (dequantize_row) and compares it with
// original[rows][cols].
QuantError quantization_error(const float* original, const MatrixView& quantized);

}  // namespace nibble

// Out-of-line decoding of one row's per-group parameters into floats, for ISA
// kernels that must not instantiate the portable inline helpers themselves
// (an inline function emitted in an ISA translation unit could be picked by
// the linker for portable callers).
#pragma once
#include <cstdint>

#include "kernels/formats.h"
#include "kernels/group_params.h"

namespace nibble::kernels {

// out[0..groups_per_row) = the parameters of `stream` for `row` (fp16 or
// double-quantized), the same values as group_param().
void decode_row_params_generic(const MatrixView& w, GroupStream stream, int64_t row, float* out);

}  // namespace nibble::kernels

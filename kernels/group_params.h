// Reading the per-group parameters (scales, mins) of a packed matrix, whether
// stored as fp16 or double-quantized int8 codes (see formats.h).
#pragma once
#include <cstring>

#include "kernels/formats.h"
#include "kernels/fp16.h"
#include "kernels/kquant_params.h"

namespace nibble {

enum class GroupStream { scales = 0, mins = 1 };

// Value of the parameter of group index i (= row * groups_per_row + g).
inline float group_param(const MatrixView& w, GroupStream stream, int64_t i) {
    const PackedLayout& l = w.layout;
    if (l.format == WeightFormat::q4k) {  // 8 groups per super-block, never across rows
        float scale, min;
        kquant_group(w.data + l.scales_offset + size_t(i / 8) * kKQuantParamBytes, int(i % 8),
                     scale, min);
        return stream == GroupStream::scales ? scale : min;
    }
    const size_t offset = stream == GroupStream::scales ? l.scales_offset : l.mins_offset;
    if (!l.double_quant) {
        uint16_t h;
        std::memcpy(&h, w.data + offset + 2 * size_t(i), 2);
        return fp16_to_fp32(h);
    }
    const int8_t code = int8_t(w.data[offset + size_t(i)]);
    // dq section: per stream [offset, block_scale x dq_blocks]
    const size_t stream_floats = 1 + size_t(l.dq_blocks());
    const uint8_t* dq = w.data + l.dq_offset + size_t(stream) * stream_floats * sizeof(float);
    float mean, block_scale;
    std::memcpy(&mean, dq, 4);
    std::memcpy(&block_scale, dq + 4 * (1 + size_t(i / kDoubleQuantBlock)), 4);
    return mean + block_scale * float(code);
}

// Fills out[0..groups_per_row) with the parameters of one row.
inline void row_group_params(const MatrixView& w, GroupStream stream, int64_t row, float* out) {
    const int64_t gpr = w.layout.groups_per_row;
    for (int64_t g = 0; g < gpr; ++g) out[g] = group_param(w, stream, row * gpr + g);
}

}  // namespace nibble

// Fast decoding of one row's per-group parameters (scales or mins) into a float
// buffer, for fp16 and double-quantized streams alike. Same values as
// group_param() in kernels/group_params.h, without per-group overhead.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/formats.h"
#include "kernels/fp16.h"
#include "kernels/group_params.h"

namespace nibble::kernels {

// Double-quantized stream: s_i = offset + block_scale[i / 256] * int8_code_i;
// q4k's K-coded parameters likewise.
inline void decode_dq_row(const MatrixView& w, GroupStream stream, int64_t row, float* out) {
    const PackedLayout& l = w.layout;
    if (l.format == WeightFormat::q4k) {  // K-coded (kernels/kquant_params.h)
        const uint8_t* sb = w.data + l.scales_offset +
                            size_t(row * l.groups_per_row / 8) * size_t(kKQuantParamBytes);
        const bool mins = stream == GroupStream::mins;
        kquant_row(sb, l.groups_per_row / 8, mins ? nullptr : out, mins ? out : nullptr);
        return;
    }
    const size_t offset = stream == GroupStream::scales ? l.scales_offset : l.mins_offset;
    const int64_t gpr = l.groups_per_row;
    const int8_t* codes = reinterpret_cast<const int8_t*>(w.data + offset) + row * gpr;
    const size_t stream_floats = 1 + size_t(l.dq_blocks());
    const uint8_t* dq = w.data + l.dq_offset + size_t(stream) * stream_floats * sizeof(float);
    float mean;
    std::memcpy(&mean, dq, 4);
    int64_t g = 0;
    while (g < gpr) {
        const int64_t i = row * gpr + g;
        const int64_t block = i / kDoubleQuantBlock;
        const int64_t end = std::min(gpr, (block + 1) * kDoubleQuantBlock - row * gpr);
        float block_scale;
        std::memcpy(&block_scale, dq + 4 * (1 + size_t(block)), 4);
        for (; g < end; ++g) out[g] = mean + block_scale * float(codes[g]);
    }
}

// Portable decoder (fp16 through the scalar converter).
inline void decode_row_params(const MatrixView& w, GroupStream stream, int64_t row, float* out) {
    const PackedLayout& l = w.layout;
    if (l.double_quant) {
        decode_dq_row(w, stream, row, out);
        return;
    }
    const size_t offset = stream == GroupStream::scales ? l.scales_offset : l.mins_offset;
    const uint8_t* src = w.data + offset + 2 * size_t(row * l.groups_per_row);
    for (int64_t g = 0; g < l.groups_per_row; ++g) {
        uint16_t h;
        std::memcpy(&h, src + 2 * g, 2);
        out[g] = fp16_to_fp32(h);
    }
}

}  // namespace nibble::kernels

// Small NEON helpers shared by the aarch64 kernels in this folder.
#pragma once
#include <arm_neon.h>

#include <cstdint>

#include "kernels/formats.h"
#include "kernels/group_params.h"
#include "kernels/row_params.h"

namespace nibble::kernels::neon {

// sum_i a[i] * b[i], 4 lanes at a time then a scalar tail (fixed order).
inline float dot(const float* a, const float* b, int64_t n) {
    float32x4_t acc = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) acc = vfmaq_f32(acc, vld1q_f32(a + i), vld1q_f32(b + i));
    float s = vaddvq_f32(acc);
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

// One row's group parameters as floats (fp16 converted 4 at a time).
inline void decode_params(const MatrixView& w, GroupStream stream, int64_t row, float* out) {
    const PackedLayout& l = w.layout;
    if (l.double_quant) {
        decode_dq_row(w, stream, row, out);
        return;
    }
    const size_t offset = stream == GroupStream::scales ? l.scales_offset : l.mins_offset;
    const uint8_t* src = w.data + offset + 2 * size_t(row * l.groups_per_row);
    int64_t g = 0;
    for (; g + 4 <= l.groups_per_row; g += 4) {
        uint16_t h[4];
        std::memcpy(h, src + 2 * g, 8);
        vst1q_f32(out + g, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h))));
    }
    for (; g < l.groups_per_row; ++g) {
        uint16_t h;
        std::memcpy(&h, src + 2 * g, 2);
        out[g] = fp16_to_fp32(h);
    }
}

}  // namespace nibble::kernels::neon

// Quantization into q6k (kernels/q6k.h), round to nearest as ggml's Q6_K
// without its scale search: per 16-column sub-block the signed value of
// largest magnitude m gets the scale m / -32 (so that it maps to code -32);
// per super-block the sixteen scales are coded as int8 sc_j = round(s_j / d)
// with d = (largest-magnitude scale) / -128, d stored as fp16; then every
// weight gets q = clamp(round(w / (d sc_j)), -32, 31) against the decoded
// scale, stored as q + 32 in Q6_K's ql/qh layout.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/fp16.h"
#include "kernels/q6k.h"
#include "kernels/quantize.h"

namespace nibble {

namespace {

// Codes (0..63) and parameters of one super-block of 256 weights.
void quantize_block(const float* w, uint8_t* codes, uint8_t* params) {
    float scale[16];
    float max_scale = 0.0f;
    for (int j = 0; j < 16; ++j) {
        float m = 0.0f;
        for (int i = 0; i < 16; ++i) {
            if (std::fabs(w[16 * j + i]) > std::fabs(m)) m = w[16 * j + i];
        }
        scale[j] = m / -32.0f;
        if (std::fabs(scale[j]) > std::fabs(max_scale)) max_scale = scale[j];
    }
    const uint16_t dh = max_scale == 0.0f ? 0 : fp32_to_fp16(max_scale / -128.0f);
    const float d = fp16_to_fp32(dh);
    int8_t sc[16];
    for (int j = 0; j < 16; ++j) {
        sc[j] = d == 0.0f ? 0 : int8_t(std::clamp(std::lround(scale[j] / d), -128L, 127L));
    }
    uint8_t q[256];
    for (int j = 0; j < 16; ++j) {
        const float s = d * float(sc[j]);
        for (int i = 0; i < 16; ++i) {
            const long v = s == 0.0f ? 0 : std::clamp(std::lround(w[16 * j + i] / s), -32L, 31L);
            q[16 * j + i] = uint8_t(v + 32);
        }
    }
    // Q6_K's packing (kernels/q6k.h), the inverse of q6k_unpack.
    std::memset(codes, 0, size_t(kQ6kCodeBytes));
    for (int h = 0; h < 2; ++h) {
        uint8_t* ql = codes + 64 * h;
        uint8_t* qh = codes + 128 + 32 * h;
        const uint8_t* c = q + 128 * h;
        for (int l = 0; l < 32; ++l) {
            ql[l] = uint8_t((c[l] & 15) | (c[l + 64] & 15) << 4);
            ql[l + 32] = uint8_t((c[l + 32] & 15) | (c[l + 96] & 15) << 4);
            qh[l] = uint8_t((c[l] >> 4) | (c[l + 32] >> 4) << 2 | (c[l + 64] >> 4) << 4 |
                            (c[l + 96] >> 4) << 6);
        }
    }
    std::memcpy(params, sc, 16);
    std::memcpy(params + 16, &dh, 2);
}

}  // namespace

void quantize_q6k_matrix(const float* src, const PackedLayout& l, uint8_t* dst) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < l.rows; ++r) {
        for (int64_t i = 0; i < l.groups_per_row; ++i) {
            quantize_block(
                src + r * l.cols + i * kQ6kBlock,
                dst + l.codes_offset + size_t(r * l.groups_per_row + i) * kQ6kCodeBytes,
                dst + l.scales_offset + size_t(r * l.groups_per_row + i) * kQ6kParamBytes);
        }
    }
}

}  // namespace nibble

// q6k (formats.h): llama.cpp's Q6_K as a nibble format, its 210-byte block
// split into the codes section and the parameter section. Per super-block of
// 256 columns of a row:
//   codes  192 bytes, Q6_K's ql[128] (low 4 bits) then qh[64] (high 2 bits):
//          for half h (columns 128h..128h+127) and l = 0..31, with L = ql + 64h,
//          H = qh + 32h:
//            column 128h + l      q = (L[l] & 15)      | (H[l] & 3) << 4
//            column 128h + l + 32 q = (L[l + 32] & 15) | (H[l] >> 2 & 3) << 4
//            column 128h + l + 64 q = (L[l] >> 4)      | (H[l] >> 4 & 3) << 4
//            column 128h + l + 96 q = (L[l + 32] >> 4) | (H[l] >> 6 & 3) << 4
//   params 18 bytes, Q6_K's int8 scales[16] (scale j: columns 16j..16j+15)
//          then fp16 d.
// w = (d * sc_j) * (q - 32), in that order (ggml's dequantize_row_q6_K).
// Portable inline helpers for generic code (reference, scalar kernel, import,
// tests); the ISA kernels decode with their own instructions.
#pragma once
#include <cstdint>
#include <cstring>

#include "kernels/fp16.h"

namespace nibble {

inline constexpr int64_t kQ6kBlock = 256;      // columns per super-block
inline constexpr int64_t kQ6kCodeBytes = 192;  // ql[128] + qh[64]
inline constexpr int64_t kQ6kParamBytes = 18;  // int8 scales[16] + fp16 d
inline constexpr int64_t kQ6kSubBlock = 16;    // columns per scale

// The 256 codes q - 32 (-32..31) of one super-block, in column order.
inline void q6k_unpack(const uint8_t* codes, int8_t* out) {
    for (int h = 0; h < 2; ++h) {
        const uint8_t* ql = codes + 64 * h;
        const uint8_t* qh = codes + 128 + 32 * h;
        int8_t* o = out + 128 * h;
        for (int l = 0; l < 32; ++l) {
            o[l] = int8_t(((ql[l] & 15) | (qh[l] & 3) << 4) - 32);
            o[l + 32] = int8_t(((ql[l + 32] & 15) | (qh[l] >> 2 & 3) << 4) - 32);
            o[l + 64] = int8_t(((ql[l] >> 4) | (qh[l] >> 4 & 3) << 4) - 32);
            o[l + 96] = int8_t(((ql[l + 32] >> 4) | (qh[l] >> 6 & 3) << 4) - 32);
        }
    }
}

// The 16 sub-block scales d * sc_j of one super-block's parameters.
inline void q6k_scales(const uint8_t* params, float* out) {
    uint16_t h;
    std::memcpy(&h, params + 16, 2);
    const float d = fp16_to_fp32(h);
    for (int j = 0; j < 16; ++j) out[j] = d * float(int8_t(params[j]));
}

// Where super-block i of row r keeps its codes and parameters.
inline const uint8_t* q6k_codes(const uint8_t* blob, size_t codes_offset, int64_t blocks_per_row,
                                int64_t r, int64_t i) {
    return blob + codes_offset + size_t(r * blocks_per_row + i) * size_t(kQ6kCodeBytes);
}
inline const uint8_t* q6k_params(const uint8_t* blob, size_t scales_offset, int64_t blocks_per_row,
                                 int64_t r, int64_t i) {
    return blob + scales_offset + size_t(r * blocks_per_row + i) * size_t(kQ6kParamBytes);
}

}  // namespace nibble

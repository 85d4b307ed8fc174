// The per-group parameters of q4k (formats.h): llama.cpp's Q4_K scale coding.
// Each super-block of 256 columns (8 groups of 32) stores 16 bytes:
//   fp16 d, fp16 dmin, then 12 bytes holding eight 6-bit scale codes sc_j and
//   eight 6-bit minimum codes m_j, packed as in Q4_K (ggml's get_scale_min_k4):
//     j < 4:  sc_j = b[j] & 63,                        m_j = b[j + 4] & 63
//     j >= 4: sc_j = (b[j + 4] & 15) | (b[j - 4] >> 6) << 4,
//             m_j  = (b[j + 4] >> 4) | (b[j] >> 6) << 4
// and group j of the super-block has scale d * sc_j and minimum -(dmin * m_j)
// (w = scale * q + minimum, as q4a). Both products are exact in fp32.
#pragma once
#include <cstdint>
#include <cstring>

#include "kernels/fp16.h"

namespace nibble {

// Bytes of one super-block's parameters, and the columns it covers.
inline constexpr int64_t kKQuantParamBytes = 16;
inline constexpr int64_t kKQuantBlock = 256;

// The 6-bit codes of group j (0..7) from the 12 packed bytes.
inline void kquant_codes(const uint8_t* packed, int j, int& sc, int& m) {
    if (j < 4) {
        sc = packed[j] & 63;
        m = packed[j + 4] & 63;
    } else {
        sc = (packed[j + 4] & 15) | ((packed[j - 4] >> 6) << 4);
        m = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
    }
}

// Scale and minimum of group j of the super-block whose 16 bytes are at `sb`.
inline void kquant_group(const uint8_t* sb, int j, float& scale, float& min) {
    uint16_t d, dmin;
    std::memcpy(&d, sb, 2);
    std::memcpy(&dmin, sb + 2, 2);
    int sc, m;
    kquant_codes(sb + 4, j, sc, m);
    scale = fp16_to_fp32(d) * float(sc);
    min = -(fp16_to_fp32(dmin) * float(m));
}

// The eight scale codes and eight minimum codes of one super-block's 12 packed
// bytes, as bytes, with 32-bit word operations (ggml's utmp trick): with
// w0, w1, w2 the three little-endian words, sc = [w0 & 0x3f.., (w2 & 0x0f..)
// | (w0 >> 2 & 0x30..)] and m = [w1 & 0x3f.., (w2 >> 4 & 0x0f..) | (w1 >> 2 & 0x30..)].
inline void kquant_codes8(const uint8_t* packed, uint8_t* sc, uint8_t* m) {
    uint32_t w[3];
    std::memcpy(w, packed, 12);
    const uint32_t s[2] = {w[0] & 0x3f3f3f3fu, (w[2] & 0x0f0f0f0fu) | (w[0] >> 2 & 0x30303030u)};
    const uint32_t n[2] = {w[1] & 0x3f3f3f3fu,
                           (w[2] >> 4 & 0x0f0f0f0fu) | (w[1] >> 2 & 0x30303030u)};
    std::memcpy(sc, s, 8);
    std::memcpy(m, n, 8);
}

// A row's parameters: scales[8i + j] and mins[8i + j] (either may be null) =
// the scale and minimum of group j of super-block i, for the n_blocks
// super-blocks at `sb`. The same values as kquant_group(), with d and dmin
// converted once per super-block.
inline void kquant_row(const uint8_t* sb, int64_t n_blocks, float* scales, float* mins) {
    for (int64_t i = 0; i < n_blocks; ++i, sb += kKQuantParamBytes) {
        uint16_t h[2];
        std::memcpy(h, sb, 4);
        uint8_t sc[8], m[8];
        kquant_codes8(sb + 4, sc, m);
        if (scales != nullptr) {
            const float d = fp16_to_fp32(h[0]);
            for (int j = 0; j < 8; ++j) scales[8 * i + j] = d * float(sc[j]);
        }
        if (mins != nullptr) {
            const float dmin = fp16_to_fp32(h[1]);
            for (int j = 0; j < 8; ++j) mins[8 * i + j] = -(dmin * float(m[j]));
        }
    }
}

// Packs eight 6-bit scale and minimum codes (each 0..63) into 12 bytes.
inline void kquant_pack(const int* sc, const int* m, uint8_t* packed) {
    std::memset(packed, 0, 12);
    for (int j = 0; j < 4; ++j) {
        packed[j] = uint8_t(sc[j] | (sc[j + 4] >> 4) << 6);
        packed[j + 4] = uint8_t(m[j] | (m[j + 4] >> 4) << 6);
        packed[j + 8] = uint8_t((sc[j + 4] & 15) | (m[j + 4] & 15) << 4);
    }
}

}  // namespace nibble

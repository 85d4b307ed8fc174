// The ggml block formats (formats.h): llama.cpp's Q5_0, Q5_1, Q5_K, Q3_K and
// Q2_K blocks held byte for byte, a row's blocks back to back. Per block
// (little-endian; "half" an fp16 bit pattern):
//   q5_0  32 columns, 22 bytes: half d, qh[4], qs[16]
//         q = (qs[j] & 15 | bit j of qh << 4) for column j < 16,
//             (qs[j] >> 4 | bit j + 16 of qh << 4) for column j + 16;
//         w = float(q - 16) * d
//   q5_1  32 columns, 24 bytes: half d, half m, qh[4], qs[16]; q as q5_0;
//         w = float(q) * d + m
//   q5k   256 columns, 176 bytes: half d, half dmin, scales[12], qh[32], qs[128]
//         sub-block s (32 columns, 6-bit sc and mc as Q4_K's), column 32s + l:
//         q = (qs[32(s/2) + l] >> 4(s%2)) & 15 | (qh[l] >> s & 1) << 4;
//         w = (d * sc) * float(q) - dmin * mc
//   q3k   256 columns, 110 bytes: hmask[32], qs[64], scales[12], half d
//         16 sub-blocks of 16 with 6-bit scales sc (4 low bits in scales[0..7],
//         2 high bits in scales[8..11]); column 128n + 32j + 16k + l (n, k in
//         0..1, j in 0..3, l in 0..15), sub-block 8n + 2j + k:
//         q = (qs[32n + 16k + l] >> 2j & 3) - (hmask[16k + l] >> (4n + j) & 1 ? 0 : 4);
//         w = (d * float(sc - 32)) * float(q)
//   q2k   256 columns, 84 bytes: scales[16], qs[64], half d, half dmin
//         sub-block i (16 columns) byte scales[i]: scale sc & 15, min sc >> 4;
//         column 128n + 32j + 16k + l, sub-block 8n + 2j + k:
//         q = qs[32n + 16k + l] >> 2j & 3;
//         w = (d * float(sc & 15)) * float(q) - dmin * float(sc >> 4)
// (ggml's dequantize_row_q5_0 ... dequantize_row_q2_K, operation for operation).
//
// The kernels read a row decoded into unsigned codes u (0..31) and, per 16
// columns, a scale s and an offset m with w ~ s * u - m (exact in reals, not
// in float): q5_0 u = q, s = d, m = 16 d; q5_1 u = q, s = d, m = -m;
// q5k u = q, s = d sc, m = dmin mc; q3k u = q + 4, s = d (sc - 32), m = 4 s;
// q2k u = q, s = d (sc & 15), m = dmin (sc >> 4).
// Portable inline helpers for generic code (reference, portable kernels,
// import, tests); the ISA kernels decode with code of their own.
#pragma once
#include <cstdint>
#include <cstring>

#include "kernels/formats.h"
#include "kernels/fp16.h"

namespace nibble {

// Columns and bytes per block of a ggml block format (0 for any other).
constexpr int64_t lowbit_block_cols(WeightFormat f) {
    return f == WeightFormat::q5_0 || f == WeightFormat::q5_1 ? 32
           : is_ggml_block_format(f)                          ? 256
                                                              : 0;
}
constexpr int64_t lowbit_block_bytes(WeightFormat f) {
    switch (f) {
        case WeightFormat::q5_0:
            return 22;
        case WeightFormat::q5_1:
            return 24;
        case WeightFormat::q5k:
            return 176;
        case WeightFormat::q3k:
            return 110;
        case WeightFormat::q2k:
            return 84;
        default:
            return 0;
    }
}
inline constexpr int64_t kLowbitSubBlock = 16;  // columns per decoded s, m

namespace lowbit {

inline float half_at(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return fp16_to_fp32(h);
}

// 6-bit scale and min of sub-block j (0..7) of a Q5_K (Q4_K) block's scales[12].
inline void k4_scale_min(int j, const uint8_t* q, int& sc, int& m) {
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// The 16 6-bit scales (0..63) of a Q3_K block's scales[12].
inline void q3k_scales(const uint8_t* s, int* out) {
    for (int i = 0; i < 16; ++i) {
        const int low = i < 8 ? s[i] & 15 : s[i - 8] >> 4;
        const int high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        out[i] = low | high << 4;
    }
}

// 5-bit code of column j (0..31) of a Q5_0 / Q5_1 block (qh at qh, qs at qs).
inline int q5_code(const uint8_t* qh, const uint8_t* qs, int j) {
    uint32_t h;
    std::memcpy(&h, qh, 4);
    return j < 16 ? (qs[j] & 15) | int((h >> j) & 1) << 4
                  : (qs[j - 16] >> 4) | int((h >> j) & 1) << 4;
}

// Q3_K / Q2_K: the 2-bit code and sub-block of column c (0..255).
inline int k_low2(const uint8_t* qs, int c) {
    const int n = c / 128, j = (c % 128) / 32, kl = c % 32;
    return (qs[32 * n + kl] >> (2 * j)) & 3;
}

}  // namespace lowbit

// One block of format f dequantized as ggml does (out: lowbit_block_cols(f) floats).
inline void lowbit_dequantize_block(WeightFormat f, const uint8_t* b, float* out) {
    using namespace lowbit;
    switch (f) {
        case WeightFormat::q5_0: {
            const float d = half_at(b);
            for (int j = 0; j < 32; ++j) out[j] = float(q5_code(b + 2, b + 6, j) - 16) * d;
            return;
        }
        case WeightFormat::q5_1: {
            const float d = half_at(b), m = half_at(b + 2);
            for (int j = 0; j < 32; ++j) out[j] = float(q5_code(b + 4, b + 8, j)) * d + m;
            return;
        }
        case WeightFormat::q5k: {
            const float d = half_at(b), dmin = half_at(b + 2);
            const uint8_t* qh = b + 16;
            const uint8_t* qs = b + 48;
            for (int s = 0; s < 8; ++s) {
                int sc = 0, mc = 0;
                k4_scale_min(s, b + 4, sc, mc);
                const float ds = d * float(sc), ms = dmin * float(mc);
                for (int l = 0; l < 32; ++l) {
                    const int q =
                        ((qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 15) | ((qh[l] >> s) & 1) << 4;
                    out[32 * s + l] = ds * float(q) - ms;
                }
            }
            return;
        }
        case WeightFormat::q3k: {
            const uint8_t* hm = b;
            const uint8_t* qs = b + 32;
            const float d = half_at(b + 108);
            int sc[16];
            q3k_scales(b + 96, sc);
            for (int i = 0; i < 16; ++i) {  // sub-block i: columns 16i..16i+15
                const float dl = d * float(sc[i] - 32);
                for (int c = 16 * i; c < 16 * i + 16; ++c) {
                    const int n = c / 128, j = (c % 128) / 32, kl = c % 32;
                    const int q = k_low2(qs, c) - ((hm[kl] >> (4 * n + j)) & 1 ? 0 : 4);
                    out[c] = dl * float(q);
                }
            }
            return;
        }
        case WeightFormat::q2k: {
            const uint8_t* sc = b;
            const uint8_t* qs = b + 16;
            const float d = half_at(b + 80), dmin = half_at(b + 82);
            for (int i = 0; i < 16; ++i) {  // sub-block i: columns 16i..16i+15
                const float dl = d * float(sc[i] & 15), ml = dmin * float(sc[i] >> 4);
                for (int c = 16 * i; c < 16 * i + 16; ++c) out[c] = dl * float(k_low2(qs, c)) - ml;
            }
            return;
        }
        default:
            return;
    }
}

// One block decoded for the kernels (see above): u[cols] codes, and s and m
// per 16 columns (lowbit_block_cols(f) / 16 of each).
inline void lowbit_decode_block(WeightFormat f, const uint8_t* b, uint8_t* u, float* s, float* m) {
    using namespace lowbit;
    switch (f) {
        case WeightFormat::q5_0:
        case WeightFormat::q5_1: {
            const bool q5_1 = f == WeightFormat::q5_1;
            const uint8_t* qh = b + (q5_1 ? 4 : 2);
            for (int j = 0; j < 32; ++j) u[j] = uint8_t(q5_code(qh, qh + 4, j));
            const float d = half_at(b);
            const float mm = q5_1 ? -half_at(b + 2) : 16.0f * d;
            s[0] = s[1] = d;
            m[0] = m[1] = mm;
            return;
        }
        case WeightFormat::q5k: {
            const float d = half_at(b), dmin = half_at(b + 2);
            const uint8_t* qh = b + 16;
            const uint8_t* qs = b + 48;
            for (int i = 0; i < 8; ++i) {
                int sc = 0, mc = 0;
                k4_scale_min(i, b + 4, sc, mc);
                s[2 * i] = s[2 * i + 1] = d * float(sc);
                m[2 * i] = m[2 * i + 1] = dmin * float(mc);
                for (int l = 0; l < 32; ++l) {
                    u[32 * i + l] = uint8_t(((qs[32 * (i / 2) + l] >> (4 * (i % 2))) & 15) |
                                            ((qh[l] >> i) & 1) << 4);
                }
            }
            return;
        }
        case WeightFormat::q3k: {
            const uint8_t* hm = b;
            const uint8_t* qs = b + 32;
            const float d = half_at(b + 108);
            int sc[16];
            q3k_scales(b + 96, sc);
            for (int i = 0; i < 16; ++i) {
                s[i] = d * float(sc[i] - 32);
                m[i] = 4.0f * s[i];
            }
            for (int c = 0; c < 256; ++c) {
                const int n = c / 128, j = (c % 128) / 32, kl = c % 32;
                u[c] = uint8_t(k_low2(qs, c) + 4 * ((hm[kl] >> (4 * n + j)) & 1));
            }
            return;
        }
        case WeightFormat::q2k: {
            const float d = half_at(b + 80), dmin = half_at(b + 82);
            for (int i = 0; i < 16; ++i) {
                s[i] = d * float(b[i] & 15);
                m[i] = dmin * float(b[i] >> 4);
            }
            for (int c = 0; c < 256; ++c) u[c] = uint8_t(k_low2(b + 16, c));
            return;
        }
        default:
            return;
    }
}

// Block i of row r of a ggml block format matrix.
inline const uint8_t* lowbit_block(const MatrixView& w, int64_t r, int64_t i) {
    const PackedLayout& l = w.layout;
    return w.data + l.codes_offset +
           size_t(r * l.groups_per_row + i) * size_t(lowbit_block_bytes(l.format));
}

}  // namespace nibble

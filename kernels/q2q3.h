// nibble's own 3- and 2-bit group formats (kernels/formats.h has the layout):
//   q3: w = d (q - 4), q in 0..7, one scale per group;
//   q2: w = d q + m,   q in 0..3, a scale and an offset per group.
// Codes are stored per 32-column chunk: a 2-bit plane of 8 bytes (byte j holds
// columns j, j+8, j+16, j+24 in bits 0-1, 2-3, 4-5, 6-7), then for q3 a 4-byte
// plane of third bits (little-endian uint32, bit c = bit 2 of column c). A chunk
// unpacks with one 64-bit shift per 8 columns (the AVX2 kernel shifts four
// copies of the plane by 0, 2, 4, 6 at once).
//
// This header holds the portable arithmetic: nearest codes, the group fits
// (kernels/quantize_q2q3.cpp), and packing; it is included by ISA code, so
// everything here is inline or only declared.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/quantize_group.h"

namespace nibble {

// Bytes of one 32-column chunk of codes.
inline constexpr int kQ3ChunkBytes = 12;
inline constexpr int kQ2ChunkBytes = 8;

// Stored code 0..7 of w ~ d (q - 4) (a zero scale: the code of value 0).
inline int q3_code(float w, float d) {
    if (d == 0.0f) return 4;
    const float t = std::fmin(std::fmax(w / d, -4.0f), 3.0f);
    return int(t + 4.5f);  // round half up of t, plus 4 (positive, so truncation floors)
}

// Code 0..3 of w ~ d q + m.
inline int q2_code(float w, float d, float m) {
    if (d == 0.0f) return 0;
    const float t = std::fmin(std::fmax((w - m) / d, 0.0f), 3.0f);
    // t >= 0, so adding 0.5 and truncating rounds half up, the format's rule.
    return int(t + 0.5f);  // NOLINT(bugprone-incorrect-roundings)
}

// Group fits (ScaleRule::search: least squared error with fp16 parameters,
// within the clipping limit kMaxClip |d| of quantize_group.h):
//   q3: candidates d = v / t for the signed largest-magnitude value v, t in
//       [-5, -3] and [2, 4] (steps of 0.1), plus max|w| / 3 and v / -4;
//       simple: max|w| / 3; q4_minus8: v / -4.
//   q2: min/max (d = (max - min) / 3, m = min) and the interval shrunk by
//       0..20% of its length at either end (steps of 2%), each re-fitted by
//       least squares in (d, m); simple and q4_minus8: min/max.
GroupFit fit_q3_group(const float* w, int n, ScaleRule rule);
GroupFit fit_q2_group(const float* w, int n, ScaleRule rule);

// Code of column j (0..31) of one chunk.
inline int q2q3_code_at(const uint8_t* chunk, int j, bool q3) {
    int q = (chunk[j & 7] >> (2 * (j >> 3))) & 3;
    if (q3) q |= ((chunk[8 + (j >> 3)] >> (j & 7)) & 1) << 2;
    return q;
}

// ORs code q of padded column c into a row's zeroed code bytes.
inline void q2q3_put_code(uint8_t* row_codes, int64_t c, int q, bool q3) {
    uint8_t* chunk = row_codes + (c / 32) * (q3 ? kQ3ChunkBytes : kQ2ChunkBytes);
    const int j = int(c % 32);
    chunk[j & 7] = uint8_t(chunk[j & 7] | ((q & 3) << (2 * (j >> 3))));
    if (q3) chunk[8 + (j >> 3)] = uint8_t(chunk[8 + (j >> 3)] | (((q >> 2) & 1) << (j & 7)));
}

}  // namespace nibble

// The packed block layouts of llama.cpp's GGML tensor types that nibble imports
// (from the published ggml-common.h layouts; the code here is nibble's own).
//
// A GGML row of n weights is n / QK blocks back to back. All multi-byte values
// are little-endian; "half" is an IEEE fp16 bit pattern. Nibble order, where a
// block packs 4-bit values: in a group of 32, byte j holds element j in its low
// nibble and element j + 16 in its high nibble (Q4_0, Q4_1, Q5_0, IQ4_NL,
// IQ4_XS: the same order as nibble's 4-bit formats), except the K types below.
#pragma once
#include <cstdint>
#include <string>

namespace nibble::ggml {

// GGML type numbers (ggml.h enum ggml_type).
enum Type : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ4_NL = 20,
    IQ4_XS = 23,
    BF16 = 30,
};

// "Q4_K", "BF16", ...; "type N" for a number ggml does not define.
std::string type_name(uint32_t type);

inline constexpr int kQK = 32;    // elements per block of the _0/_1 and IQ4_NL types
inline constexpr int kQKK = 256;  // elements per super-block of the K types and IQ4_XS

// Q4_0, 4.5 bpw: w = d * (q - 8), q in 0..15.
struct BlockQ4_0 {
    uint16_t d;
    uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_0) == 18);

// Q4_1, 5 bpw: w = d * q + m, q in 0..15.
struct BlockQ4_1 {
    uint16_t d, m;
    uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_1) == 20);

// Q5_0, 5.5 bpw: w = d * (q - 16), q = nibble | (bit j of qh) << 4 for element j
// (elements 16..31 take bits 16..31 of qh).
struct BlockQ5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5_0) == 22);

// Q5_1, 6 bpw: w = d * q + m, q as in Q5_0 (without the -16).
struct BlockQ5_1 {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5_1) == 24);

// Q8_0, 8.5 bpw: w = d * q, q int8.
struct BlockQ8_0 {
    uint16_t d;
    int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_0) == 34);

// IQ4_NL's non-linear table (llama.cpp's kvalues_iq4nl): int8 values.
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

// IQ4_NL, 4.5 bpw: w = d * kIq4nlValues[q].
struct BlockIQ4_NL {
    uint16_t d;
    uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockIQ4_NL) == 18);

// Q4_K, 4.5 bpw: 8 sub-blocks of 32; sub-block s has a 6-bit scale sc_s and a
// 6-bit min m_s (packed in `scales`, see scale_min_k4), w = d*sc_s*q - dmin*m_s.
// Codes: the 64 weights of sub-blocks 2i, 2i+1 use qs[32i .. 32i+32): element l
// of sub-block 2i is the low nibble of qs[32i + l], of sub-block 2i+1 the high one.
struct BlockQ4_K {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[kQKK / 2];
};
static_assert(sizeof(BlockQ4_K) == 144);

// Q5_K, 5.5 bpw: as Q4_K with a fifth bit: element l of sub-block s takes bit s
// of qh[l] as its bit 4; w = d*sc_s*q - dmin*m_s, q in 0..31.
struct BlockQ5_K {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[kQKK / 8];
    uint8_t qs[kQKK / 2];
};
static_assert(sizeof(BlockQ5_K) == 176);

// Q6_K, 6.5625 bpw: 16 sub-blocks of 16 with int8 scales, w = d * sc * (q - 32),
// q 6 bits (4 in ql, 2 in qh; layout in dequantize_q6_k).
struct BlockQ6_K {
    uint8_t ql[kQKK / 2];
    uint8_t qh[kQKK / 4];
    int8_t scales[kQKK / 16];
    uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210);

// IQ4_XS, 4.25 bpw: 8 sub-blocks of 32 with 6-bit scales ls (low 4 bits in
// scales_l, high 2 in scales_h), w = d * (ls - 32) * kvalues[q]; sub-block s
// uses qs[16s .. 16s+16) in the Q4_0 nibble order.
struct BlockIQ4_XS {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[kQKK / 64];
    uint8_t qs[kQKK / 2];
};
static_assert(sizeof(BlockIQ4_XS) == 136);

// 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K block.
inline void scale_min_k4(int j, const uint8_t* q, int& scale, int& min) {
    if (j < 4) {
        scale = q[j] & 63;
        min = q[j + 4] & 63;
    } else {
        scale = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// 6-bit scale ls (0..63) of sub-block s of an IQ4_XS block.
inline int iq4_xs_scale(const BlockIQ4_XS& b, int s) {
    return ((b.scales_l[s / 2] >> (4 * (s % 2))) & 0x0f) | (((b.scales_h >> (2 * s)) & 3) << 4);
}

// Dequantizes one block (QK or QKK elements) of the type into out; for the
// types imported by requantization and for tests.
void dequantize_q5_1(const BlockQ5_1& b, float* out);
void dequantize_q5_k(const BlockQ5_K& b, float* out);
void dequantize_q6_k(const BlockQ6_K& b, float* out);
void dequantize_iq4_nl(const BlockIQ4_NL& b, float* out);
void dequantize_iq4_xs(const BlockIQ4_XS& b, float* out);

}  // namespace nibble::ggml

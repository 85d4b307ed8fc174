// GGML type names and the block dequantizers of the requantized types.
#include "models/ggml_blocks.h"

#include "kernels/fp16.h"

namespace nibble::ggml {

std::string type_name(uint32_t type) {
    static const char* const kNames[] = {
        "F32",   "F16",        "Q4_0",       "Q4_1",       "Q4_2",     "Q4_3",     "Q5_0",
        "Q5_1",  "Q8_0",       "Q8_1",       "Q2_K",       "Q3_K",     "Q4_K",     "Q5_K",
        "Q6_K",  "Q8_K",       "IQ2_XXS",    "IQ2_XS",     "IQ3_XXS",  "IQ1_S",    "IQ4_NL",
        "IQ3_S", "IQ2_S",      "IQ4_XS",     "I8",         "I16",      "I32",      "I64",
        "F64",   "IQ1_M",      "BF16",       "Q4_0_4_4",   "Q4_0_4_8", "Q4_0_8_8", "TQ1_0",
        "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4"};
    if (type < sizeof kNames / sizeof kNames[0]) return kNames[type];
    return "type " + std::to_string(type);
}

void dequantize_q5_1(const BlockQ5_1& b, float* out) {
    const float d = fp16_to_fp32(b.d), m = fp16_to_fp32(b.m);
    const uint32_t qh = uint32_t(b.qh[0]) | uint32_t(b.qh[1]) << 8 | uint32_t(b.qh[2]) << 16 |
                        uint32_t(b.qh[3]) << 24;
    for (int j = 0; j < kQK / 2; ++j) {
        const int q0 = (b.qs[j] & 0x0f) | int((qh >> j) & 1) << 4;
        const int q1 = (b.qs[j] >> 4) | int((qh >> (j + 16)) & 1) << 4;
        out[j] = d * float(q0) + m;
        out[j + 16] = d * float(q1) + m;
    }
}

void dequantize_q5_k(const BlockQ5_K& b, float* out) {
    const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
    for (int s = 0; s < 8; ++s) {
        int sc, m;
        scale_min_k4(s, b.scales, sc, m);
        const float ds = d * float(sc), ms = dmin * float(m);
        const uint8_t* ql = b.qs + 32 * (s / 2);
        for (int l = 0; l < 32; ++l) {
            const int lo = s % 2 == 0 ? (ql[l] & 0x0f) : (ql[l] >> 4);
            const int q = lo | ((b.qh[l] >> s) & 1) << 4;
            out[32 * s + l] = ds * float(q) - ms;
        }
    }
}

void dequantize_q6_k(const BlockQ6_K& b, float* out) {
    const float d = fp16_to_fp32(b.d);
    for (int half = 0; half < 2; ++half) {
        const uint8_t* ql = b.ql + 64 * half;
        const uint8_t* qh = b.qh + 32 * half;
        const int8_t* sc = b.scales + 8 * half;
        float* y = out + 128 * half;
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0x0f) | ((qh[l] >> 0) & 3) << 4) - 32;
            const int q2 = ((ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4) - 32;
            const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
            const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
            y[l] = d * float(sc[is]) * float(q1);
            y[l + 32] = d * float(sc[is + 2]) * float(q2);
            y[l + 64] = d * float(sc[is + 4]) * float(q3);
            y[l + 96] = d * float(sc[is + 6]) * float(q4);
        }
    }
}

void dequantize_iq4_nl(const BlockIQ4_NL& b, float* out) {
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < 16; ++j) {
        out[j] = d * float(kIq4nlValues[b.qs[j] & 0x0f]);
        out[j + 16] = d * float(kIq4nlValues[b.qs[j] >> 4]);
    }
}

void dequantize_iq4_xs(const BlockIQ4_XS& b, float* out) {
    const float d = fp16_to_fp32(b.d);
    for (int s = 0; s < 8; ++s) {
        const float dl = d * float(iq4_xs_scale(b, s) - 32);
        for (int j = 0; j < 16; ++j) {
            out[32 * s + j] = dl * float(kIq4nlValues[b.qs[16 * s + j] & 0x0f]);
            out[32 * s + j + 16] = dl * float(kIq4nlValues[b.qs[16 * s + j] >> 4]);
        }
    }
}

}  // namespace nibble::ggml

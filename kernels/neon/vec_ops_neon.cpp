// NEON versions of the small vector kernels (attention over the KV cache,
// conversions): 8 floats per step in two 4-lane accumulators, then a scalar
// tail. fp16 goes through the vcvt_f32_f16 / vcvt_f16_f32 instructions (every
// ARMv8-A CPU has them), never through the portable helpers of kernels/fp16.h.
#include <arm_neon.h>

#include <cmath>

#include "kernels/vec_ops.h"

namespace nibble {

namespace vec_neon {

namespace {

inline float16x4_t load_f16x4(const uint16_t* p) {
    return vreinterpret_f16_u16(vld1_u16(p));
}

inline float f16_to_f32(uint16_t h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

inline uint16_t f32_to_f16(float x) {
    return vget_lane_u16(vreinterpret_u16_f16(vcvt_f16_f32(vdupq_n_f32(x))), 0);
}

// 8 int8 -> two vectors of 4 floats
inline void load_i8x8(const int8_t* p, float32x4_t& lo, float32x4_t& hi) {
    const int16x8_t w = vmovl_s8(vld1_s8(p));
    lo = vcvtq_f32_s32(vmovl_s16(vget_low_s16(w)));
    hi = vcvtq_f32_s32(vmovl_s16(vget_high_s16(w)));
}

}  // namespace

float dot_f32(const float* a, const float* b, int n) {
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
        acc1 = vfmaq_f32(acc1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

float dot_f16(const uint16_t* a, const float* b, int n) {
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        acc0 = vfmaq_f32(acc0, vcvt_f32_f16(load_f16x4(a + i)), vld1q_f32(b + i));
        acc1 = vfmaq_f32(acc1, vcvt_f32_f16(load_f16x4(a + i + 4)), vld1q_f32(b + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < n; ++i) s += f16_to_f32(a[i]) * b[i];
    return s;
}

float dot_i8(const int8_t* a, float scale, const float* b, int n) {
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4_t lo, hi;
        load_i8x8(a + i, lo, hi);
        acc0 = vfmaq_f32(acc0, lo, vld1q_f32(b + i));
        acc1 = vfmaq_f32(acc1, hi, vld1q_f32(b + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < n; ++i) s += float(a[i]) * b[i];
    return scale * s;
}

void axpy_f32(float alpha, const float* x, float* y, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), alpha));
    for (; i < n; ++i) y[i] += alpha * x[i];
}

void axpy_f16(float alpha, const uint16_t* x, float* y, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vcvt_f32_f16(load_f16x4(x + i)), alpha));
    }
    for (; i < n; ++i) y[i] += alpha * f16_to_f32(x[i]);
}

void axpy_i8(float alpha, const int8_t* x, float* y, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4_t lo, hi;
        load_i8x8(x + i, lo, hi);
        vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), lo, alpha));
        vst1q_f32(y + i + 4, vfmaq_n_f32(vld1q_f32(y + i + 4), hi, alpha));
    }
    for (; i < n; ++i) y[i] += alpha * float(x[i]);
}

void convert_f32_to_f16(const float* x, uint16_t* y, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4)
        vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; ++i) y[i] = f32_to_f16(x[i]);
}

float quantize_i8(const float* x, int8_t* y, int n) {
    float32x4_t vmax = vdupq_n_f32(0.0f);
    int i = 0;
    for (; i + 4 <= n; i += 4) vmax = vmaxq_f32(vmax, vabsq_f32(vld1q_f32(x + i)));
    float amax = vmaxvq_f32(vmax);
    for (; i < n; ++i) amax = std::fmax(amax, std::fabs(x[i]));
    const float scale = amax / 127.0f;
    const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    i = 0;
    for (; i + 8 <= n; i += 8) {
        // round to nearest even (vcvtnq), as lrintf in the default rounding mode
        const int32x4_t q0 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + i), inv));
        const int32x4_t q1 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + i + 4), inv));
        const int16x8_t q16 = vcombine_s16(vqmovn_s32(q0), vqmovn_s32(q1));
        vst1_s8(y + i, vqmovn_s16(q16));
    }
    for (; i < n; ++i) y[i] = int8_t(std::lrintf(x[i] * inv));
    return scale;
}

}  // namespace vec_neon

const VecOps* vec_ops_neon() {
    static const VecOps ops{vec_neon::dot_f32, vec_neon::dot_f16, vec_neon::dot_i8,
                            vec_neon::axpy_f32, vec_neon::axpy_f16, vec_neon::axpy_i8,
                            vec_neon::convert_f32_to_f16, vec_neon::quantize_i8,
                            // (softmax, SiLU and attention: the portable reference)
                            vec_ops_scalar().softmax, vec_ops_scalar().silu_mul,
                            attention_scores_scalar, attention_values_scalar};
    return &ops;
}

}  // namespace nibble

// AVX2 + FMA + F16C versions of the small vector kernels (attention over the
// KV cache, conversions). Each processes 8 floats per step, then a scalar tail.
// Tails use F16C intrinsics, not the inline helpers of kernels/fp16.h: an inline
// function compiled here with -mavx2 could be the copy the linker keeps for
// every caller, and would then crash CPUs without AVX2.
#include <immintrin.h>

#include <cmath>  // lrintf (a libc call, not an inline copy)

#include "kernels/avx2/attention_avx2.h"
#include "kernels/cpu_features.h"
#include "kernels/vec_exp.h"
#include "kernels/vec_ops.h"

namespace nibble {

namespace vec_avx2 {

inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// 8 int8 -> 8 floats
inline __m256 load_i8x8(const int8_t* p) {
    const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
}

inline __m256 load_f16x8(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

float dot_f32(const float* a, const float* b, int n) {
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    float s = hsum8(acc);
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

float dot_f16(const uint16_t* a, const float* b, int n) {
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8)
        acc = _mm256_fmadd_ps(load_f16x8(a + i), _mm256_loadu_ps(b + i), acc);
    float s = hsum8(acc);
    for (; i < n; ++i) s += _cvtsh_ss(a[i]) * b[i];
    return s;
}

float dot_i8(const int8_t* a, float scale, const float* b, int n) {
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(load_i8x8(a + i), _mm256_loadu_ps(b + i), acc);
    float s = hsum8(acc);
    for (; i < n; ++i) s += float(a[i]) * b[i];
    return scale * s;
}

void axpy_f32(float alpha, const float* x, float* y, int n) {
    const __m256 va = _mm256_set1_ps(alpha);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(y + i,
                         _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    }
    for (; i < n; ++i) y[i] += alpha * x[i];
}

void axpy_f16(float alpha, const uint16_t* x, float* y, int n) {
    const __m256 va = _mm256_set1_ps(alpha);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, load_f16x8(x + i), _mm256_loadu_ps(y + i)));
    }
    for (; i < n; ++i) y[i] += alpha * _cvtsh_ss(x[i]);
}

void axpy_i8(float alpha, const int8_t* x, float* y, int n) {
    const __m256 va = _mm256_set1_ps(alpha);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, load_i8x8(x + i), _mm256_loadu_ps(y + i)));
    }
    for (; i < n; ++i) y[i] += alpha * float(x[i]);
}

void convert_f32_to_f16(const float* x, uint16_t* y, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), h);
    }
    for (; i < n; ++i) y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

float quantize_i8(const float* x, int8_t* y, int n) {
    // max |x| over the vector, then round(x / scale) with round-to-nearest-even
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    __m256 vmax = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8)
        vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(sign_mask, _mm256_loadu_ps(x + i)));
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    float amax = _mm_cvtss_f32(m);
    for (; i < n; ++i) amax = __builtin_fmaxf(amax, __builtin_fabsf(x[i]));
    const float scale = amax / 127.0f;
    const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    const __m256 vinv = _mm256_set1_ps(inv);
    i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
        // 8 int32 -> 8 int8 (values are within -127..127)
        const __m128i q16 =
            _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
        const __m128i q8 = _mm_packs_epi16(q16, q16);
        _mm_storel_epi64(reinterpret_cast<__m128i*>(y + i), q8);
    }
    for (; i < n; ++i) y[i] = int8_t(std::lrintf(x[i] * inv));
    return scale;
}

// kernels/vec_exp.h on 8 lanes; lanes at or below kMinInput (and NaN) give 0,
// lanes above kMaxInput +inf.
inline __m256 exp8(__m256 x) {
    using namespace vec_exp;
    const __m256 valid = _mm256_cmp_ps(x, _mm256_set1_ps(kMinInput), _CMP_GT_OQ);
    const __m256 overflow = _mm256_cmp_ps(x, _mm256_set1_ps(kMaxInput), _CMP_GT_OQ);
    x = _mm256_min_ps(x, _mm256_set1_ps(kMaxInput));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-kLn2Hi), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-kLn2Lo), r);
    __m256 y = _mm256_set1_ps(kC0);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kC1));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kC2));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kC3));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kC4));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kC5));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    const __m256i bits =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    const __m256 e = _mm256_and_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(bits)), valid);
    return _mm256_blendv_ps(e, _mm256_set1_ps(INFINITY), overflow);
}

// A tail of fewer than 8 elements, padded with `fill`, and written back.
struct Tail {
    alignas(32) float v[8];
    Tail(const float* x, int n, float fill) {
        for (int i = 0; i < 8; ++i) v[i] = i < n ? x[i] : fill;
    }
    __m256 load() const { return _mm256_load_ps(v); }
    void store(__m256 y, float* x, int n) {
        _mm256_store_ps(v, y);
        for (int i = 0; i < n; ++i) x[i] = v[i];
    }
};

void softmax(float* x, int n) {
    const int n8 = n & ~7, rest = n - n8;
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    for (int i = 0; i < n8; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
    float max_val = -INFINITY;
    {
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, vmax);
        for (float v : lanes) max_val = max_val > v ? max_val : v;
        for (int i = n8; i < n; ++i) max_val = max_val > x[i] ? max_val : x[i];
    }
    const __m256 m = _mm256_set1_ps(max_val);
    __m256 sum = _mm256_setzero_ps();
    for (int i = 0; i < n8; i += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
        _mm256_storeu_ps(x + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    if (rest > 0) {
        Tail t(x + n8, rest, -INFINITY);  // exp(-inf) = 0 adds nothing
        const __m256 e = exp8(_mm256_sub_ps(t.load(), m));
        t.store(e, x + n8, rest);
        sum = _mm256_add_ps(sum, e);
    }
    const __m256 total = _mm256_set1_ps(hsum8(sum));
    for (int i = 0; i < n8; i += 8)
        _mm256_storeu_ps(x + i, _mm256_div_ps(_mm256_loadu_ps(x + i), total));
    for (int i = n8; i < n; ++i) x[i] /= _mm256_cvtss_f32(total);
}

void silu_mul(float* gate, const float* up, int n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const auto silu_times = [&](__m256 g, __m256 u) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
        return _mm256_mul_ps(_mm256_mul_ps(g, _mm256_div_ps(one, _mm256_add_ps(one, e))), u);
    };
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(gate + i, silu_times(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
    if (i < n) {
        Tail g(gate + i, n - i, 0.0f);
        const Tail u(up + i, n - i, 0.0f);
        g.store(silu_times(g.load(), u.load()), gate + i, n - i);
    }
}

}  // namespace vec_avx2

const VecOps* vec_ops_avx2() {
    static const VecOps ops{vec_avx2::dot_f32,
                            vec_avx2::dot_f16,
                            vec_avx2::dot_i8,
                            vec_avx2::axpy_f32,
                            vec_avx2::axpy_f16,
                            vec_avx2::axpy_i8,
                            vec_avx2::convert_f32_to_f16,
                            vec_avx2::quantize_i8,
                            vec_avx2::softmax,
                            vec_avx2::silu_mul,
                            vec_avx2::attention_scores,
                            vec_avx2::attention_values};
    return cpu_features().avx2 ? &ops : nullptr;
}

}  // namespace nibble

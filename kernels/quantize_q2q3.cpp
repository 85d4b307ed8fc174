// Group fits of the q3 and q2 formats (kernels/q2q3.h): the q4 and q4a
// searches of kernels/quantize_group.cpp for 8 and 4 levels.
#include <algorithm>

#include "kernels/fp16.h"
#include "kernels/q2q3.h"

namespace nibble {

namespace {

struct Range {
    float lo = 0.0f, hi = 0.0f;
    float signed_max = 0.0f;  // the value of largest |w| (first one on ties)
    float amax() const { return std::fabs(signed_max); }
};

Range group_range(const float* w, int n) {
    Range r{w[0], w[0], w[0]};
    for (int i = 1; i < n; ++i) {
        r.lo = std::min(r.lo, w[i]);
        r.hi = std::max(r.hi, w[i]);
        if (std::fabs(w[i]) > std::fabs(r.signed_max)) r.signed_max = w[i];
    }
    return r;
}

struct Best {
    GroupFit fit;
    double sse = INFINITY;
    bool found() const { return sse < INFINITY; }
};

// ---- q3: w ~ d (q - 4), q - 4 in [-4, 3] ----------------------------------------

double q3_sse(const float* w, int n, float d) {
    double sse = 0.0;
    for (int i = 0; i < n; ++i) {
        const double e = double(w[i]) - double(d) * double(q3_code(w[i], d) - 4);
        sse += e * e;
    }
    return sse;
}

// Least-squares scale for the codes d gives: sum(w q) / sum(q q).
float q3_refit(const float* w, int n, float d) {
    double wq = 0.0, qq = 0.0;
    for (int i = 0; i < n; ++i) {
        const double q = q3_code(w[i], d) - 4;
        wq += double(w[i]) * q;
        qq += q * q;
    }
    return qq > 0.0 ? float(wq / qq) : d;
}

// Exact evaluation of scale d (rounded to fp16), within the clipping limit.
void try_q3(const float* w, int n, const Range& r, float d, Best& best) {
    const float df = round_to_fp16(d);
    if (df == 0.0f || !std::isfinite(df)) return;
    const float a = std::fabs(df);
    const float lo = df > 0 ? -4.0f * df : 3.0f * df;
    const float hi = df > 0 ? 3.0f * df : -4.0f * df;
    if (r.lo < lo - kMaxClip * a || r.hi > hi + kMaxClip * a) return;
    const double sse = q3_sse(w, n, df);
    if (sse < best.sse) best = {{d, 0.0f}, sse};
}

// ---- q2: w ~ d q + m, q in [0, 3] ------------------------------------------------

double q2_sse(const float* w, int n, float d, float m) {
    double sse = 0.0;
    for (int i = 0; i < n; ++i) {
        const double e = double(w[i]) - (double(d) * q2_code(w[i], d, m) + double(m));
        sse += e * e;
    }
    return sse;
}

void try_q2(const float* w, int n, const Range& r, float d, float m, Best& best) {
    const float df = round_to_fp16(d), mf = round_to_fp16(m);
    if (!(df > 0.0f) || !std::isfinite(df) || !std::isfinite(mf)) return;
    if (r.lo < mf - kMaxClip * df || r.hi > mf + 3.0f * df + kMaxClip * df) return;
    const double sse = q2_sse(w, n, df, mf);
    if (sse < best.sse) best = {{d, m}, sse};
}

// Least-squares (d, m) for the codes of (d, m) rounded to fp16; false when
// the codes do not determine them (all equal).
bool q2_refit(const float* w, int n, float d, float m, float& d_out, float& m_out) {
    const float df = round_to_fp16(d), mf = round_to_fp16(m);
    return fit_scale_and_min(
        w, n, [&](float x) { return q2_code(x, df, mf); }, d_out, m_out);
}

}  // namespace

GroupFit fit_q3_group(const float* w, int n, ScaleRule rule) {
    const Range r = group_range(w, n);
    const float v = r.signed_max;
    if (v == 0.0f) return {};
    const GroupFit max3{r.amax() / 3.0f, 0.0f};  // max|w| -> 3, never uses -4
    const GroupFit minus4{v / -4.0f, 0.0f};      // largest-magnitude value -> -4
    if (rule == ScaleRule::simple) return max3;
    if (rule == ScaleRule::q4_minus8) return minus4;
    Best best;
    try_q3(w, n, r, max3.scale, best);
    try_q3(w, n, r, minus4.scale, best);
    // v lands on t = v / d: t in [-5, -3] near the negative end, [2, 4] near the
    // positive one; every candidate raw and re-fitted, evaluated exactly.
    for (int k = 0; k <= 20; ++k) {
        for (float t : {-5.0f + 0.1f * float(k), 2.0f + 0.1f * float(k)}) {
            const float d = v / t;
            if (round_to_fp16(d) == 0.0f) continue;
            try_q3(w, n, r, d, best);
            try_q3(w, n, r, q3_refit(w, n, round_to_fp16(d)), best);
        }
    }
    if (best.found()) try_q3(w, n, r, q3_refit(w, n, round_to_fp16(best.fit.scale)), best);
    return best.found() ? best.fit : max3;
}

GroupFit fit_q2_group(const float* w, int n, ScaleRule rule) {
    const Range r = group_range(w, n);
    const float range = r.hi - r.lo;
    const GroupFit minmax{range / 3.0f, r.lo};
    if (range == 0.0f || rule != ScaleRule::search) return minmax;
    Best best;
    try_q2(w, n, r, minmax.scale, minmax.min, best);
    // The interval shrunk by 0..20% of its length at either end, raw and
    // re-fitted, evaluated exactly.
    for (int i = 0; i <= 10; ++i) {
        for (int j = 0; j <= 10; ++j) {
            const float lo = r.lo + 0.02f * float(i) * range;
            const float hi = r.hi - 0.02f * float(j) * range;
            const float d = (hi - lo) / 3.0f;
            try_q2(w, n, r, d, lo, best);
            float dr, mr;
            if (q2_refit(w, n, d, lo, dr, mr)) try_q2(w, n, r, dr, mr, best);
        }
    }
    for (int it = 0; it < 2 && best.found(); ++it) {
        float dr, mr;
        if (q2_refit(w, n, best.fit.scale, best.fit.min, dr, mr)) try_q2(w, n, r, dr, mr, best);
    }
    return best.found() ? best.fit : minmax;
}

}  // namespace nibble

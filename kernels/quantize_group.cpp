// Per-group scale selection: the simple rules and the least-squares searches.
#include "kernels/quantize_group.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/format_traits.h"
#include "kernels/fp16.h"

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

// True if [lo, hi] lies within [a - slack, b + slack].
bool within(const Range& r, float a, float b, float slack) {
    return r.lo >= a - slack && r.hi <= b + slack;
}

// ---- q4: w ~ d*(q - 8), q - 8 in [-8, 7] -------------------------------------

double q4_sse(const float* w, int n, float d) {
    double sse = 0.0;
    for (int i = 0; i < n; ++i) {
        const double e = double(w[i]) - double(d) * double(q4_code(w[i], d) - 8);
        sse += e * e;
    }
    return sse;
}

// Least-squares scale for fixed codes: minimises sum (w - d q)^2 => d = sum(wq)/sum(qq).
float q4_refit(const float* w, int n, float d) {
    double wq = 0.0, qq = 0.0;
    for (int i = 0; i < n; ++i) {
        const double q = q4_code(w[i], d) - 8;
        wq += double(w[i]) * q;
        qq += q * q;
    }
    return qq > 0.0 ? float(wq / qq) : d;
}

// Cheap score of a candidate scale d for the search: the codes it gives (with d
// rounded to fp16), and the least-squares re-fit d* = sum(wq)/sum(qq) for those
// codes, whose squared error is sum(w^2) - sum(wq)^2/sum(qq).
struct Refit {
    float d = 0.0f, m = 0.0f;
    double sse = INFINITY;
};

Refit q4_candidate(const float* w, int n, float d, double sum_w2) {
    const float inv = 1.0f / round_to_fp16(d);
    float wq = 0.0f, qq = 0.0f;
    for (int i = 0; i < n; ++i) {
        const float t = std::fmin(std::fmax(w[i] * inv, -8.0f), 7.0f);
        const float q = float(int(t + 8.5f) - 8);
        wq += w[i] * q;
        qq += q * q;
    }
    if (qq == 0.0f) return {};
    return {wq / qq, 0.0f, sum_w2 - double(wq) * double(wq) / double(qq)};
}

// Tracks the best accepted candidate of a group.
struct Best {
    GroupFit fit;
    double sse = INFINITY;
    bool found() const { return sse < INFINITY; }
};

void try_q4(const float* w, int n, const Range& r, float d, Best& best) {
    const float df = round_to_fp16(d);
    if (df == 0.0f || !std::isfinite(df)) return;
    const float a = std::fabs(df);
    const float lo = df > 0 ? -8.0f * df : 7.0f * df;  // ends of d*[-8, 7]
    const float hi = df > 0 ? 7.0f * df : -8.0f * df;
    if (!within(r, lo, hi, kMaxClip * a)) return;
    const double sse = q4_sse(w, n, df);
    if (sse < best.sse) best = {{d, 0.0f}, sse};
}

// ---- q4a: w ~ d*q + m, q in [0, 15] --------------------------------------------

double q4a_sse(const float* w, int n, float d, float m) {
    double sse = 0.0;
    for (int i = 0; i < n; ++i) {
        const double e = double(w[i]) - (double(d) * q4a_code(w[i], d, m) + double(m));
        sse += e * e;
    }
    return sse;
}

void try_q4a(const float* w, int n, const Range& r, float d, float m, Best& best) {
    const float df = round_to_fp16(d), mf = round_to_fp16(m);
    if (!(df > 0.0f) || !std::isfinite(df) || !std::isfinite(mf)) return;
    if (!within(r, mf, mf + 15.0f * df, kMaxClip * df)) return;
    const double sse = q4a_sse(w, n, df, mf);
    if (sse < best.sse) best = {{d, m}, sse};
}

// Least-squares (d, m) for the codes of (d, m) rounded to fp16.
bool q4a_refit(const float* w, int n, float d, float m, float& d_out, float& m_out) {
    const float df = round_to_fp16(d), mf = round_to_fp16(m);
    return fit_scale_and_min(
        w, n, [&](float x) { return q4a_code(x, df, mf); }, d_out, m_out);
}

// Cheap score of a candidate (d, m): codes for the fp16-rounded parameters, then
// the least-squares (d*, m*) for them; its squared error is
// sum(w^2) - d* sum(wq) - m* sum(w) (residual orthogonal to the fit).
Refit q4a_candidate(const float* w, int n, float d, float m, double sum_w, double sum_w2) {
    const float df = round_to_fp16(d), mf = round_to_fp16(m);
    if (!(df > 0.0f)) return {};
    const float inv = 1.0f / df;
    float sq = 0.0f, sqq = 0.0f, swq = 0.0f;
    for (int i = 0; i < n; ++i) {
        const float t = std::fmin(std::fmax((w[i] - mf) * inv, 0.0f), 15.0f);
        // t >= 0, so adding 0.5 and truncating rounds half up, as q4a_code does.
        const float q = float(int(t + 0.5f));  // NOLINT(bugprone-incorrect-roundings)
        sq += q;
        sqq += q * q;
        swq += w[i] * q;
    }
    const double det = double(n) * sqq - double(sq) * sq;
    if (!(det > 0.0)) return {};
    const double dd = (double(n) * swq - double(sq) * sum_w) / det;
    const double mm = (sum_w - dd * sq) / double(n);
    return {float(dd), float(mm), sum_w2 - dd * swq - mm * sum_w};
}

// ---- nf4: w ~ d*NF4[q] -----------------------------------------------------------

double nf4_sse(const float* w, int n, float d) {
    double sse = 0.0;
    for (int i = 0; i < n; ++i) {
        const double e = double(w[i]) - double(d) * double(kNf4Codebook[nf4_code(w[i], d)]);
        sse += e * e;
    }
    return sse;
}

float nf4_refit(const float* w, int n, float d) {
    double wc = 0.0, cc = 0.0;
    for (int i = 0; i < n; ++i) {
        const double c = kNf4Codebook[nf4_code(w[i], d)];
        wc += double(w[i]) * c;
        cc += c * c;
    }
    return cc > 0.0 ? float(wc / cc) : d;
}

// Cheap score of a candidate scale: codes for fp16(d), re-fit d* = sum(wc)/sum(cc)
// over the code book values c, squared error sum(w^2) - sum(wc)^2/sum(cc).
Refit nf4_candidate(const float* w, int n, float d, double sum_w2) {
    const float df = round_to_fp16(d);
    if (!(df > 0.0f)) return {};
    float wc = 0.0f, cc = 0.0f;
    for (int i = 0; i < n; ++i) {
        const float c = kNf4Codebook[nf4_code(w[i], df)];
        wc += w[i] * c;
        cc += c * c;
    }
    if (cc == 0.0f) return {};
    return {wc / cc, 0.0f, sum_w2 - double(wc) * double(wc) / double(cc)};
}

void try_nf4(const float* w, int n, const Range& r, float d, Best& best) {
    const float df = round_to_fp16(d);
    if (!(df > 0.0f) || !std::isfinite(df)) return;
    if (r.amax() > df * (1.0f + kNf4MaxClip)) return;
    const double sse = nf4_sse(w, n, df);
    if (sse < best.sse) best = {{d, 0.0f}, sse};
}

}  // namespace

GroupFit fit_q8_group(const float* w, int n) {
    return {group_range(w, n).amax() / 127.0f, 0.0f};
}

GroupFit fit_iq4nl_group(const float* w, int n) {
    const float m = group_range(w, n).signed_max;
    if (m == 0.0f) return {};
    const auto sse = [&](float d) {
        const float df = round_to_fp16(d);
        double e = 0.0;
        for (int i = 0; i < n; ++i) {
            const double r = double(w[i]) - double(df) * kIq4nlCodebook[iq4nl_code(w[i], df)];
            e += r * r;
        }
        return e;
    };
    const float to_low = m / kIq4nlCodebook[0], to_high = m / kIq4nlCodebook[15];
    return {sse(to_high) < sse(to_low) ? to_high : to_low, 0.0f};
}

GroupFit fit_q4_group(const float* w, int n, ScaleRule rule) {
    const Range r = group_range(w, n);
    const float m = r.signed_max;
    if (m == 0.0f) return {};
    const GroupFit max7{r.amax() / 7.0f, 0.0f};  // max|w| -> 7, never uses -8
    const GroupFit minus8{m / -8.0f, 0.0f};      // largest-magnitude value -> -8
    if (rule == ScaleRule::simple) return max7;
    if (rule == ScaleRule::q4_minus8) return minus8;

    Best best;  // exact squared errors, fp16 scales, nearest codes
    try_q4(w, n, r, max7.scale, best);
    try_q4(w, n, r, minus8.scale, best);
    // The value m lands on t = m/d: t in [-9, -7] puts it on the negative end of
    // the code range, t in [6, 8] on the positive end (steps of 0.1). Candidates
    // are ranked by the error of their least-squares re-fit; the winner, raw and
    // re-fitted, is then evaluated exactly.
    double sum_w2 = 0.0;
    for (int i = 0; i < n; ++i) sum_w2 += double(w[i]) * double(w[i]);
    float winner = 0.0f;
    Refit winner_refit;
    for (int k = 0; k <= 20; ++k) {
        for (float t : {-9.0f + 0.1f * float(k), 6.0f + 0.1f * float(k)}) {
            const float d = m / t;
            if (round_to_fp16(d) == 0.0f) continue;
            const Refit rf = q4_candidate(w, n, d, sum_w2);
            if (rf.sse < winner_refit.sse) winner = d, winner_refit = rf;
        }
    }
    if (winner != 0.0f) {
        try_q4(w, n, r, winner, best);
        try_q4(w, n, r, winner_refit.d, best);
    }
    // A re-fit of the exact winner (its codes may differ from its candidate's).
    if (best.found()) try_q4(w, n, r, q4_refit(w, n, round_to_fp16(best.fit.scale)), best);
    return best.found() ? best.fit : max7;
}

GroupFit fit_q4a_group(const float* w, int n, ScaleRule rule) {
    const Range r = group_range(w, n);
    const float range = r.hi - r.lo;
    const GroupFit minmax{range / 15.0f, r.lo};
    if (range == 0.0f || rule != ScaleRule::search) return minmax;

    Best best;  // exact squared errors, fp16 parameters, nearest codes
    try_q4a(w, n, r, minmax.scale, minmax.min, best);
    // Shrink the interval [lo, hi] by 0..10% of its length from either end
    // (steps of 2%). Candidates are ranked by the error of their least-squares
    // re-fit; the winner, raw and re-fitted, is then evaluated exactly.
    double sum_w = 0.0, sum_w2 = 0.0;
    for (int i = 0; i < n; ++i) sum_w += w[i], sum_w2 += double(w[i]) * double(w[i]);
    GroupFit winner;
    Refit winner_refit;
    for (int i = 0; i <= 5; ++i) {
        for (int j = 0; j <= 5; ++j) {
            const float lo = r.lo + 0.02f * float(i) * range;
            const float hi = r.hi - 0.02f * float(j) * range;
            const Refit rf = q4a_candidate(w, n, (hi - lo) / 15.0f, lo, sum_w, sum_w2);
            if (rf.sse < winner_refit.sse) winner = {(hi - lo) / 15.0f, lo}, winner_refit = rf;
        }
    }
    if (winner_refit.sse < INFINITY) {
        try_q4a(w, n, r, winner.scale, winner.min, best);
        try_q4a(w, n, r, winner_refit.d, winner_refit.m, best);
    }
    // Two more re-fit rounds of the winner.
    for (int it = 0; it < 2 && best.found(); ++it) {
        float dr, mr;
        if (q4a_refit(w, n, best.fit.scale, best.fit.min, dr, mr)) try_q4a(w, n, r, dr, mr, best);
    }
    return best.found() ? best.fit : minmax;
}

GroupFit fit_nf4_group(const float* w, int n, ScaleRule rule) {
    const Range r = group_range(w, n);
    const GroupFit absmax{r.amax(), 0.0f};  // QLoRA: max|w| -> +-1
    if (r.amax() == 0.0f || rule != ScaleRule::search) return absmax;

    Best best;  // exact squared errors, fp16 scales, nearest codes
    try_nf4(w, n, r, absmax.scale, best);
    // d = f * absmax for f in [0.80, 1.00] (steps of 0.02), ranked by the error
    // of their least-squares re-fit; the winner, raw and re-fitted, is then
    // evaluated exactly.
    double sum_w2 = 0.0;
    for (int i = 0; i < n; ++i) sum_w2 += double(w[i]) * double(w[i]);
    float winner = 0.0f;
    Refit winner_refit;
    for (int k = 1; k <= 10; ++k) {
        const float d = r.amax() * (1.0f - 0.02f * float(k));
        const Refit rf = nf4_candidate(w, n, d, sum_w2);
        if (rf.sse < winner_refit.sse) winner = d, winner_refit = rf;
    }
    if (winner != 0.0f) {
        try_nf4(w, n, r, winner, best);
        try_nf4(w, n, r, winner_refit.d, best);
    }
    if (best.found()) try_nf4(w, n, r, nf4_refit(w, n, round_to_fp16(best.fit.scale)), best);
    return best.found() ? best.fit : absmax;
}

GroupFit fit_q4k_group(const float* w, int n, ScaleRule rule) {
    GroupFit fit = fit_q4a_group(w, n, rule);
    if (fit.scale < 0.0f || fit.min > 0.0f) {  // range [0, max]: codes 0..15 from 0
        float hi = 0.0f;
        for (int i = 0; i < n; ++i) hi = std::max(hi, w[i]);
        fit.scale = hi / 15.0f;
        fit.min = 0.0f;
    }
    return fit;
}

GroupFit fit_format_group(WeightFormat format, const float* w, int n, ScaleRule rule) {
    bool fitted = false;
    GroupFit fit;
    visit_any_format(format, [&](auto tag) {
        constexpr WeightFormat F = decltype(tag)::value;
        if constexpr (kGroupArithmetic<F>) {
            fit = FormatTraits<F>::fit(w, n, rule);
            fitted = true;
        }
    });
    if (!fitted) {
        throw std::invalid_argument(std::string("no group parameters to fit for format ") +
                                    format_name(format));
    }
    return fit;
}

}  // namespace nibble

// exp(x) for the vector kernels (softmax, SiLU), written once as a sequence of
// IEEE operations that every version (scalar reference, AVX2, NEON) performs
// in the same order, so all give the same bits:
//   x <= -87.33654 (or -inf)  -> 0
//   x  > 88.37626             -> +inf (exp overflows)
//   n  = round_to_nearest_even(x * log2(e))
//   r  = fma(n, -ln2_hi, x); r = fma(n, -ln2_lo, r)    (ln2_hi + ln2_lo = ln 2)
//   y  = Horner on c0..c5 with fma; y = fma(y, r * r, r); y = y + 1
//   exp(x) = y * 2^n (2^n built from its exponent bits, n in [-126, 127])
// The coefficients are Cephes' expf minimax polynomial (relative error about
// 1e-7 on [-ln2/2, ln2/2]).
#pragma once

namespace nibble::vec_exp {

constexpr float kMinInput = -87.33654f;  // below: exp underflows, result 0
constexpr float kMaxInput = 88.37626f;   // above: exp overflows, result +inf
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kC0 = 1.9875691500e-4f;
constexpr float kC1 = 1.3981999507e-3f;
constexpr float kC2 = 8.3334519073e-3f;
constexpr float kC3 = 4.1665795894e-2f;
constexpr float kC4 = 1.6666665459e-1f;
constexpr float kC5 = 5.0000001201e-1f;

}  // namespace nibble::vec_exp

// Compile-time facts about each weight format and its arithmetic (code, value,
// group fit; kernels/formats.h has the byte layout), and the one place where a
// run-time WeightFormat becomes a compile-time one (visit_any_format). Every matmul kernel
// (reference, scalar, AVX2, AVX-VNNI, AVX-512, NEON) instantiates its templates through
// visit_format(); a new format is added here and in formats.h, and each kernel
// then fails to compile until it handles the new traits.
//
// Only constexpr data, templates and inline arithmetic that the ISA kernels do
// not call: an ISA translation unit that includes this header instantiates its own copies (the
// visitor's function argument is a lambda local to that translation unit), so nothing compiled for
// one instruction set can be shared with another at link time.
#pragma once
#include <cstdint>

#include "kernels/codebooks.h"
#include "kernels/formats.h"
#include "kernels/q2q3.h"
#include "kernels/quantize_group.h"

namespace nibble {

template <WeightFormat F>
struct FormatTraits;

// Which row kernels of a kernel table entry run a format (kernels/kernel_table.h):
// the shared ones (every format with row_kernels), q6k's, or the ggml block
// formats' (kernels/lowbit.h), or nibble's q3 and q2 (kernels/q2q3.h).
enum class RowFamily : uint8_t { grouped, q6k, lowbit, q2q3 };
inline constexpr int kRowFamilies = 4;

// Each grouped format's arithmetic, for a group of scale d (and offset m):
//   code(w, d, m)      the stored code nearest w (kernels/quantize_group.h),
//   value(q, d, m)     the weight code q stands for (the dequantization),
//   fit(w, n, rule)    the real-valued group parameters of w[0..n),
// and fp16_grid: its parameters are fp16 numbers per group (the grid of the
// calibrated quantizers, models/quant_grid.h). kernel_format is the format
// whose row kernels run it, row_kernels whether the shared row kernels do
// (q6k has kernels of its own, kernels/matmul_q6k.cpp).

// w = d q, q in -127..127.
template <>
struct FormatTraits<WeightFormat::q8> {
    static constexpr const char* name = "q8";
    static constexpr WeightFormat kernel_format = WeightFormat::q8;
    static constexpr bool row_kernels = true;
    static constexpr int code_bits = 8;
    static constexpr bool grouped = true;
    static constexpr bool signed_codes = true;  // int8 q in -127..127
    static constexpr int code_offset = 0;
    static constexpr bool has_mins = false;
    static constexpr bool code_book = false;
    static constexpr bool fp16_grid = true;
    static int code(float w, float d, float /*m*/) { return q8_code(w, d); }
    static float value(int q, float d, float /*m*/) { return d * float(q); }
    static GroupFit fit(const float* w, int n, ScaleRule /*rule*/) { return fit_q8_group(w, n); }
};
// w = d (q - 8), q in 0..15.
template <>
struct FormatTraits<WeightFormat::q4> {
    static constexpr const char* name = "q4";
    static constexpr WeightFormat kernel_format = WeightFormat::q4;
    static constexpr bool row_kernels = true;
    static constexpr int code_bits = 4;
    static constexpr bool grouped = true;
    static constexpr bool signed_codes = false;  // q in 0..15, w = d (q - 8)
    static constexpr int code_offset = 8;
    static constexpr bool has_mins = false;
    static constexpr bool code_book = false;
    static constexpr bool fp16_grid = true;
    static int code(float w, float d, float /*m*/) { return q4_code(w, d); }
    static float value(int q, float d, float /*m*/) { return d * float(q - 8); }
    static GroupFit fit(const float* w, int n, ScaleRule rule) { return fit_q4_group(w, n, rule); }
};
// w = d q + m, q in 0..15.
template <>
struct FormatTraits<WeightFormat::q4a> {
    static constexpr const char* name = "q4a";
    static constexpr WeightFormat kernel_format = WeightFormat::q4a;
    static constexpr bool row_kernels = true;
    static constexpr int code_bits = 4;
    static constexpr bool grouped = true;
    static constexpr bool signed_codes = false;  // q in 0..15, w = d q + m
    static constexpr int code_offset = 0;
    static constexpr bool has_mins = true;
    static constexpr bool code_book = false;
    static constexpr bool fp16_grid = true;
    static int code(float w, float d, float m) { return q4a_code(w, d, m); }
    static float value(int q, float d, float m) { return d * float(q) + m; }
    static GroupFit fit(const float* w, int n, ScaleRule rule) { return fit_q4a_group(w, n, rule); }
};
// w = d kNf4Codebook[q].
template <>
struct FormatTraits<WeightFormat::nf4> {
    static constexpr const char* name = "nf4";
    static constexpr WeightFormat kernel_format = WeightFormat::nf4;
    static constexpr bool row_kernels = true;
    static constexpr int code_bits = 4;
    static constexpr bool grouped = true;
    static constexpr bool signed_codes = false;  // index into kNf4Codebook
    static constexpr int code_offset = 0;
    static constexpr bool has_mins = false;
    static constexpr bool code_book = true;
    static constexpr bool fp16_grid = true;
    static int code(float w, float d, float /*m*/) { return nf4_code(w, d); }
    static float value(int q, float d, float /*m*/) { return d * kNf4Codebook[q]; }
    static GroupFit fit(const float* w, int n, ScaleRule rule) { return fit_nf4_group(w, n, rule); }
};
// w = d kIq4nlCodebook[q].
template <>
struct FormatTraits<WeightFormat::iq4nl> {
    static constexpr const char* name = "iq4nl";
    static constexpr WeightFormat kernel_format = WeightFormat::iq4nl;
    static constexpr bool row_kernels = true;
    static constexpr int code_bits = 4;
    static constexpr bool grouped = true;
    static constexpr bool signed_codes = false;  // index into kIq4nlCodebook
    static constexpr int code_offset = 0;
    static constexpr bool has_mins = false;
    static constexpr bool code_book = true;
    static constexpr bool fp16_grid = true;
    static int code(float w, float d, float /*m*/) { return iq4nl_code(w, d); }
    static float value(int q, float d, float /*m*/) { return d * kIq4nlCodebook[q]; }
    static GroupFit fit(const float* w, int n, ScaleRule /*rule*/) { return fit_iq4nl_group(w, n); }
};
// q4k holds q4a's codes with K-coded parameters (formats.h): the kernels run it
// as q4a, its layout's double_quant sending them to the per-row decoder. Its
// parameters are 6-bit codes per 256 columns, not an fp16 grid.
template <>
struct FormatTraits<WeightFormat::q4k> : FormatTraits<WeightFormat::q4a> {
    static constexpr const char* name = "q4k";
    static constexpr bool fp16_grid = false;
    static GroupFit fit(const float* w, int n, ScaleRule rule) { return fit_q4k_group(w, n, rule); }
};
// Q6_K's super-blocks (kernels/q6k.h): quantized whole (kernels/quantize_q6k.cpp),
// run by kernels of its own.
template <>
struct FormatTraits<WeightFormat::q6k> {
    static constexpr const char* name = "q6k";
    static constexpr WeightFormat kernel_format = WeightFormat::q6k;
    static constexpr bool row_kernels = false;
    static constexpr int code_bits = 6;
    static constexpr bool grouped = true;
    static constexpr bool signed_codes = true;
    static constexpr int code_offset = 0;
    static constexpr bool has_mins = false;
    static constexpr bool code_book = false;
    static constexpr bool fp16_grid = false;
};
// ggml's blocks held as they are (kernels/lowbit.h): no group arithmetic of
// their own (nibble does not quantize into them), run by the lowbit kernels.
template <WeightFormat F, int Bits, bool Mins>
struct GgmlBlockTraits {
    static constexpr WeightFormat kernel_format = F;
    static constexpr bool row_kernels = false;
    static constexpr int code_bits = Bits;
    static constexpr bool grouped = true;
    static constexpr bool signed_codes = false;
    static constexpr int code_offset = 0;
    static constexpr bool has_mins = Mins;
    static constexpr bool code_book = false;
    static constexpr bool fp16_grid = false;
};
template <>
struct FormatTraits<WeightFormat::q5_0> : GgmlBlockTraits<WeightFormat::q5_0, 5, false> {
    static constexpr const char* name = "q5_0";
};
template <>
struct FormatTraits<WeightFormat::q5_1> : GgmlBlockTraits<WeightFormat::q5_1, 5, true> {
    static constexpr const char* name = "q5_1";
};
template <>
struct FormatTraits<WeightFormat::q5k> : GgmlBlockTraits<WeightFormat::q5k, 5, true> {
    static constexpr const char* name = "q5k";
};
template <>
struct FormatTraits<WeightFormat::q3k> : GgmlBlockTraits<WeightFormat::q3k, 3, false> {
    static constexpr const char* name = "q3k";
};
template <>
struct FormatTraits<WeightFormat::q2k> : GgmlBlockTraits<WeightFormat::q2k, 2, true> {
    static constexpr const char* name = "q2k";
};
// nibble's own low-bit formats (kernels/q2q3.h): run by kernels of their own
// (row_kernels false: kernels/matmul_q2q3.h), never by the shared row kernels.
// w = d (q - 4), q in 0..7.
template <>
struct FormatTraits<WeightFormat::q3> {
    static constexpr const char* name = "q3";
    static constexpr WeightFormat kernel_format = WeightFormat::q3;
    static constexpr bool row_kernels = false;
    static constexpr int code_bits = 3;
    static constexpr bool grouped = true;
    static constexpr bool signed_codes = false;  // q in 0..7, w = d (q - 4)
    static constexpr int code_offset = 4;
    static constexpr bool has_mins = false;
    static constexpr bool code_book = false;
    static constexpr bool fp16_grid = true;
    static int code(float w, float d, float /*m*/) { return q3_code(w, d); }
    static float value(int q, float d, float /*m*/) { return d * float(q - 4); }
    static GroupFit fit(const float* w, int n, ScaleRule rule) { return fit_q3_group(w, n, rule); }
};
// w = d q + m, q in 0..3.
template <>
struct FormatTraits<WeightFormat::q2> {
    static constexpr const char* name = "q2";
    static constexpr WeightFormat kernel_format = WeightFormat::q2;
    static constexpr bool row_kernels = false;
    static constexpr int code_bits = 2;
    static constexpr bool grouped = true;
    static constexpr bool signed_codes = false;  // q in 0..3, w = d q + m
    static constexpr int code_offset = 0;
    static constexpr bool has_mins = true;
    static constexpr bool code_book = false;
    static constexpr bool fp16_grid = true;
    static int code(float w, float d, float m) { return q2_code(w, d, m); }
    static float value(int q, float d, float m) { return d * float(q) + m; }
    static GroupFit fit(const float* w, int n, ScaleRule rule) { return fit_q2_group(w, n, rule); }
};
template <>
struct FormatTraits<WeightFormat::f16> {
    static constexpr const char* name = "f16";
    static constexpr WeightFormat kernel_format = WeightFormat::f16;
    static constexpr bool row_kernels = true;
    static constexpr int code_bits = 16;
    static constexpr bool grouped = false;
    static constexpr bool signed_codes = true;
    static constexpr int code_offset = 0;
    static constexpr bool has_mins = false;
    static constexpr bool code_book = false;
    static constexpr bool fp16_grid = false;
};
template <>
struct FormatTraits<WeightFormat::f32> {
    static constexpr const char* name = "f32";
    static constexpr WeightFormat kernel_format = WeightFormat::f32;
    static constexpr bool row_kernels = true;
    static constexpr int code_bits = 32;
    static constexpr bool grouped = false;
    static constexpr bool signed_codes = true;
    static constexpr int code_offset = 0;
    static constexpr bool has_mins = false;
    static constexpr bool code_book = false;
    static constexpr bool fp16_grid = false;
};

// Grouped formats with code(), value() and fit() (all grouped ones but q6k and
// the ggml block formats).
template <WeightFormat F>
inline constexpr bool kGroupArithmetic =
    FormatTraits<F>::grouped&& F != WeightFormat::q6k && !is_ggml_block_format(F);

// The row kernels of format f.
constexpr RowFamily row_family(WeightFormat f) {
    return f == WeightFormat::q6k    ? RowFamily::q6k
           : is_ggml_block_format(f) ? RowFamily::lowbit
           : is_q2q3(f)              ? RowFamily::q2q3
                                     : RowFamily::grouped;
}

// Code bytes of one 32-column chunk of a row.
template <WeightFormat F>
inline constexpr int kChunkBytes = FormatTraits<F>::code_bits * 32 / 8;

// Weights whose int8 kernels need signed products (|w| x sign(x, w) on AVX2).
template <WeightFormat F>
inline constexpr bool kSignedInt8 = FormatTraits<F>::signed_codes || FormatTraits<F>::code_book;

template <WeightFormat F>
struct FormatTag {
    static constexpr WeightFormat value = F;
};

// The one place where a run-time WeightFormat becomes a compile-time one:
// calls fn(FormatTag<F>{}) for every format (nothing for a value outside the enum).
template <class Fn>
void visit_any_format(WeightFormat format, Fn&& fn) {
    switch (format) {
        case WeightFormat::f32:
            fn(FormatTag<WeightFormat::f32>{});
            break;
        case WeightFormat::f16:
            fn(FormatTag<WeightFormat::f16>{});
            break;
        case WeightFormat::q8:
            fn(FormatTag<WeightFormat::q8>{});
            break;
        case WeightFormat::q4:
            fn(FormatTag<WeightFormat::q4>{});
            break;
        case WeightFormat::q4a:
            fn(FormatTag<WeightFormat::q4a>{});
            break;
        case WeightFormat::nf4:
            fn(FormatTag<WeightFormat::nf4>{});
            break;
        case WeightFormat::iq4nl:
            fn(FormatTag<WeightFormat::iq4nl>{});
            break;
        case WeightFormat::q4k:
            fn(FormatTag<WeightFormat::q4k>{});
            break;
        case WeightFormat::q6k:
            fn(FormatTag<WeightFormat::q6k>{});
            break;
        case WeightFormat::q5_0:
            fn(FormatTag<WeightFormat::q5_0>{});
            break;
        case WeightFormat::q5_1:
            fn(FormatTag<WeightFormat::q5_1>{});
            break;
        case WeightFormat::q5k:
            fn(FormatTag<WeightFormat::q5k>{});
            break;
        case WeightFormat::q3k:
            fn(FormatTag<WeightFormat::q3k>{});
            break;
        case WeightFormat::q2k:
            fn(FormatTag<WeightFormat::q2k>{});
            break;
        case WeightFormat::q3:
            fn(FormatTag<WeightFormat::q3>{});
            break;
        case WeightFormat::q2:
            fn(FormatTag<WeightFormat::q2>{});
            break;
    }
}

// Calls fn(FormatTag<kernel_format>{}) for the grouped formats that the row
// kernels handle (q8, q4, q4a, nf4, iq4nl; q4k as q4a); other formats are not called.
template <class Fn>
void visit_grouped_format(WeightFormat format, Fn&& fn) {
    visit_any_format(format, [&](auto tag) {
        using Traits = FormatTraits<decltype(tag)::value>;
        if constexpr (Traits::grouped && Traits::row_kernels) {
            fn(FormatTag<Traits::kernel_format>{});
        }
    });
}

// Calls fn(FormatTag<kernel_format>{}) for every format the row kernels handle
// (the grouped ones as visit_grouped_format, f16, f32; not q6k).
template <class Fn>
void visit_format(WeightFormat format, Fn&& fn) {
    visit_any_format(format, [&](auto tag) {
        using Traits = FormatTraits<decltype(tag)::value>;
        if constexpr (Traits::row_kernels) fn(FormatTag<Traits::kernel_format>{});
    });
}

}  // namespace nibble

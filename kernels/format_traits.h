// Compile-time facts about each weight format (kernels/formats.h has the byte
// layout and the dequantization formulas), and the one place where a run-time
// WeightFormat becomes a compile-time one. Every matmul kernel (reference,
// scalar, AVX2, AVX-VNNI, AVX-512, NEON) instantiates its templates through
// visit_format(); a new format is added here and in formats.h, and each kernel
// then fails to compile until it handles the new traits.
//
// Only constexpr data and templates: an ISA translation unit that includes this
// header instantiates its own copies (the visitor's function argument is a
// lambda local to that translation unit), so nothing compiled for one
// instruction set can be shared with another at link time.
#pragma once
#include <cstdint>

#include "kernels/formats.h"

namespace nibble {

template <WeightFormat F>
struct FormatTraits;

// Dequantization w = d * (q - code_offset) [+ m if has_mins], or d * book[q].
template <>
struct FormatTraits<WeightFormat::q8> {
    static constexpr int code_bits = 8;
    static constexpr bool grouped = true;
    static constexpr bool signed_codes = true;  // int8 q in -127..127
    static constexpr int code_offset = 0;
    static constexpr bool has_mins = false;
    static constexpr bool code_book = false;
};
template <>
struct FormatTraits<WeightFormat::q4> {
    static constexpr int code_bits = 4;
    static constexpr bool grouped = true;
    static constexpr bool signed_codes = false;  // q in 0..15, w = d (q - 8)
    static constexpr int code_offset = 8;
    static constexpr bool has_mins = false;
    static constexpr bool code_book = false;
};
template <>
struct FormatTraits<WeightFormat::q4a> {
    static constexpr int code_bits = 4;
    static constexpr bool grouped = true;
    static constexpr bool signed_codes = false;  // q in 0..15, w = d q + m
    static constexpr int code_offset = 0;
    static constexpr bool has_mins = true;
    static constexpr bool code_book = false;
};
template <>
struct FormatTraits<WeightFormat::nf4> {
    static constexpr int code_bits = 4;
    static constexpr bool grouped = true;
    static constexpr bool signed_codes = false;  // index into kNf4Codebook
    static constexpr int code_offset = 0;
    static constexpr bool has_mins = false;
    static constexpr bool code_book = true;
};
template <>
struct FormatTraits<WeightFormat::iq4nl> {
    static constexpr int code_bits = 4;
    static constexpr bool grouped = true;
    static constexpr bool signed_codes = false;  // index into kIq4nlCodebook
    static constexpr int code_offset = 0;
    static constexpr bool has_mins = false;
    static constexpr bool code_book = true;
};
// q4k holds q4a's codes with K-coded parameters (formats.h): the kernels run it
// as q4a, its layout's double_quant sending them to the per-row decoder.
template <>
struct FormatTraits<WeightFormat::q4k> : FormatTraits<WeightFormat::q4a> {};
template <>
struct FormatTraits<WeightFormat::f16> {
    static constexpr int code_bits = 16;
    static constexpr bool grouped = false;
    static constexpr bool signed_codes = true;
    static constexpr int code_offset = 0;
    static constexpr bool has_mins = false;
    static constexpr bool code_book = false;
};
template <>
struct FormatTraits<WeightFormat::f32> {
    static constexpr int code_bits = 32;
    static constexpr bool grouped = false;
    static constexpr bool signed_codes = true;
    static constexpr int code_offset = 0;
    static constexpr bool has_mins = false;
    static constexpr bool code_book = false;
};

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

// Calls fn(FormatTag<F>{}) for the grouped formats that the int8-activation
// kernels handle (q8, q4, q4a, nf4, iq4nl; q4k as q4a); other formats are not called.
template <class Fn>
void visit_grouped_format(WeightFormat format, Fn&& fn) {
    switch (format) {
        case WeightFormat::q8:
            fn(FormatTag<WeightFormat::q8>{});
            break;
        case WeightFormat::q4:
            fn(FormatTag<WeightFormat::q4>{});
            break;
        case WeightFormat::q4a:
        case WeightFormat::q4k:  // q4a's codes; parameters decoded per row
            fn(FormatTag<WeightFormat::q4a>{});
            break;
        case WeightFormat::nf4:
            fn(FormatTag<WeightFormat::nf4>{});
            break;
        case WeightFormat::iq4nl:
            fn(FormatTag<WeightFormat::iq4nl>{});
            break;
        case WeightFormat::f32:
        case WeightFormat::f16:
        case WeightFormat::q6k:  // its own kernels (kernels/matmul_q6k.cpp)
            break;
    }
}

// Calls fn(FormatTag<F>{}) for every format.
template <class Fn>
void visit_format(WeightFormat format, Fn&& fn) {
    switch (format) {
        case WeightFormat::f32:
            fn(FormatTag<WeightFormat::f32>{});
            break;
        case WeightFormat::f16:
            fn(FormatTag<WeightFormat::f16>{});
            break;
        default:
            visit_grouped_format(format, fn);
            break;
    }
}

}  // namespace nibble

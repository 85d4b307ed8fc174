// Weight formats and the byte layout of a packed weight matrix.
//
// Every weight matrix W[rows][cols] (row-major, y = W x) is one contiguous blob.
// For the grouped formats each row is split into groups of `group_size`
// consecutive columns (32, 64, 128 or 256); a row whose length is not a multiple
// of the group size ends in a short group, padded with zero weights up to
// padded_cols = groups_per_row * group_size.
//
// Sections of a blob, in this order, each starting at a multiple of 64 bytes:
//   codes        q8: int8 [rows][padded_cols]
//                q4/q4a/nf4/iq4nl: uint8 [rows][padded_cols/2], two 4-bit codes per byte,
//                packed in chunks of 32 columns: chunk k of a row is 16 bytes and
//                byte j holds column 32k+j in its low nibble and column 32k+j+16 in
//                its high nibble (llama.cpp's Q4_0 order: one AND and one shift
//                give 16 consecutive columns each).
//   scales       one per group, index row*groups_per_row + g:
//                fp16, or int8 codes when double-quantized (see below).
//                q4k: 16 bytes per 256 columns (kernels/kquant_params.h).
//                q6k: codes 192 bytes and parameters 18 bytes per 256 columns
//                (kernels/q6k.h: llama.cpp's Q6_K block split in two sections).
//                q3/q2: per 32-column chunk a 2-bit plane of 8 bytes, byte j holding
//                columns j, j+8, j+16, j+24 in bits 0-1, 2-3, 4-5, 6-7; q3 then
//                4 more bytes, a little-endian uint32 whose bit c is bit 2 of column
//                c's code (12 bytes per chunk for q3, 8 for q2; kernels/q2q3.h).
//   mins         q4a and q2 only: one per group, same encoding as scales.
//   dq_params    double quantization only: for the scales stream (and the mins
//                stream for q4a) one fp32 offset followed by one fp32 block scale
//                per 256 groups.
// With interleave = 4 (nibble files of version 2) the codes section holds row
// blocks of 4 consecutive rows whose codes alternate every 128 columns (q6k:
// every 256); every other section is as above (kernels/interleave.h).
//
// Dequantization of column c of row r, group g = c / group_size, q = code:
//   q8:   w = d * q                  q in -127..127 (int8)
//   q4:   w = d * (q - 8)            q in 0..15 (signed code q-8 in -8..7)
//   q4a:  w = d * q + m              q in 0..15, m = group minimum
//   nf4:  w = d * NF4[q]             d = group absmax, NF4 = QLoRA code book
//   iq4nl: w = d * IQ4NL[q]          IQ4NL = llama.cpp's IQ4_NL integers -127..113
//   q4k:  w = d * q + m              q4a's codes; d and m coded as in llama.cpp's
//                                    Q4_K: per 256 columns fp16 d, dmin and 6-bit
//                                    codes, d = d256 * sc, m = -dmin256 * mc
//                                    (group size 32, columns a multiple of 256;
//                                    double_quant is always set: the kernels decode
//                                    its parameters per row like a dq stream)
//   q6k:  w = (d * sc) * (q - 32)    llama.cpp's Q6_K: q 6 bits (0..63), per 16
//                                    columns an int8 scale code sc, per 256 columns
//                                    an fp16 d (group size 256, columns a multiple
//                                    of 256; its own kernels, kernels/matmul_q6k.cpp)
//   q5_0, q5_1, q5k, q3k, q2k: llama.cpp's Q5_0, Q5_1, Q5_K, Q3_K and Q2_K
//                                    blocks, byte for byte, back to back in the
//                                    codes section (group size = ggml's block:
//                                    32 for q5_0/q5_1, 256 for the K ones;
//                                    columns a multiple of it). Dequantized as
//                                    ggml's dequantize_row_*; kernels of their
//                                    own (kernels/lowbit.h, matmul_lowbit.cpp)
//   q3:   w = d * (q - 4)            q in 0..7 (signed code q-4 in -4..3)
//   q2:   w = d * q + m              q in 0..3, m near the group minimum
//   (nf4 and iq4nl are the code-book formats: kernels/codebooks.h; the format's
//   name names the table in nibble files)
// Double quantization (QLoRA) of a per-group stream s (scales or mins):
//   s_i = offset + block_scale[i / 256] * int8_code_i, offset = mean(s).
//
// Bits per weight at group size G: q4/nf4/iq4nl 4 + 16/G, q4a 4 + 32/G, q8 8 + 16/G,
// q4k 4.5 (Q4_K's size), q6k 6.5625 (Q6_K's size), q5_0 5.5, q5_1 6, q5k 5.5,
// q3k 3.4375, q2k 2.625 (ggml's sizes), q3 3 + 16/G, q2 2 + 32/G;
// with double quantization the 16-bit stream costs 8 + 32/256 bits per group.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace nibble {

// q5_0 .. q2k: ggml's Q5_0, Q5_1, Q5_K, Q3_K and Q2_K blocks held as they are
// in a GGUF file (kernels/lowbit.h); q3, q2: nibble's own 3- and 2-bit group
// formats (kernels/q2q3.h).
enum class WeightFormat : uint8_t {
    f32,
    f16,
    q8,
    q4,
    q4a,
    nf4,
    iq4nl,
    q4k,
    q6k,
    q5_0,
    q5_1,
    q5k,
    q3k,
    q2k,
    q3,
    q2,
};

const char* format_name(WeightFormat format);
std::optional<WeightFormat> parse_format(const std::string& name);
inline bool is_grouped(WeightFormat f) {
    return f != WeightFormat::f32 && f != WeightFormat::f16;
}
// ggml's blocks held as they are (kernels/lowbit.h).
constexpr bool is_ggml_block_format(WeightFormat f) {
    return f == WeightFormat::q5_0 || f == WeightFormat::q5_1 || f == WeightFormat::q5k ||
           f == WeightFormat::q3k || f == WeightFormat::q2k;
}
inline bool is_4bit(WeightFormat f) {
    return f == WeightFormat::q4 || f == WeightFormat::q4a || f == WeightFormat::nf4 ||
           f == WeightFormat::iq4nl || f == WeightFormat::q4k;
}
// nibble's own 3- and 2-bit group formats, run by kernels of their own
// (kernels/q2q3.h).
constexpr bool is_q2q3(WeightFormat f) {
    return f == WeightFormat::q3 || f == WeightFormat::q2;
}
// Formats whose group scales (and minimums) may be double-quantized.
inline bool supports_double_quant(WeightFormat f) {
    return is_4bit(f) || is_q2q3(f);
}
// Formats with a per-group minimum (w = d q + m).
inline bool has_mins(WeightFormat f) {
    return f == WeightFormat::q4a || f == WeightFormat::q4k || f == WeightFormat::q2;
}

// Double quantization groups the per-group scales in blocks of this many.
inline constexpr int64_t kDoubleQuantBlock = 256;
// Nibbles are packed in chunks of this many columns (see above).
inline constexpr int64_t kNibbleChunk = 32;
// Every section of a blob, and every blob in a file, starts at a multiple of this.
inline constexpr size_t kSectionAlign = 64;

inline size_t align_up(size_t n, size_t a) {
    return (n + a - 1) / a * a;
}

// Where each section of a packed matrix lies, in bytes from the blob start.
struct PackedLayout {
    WeightFormat format = WeightFormat::f32;
    int64_t rows = 0;
    int64_t cols = 0;
    int group_size = 0;  // 0 for f32 / f16
    bool double_quant = false;
    // Rows per interleaved row block of the codes section: 1 row-major, 4
    // interleaved (kernels/interleave.h); the sizes do not depend on it.
    int interleave = 1;

    int64_t groups_per_row = 0;
    int64_t padded_cols = 0;
    size_t codes_offset = 0, codes_bytes = 0;
    size_t scales_offset = 0, scales_bytes = 0;
    size_t mins_offset = 0, mins_bytes = 0;
    size_t dq_offset = 0, dq_bytes = 0;  // [offset, block scales...] per stream
    size_t total_bytes = 0;

    int64_t n_groups() const { return rows * groups_per_row; }
    int64_t dq_blocks() const { return (n_groups() + kDoubleQuantBlock - 1) / kDoubleQuantBlock; }
    size_t row_code_bytes() const { return codes_bytes / size_t(rows > 0 ? rows : 1); }
    double bits_per_weight() const {
        return rows * cols > 0 ? 8.0 * double(total_bytes) / double(rows * cols) : 0.0;
    }
};

// Computes the layout; throws std::invalid_argument for an impossible shape or
// group size (group sizes must be 32, 64, 128 or 256).
PackedLayout make_layout(WeightFormat format, int64_t rows, int64_t cols, int group_size = 0,
                         bool double_quant = false);

// A packed matrix in memory (mmap'd or owned elsewhere): layout plus blob pointer.
struct MatrixView {
    PackedLayout layout;
    const uint8_t* data = nullptr;
};

}  // namespace nibble

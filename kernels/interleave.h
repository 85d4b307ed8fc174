// The interleaved row-block layout of a packed matrix's codes section
// (PackedLayout::interleave = kInterleaveRows, nibble files of version 2).
//
// Rows are taken in blocks of R = 4 consecutive rows: block b holds rows
// 4b .. 4b+n-1 with n = min(4, rows - 4b) (only the last block may be short,
// and it is stored the same way with n rows). A row's codes (its row-major
// bytes, kernels/formats.h) are cut into units of 128 columns (q6k: 256,
// one Q6_K block): U bytes per unit, 64 for the 4-bit formats, 128 for q8,
// 192 for q6k; the last unit of a row is shorter (U_last bytes) when the
// padded row is not a multiple of the unit. Within a block, unit 0 of its n
// rows comes first, then unit 1 of its n rows, and so on:
//
//   block b starts at   4 b * row_code_bytes
//   unit u of row 4b+i  block start + u * n * U + i * (u is the last unit ? U_last : U)
//
// so a kernel that computes the 4 rows of a block together reads one
// sequential range. The codes section keeps its size; the scales, mins and
// dq sections are row-major as before (a block's 4 rows' parameters are
// consecutive there already).
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/formats.h"

namespace nibble {

// Rows per row block of the interleaved layout.
inline constexpr int kInterleaveRows = 4;

// Whether layout l may be stored interleaved: q8, q4, q4a, nf4, iq4nl, q4k and
// q6k matrices of at least 2 rows (the formats whose kernels read the layout).
bool can_interleave(const PackedLayout& l);
// l with interleave = rows_per_block (1 or kInterleaveRows); throws
// std::invalid_argument for another value or a format that cannot be interleaved.
PackedLayout with_interleave(PackedLayout l, int rows_per_block);
// Whether this CPU's kernels are expected to run the interleaved layout faster
// than row-major: the default of repacking a GGUF file's matrices at load
// (LoadOptions::repack, `--repack` / `--no-repack`). The one place that rule
// lives: true with AVX2 (and so AVX-512), false elsewhere for now
// (kernels/interleave.cpp says why).
bool cpu_prefers_interleaved();
// Bytes of one full unit of one row (U above).
size_t interleave_unit_bytes(const PackedLayout& l);
// Byte offset, in the codes section, of unit u of row r (any interleave).
size_t interleaved_unit_offset(const PackedLayout& l, int64_t r, int64_t u);
// Bytes from one full unit of row r to the next (U row-major, n U in an
// n-row block): a kernel reads a row's full units in place from
// interleaved_unit_offset(l, r, 0) on with this stride.
size_t interleaved_unit_stride(const PackedLayout& l, int64_t r);

// Rewrites the codes section of a blob from layout `from` to layout `to`
// (same shape and format, interleave 1 or 4 each); the other sections are
// copied. src and dst are distinct blobs of from.total_bytes bytes.
void convert_interleave(const PackedLayout& from, const uint8_t* src, const PackedLayout& to,
                        uint8_t* dst);

namespace kernels {
// Row r's codes in row-major order: a pointer into the blob when w is
// row-major, else gathered into buf (row_code_bytes() bytes). Generic code,
// callable from every instruction set's kernels.
const uint8_t* row_codes(const MatrixView& w, int64_t r, uint8_t* buf);
// Row r's full units read in place, in either layout: unit u at first + u *
// stride (interleaved_unit_offset and interleaved_unit_stride).
struct RowUnits {
    const uint8_t* first;
    size_t stride;
};
RowUnits row_units(const MatrixView& w, int64_t r);
// Row r's unit u read in place, in either layout, the short last unit of a
// row included (interleaved_unit_offset): the portable kernels' way in.
const uint8_t* unit_codes(const MatrixView& w, int64_t r, int64_t u);
// Per-thread, grow-only, 64-byte aligned scratch for gathered codes (slot 0..1).
uint8_t* code_scratch(int slot, size_t bytes);
}  // namespace kernels

}  // namespace nibble

// GGML tensor types -> nibble formats (the conversions of GGUF import).
//
// Held exactly (same codes, same fp16 parameters, only the sections reordered):
//   Q4_0 -> q4 g32, Q4_1 -> q4a g32, Q8_0 -> q8 g32, IQ4_NL -> iq4nl g32 (the
//   same table), Q4_K -> q4k (the same d, dmin and 6-bit scale/min codes),
//   Q6_K -> q6k (the same bytes: ql, qh | scales, d), Q5_0 -> q5_0, Q5_1 ->
//   q5_1, Q5_K -> q5k, Q3_K -> q3k, Q2_K -> q2k (the same blocks, kernels/lowbit.h),
//   BF16 -> f16 when every value fits f16 exactly, else f32; F32 and F16 are
//   used in place.
// Same codes, products of scales rounded to fp16 (relative error <= 2^-11 per
// parameter in fp16's normal range, absolute <= 2^-25 below it):
//   IQ4_XS -> iq4nl g32: scale d*(ls - 32); |error| <= 2^-11 |w|
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "engine/model.h"
#include "models/source_tensor.h"

namespace nibble {

// One line saying what the import does with a GGML type ("Q4_K -> q4k, ..."),
// or "" for a type nibble cannot import.
std::string ggml_conversion_note(uint32_t ggml_type);

// A GGUF tensor of `ggml_type` as a source tensor (models/source_tensor.h):
// F32, F16 and BF16 are dense values, the other types GGML blocks.
SourceTensor ggml_source_tensor(const std::string& name, uint32_t ggml_type, int64_t rows,
                                int64_t cols, const uint8_t* data, size_t n_bytes);

// The nibble layout a rows x cols tensor of a GGML quantized type converts to.
// Throws std::runtime_error("tensor NAME has type Q2_K, which ...") for a type
// without conversion, or a width that is not a multiple of its block.
PackedLayout ggml_blocks_layout(const std::string& name, uint32_t ggml_type, int64_t rows,
                                int64_t cols);

// Converts rows x cols of a GGML quantized type at `data` (rows * cols /
// block_size blocks) into a nibble tensor owned by `model` (checked as above).
// With `repack`, a matrix that can be interleaved (kernels/interleave.h:
// can_interleave) has its codes written straight into interleaved row blocks
// of kInterleaveRows rows; the other sections and every other matrix are as
// without it. With `source` (the mapping `data` lies in), the source rows'
// pages are released (MappedFile::release) slice by slice as they are
// converted.
Tensor import_ggml_blocks(Model& model, const std::string& name, uint32_t ggml_type, int64_t rows,
                          int64_t cols, const uint8_t* data, bool repack = false,
                          const MappedFile* source = nullptr);

}  // namespace nibble

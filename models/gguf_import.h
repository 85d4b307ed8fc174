// GGML tensor types -> nibble formats (the conversions of GGUF import).
//
// Held exactly (same codes, same fp16 parameters, only the sections reordered):
//   Q4_0 -> q4 g32, Q4_1 -> q4a g32, Q8_0 -> q8 g32, IQ4_NL -> iq4nl g32 (the
//   same table), Q5_0 -> q8 g32 (code q - 16), Q4_K -> q4k (the same d, dmin and
//   6-bit scale/min codes), Q6_K -> q6k (the same bytes: ql, qh | scales, d),
//   BF16 -> f16 when every value fits f16 exactly, else f32; F32 and F16 are
//   used in place.
// Same codes, products of scales rounded to fp16 (relative error <= 2^-11 per
// parameter in fp16's normal range, absolute <= 2^-25 below it):
//   IQ4_XS -> iq4nl g32: scale d*(ls - 32); |error| <= 2^-11 |w|
// Requantized from the exactly dequantized weights (no nibble format holds 5-bit
// codes with these scales):
//   Q5_1, Q5_K -> q8 g32 with scale s = max|w| / 127 of each 32 rounded
//   up to fp16 and codes round(w / s): |error| <= s / 2.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "engine/model.h"
#include "models/mapped_file.h"

namespace nibble {

// One line saying what the import does with a GGML type ("Q4_K -> q4k, ..."),
// or "" for a type nibble cannot import.
std::string ggml_conversion_note(uint32_t ggml_type);

// Converts a rows x cols GGML tensor at `data` (rows * cols / block_size blocks)
// into a nibble tensor owned by `model`. F32/F16 are returned as views of `data`
// when it is suitably aligned. With need_f32 the result is always f32 (norms).
// Throws std::runtime_error("tensor NAME has type Q2_K, which ...") for a type
// without conversion.
Tensor import_ggml_tensor(Model& model, const std::string& name, uint32_t ggml_type, int64_t rows,
                          int64_t cols, const uint8_t* data, bool need_f32);

// The same tensor, deferred (Tensor::deferred): the checks and the layout now
// (BF16's f16 test reads the data, then releases its pages), the conversion
// when fetched, `n_bytes` at `data` in `file` released by release_source().
// Norms (need_f32) are imported at once into `model`.
Tensor defer_ggml_tensor(Model& model, const std::shared_ptr<const MappedFile>& file,
                         const std::string& name, uint32_t type, int64_t rows, int64_t cols,
                         const uint8_t* data, size_t n_bytes, bool need_f32);

}  // namespace nibble

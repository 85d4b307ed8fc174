// Reference quantizer: FP32 matrix -> packed blob in the layout of formats.h.
//
// Every grouped format is quantized in two passes:
//   1. per group, choose the real-valued parameters (scale d, and the offset m for
//      q4a) that minimise the group's squared error, evaluating every candidate
//      with fp16-rounded parameters (see quantize_group.h for the rules);
//   2. store the parameter streams (fp16, or double-quantized int8 codes), read
//      them back exactly as the kernels do, and choose every code as the nearest
//      representable value for the *decoded* parameters.
// Pass 2 makes double quantization cost as little as possible: codes absorb part
// of the scale error. Padded columns of a short final group are quantized as
// weights of value 0 (exact zero for q8, q4, nf4; the code nearest 0 for q4a).
// Bytes between sections are zero.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/formats.h"

namespace nibble {

// How the per-group scale is chosen.
enum class ScaleRule : uint8_t {
    search,     // least squared error over candidate scales (default, every format)
    simple,     // textbook rule: q4 max|w|/7, q4a min/max, nf4 absmax, q8 absmax/127
    q4_minus8,  // q4: the signed largest-magnitude value maps to -8 (llama.cpp Q4_0);
                // other formats: same as simple
};

struct QuantizeOptions {
    ScaleRule rule = ScaleRule::search;
};

// Quantizes src[rows][cols] (row-major) into dst[0..layout.total_bytes).
// Throws std::runtime_error if a weight is not finite or a group parameter does
// not fit in fp16.
// q6k (kernels/quantize_q6k.cpp): round to nearest, ggml Q6_K's scale coding
// without its search; |w - w'| <= d |sc_j| / 2 in sub-block j unless a weight
// rounds past the 6-bit range. Called by quantize_matrix for a q6k layout.
void quantize_q6k_matrix(const float* src, const PackedLayout& layout, uint8_t* dst);

void quantize_matrix(const float* src, const PackedLayout& layout, uint8_t* dst,
                     const QuantizeOptions& options = {});

// Pass 2 alone, for a grouped format: stores the given real-valued group
// parameters (index row * groups_per_row + g; `mins` for q4a only, else empty)
// as fp16 or double-quantized, then gives every weight of src its nearest code
// for the decoded parameters. quantize_matrix is fit + this. Throws
// std::invalid_argument if the parameter counts do not match the layout.
void quantize_matrix_with_params(const float* src, const PackedLayout& layout,
                                 const std::vector<float>& scales, const std::vector<float>& mins,
                                 uint8_t* dst);

// Same, returning a new blob of layout.total_bytes.
std::vector<uint8_t> quantize_matrix(const float* src, const PackedLayout& layout,
                                     const QuantizeOptions& options = {});

// Bits per weight saved by double quantization for this shape and format:
// bpw(without) - bpw(with), from the exact layouts (alignment included).
double double_quant_bits_saved(const PackedLayout& layout);

}  // namespace nibble

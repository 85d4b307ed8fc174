// AutoGPTQ and AutoAWQ 4-bit checkpoints -> nibble q4 / q4a, codes unchanged.
//
// Packing (../shared/docs/FACTS.md): GPTQ qweight int32 [in/8, out], 8
// consecutive input rows per int32, lowest nibble first; qzeros int32
// [groups, out/8] packed along out, stored value = zero - 1 ("gptq"; "gptq_v2"
// stores the zero); scales fp16 [groups, out]; g_idx int32 [in], the group of
// each input column. AWQ (GEMM): qweight int32 [in, out/8] and qzeros
// [groups, out/8] packed along out, nibble k holding column 8j + [0,2,4,6,1,3,5,7][k],
// zeros stored as is; scales fp16 [groups, out]. Both: w = scale * (q - zero).
//
// Import: every group's codes and fp16 scale are kept. When every zero is 8
// (symmetric GPTQ) the tensor is q4, w = d * (q - 8), exactly. Otherwise q4a,
// w = d * q + m with m = -d * zero rounded to fp16 (|error| <= 2^-11 |d * zero|,
// exact when d * zero fits fp16's 11 bits).
//
// Act-order (g_idx not the plain i / group_size): the columns are stably sorted
// by group, so each group is group_size contiguous stored columns, and the
// permutation is kept as the tensor's column_order (engine/model.h); the forward
// pass gathers the activations into that order. No kernel change, no
// re-rounding.
#pragma once
#include <cstdint>
#include <string>

#include "engine/model.h"
#include "models/safetensors.h"

namespace nibble {

struct PackedQuantConfig {
    enum class Method : uint8_t { gptq, awq };
    Method method = Method::gptq;
    int group_size = 128;
    bool zeros_minus_one = true;  // GPTQ "gptq" checkpoint format (not "gptq_v2"); AWQ: false
};

// One linear layer W[rows = out][cols = in]. Throws std::runtime_error("tensor
// NAME: <problem>") for wrong dtypes or shapes, g_idx groups that are not
// group_size columns each, or a group size nibble cannot hold (32..256).
Tensor import_packed_4bit(Model& model, const std::string& name, const PackedQuantConfig& config,
                          int64_t rows, int64_t cols, const SafetensorsEntry& qweight,
                          const SafetensorsEntry& qzeros, const SafetensorsEntry& scales,
                          const SafetensorsEntry* g_idx);

}  // namespace nibble

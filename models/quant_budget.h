// Size budget for `nibble quantize --target-size / --bpw`: each linear layer's
// format is chosen from a ladder (q2, q3, q4, q8 at the recipe's group size and
// double-quantization setting) by a greedy allocation. Every layer starts in
// the smallest format; the upgrade with the largest reduction of output error
// per added byte is taken while it fits in the budget, until none fits.
//
// The error of a layer in a format is the calibration-weighted squared error
// of its round-to-nearest quantization, sum_{r,c} E[x_c^2] (w_rc - w'_rc)^2,
// with E[x_c^2] the mean square of input channel c over the calibration tokens
// in the full-precision model (the diagonal of the layer's Hessian): the
// expected squared output error when the weight errors are uncorrelated.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/quant_block.h"
#include "models/quantize_model.h"

namespace nibble {

struct BudgetTensor {
    std::string name;
    int64_t n_weights = 0;
    std::vector<WeightFormat> formats;  // the ladder
    std::vector<uint64_t> bytes;        // blob bytes in each format
    std::vector<double> errors;         // weighted squared error in each format
    size_t chosen = 0;                  // index into formats
};

struct BudgetPlan {
    std::vector<BudgetTensor> tensors;  // the linear layers, model order
    uint64_t fixed_bytes = 0;           // everything else: other tensors, header, tokenizer
    uint64_t predicted_bytes = 0;       // fixed_bytes + the chosen blobs
    uint64_t target_bytes = 0;
};

// Chooses the formats of `recipe`'s linear layers (blk.*, 2-D) for a file of
// at most target_bytes (overhead_bytes: header and tokenizer, estimated by the
// caller). Throws std::invalid_argument when even the smallest formats do not
// fit. Calibration weights from a full-precision pass over calib (LLaMA-style
// models; others weigh every channel 1).
BudgetPlan plan_budget(const Model& source, const QuantizeRecipe& recipe,
                       const CalibSequences& calib, uint64_t target_bytes, uint64_t overhead_bytes);

// The recipe with one --keep rule per linear layer for the plan's choices.
QuantizeRecipe budget_recipe(const QuantizeRecipe& recipe, const BudgetPlan& plan);

// The plan as a table (tensor, format, bits per weight, relative error), with
// the predicted size.
std::string format_budget(const BudgetPlan& plan);

}  // namespace nibble

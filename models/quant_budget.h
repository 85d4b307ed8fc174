// Size budget for `nibble quantize --target-size / --bpw`: each linear layer's
// format is chosen from a ladder (q2, q3, q4, q8 at the recipe's group size,
// q2 and q3 also at groups of 64 and 128 columns when those are larger; the
// recipe's double-quantization setting) by a greedy allocation. Every layer starts in
// the smallest format; the upgrade with the largest reduction of error per
// added byte is taken while it fits in the budget, until none fits.
//
// The error of a layer in a format, measured on the calibration tokens with
// that layer alone rounded (RTN) and everything else in full precision:
//   models of at most 2^26 weights: the mean KL divergence of the next-token
//     distribution from the full-precision one (on the first calibration
//     sequences holding at most 2048 tokens; every block held in FP32);
//   larger models: the squared change of the layer's sub-block output (the
//     attention or FFN contribution to the residual stream) relative to the
//     residual stream's squared norm at the block's input (one block at a time).
// The errors of the layers are assumed to add up.
//
// A whole-file budget (--target-size) on a model with the end-to-end measure
// also chooses the embedding's and the classifier's formats from the same
// ladder (their errors measured the same way), unless they share one matrix or
// a --keep rule names either; --bpw and larger models keep the recipe's.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/quant_block.h"
#include "models/quantize_model.h"

namespace nibble {

// One step of the ladder: a format and its group size.
struct BudgetRung {
    WeightFormat format = WeightFormat::q2;
    int group_size = 32;
};

// "q2:128": the --keep spelling of a rung.
std::string rung_name(const BudgetRung& r);

struct BudgetTensor {
    std::string name;
    bool linear = true;  // a blk.* matrix (else the embedding or the classifier)
    int64_t n_weights = 0;
    std::vector<BudgetRung> rungs;  // the ladder, by size (smallest first)
    std::vector<uint64_t> bytes;    // blob bytes in each rung
    std::vector<double> errors;     // weighted squared error in each rung
    size_t chosen = 0;              // index into rungs
};

struct BudgetPlan {
    std::vector<BudgetTensor> tensors;  // the linear layers, model order
    uint64_t fixed_bytes = 0;           // everything else: other tensors, header, tokenizer
    uint64_t predicted_bytes = 0;       // fixed_bytes + the chosen blobs
    uint64_t target_bytes = 0;          // the file's budget
    int64_t linear_weights = 0;         // weights of the linear layers
};

// The budget: a file size, or bits per weight of the linear layers.
struct BudgetTarget {
    uint64_t file_bytes = 0;  // whole file (when linear_bpw is 0)
    double linear_bpw = 0.0;  // average over the linear layers' weights (blobs included)
};

// Chooses the formats of `recipe`'s linear layers (blk.*, 2-D) for the
// target (overhead_bytes: header and tokenizer, estimated by the caller).
// Throws std::invalid_argument when even the smallest formats do not fit.
// Errors from the calibration tokens (LLaMA-style models; others: relative
// squared weight error).
BudgetPlan plan_budget(const Model& source, const QuantizeRecipe& recipe,
                       const CalibSequences& calib, const BudgetTarget& target,
                       uint64_t overhead_bytes);

// The recipe with one --keep rule per linear layer for the plan's choices.
QuantizeRecipe budget_recipe(const QuantizeRecipe& recipe, const BudgetPlan& plan);

// The plan as a table (tensor, format, bits per weight, relative error), with
// the predicted size.
std::string format_budget(const BudgetPlan& plan);

}  // namespace nibble

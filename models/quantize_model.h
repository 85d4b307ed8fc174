// The quantization pipeline: a loaded model (any format) -> a new model whose
// tensors are owned blobs in the formats a recipe chooses.
//
// Per tensor: the source is dequantized row by row to FP32 (dequantize_row handles
// every format), then quantized with quantize_matrix into the target layout. A
// tensor whose target layout equals its source layout is copied unchanged.
// Norm vectors always stay f32. A classifier that shares the embedding stays
// shared when both get the same format.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "engine/model.h"
#include "kernels/quantize.h"

namespace nibble {

// "--keep PATTERN=FORMAT[:GROUP]": tensors whose name matches PATTERN get
// FORMAT (with groups of GROUP columns, else the recipe's group size). PATTERN
// is a glob over the whole name ('*' any run of characters, '?' one character,
// everything else literal), or an ECMAScript regex (whole-name match) when
// written "re:REGEX".
struct KeepRule {
    std::string pattern;
    WeightFormat format = WeightFormat::q8;
    int group_size = 0;  // 0: the recipe's
    std::regex regex;
    bool matches(const std::string& name) const { return std::regex_match(name, regex); }
};

// Parses "PATTERN=FORMAT[:GROUP]"; throws std::invalid_argument("--keep: ...").
KeepRule parse_keep_rule(const std::string& spec);

struct QuantizeRecipe {
    WeightFormat format = WeightFormat::q4;  // the linear layers
    int group_size = 32;                     // for every grouped format
    bool double_quant = false;               // 4-bit formats only
    ScaleRule rule = ScaleRule::search;
    // When the main format is 4-bit: token_embd.weight and output.weight get
    // q8 (the default recipe, chosen by measurement: docs/QUALITY.md).
    bool q8_embedding_and_output = true;
    // User overrides; the last matching rule wins and beats the default above.
    std::vector<KeepRule> keep;
};

// Throws std::invalid_argument("--group-size: ...") for an unusable recipe.
void validate_recipe(const QuantizeRecipe& recipe);

// The target layout of one tensor under a recipe (norms: f32).
PackedLayout target_layout(const QuantizeRecipe& recipe, const Tensor& source);

struct TensorReport {
    std::string name;
    PackedLayout layout;
    double rel_rms = 0.0;  // sqrt(sum (w - w')^2 / sum w^2) against the source weights
    double mse = 0.0;
    bool shared = false;  // output sharing the embedding's blob (not stored again)
};

struct QuantizeResult {
    Model model;
    std::vector<TensorReport> tensors;  // canonical order, output included
    size_t weight_bytes = 0;            // distinct blobs
    int64_t parameters = 0;             // distinct weights
    size_t linear_bytes = 0;            // blk.* matrices (not norms)
    int64_t linear_parameters = 0;
    double bits_per_weight() const {
        return parameters ? 8.0 * double(weight_bytes) / double(parameters) : 0.0;
    }
    double linear_bits_per_weight() const {
        return linear_parameters ? 8.0 * double(linear_bytes) / double(linear_parameters) : 0.0;
    }
};

// Target layouts of every tensor in canonical order (Model::tensors()), and
// whether the classifier keeps sharing the embedding's blob. Throws
// std::invalid_argument for a recipe problem.
struct QuantizePlan {
    std::vector<const Tensor*> sources;
    std::vector<PackedLayout> layouts;
    bool shared = false;
};
QuantizePlan plan_quantization(const Model& source, const QuantizeRecipe& recipe);

// Quantizes (or copies, when the layout is unchanged) one tensor into dst with
// RTN and measures its error against the source weights.
TensorReport quantize_tensor(const Tensor& src, const PackedLayout& layout, uint8_t* dst,
                             const QuantizeOptions& options);

// Adds a tensor's bytes and weights to the totals (not when shared).
void add_to_totals(QuantizeResult& result, const TensorReport& tensor);
// The report of an output that shares the embedding (result.tensors[0]).
TensorReport shared_report(const QuantizeResult& result, const std::string& name);

// Called after each tensor: done of total, and the tensor's name.
using QuantizeProgress = std::function<void(int done, int total, const std::string& name)>;

// Quantizes `source` per `recipe`. Throws std::invalid_argument for a recipe
// problem (a --keep pattern matching no tensor, a bad group size) and
// std::runtime_error for a weight that cannot be quantized. The tokenizer and
// hyperparameters are carried over.
QuantizeResult quantize_model(const Model& source, const QuantizeRecipe& recipe,
                              const QuantizeProgress& progress = nullptr);

// quantize_matrix, with slices of rows quantized on the OpenMP threads when the
// matrix is large and not double-quantized (every group is then independent, so
// the bytes are exactly those of quantize_matrix).
void quantize_matrix_parallel(const float* w, const PackedLayout& layout, uint8_t* dst,
                              const QuantizeOptions& options = {});

// Same, streaming: each tensor is quantized into one temporary buffer and
// written to the nibble file `path` (with `tokenizer_proto`) before the next, so
// only the mapped source and one tensor are in memory. The returned result has
// the report and totals but no model.
QuantizeResult quantize_model_to_file(const Model& source, const QuantizeRecipe& recipe,
                                      const std::string& path, const std::string& tokenizer_proto,
                                      const QuantizeProgress& progress = nullptr);

// The per-tensor table and totals, as printed by `nibble quantize`.
std::string format_report(const QuantizeResult& result);

}  // namespace nibble

// Calibrated quantization of a whole model (GPTQ, AWQ, or both), block by block.
//
// The full-precision model runs on calibration sequences; block l receives the
// hidden states produced by the already quantized blocks 0..l-1, and within a
// block each linear layer's input is computed with the layers before it
// already quantized (q, k, v -> o; gate, up -> down). Per block:
//   AWQ: scale searches on the block output (attn_norm -> q,k,v on the
//     attention output; v -> o when there is no GQA; ffn_norm -> gate,up on the
//     FFN output; up -> down), folded into the norm weights and rows (see
//     quant_awq.h), then a clipping search per group (not for q and k).
//   GPTQ: each linear layer from the Hessian of its captured inputs
//     (quant_gptq.h).
//   AWQ+GPTQ: AWQ's scales, then GPTQ instead of the clipping search.
// GPTQ act-order walks the columns of the layers sharing an input (q, k, v;
// gate, up) in one order, from their common Hessian; without static groups the
// layers are stored in that order with it as their column order (the runtime
// gathers the input once for all of them, engine/model.h); a layer too narrow
// for a stored order (column_order_storable) gets static groups instead.
// Memory: one block's weights in FP32, the calibration activations
// ([tokens][hidden] a few times), and the mapped source; every tensor is
// written to the output file as soon as it is quantized. The embedding,
// classifier and norms follow the recipe as with RTN.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "models/quant_block.h"
#include "models/quant_gptq.h"
#include "models/quantize_model.h"
#include "tokenizer/tokenizer.h"

namespace nibble {

enum class QuantMethod { rtn, gptq, awq, awq_gptq };
std::optional<QuantMethod> parse_method(const std::string& name);  // rtn, gptq, awq, awq+gptq
const char* method_name(QuantMethod method);

struct CalibratedOptions {
    QuantMethod method = QuantMethod::gptq;
    GptqOptions gptq;
    // AWQ: the block-output losses of the scale searches are measured on the
    // first whole calibration sequences holding at most this many tokens
    // (the statistics x_mean use every token).
    int64_t awq_search_tokens = 4096;
    // AWQ: search and fold the scales for the recipe's formats, then store
    // every linear layer in f32 (unrounded): checks that folding keeps the
    // model's function.
    bool fold_only = false;
    // Called with each linear layer's quantized values as the quantizer holds
    // them (on the grid of its fp16 parameters, columns in the stored order)
    // and the stored column order (empty: the original order), for tests.
    std::function<void(const std::string& name, const QuantizedMatrix& q,
                       const std::vector<int32_t>& column_order)>
        on_matrix;
};

// Calibration sequences from a text: its documents (split_documents), each
// encoded with BOS and cut to `context` tokens, taken in order until
// `max_tokens` tokens (the last one cut to fit). Throws std::runtime_error
// if the text has no tokens.
CalibSequences calibration_sequences(const std::string& text, const Tokenizer& tokenizer,
                                     int64_t max_tokens, int context);

// Quantizes `source` per `recipe` with the calibrated method into the nibble
// file `path`. Throws std::invalid_argument for a recipe problem and
// std::runtime_error for a failure (named after the tensor).
QuantizeResult quantize_calibrated_to_file(const Model& source, const QuantizeRecipe& recipe,
                                           const CalibratedOptions& options,
                                           const CalibSequences& calib, const std::string& path,
                                           const std::string& tokenizer_proto,
                                           const QuantizeProgress& progress = nullptr);

}  // namespace nibble

// Synthetic models for speed measurement: the exact tensor shapes of a real
// architecture, filled with seeded random weights and written straight into a
// nibble file, tensor by tensor, without ever holding the model in memory.
//
// Weights: every matrix element is drawn from N(0, stddev^2) (stddev 0.02, the
// usual initialisation of LLaMA-style models); norm weights are 1.0. The random
// stream of row r of tensor t depends only on (seed, t, r), so the file is the
// same whatever the thread count or chunk size.
//
// Peak memory: one tensor's packed blob (the writer takes whole blobs) plus one
// chunk of about `chunk_weights` FP32 weights (whole rows) being generated and quantized. For a 7B
// model in the default recipe the largest blob is the q8 embedding, 32000 x 4096
// (~135 MB). Double quantization fits its second-level parameters over a whole
// tensor, so with --double-quant each tensor is generated in one piece
// (largest: 14336 x 4096 FP32 = 235 MB for mistral-7b).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/model.h"
#include "kernels/quantize.h"
#include "models/nibble_file.h"

namespace nibble {

// A named architecture: hyperparameters and whether the classifier shares the
// embedding (only the llama2.c TinyStories models do).
struct SynthShape {
    std::string name;
    ModelConfig config;
    bool shared_output = false;
};

// "llama2-7b", "mistral-7b", "tinyllama-1.1b", "stories15m".
const std::vector<SynthShape>& synth_shapes();
// Throws std::invalid_argument("--shape: ...") for an unknown name.
const SynthShape& find_synth_shape(const std::string& name);

struct SynthOptions {
    WeightFormat format = WeightFormat::q4;  // linear layers
    int group_size = 32;                     // every grouped format
    bool double_quant = false;               // 4-bit formats only
    // 4-bit main format: embedding and output in q8 (the project's default recipe).
    bool q8_embedding_and_output = true;
    // A fast rule: `search` costs ~0.2 s per million weights (~20 min for 7B).
    ScaleRule rule = ScaleRule::q4_minus8;
    uint64_t seed = 1;
    float stddev = 0.02f;
    // Weights generated and quantized at a time (whole rows, at least one): 1M
    // is 256 rows of a 4096-wide matrix, 4 MB of FP32.
    int64_t chunk_weights = int64_t(1) << 20;
};

// Throws std::invalid_argument("--group-size: ..." / "--double-quant: ...").
void validate_synth_options(const SynthOptions& options);

// Every tensor of the file in the writer's order, with its packed layout.
std::vector<NibbleTensorDecl> synth_tensor_decls(const SynthShape& shape,
                                                 const SynthOptions& options);

// Fills out[0..n) with the N(0, stddev^2) values of row `row` of tensor number
// `tensor` (its index in synth_tensor_decls).
void synth_random_row(uint64_t seed, uint64_t tensor, uint64_t row, float stddev, float* out,
                      int64_t n);

// Called after each tensor: bytes written so far, total bytes, tensor name.
using SynthProgress =
    std::function<void(uint64_t done_bytes, uint64_t total_bytes, const std::string& name)>;

struct SynthResult {
    uint64_t file_bytes = 0;
    int64_t parameters = 0;  // distinct weights (a shared output counted once)
};

// Writes the model to `path` (through "<path>.tmp"). `tokenizer_proto` is a
// serialized SentencePiece ModelProto, or empty for no tokenizer.
SynthResult write_synth_model(const SynthShape& shape, const SynthOptions& options,
                              const std::string& tokenizer_proto, const std::string& path,
                              const SynthProgress& progress = nullptr);

}  // namespace nibble

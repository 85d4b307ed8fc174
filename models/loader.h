// Opening a model file of any supported format, detected from its content.
#pragma once
#include <string>

#include "engine/model.h"

namespace nibble {

struct LoadOptions {
    // GGUF and Hugging Face matrices: checked and laid out, but their bytes left
    // in the mapped file until fetched (Tensor::deferred, fetch_tensor()), so a
    // streaming consumer (`nibble quantize`, `nibble info`) holds one converted
    // tensor at a time. Such a model cannot run the forward pass.
    bool defer_conversion = false;
};

// Formats: llama2.c checkpoint (legacy v0), llama2.c runq Q8_0 ("ak42"), GGUF v3,
// nibble model files, Hugging Face checkpoints (a directory, or a .safetensors
// file with config.json next to it). Throws std::runtime_error("<path>: <problem>").
Model load_model(const std::string& path, const LoadOptions& options = {});

}  // namespace nibble

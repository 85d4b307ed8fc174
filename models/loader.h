// Opening a model file of any supported format, detected from its content.
#pragma once
#include <string>

#include "engine/model.h"

namespace nibble {

// Formats: llama2.c checkpoint (legacy v0), llama2.c runq Q8_0 ("ak42"), GGUF v3,
// nibble model files, Hugging Face checkpoints (a directory, or a .safetensors
// file with config.json next to it). Throws std::runtime_error("<path>: <problem>").
Model load_model(const std::string& path);

}  // namespace nibble

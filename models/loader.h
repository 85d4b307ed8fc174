// Opening a model file of any supported format, detected from its content.
#pragma once
#include <optional>
#include <string>

#include "engine/model.h"

namespace nibble {

struct LoadOptions {
    // GGUF and Hugging Face matrices: checked and laid out, but their bytes left
    // in the mapped file until fetched (Tensor::deferred, fetch_tensor()), so a
    // streaming consumer (`nibble quantize`, `nibble info`) holds one converted
    // tensor at a time. Such a model cannot run the forward pass.
    bool defer_conversion = false;
    // GGUF matrices that can be interleaved (kernels/interleave.h): converted
    // tensor by tensor into interleaved row blocks instead of row-major, each
    // source tensor's pages released once converted. nullopt: as the CPU
    // prefers (cpu_prefers_interleaved()). Ignored with defer_conversion and
    // for other file formats.
    std::optional<bool> repack = std::nullopt;
};

// Formats: llama2.c checkpoint (legacy v0), llama2.c runq Q8_0 ("ak42"), GGUF v3,
// nibble model files, Hugging Face checkpoints (a directory, or a .safetensors
// file with config.json next to it). Throws std::runtime_error("<path>: <problem>").
Model load_model(const std::string& path, const LoadOptions& options = {});

}  // namespace nibble

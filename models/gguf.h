// GGUF v3 model files (F32, F16, BF16 and quantized tensors) with their embedded vocabulary.
#pragma once
#include <memory>

#include "engine/model.h"
#include "models/mapped_file.h"

namespace nibble {

// Builds a Model from a GGUF file; F32/F16 tensors are used in place from the
// mapping, quantized ones converted (models/gguf_import.h); with `defer`, the
// matrices are converted only when fetched (Tensor::deferred).
Model load_gguf(const std::shared_ptr<MappedFile>& file, bool defer = false);

}  // namespace nibble

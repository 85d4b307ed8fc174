// GGUF v3 model files (F32, F16, BF16 and quantized tensors) with their embedded vocabulary.
#pragma once
#include <memory>

#include "engine/model.h"
#include "models/mapped_file.h"

namespace nibble {

// Builds a Model from a GGUF file; F32/F16 tensors are used in place from the
// mapping, quantized ones converted (models/gguf_import.h); with `defer`, the
// matrices are converted only when fetched (Tensor::deferred); with `repack`
// (and not `defer`) those that can be interleaved are converted into
// interleaved row blocks (models/gguf_import.h).
Model load_gguf(const std::shared_ptr<MappedFile>& file, bool defer = false, bool repack = false);

}  // namespace nibble

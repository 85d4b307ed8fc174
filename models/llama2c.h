// llama2.c checkpoints: the legacy fp32 format (run.c) and the Q8_0 runq format.
#pragma once
#include <string>

#include "engine/model.h"
#include "models/mapped_file.h"

namespace nibble {

// fp32 checkpoint; the weights stay in the mapping (no copy).
Model load_llama2c(const std::shared_ptr<MappedFile>& file);
// runq "ak42" version 2 checkpoint; int8 groups are dequantized to f32 on load.
Model load_llama2c_q80(const std::shared_ptr<MappedFile>& file);

}  // namespace nibble

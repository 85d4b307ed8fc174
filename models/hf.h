// Hugging Face LLaMA / Mistral checkpoints: a directory with config.json,
// model.safetensors (or shards listed in model.safetensors.index.json) with
// F32, F16 or BF16 tensors, and tokenizer.model, with BOS/EOS and the chat
// template of generation_config.json / tokenizer_config.json (hf_tokenizer.h).
#pragma once
#include <string>

#include "engine/model.h"

namespace nibble {

// `path` is the directory, or a .safetensors file inside it. Tensors are viewed
// in place when F32/F16 and aligned, else converted (BF16: exactly, to f32 or
// f16). Q/K rows stay in Hugging Face's order, so rope_style = halves.
// Throws std::runtime_error("<path>: <problem>") naming an unsupported
// architecture, a missing file or tensor, or a bad value.
// With `defer`, F32/F16/BF16 matrices are read only when fetched
// (Tensor::deferred); GPTQ/AWQ layers are converted at once.
Model load_hf_model(const std::string& path, bool defer = false);

}  // namespace nibble

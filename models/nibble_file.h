// nibble's own model file: a safetensors-compatible container of packed tensors
// with hyperparameters and tokenizer (specified in docs/FORMAT.md).
#pragma once
#include <memory>
#include <string>

#include "engine/mapped_file.h"
#include "engine/model.h"

namespace nibble {

bool is_nibble_file(const MappedFile& file);
// Tensors point into the mapping; nothing is copied.
Model load_nibble_file(std::shared_ptr<MappedFile> file);
// Writes `model` (all tensors in their current formats) and its tokenizer.
void save_nibble_file(const Model& model, const std::string& path);

}  // namespace nibble

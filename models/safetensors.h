// A safetensors file's header: uint64 LE header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}},
// then the data section. Shared by nibble files (a safetensors superset),
// Hugging Face checkpoints and GPTQ/AWQ checkpoints.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/mapped_file.h"

namespace nibble {

struct SafetensorsEntry {
    std::string dtype;  // "F32", "F16", "BF16", "I32", "U8", ...
    std::vector<uint64_t> shape;
    uint64_t begin = 0, end = 0;  // relative to the data section
    const uint8_t* data = nullptr;

    uint64_t n_elements() const;
};

class SafetensorsFile {
  public:
    // Largest header accepted (the safetensors reference uses the same bound).
    static constexpr uint64_t kMaxHeaderBytes = 100u << 20;

    // Parses and checks the header: length within the file, valid JSON object,
    // every entry's dtype a string, shape non-negative integers, offsets inside
    // the data section. Throws std::runtime_error("<path>: <problem>").
    static SafetensorsFile parse(const std::shared_ptr<MappedFile>& file);

    const std::string& path() const { return file_->path(); }
    const std::shared_ptr<MappedFile>& file() const { return file_; }
    uint64_t header_bytes() const { return header_bytes_; }
    const uint8_t* data_section() const { return file_->data() + 8 + header_bytes_; }
    uint64_t data_bytes() const { return file_->size() - 8 - header_bytes_; }
    // "__metadata__" (an empty object when absent) and the tensor entries.
    const nlohmann::json& metadata() const { return metadata_; }
    const std::map<std::string, SafetensorsEntry>& tensors() const { return tensors_; }
    const SafetensorsEntry* find(const std::string& name) const;

  private:
    std::shared_ptr<MappedFile> file_;
    uint64_t header_bytes_ = 0;
    nlohmann::json metadata_ = nlohmann::json::object();
    std::map<std::string, SafetensorsEntry> tensors_;
};

// True when the first bytes look like a safetensors header (a plausible length
// followed by '{'); detection only, parse() checks everything.
bool looks_like_safetensors(const MappedFile& file);

// Bytes per element of a dtype, 0 for an unknown one.
size_t safetensors_dtype_size(const std::string& dtype);

}  // namespace nibble

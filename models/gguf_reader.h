// A generic GGUF v3 parser: header, typed metadata (KV pairs) and tensor infos,
// read from a memory-mapped file with every length, count and offset checked.
//
// File layout (all little-endian):
//   "GGUF", uint32 version (3), uint64 tensor_count, uint64 kv_count
//   kv_count x { string key, uint32 value_type, value }
//   tensor_count x { string name, uint32 n_dims, uint64 dims[n_dims] (innermost
//                    first), uint32 ggml_type, uint64 offset }
//   padding to general.alignment (default 32), then the data section; each
//   tensor's offset is relative to the data section and a multiple of the alignment.
// A string is uint64 length + bytes (no NUL). An array value is uint32 element
// type + uint64 count + the elements (which may themselves be arrays).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/mapped_file.h"
#include "tokenizer/vocab.h"

namespace nibble {

enum class GgufType : uint32_t {
    u8 = 0,
    i8 = 1,
    u16 = 2,
    i16 = 3,
    u32 = 4,
    i32 = 5,
    f32 = 6,
    boolean = 7,
    string = 8,
    array = 9,
    u64 = 10,
    i64 = 11,
    f64 = 12,
};
const char* gguf_type_name(GgufType type);

// The GGML type numbers are in models/ggml_blocks.h (ggml::Type); the parser
// sizes every type it lists and rejects the others by name.

// One metadata value. Scalars use one field by type: integer (all integer types;
// u64 values above INT64_MAX are stored in `unsigned_integer` only), real
// (f32/f64), boolean, text. Arrays fill the vector of their element kind.
struct GgufValue {
    GgufType type = GgufType::u8;
    GgufType element_type = GgufType::u8;  // arrays only
    int64_t integer = 0;
    uint64_t unsigned_integer = 0;
    double real = 0.0;
    bool boolean = false;
    std::string text;
    std::vector<int64_t> integers;   // integer or bool elements (u64 > INT64_MAX wraps)
    std::vector<double> reals;       // f32 / f64 elements (f32 values are exact)
    std::vector<std::string> texts;  // string elements
    std::vector<GgufValue> arrays;   // nested array elements

    bool is_integer() const;
    bool is_real() const { return type == GgufType::f32 || type == GgufType::f64; }
    size_t array_size() const;
};

struct GgufKeyValue {
    std::string key;
    GgufValue value;
};

struct GgufTensorInfo {
    std::string name;
    std::vector<int64_t> dims;      // innermost (contiguous) first, 1..4 entries
    uint32_t type = 0;              // ggml_type
    uint64_t offset = 0;            // relative to the data section
    const uint8_t* data = nullptr;  // inside the mapping
    size_t n_bytes = 0;

    int64_t n_elements() const;
};

class GgufFile {
  public:
    // Parses the whole header; throws std::runtime_error("<path>: <problem>").
    static GgufFile parse(const std::shared_ptr<MappedFile>& file);

    const std::string& path() const { return file_->path(); }
    const std::shared_ptr<MappedFile>& file() const { return file_; }
    uint32_t version() const { return version_; }
    size_t alignment() const { return alignment_; }
    // Start of the data section; past the end of the file when there are no tensors.
    size_t data_offset() const { return data_offset_; }
    const std::vector<GgufKeyValue>& metadata() const { return kv_; }
    const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

    const GgufValue* find(const std::string& key) const;
    const GgufTensorInfo* find_tensor(const std::string& name) const;

    // Typed getters: nullopt when the key is absent; std::runtime_error naming
    // the path and key when it holds another type (integers accept any integer
    // type that fits, reals accept f32 and f64).
    std::optional<int64_t> get_int(const std::string& key) const;
    std::optional<double> get_real(const std::string& key) const;
    std::optional<bool> get_bool(const std::string& key) const;
    std::optional<std::string> get_string(const std::string& key) const;
    const std::vector<std::string>* get_string_array(const std::string& key) const;
    const std::vector<double>* get_real_array(const std::string& key) const;
    const std::vector<int64_t>* get_int_array(const std::string& key) const;

  private:
    std::shared_ptr<MappedFile> file_;
    uint32_t version_ = 0;
    size_t alignment_ = 32;
    size_t data_offset_ = 0;
    std::vector<GgufKeyValue> kv_;
    std::vector<GgufTensorInfo> tensors_;
};

// The tokenizer.ggml.* vocabulary (SentencePiece "llama" model only).
// Throws std::runtime_error("<path>: <problem>") when it is absent or inconsistent.
Vocab read_gguf_vocab(const GgufFile& gguf);

}  // namespace nibble

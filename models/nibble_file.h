// nibble's own model file: a safetensors-compatible container of packed tensors
// with hyperparameters and tokenizer (specified in docs/FORMAT.md).
//
//   uint64 LE  N                    header length
//   N bytes    JSON header          starts {"__metadata__":{"format":"nibble",
//                                    "nibble_version":"1",...; padded with spaces
//                                    so that 8 + N is a multiple of 64
//   data       tensor blobs         each starting at a multiple of 64, contiguous
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "engine/model.h"
#include "models/mapped_file.h"

namespace nibble {

class TemporaryOutput;

// The newest version this build reads: 2, whose matrices may store their codes
// in interleaved row blocks (kernels/interleave.h). Version 1 (every matrix
// row-major) is written by default: on the CPUs measured so far the interleaved
// layout decodes no faster (docs/BENCHMARKS.md).
inline constexpr const char* kNibbleFileVersion = "2";
// The version NibbleFileWriter writes, for the whole process: 1 (the default,
// row-major) or 2 (every matrix that can be interleaved is).
// Throws std::invalid_argument for another value.
void set_nibble_write_version(int version);
int nibble_write_version();
// Name of the entry holding the serialized SentencePiece ModelProto.
inline constexpr const char* kNibbleTokenizerTensor = "tokenizer.sentencepiece";

bool is_nibble_file(const MappedFile& file);
// Tensors point into the mapping; nothing is copied. Every size, offset, shape
// and format is validated first; problems throw std::runtime_error("<path>: ...").
Model load_nibble_file(const std::shared_ptr<MappedFile>& file);
// Writes `model` (all tensors in their current formats) and its tokenizer.
// A classifier sharing the embedding's blob is stored once.
void save_nibble_file(const Model& model, const std::string& path);

// Whether a tensor of `cols` columns can carry a column order: its I32 entry
// must keep the next blob 64-byte aligned (docs/FORMAT.md).
inline bool column_order_storable(int64_t cols) {
    return cols % 16 == 0;
}

// One weight tensor of a file: its canonical name and packed layout.
struct NibbleTensorDecl {
    std::string name;
    PackedLayout layout;
    // Act-order column permutation (Tensor::column_order, layout.cols entries),
    // written as the entry "<name>.column_order" right after the blob; must stay
    // valid until the tensor is written.
    const int32_t* column_order = nullptr;
};

// Streaming writer: the header (every tensor's name, layout and offset) is written
// first, then the blobs one at a time in the declared order, so a model never has
// to be in memory at once. Writes to a fresh "<path>.tmp.XXXXXX" and renames it
// to `path` in finish(); a writer destroyed before finish() (or a SIGINT,
// SIGTERM or SIGHUP) removes the temporary file (models/output_file.h).
class NibbleFileWriter {
  public:
    // `tensors` in file order: the canonical order of Model::tensors(), without
    // "output.weight" when shared_output (it then reuses "token_embd.weight").
    // tokenizer_bytes == 0: the file carries no tokenizer. A non-empty
    // chat_template (Model::chat_template) is stored as nibble.chat_template;
    // generation settings other than the defaults as nibble.add_bos_token
    // ("false") and nibble.extra_eos_ids (a JSON list of ids).
    NibbleFileWriter(const std::string& path, const ModelConfig& config,
                     std::vector<NibbleTensorDecl> tensors, bool shared_output,
                     size_t tokenizer_bytes, const std::string& chat_template = "",
                     const GenerationSettings& generation = {});
    ~NibbleFileWriter();
    NibbleFileWriter(const NibbleFileWriter&) = delete;
    NibbleFileWriter& operator=(const NibbleFileWriter&) = delete;

    // Writes the next declared tensor's blob (exactly layout.total_bytes bytes,
    // in the declared layout; stored interleaved or row-major as the version says).
    void write_tensor(const std::string& name, const uint8_t* data, size_t bytes);
    // Writes the tokenizer after the last tensor.
    void write_tokenizer(const std::string& proto);
    // Checks that everything declared was written, flushes and renames.
    void finish();

    // Bytes the finished file will have.
    uint64_t file_size() const { return file_size_; }

  private:
    void write_padded(const void* data, size_t bytes, size_t padded);

    std::string path_;
    std::unique_ptr<TemporaryOutput> temp_;
    std::FILE* out_ = nullptr;
    std::vector<NibbleTensorDecl> tensors_;
    std::vector<PackedLayout> stored_;  // each tensor's layout in the file
    std::vector<uint8_t> converted_;    // a blob rewritten into its stored layout
    size_t next_ = 0;
    size_t tokenizer_bytes_ = 0;
    bool tokenizer_written_ = false;
    uint64_t file_size_ = 0;
};

}  // namespace nibble

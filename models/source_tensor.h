// A tensor as a checkpoint stores it, before conversion to a nibble format:
// what its bytes encode, its shape and where the bytes are. The GGUF importer
// (models/gguf.cpp) and the Hugging Face importer (models/hf.cpp) describe each
// tensor this way and hand it to one converter, which dispatches on the
// encoding: dense values (used in place or copied), GGML blocks
// (models/gguf_import.h), GPTQ/AWQ packed 4-bit layers (models/gptq_import.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/model.h"
#include "models/gptq_import.h"
#include "models/mapped_file.h"
#include "models/safetensors.h"

namespace nibble {

enum class SourceEncoding : uint8_t {
    f32,          // rows x cols IEEE floats: used in place
    f16,          // rows x cols IEEE halves: used in place
    bf16,         // rows x cols bfloat16: f16 when every value fits exactly, else f32
    ggml_blocks,  // a GGML quantized type (ggml_type): rows x cols / block blocks
    packed_4bit,  // an AutoGPTQ / AutoAWQ linear layer (packed)
};

// The safetensors entries of a packed 4-bit layer and its checkpoint's settings.
struct PackedSource {
    PackedQuantConfig config;
    const SafetensorsEntry* qweight = nullptr;
    const SafetensorsEntry* qzeros = nullptr;
    const SafetensorsEntry* scales = nullptr;
    const SafetensorsEntry* g_idx = nullptr;  // may be absent
};

struct SourceTensor {
    std::string name;  // the nibble (GGUF) name it gets
    SourceEncoding encoding = SourceEncoding::f32;
    uint32_t ggml_type = 0;  // ggml_blocks only
    int64_t rows = 0, cols = 0;
    const uint8_t* data = nullptr;         // dense values or GGML blocks
    size_t n_bytes = 0;                    // at data
    const PackedSource* packed = nullptr;  // packed_4bit only
};

// Converts `source` into a nibble tensor owned by `model` (dense f32/f16 data
// suitably aligned is viewed in place). With need_f32 the result is always f32
// (norms). With `repack`, GGML blocks of a matrix that can be interleaved are
// written in interleaved row blocks (models/gguf_import.h); with `file` (the
// mapping the source lies in), GGML blocks' pages are released as they are
// converted. Throws std::runtime_error naming the tensor for one nibble cannot hold.
Tensor convert_tensor(Model& model, const SourceTensor& source, bool need_f32, bool repack = false,
                      const MappedFile* file = nullptr);

// The same tensor, deferred (Tensor::deferred): the checks and the layout now
// (bf16's f16 test reads the data, then releases its pages), the conversion
// when fetched, the source bytes in `file` released by release_source(). Norms
// (need_f32) and packed layers are converted at once into `model`.
Tensor defer_tensor(Model& model, const std::shared_ptr<const MappedFile>& file,
                    const SourceTensor& source, bool need_f32);

}  // namespace nibble

// Format detection: the first bytes of a file say what it is.
#include "models/loader.h"

#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "kernels/interleave.h"
#include "models/gguf.h"
#include "models/hf.h"
#include "models/llama2c.h"
#include "models/nibble_file.h"
#include "models/safetensors.h"

namespace nibble {

Model load_model(const std::string& path, const LoadOptions& options) {
    if (std::filesystem::is_directory(path))
        return load_hf_model(path, options.defer_conversion);  // Hugging Face
    auto file = MappedFile::open(path);
    if (file->size() < 28) {
        throw std::runtime_error(path + ": file is too small (" + std::to_string(file->size()) +
                                 " bytes) to be a model");
    }
    const uint8_t* p = file->data();
    Model model;
    if (std::memcmp(p, "GGUF", 4) == 0) {
        model = load_gguf(file, options.defer_conversion,
                          options.repack.value_or(cpu_prefers_interleaved()));
    } else if (std::memcmp(p, "24ka", 4) == 0) {  // uint32 0x616b3432 little-endian
        model = load_llama2c_q80(file);
    } else if (is_nibble_file(*file)) {
        model = load_nibble_file(file);
    } else if (looks_like_safetensors(*file)) {
        model = load_hf_model(
            path, options.defer_conversion);  // a checkpoint's .safetensors: config.json next to it
    } else {
        // No magic: llama2.c's legacy checkpoint is the only headerless format.
        try {
            model = load_llama2c(file);
        } catch (const std::runtime_error& e) {
            const std::string reason = e.what();
            throw std::runtime_error(
                path +
                ": not a GGUF, nibble, safetensors or llama2.c runq file, and not a valid llama2.c "
                "checkpoint (" +
                reason.substr(reason.find(": ") + 2) + ")");
        }
    }
    return model;
}

}  // namespace nibble

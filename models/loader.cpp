// Format detection: the first bytes of a file say what it is.
#include "models/loader.h"

#include <cstring>
#include <stdexcept>

#include "models/gguf.h"
#include "models/llama2c.h"
#include "models/nibble_file.h"

namespace nibble {

Model load_model(const std::string& path) {
    auto file = MappedFile::open(path);
    if (file->size() < 28) {
        throw std::runtime_error(path + ": file is too small (" + std::to_string(file->size()) +
                                 " bytes) to be a model");
    }
    const uint8_t* p = file->data();
    Model model;
    if (std::memcmp(p, "GGUF", 4) == 0) {
        model = load_gguf(file);
    } else if (std::memcmp(p, "24ka", 4) == 0) {  // uint32 0x616b3432 little-endian
        model = load_llama2c_q80(file);
    } else if (is_nibble_file(*file)) {
        model = load_nibble_file(file);
    } else {
        model = load_llama2c(file);
    }
    return model;
}

}  // namespace nibble

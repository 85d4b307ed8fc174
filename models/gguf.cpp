// Placeholder until the GGUF reader lands.
#include "models/gguf.h"

#include <stdexcept>

namespace nibble {

Model load_gguf(std::shared_ptr<MappedFile> file) {
    throw std::runtime_error(file->path() + ": GGUF is not supported yet");
}

}  // namespace nibble

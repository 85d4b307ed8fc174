// Placeholder until the nibble file format lands (issue 3).
#include "models/nibble_file.h"

#include <stdexcept>

namespace nibble {

bool is_nibble_file(const MappedFile&) { return false; }
Model load_nibble_file(std::shared_ptr<MappedFile> file) {
    throw std::runtime_error(file->path() + ": nibble files are not supported yet");
}
void save_nibble_file(const Model&, const std::string& path) {
    throw std::runtime_error(path + ": writing nibble files is not supported yet");
}

}  // namespace nibble

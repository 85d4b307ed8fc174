// Helpers shared by the subcommands: text files and token lengths.
#include <algorithm>
#include <string>

#include "apps/commands.h"
#include "apps/validate.h"

namespace nibble::app {

size_t max_token_bytes(const Tokenizer& tokenizer) {
    size_t most = 4;  // a byte-fallback token still covers at most one UTF-8 character
    for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
        most = std::max(most, tokenizer.piece(id).size());
    }
    return most;
}

std::string read_text_file(const std::string& path) {
    return read_text_input(path);
}

}  // namespace nibble::app

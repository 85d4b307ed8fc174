#include "tokenizer/llama2c_vocab.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "tokenizer/tokenizer_file.h"

namespace nibble {
namespace {

// llama2.c pieces never get near this; a larger header value means the file is
// something else.
constexpr int32_t max_plausible_token_length = 4096;

constexpr std::string_view space_symbol = "\xe2\x96\x81";  // U+2581

int32_t read_int32(std::string_view bytes, size_t offset) {
    uint32_t value = 0;
    for (int i = 3; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(bytes[offset + i]);
    return static_cast<int32_t>(value);
}

bool is_hex_upper(char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

// SentencePiece names byte-fallback pieces <0x00>..<0xFF>, upper-case hex.
bool is_byte_piece(std::string_view piece) {
    return piece.size() == 6 && piece.substr(0, 3) == "<0x" && is_hex_upper(piece[3]) &&
           is_hex_upper(piece[4]) && piece[5] == '>';
}

std::string escape_spaces(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        if (c == ' ') {
            out += space_symbol;
        } else {
            out.push_back(c);
        }
    }
    return out;
}

}  // namespace

bool looks_like_llama2c_vocab(std::string_view bytes) {
    if (bytes.size() < 4) return false;
    const int32_t max_token_length = read_int32(bytes, 0);
    return max_token_length > 0 && max_token_length <= max_plausible_token_length;
}

Vocab parse_llama2c_vocab(std::string_view bytes, const std::string& origin) {
    if (bytes.empty()) throw std::runtime_error(origin + ": empty tokenizer file");
    if (!looks_like_llama2c_vocab(bytes)) {
        throw std::runtime_error(origin + ": not a llama2.c tokenizer (bad max_token_length)");
    }
    const int32_t max_token_length = read_int32(bytes, 0);
    Vocab vocab;
    vocab.bos_id = -1;
    vocab.eos_id = -1;
    size_t offset = 4;
    while (offset < bytes.size()) {
        const size_t id = vocab.pieces.size();
        const std::string where =
            origin + ": token " + std::to_string(id) + " at byte " + std::to_string(offset);
        if (bytes.size() - offset < 8) throw std::runtime_error(where + ": truncated entry header");
        const float score = std::bit_cast<float>(static_cast<uint32_t>(read_int32(bytes, offset)));
        const int32_t length = read_int32(bytes, offset + 4);
        offset += 8;
        if (!std::isfinite(score)) throw std::runtime_error(where + ": score is not finite");
        if (length <= 0 || length > max_token_length) {
            throw std::runtime_error(where + ": piece length " + std::to_string(length) +
                                     " outside 1.." + std::to_string(max_token_length));
        }
        if (bytes.size() - offset < static_cast<size_t>(length)) {
            throw std::runtime_error(where + ": piece of " + std::to_string(length) +
                                     " bytes runs past the end of the file");
        }
        const std::string_view raw = bytes.substr(offset, static_cast<size_t>(length));
        offset += static_cast<size_t>(length);

        PieceType type = PieceType::normal;
        std::string piece;
        if (id == 0) {
            type = PieceType::unknown;
            piece = escape_spaces(raw);
        } else if (raw == "\n<s>\n") {
            type = PieceType::control;
            piece = "<s>";
            if (vocab.bos_id < 0) vocab.bos_id = static_cast<int32_t>(id);
        } else if (raw == "\n</s>\n") {
            type = PieceType::control;
            piece = "</s>";
            if (vocab.eos_id < 0) vocab.eos_id = static_cast<int32_t>(id);
        } else if (is_byte_piece(raw)) {
            type = PieceType::byte;
            piece = raw;
        } else {
            piece = escape_spaces(raw);
        }
        vocab.pieces.push_back(std::move(piece));
        vocab.scores.push_back(score);
        vocab.types.push_back(type);
    }
    if (vocab.pieces.size() < 3) {
        throw std::runtime_error(origin + ": only " + std::to_string(vocab.pieces.size()) +
                                 " tokens (need at least <unk>, <s>, </s>)");
    }
    vocab.unk_id = 0;
    if (vocab.bos_id < 0) throw std::runtime_error(origin + R"(: no BOS piece "\n<s>\n")");
    if (vocab.eos_id < 0) throw std::runtime_error(origin + R"(: no EOS piece "\n</s>\n")");
    vocab.add_dummy_prefix = true;
    return vocab;
}

Vocab read_llama2c_vocab(const std::string& path) {
    return parse_llama2c_vocab(read_tokenizer_file(path), path);
}

}  // namespace nibble

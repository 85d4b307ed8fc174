// Reading a tokenizer file the user named: a regular file of bounded size,
// checked before any read (opened O_NONBLOCK, so a FIFO cannot block).
#pragma once
#include <cstdint>
#include <string>

namespace nibble {

// Largest tokenizer file read (a 256k-piece SentencePiece model is ~5 MB).
inline constexpr uint64_t kMaxTokenizerFileBytes = uint64_t(64) << 20;

// The bytes of the file. Throws std::runtime_error("<path>: <problem>") for a
// missing or unreadable file, a directory, FIFO, device or socket, an empty
// file or one larger than kMaxTokenizerFileBytes.
std::string read_tokenizer_file(const std::string& path);

}  // namespace nibble

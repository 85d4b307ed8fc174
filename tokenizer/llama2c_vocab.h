// Reader for llama2.c's tokenizer.bin: int32 max_token_length, then for each
// id a float32 score, an int32 byte length and that many bytes (no NUL).
#pragma once
#include <string>
#include <string_view>

#include "tokenizer/vocab.h"

namespace nibble {

// True when `bytes` starts like a tokenizer.bin (a small positive
// max_token_length) rather than a serialized ModelProto (which starts 0x0a).
bool looks_like_llama2c_vocab(std::string_view bytes);

// Parses tokenizer.bin contents into SentencePiece form: ' ' -> U+2581,
// "\n<s>\n" -> "<s>" and "\n</s>\n" -> "</s>" (control), <0xNN> -> byte
// pieces, id 0 -> unknown, everything else normal. Throws
// std::runtime_error("<origin>: <problem>") for truncated or corrupt data.
Vocab parse_llama2c_vocab(std::string_view bytes, const std::string& origin);

// Reads and parses a tokenizer.bin file.
Vocab read_llama2c_vocab(const std::string& path);

}  // namespace nibble

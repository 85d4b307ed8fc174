// A vocabulary as model files carry it (GGUF tokenizer.ggml.*, llama2.c
// tokenizer.bin): pieces with scores and SentencePiece piece types.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace nibble {

// SentencePiece's ModelProto.SentencePiece.Type values (GGUF token_type uses the same numbers).
enum class PieceType : int32_t {
    normal = 1,
    unknown = 2,
    control = 3,
    user_defined = 4,
    unused = 5,
    byte = 6,
};

struct Vocab {
    std::vector<std::string> pieces;  // SentencePiece pieces, spaces written as U+2581
    std::vector<float> scores;
    std::vector<PieceType> types;
    int32_t unk_id = 0;
    int32_t bos_id = 1;
    int32_t eos_id = 2;
    bool add_dummy_prefix = true;
};

}  // namespace nibble

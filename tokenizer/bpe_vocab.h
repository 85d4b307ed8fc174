// A byte-pair-encoding vocabulary as GGUF (tokenizer.ggml.model "gpt2") and
// Hugging Face tokenizer.json (model "BPE") carry it: tokens, their types, the
// merges in rank order and how text is split into words before merging.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/vocab.h"

namespace nibble {

struct BpeVocab {
    enum class Kind : uint8_t {
        // GPT-2 byte-level BPE: text is split into words by the pre-tokenizer's
        // regexes; a word's bytes are the initial symbols; tokens are written
        // with GPT-2's byte-to-character map (0x20 -> U+0120 'Ġ', ...).
        byte_level = 0,
        // SentencePiece-style BPE (Gemma's tokenizer.json): spaces become U+2581,
        // the whole text is one word of UTF-8 characters, a character outside the
        // vocabulary becomes byte tokens <0xNN> (byte fallback).
        sentencepiece = 1,
    };
    Kind kind = Kind::byte_level;
    std::vector<std::string> tokens;  // as the vocabulary writes them
    std::vector<PieceType> types;     // normal, control (special), user_defined, byte, ...
    std::vector<std::pair<std::string, std::string>> merges;  // rank 0 first
    // The merges as pairs of token ids instead (what a serialized model keeps);
    // used when `merges` is empty.
    std::vector<std::pair<int32_t, int32_t>> merge_ids;
    // The pre-tokenizer: a llama.cpp name (bpe_pretokenizer.h) or, when empty,
    // the regexes of a tokenizer.json Split that matches no named one.
    std::string pre = "default";
    std::vector<std::string> regexes;
    // A word that is a token as a whole becomes that token without merging
    // (Hugging Face ignore_merges; llama.cpp sets it for llama-bpe).
    bool ignore_merges = false;
    int32_t bos_id = -1, eos_id = -1, unk_id = -1;
    bool add_bos = false;  // BOS in front of prompts
};

}  // namespace nibble

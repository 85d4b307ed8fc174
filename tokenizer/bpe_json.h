// Hugging Face tokenizer.json files whose model is BPE: byte-level (Llama-3,
// Qwen2/2.5/3, SmolLM, GPT-2) or SentencePiece-style with byte fallback
// (Gemma, when no tokenizer.model is present).
#pragma once
#include <string>

#include "tokenizer/bpe_vocab.h"

namespace nibble {

// Whether `bytes` looks like a JSON document (starts with '{' after blanks).
bool looks_like_json(const std::string& bytes);

// The vocabulary of a tokenizer.json: model.vocab and model.merges ("a b"
// strings or ["a", "b"] pairs), added_tokens (special ones are control
// tokens, the others user-defined), the pre-tokenizer (Split regexes, Digits,
// ByteLevel; Llama-3's, Qwen2's and GPT-2's patterns by their llama.cpp
// names), model.ignore_merges, and BOS from a TemplateProcessing
// post-processor. EOS is not in the file (tokenizer_config.json has it).
// Throws std::runtime_error("<origin>: <key>: <problem>").
BpeVocab read_tokenizer_json(const std::string& text, const std::string& origin);

// BOS and EOS (bos_token, eos_token: a token's text or {"content": ...}) and
// add_bos_token of a tokenizer_config.json, where they name tokens of `v`.
// Throws std::runtime_error("<origin>: ...") for invalid JSON.
void apply_tokenizer_config(BpeVocab& v, const std::string& text, const std::string& origin);

}  // namespace nibble

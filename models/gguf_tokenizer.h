// The tokenizer a GGUF file carries (tokenizer.ggml.*): a SentencePiece
// vocabulary (model "llama") or a byte-pair one (model "gpt2": tokens, token
// types, merges, the pre-tokenizer name tokenizer.ggml.pre, BOS/EOS,
// add_bos_token). Works on vocabulary-only files too.
#pragma once
#include "models/gguf_reader.h"
#include "tokenizer/bpe_vocab.h"
#include "tokenizer/tokenizer.h"

namespace nibble {

// The "gpt2" vocabulary. Throws std::runtime_error("<path>: <key> ...") when
// a key is missing or inconsistent.
BpeVocab read_gguf_bpe_vocab(const GgufFile& gguf);

// The file's tokenizer, of either kind. Throws std::runtime_error("<path>: ...")
// when there is none or tokenizer.ggml.model is another kind.
Tokenizer gguf_tokenizer(const GgufFile& gguf);

}  // namespace nibble

// Rendered chat text -> tokens: the template's special markers become single
// special tokens, the text between them is encoded normally, and what users
// wrote never becomes a special token.
#pragma once
#include <cstdint>
#include <vector>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace nibble {

// The tokens of rendered.text from byte `from` on (no BOS added): special
// tokens are looked for only outside rendered.contents.
std::vector<int32_t> tokenize_chat(const Tokenizer& tokenizer, const RenderedChat& rendered,
                                   size_t from = 0);

// BOS in front when the model wants one and the template did not write it.
void add_bos_if_wanted(const Tokenizer& tokenizer, std::vector<int32_t>& tokens);

}  // namespace nibble

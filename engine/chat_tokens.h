// Rendered chat text -> tokens: the template's special markers become single
// special tokens, the text between them is encoded normally.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace nibble {

// "<s>" and "</s>" become BOS and EOS, "<|...|>" pieces the vocabulary holds
// their ids; everything between them is encoded without BOS.
std::vector<int32_t> tokenize_chat(const Tokenizer& tokenizer, std::string_view text);

}  // namespace nibble

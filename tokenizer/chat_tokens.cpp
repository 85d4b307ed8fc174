// Chat text with special markers -> token ids (tokenizer/chat_tokens.h).
#include "tokenizer/chat_tokens.h"

#include <algorithm>
#include <string_view>
#include <utility>

namespace nibble {

std::vector<int32_t> tokenize_chat(const Tokenizer& tokenizer, const RenderedChat& rendered,
                                   size_t from) {
    std::vector<std::pair<size_t, size_t>> user_text;
    for (const auto& [begin, end] : rendered.contents) {
        if (end > from) user_text.emplace_back(std::max(begin, from) - from, end - from);
    }
    return tokenizer.encode_template(std::string_view(rendered.text).substr(from), false,
                                     user_text);
}

void add_bos_if_wanted(const Tokenizer& tokenizer, std::vector<int32_t>& tokens) {
    const int32_t bos = tokenizer.bos_id();
    if (!tokenizer.add_bos_token() || bos < 0) return;
    if (tokens.empty() || tokens[0] != bos) tokens.insert(tokens.begin(), bos);
}

}  // namespace nibble

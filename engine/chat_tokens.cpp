// Chat text with special markers -> token ids.
#include "engine/chat_tokens.h"

namespace nibble {

std::vector<int32_t> tokenize_chat(const Tokenizer& tokenizer, std::string_view text) {
    std::vector<int32_t> out;
    size_t start = 0;  // of the plain text not yet encoded
    auto flush_plain = [&](size_t end) {
        if (end > start) {
            const auto ids = tokenizer.encode(text.substr(start, end - start), false);
            out.insert(out.end(), ids.begin(), ids.end());
        }
    };
    for (size_t at = 0; at < text.size();) {
        int32_t special = -1;
        size_t length = 0;
        if (text.compare(at, 3, "<s>") == 0) {
            special = tokenizer.bos_id();
            length = 3;
        } else if (text.compare(at, 4, "</s>") == 0) {
            special = tokenizer.eos_id();
            length = 4;
        } else if (text.compare(at, 2, "<|") == 0) {
            const size_t close = text.find("|>", at + 2);
            if (close != std::string_view::npos) {
                length = close + 2 - at;
                special = tokenizer.special_id(text.substr(at, length));
            }
        }
        if (special < 0) {
            ++at;
            continue;
        }
        flush_plain(at);
        out.push_back(special);
        at += length;
        start = at;
    }
    flush_plain(text.size());
    return out;
}

}  // namespace nibble

// libFuzzer: arbitrary bytes as text through real tokenizers (tok512 and the
// 32000-piece Llama one): encode, decode, and stream-decode the ids one by one,
// which must give the same text as decoding them all at once.
#include <string>
#include <string_view>

#include "fuzz/fuzz_input.h"
#include "tokenizer/tokenizer.h"

namespace {
const nibble::Tokenizer& tokenizer(bool large) {
    static const nibble::Tokenizer small =
        nibble::Tokenizer::from_file(std::string(NIBBLE_DATA_DIR) + "/tok512.model");
    static const nibble::Tokenizer llama =
        nibble::Tokenizer::from_file(std::string(NIBBLE_DATA_DIR) + "/tokenizer.model");
    return large ? llama : small;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const nibble::Tokenizer& t = tokenizer(data[0] & 1);
    const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
    return nibble::fuzz::clean([&] {
        const auto ids = t.encode(text, (data[0] & 2) != 0);
        const std::string whole = t.decode(ids);
        nibble::StreamDecoder stream(t);
        std::string streamed;
        for (int32_t id : ids) streamed += stream.push(id);
        streamed += stream.flush();
        if (streamed != whole) __builtin_trap();  // the streaming contract
    });
}

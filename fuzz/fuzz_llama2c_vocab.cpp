// libFuzzer: llama2.c tokenizer.bin bytes -> vocabulary -> SentencePiece model -> tokenizer.
#include <string_view>

#include "fuzz/fuzz_input.h"
#include "tokenizer/llama2c_vocab.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return nibble::fuzz::clean([&] {
        const std::string_view bytes(reinterpret_cast<const char*>(data), size);
        const nibble::Vocab vocab = nibble::parse_llama2c_vocab(bytes, "tokenizer.bin");
        const auto t = nibble::Tokenizer::from_vocab(vocab);
        (void)t.decode(t.encode("Once upon a time, \xe4\xb8\xad!", true));
    });
}

// libFuzzer: SentencePiece model bytes (as in .model files and nibble files),
// loaded and used to encode, decode and stream-decode a fixed text.
#include <string>

#include "fuzz/fuzz_input.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return nibble::fuzz::clean([&] {
        const std::string proto(reinterpret_cast<const char*>(data), size);
        const auto t = nibble::Tokenizer::from_serialized_proto(proto, "model");
        const auto ids = t.encode("Once upon a time, \xe4\xb8\xad \xf0\x9f\x98\x80!", true);
        (void)t.decode(ids);
        nibble::StreamDecoder stream(t);
        for (int32_t id : ids) (void)stream.push(id);
        (void)stream.flush();
    });
}

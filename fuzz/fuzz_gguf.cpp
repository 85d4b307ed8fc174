// libFuzzer: GGUF files (header, metadata, tensor infos, vocabulary, model build).
#include "fuzz/fuzz_input.h"
#include "models/gguf.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return nibble::fuzz::clean([&] {
        const nibble::Model model =
            nibble::load_gguf(nibble::MappedFile::open(nibble::fuzz::as_file(data, size)));
        nibble::fuzz::run_one_token(model);
        if (!model.tokenizer_proto.empty()) {
            const auto t = nibble::Tokenizer::from_serialized_proto(model.tokenizer_proto, "gguf");
            (void)t.decode(t.encode("Once upon a time", true));
        }
    });
}

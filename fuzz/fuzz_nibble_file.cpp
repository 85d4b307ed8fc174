// libFuzzer: nibble model files (length prefix, JSON header, tensor table, tokenizer).
#include "fuzz/fuzz_input.h"
#include "models/nibble_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return nibble::fuzz::clean([&] {
        const nibble::Model model =
            nibble::load_nibble_file(nibble::MappedFile::open(nibble::fuzz::as_file(data, size)));
        nibble::fuzz::run_one_token(model);
    });
}

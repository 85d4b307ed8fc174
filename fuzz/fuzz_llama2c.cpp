// libFuzzer: llama2.c checkpoints, the legacy fp32 format and runq Q8_0 ("ak42").
#include <cstring>

#include "fuzz/fuzz_input.h"
#include "models/llama2c.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return nibble::fuzz::clean([&] {
        auto file = nibble::MappedFile::open(nibble::fuzz::as_file(data, size));
        const bool q80 = size >= 4 && std::memcmp(data, "ak42", 4) == 0;
        const nibble::Model model =
            q80 ? nibble::load_llama2c_q80(file) : nibble::load_llama2c(file);
        nibble::fuzz::run_one_token(model);
    });
}

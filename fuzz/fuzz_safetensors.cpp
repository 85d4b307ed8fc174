// libFuzzer: safetensors files, parsed and then loaded as the weights of a
// Hugging Face checkpoint (fixed config.json of the tiny model) that runs one
// token. An input starting with '{' is a header: the harness adds the length
// prefix and the tiny model's data section, so mutations reach the JSON
// checks; any other input is the whole file.
#include <string>

#include "fuzz/fuzz_hf_checkpoint.h"
#include "models/hf.h"
#include "models/safetensors.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    namespace f = nibble::fuzz;
    const auto [header, data] = f::tiny_weights();
    f::write_seeds_if_asked({{"tiny_header.json", header},
                             {"tiny_file.safetensors", f::safetensors_bytes(header, data)},
                             {"empty_header.json", "{}"}});
    f::checkpoint_dir();
    f::set_config(f::tiny_config().dump());
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
    namespace f = nibble::fuzz;
    static const std::string data = f::tiny_weights().second;
    std::string file(reinterpret_cast<const char*>(bytes), size);
    if (size > 0 && bytes[0] == '{') file = f::safetensors_bytes(file, data);
    f::set_weights(file);
    const std::string path = f::checkpoint_dir() + "/model.safetensors";
    return f::clean([&] {
        const auto st = nibble::SafetensorsFile::parse(nibble::MappedFile::open(path));
        // Every entry the parser accepted lies inside the data section.
        unsigned sum = 0;
        for (const auto& [name, e] : st.tensors()) {
            if (e.begin > e.end || e.end > st.data_bytes()) __builtin_trap();
            if (e.end > e.begin) sum += e.data[0] + e.data[e.end - e.begin - 1];
        }
        (void)sum;
        f::run_one_token(nibble::load_hf_model(path));
    });
}

// libFuzzer: config.json of a Hugging Face checkpoint (architecture,
// hyperparameters, rope_scaling, sliding window, quantization_config) loaded
// with the tiny model's weights (F32, plus a GPTQ copy of one tensor) and run
// for one token.
#include <string>

#include "fuzz/fuzz_hf_checkpoint.h"
#include "models/hf.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    namespace f = nibble::fuzz;
    nlohmann::json mistral = f::tiny_config();
    mistral["architectures"] = {"MistralForCausalLM"};
    mistral["sliding_window"] = 4;
    mistral["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
    mistral["head_dim"] = 8;
    nlohmann::json tied = f::tiny_config();
    tied["tie_word_embeddings"] = true;
    nlohmann::json gptq = f::tiny_config();
    gptq["quantization_config"] = {
        {"quant_method", "gptq"}, {"bits", 4}, {"group_size", 32}, {"desc_act", false}};
    nlohmann::json awq = f::tiny_config();
    awq["quantization_config"] = {
        {"quant_method", "awq"}, {"w_bit", 4}, {"q_group_size", 32}, {"version", "gemm"}};
    f::write_seeds_if_asked({{"llama.json", f::tiny_config().dump(2)},
                             {"mistral.json", mistral.dump(2)},
                             {"tied.json", tied.dump()},
                             {"gptq.json", gptq.dump(2)},
                             {"awq.json", awq.dump()}});
    const auto [header, data] = f::tiny_weights();
    f::checkpoint_dir();
    f::set_weights(f::safetensors_bytes(header, data));
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
    namespace f = nibble::fuzz;
    f::set_config(std::string(reinterpret_cast<const char*>(bytes), size));
    return f::clean([&] { f::run_one_token(nibble::load_hf_model(f::checkpoint_dir())); });
}

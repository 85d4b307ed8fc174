// nibble run: generate text from a prompt, streaming it, then report speed.
#include <cstdio>
#include <cxxopts.hpp>

#include "apps/commands.h"
#include "apps/sampling_options.h"
#include "apps/validate.h"
#include "engine/generate.h"
#include "models/loader.h"

namespace nibble::app {

int run_command(int argc, char** argv) {
    cxxopts::Options options(argv[0], "Generate text with a model");
    // clang-format off
    options.add_options()
        ("m,model", "model file (llama2.c .bin, GGUF, nibble)", cxxopts::value<std::string>())
        ("tokenizer", "tokenizer (.model or llama2.c tokenizer.bin)", cxxopts::value<std::string>()->default_value(""))
        ("p,prompt", "prompt text", cxxopts::value<std::string>()->default_value(""))
        ("n,n-predict", "number of tokens to generate", cxxopts::value<int>()->default_value("256"))
        ("c,ctx-size", "context size (0: the model's)", cxxopts::value<int>()->default_value("0"))
        ("b,batch-size", "tokens per forward pass when reading the prompt", cxxopts::value<int>()->default_value("64"))
        ("t,threads", "threads (0: physical cores)", cxxopts::value<int>()->default_value("0"))
        ("kv", "KV cache type: f32, f16, int8", cxxopts::value<std::string>()->default_value("f16"))
        ("h,help", "show this help");
    // clang-format on
    add_sampling_options(options, "-1");
    const auto args = options.parse(argc, argv);
    if (args.count("help")) {
        std::fputs(options.help().c_str(), stdout);
        return 0;
    }
    reject_extra_arguments(args);
    if (!args.count("model")) throw UsageError("missing --model (-m)");
    const int n_predict = args["n-predict"].as<int>();
    const int context = args["ctx-size"].as<int>();
    const int batch = batch_size_option(args);
    const SamplerParams sp = sampling_option_values(args);
    if (n_predict < 0) throw UsageError("--n-predict must be >= 0");
    if (context < 0) throw UsageError("--ctx-size must be >= 0");
    const KvType kv = kv_option(args);
    set_threads(args["threads"].as<int>());

    const Model model = load_model_reporting(args["model"].as<std::string>());
    const Tokenizer tokenizer = resolve_tokenizer(model, args["tokenizer"].as<std::string>());
    RuntimeOptions ro;
    ro.context = context > 0 ? context : model.config.max_seq_len;
    ro.max_batch = batch;
    ro.kv_type = kv;
    const std::vector<int32_t> prompt = tokenizer.encode(args["prompt"].as<std::string>(), true);
    if (int(prompt.size()) > ro.context) {
        throw UsageError("--prompt has " + std::to_string(prompt.size()) +
                         " tokens, more than the context size " + std::to_string(ro.context));
    }
    check_state_memory(model, ro, "--ctx-size", "--batch-size");
    InferenceState state(model, ro);
    const GenerationResult r = generate(state, tokenizer, prompt,
                                        clip_n_predict(n_predict, int(prompt.size()), ro.context),
                                        sp, [](const std::string& text) {
                                            std::fwrite(text.data(), 1, text.size(), stdout);
                                            std::fflush(stdout);
                                        });
    std::fputc('\n', stdout);
    std::fflush(stdout);
    std::fprintf(
        stderr, "prompt: %d tokens, %.1f tokens/s | generation: %d tokens, %.1f tokens/s\n",
        r.n_prompt, r.prompt_tokens_per_second(), r.n_generated, r.generation_tokens_per_second());
    return 0;
}

}  // namespace nibble::app

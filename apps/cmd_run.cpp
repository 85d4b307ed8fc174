// nibble run: generate text from a prompt, streaming it, then report speed.
#include <cstdio>
#include <cxxopts.hpp>
#include <random>

#include "apps/commands.h"
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
        ("s,seed", "random seed (-1: random)", cxxopts::value<int64_t>()->default_value("-1"))
        ("temp", "temperature (0: greedy)", cxxopts::value<float>()->default_value("0.8"))
        ("top-k", "top-k sampling (0: off)", cxxopts::value<int>()->default_value("40"))
        ("top-p", "top-p sampling (1: off)", cxxopts::value<float>()->default_value("0.95"))
        ("min-p", "min-p sampling (0: off)", cxxopts::value<float>()->default_value("0.05"))
        ("repeat-penalty", "repetition penalty (1: off)", cxxopts::value<float>()->default_value("1.0"))
        ("repeat-last-n", "tokens considered by the penalty", cxxopts::value<int>()->default_value("64"))
        ("kv", "KV cache type: f32, f16, int8", cxxopts::value<std::string>()->default_value("f16"))
        ("h,help", "show this help");
    // clang-format on
    const auto args = options.parse(argc, argv);
    if (args.count("help")) {
        std::fputs(options.help().c_str(), stdout);
        return 0;
    }
    if (!args.count("model")) throw UsageError("missing --model (-m)");
    const int n_predict = args["n-predict"].as<int>();
    const int context = args["ctx-size"].as<int>();
    const int batch = batch_size_option(args);
    SamplerParams sp;
    sp.temperature = args["temp"].as<float>();
    sp.top_k = args["top-k"].as<int>();
    sp.top_p = args["top-p"].as<float>();
    sp.min_p = args["min-p"].as<float>();
    sp.repeat_penalty = args["repeat-penalty"].as<float>();
    sp.repeat_last_n = args["repeat-last-n"].as<int>();
    const int64_t seed = args["seed"].as<int64_t>();
    sp.seed = seed < 0 ? std::random_device{}() : uint64_t(seed);
    if (n_predict < 0) throw UsageError("--n-predict must be >= 0");
    if (context < 0) throw UsageError("--ctx-size must be >= 0");
    if (!(sp.temperature >= 0)) throw UsageError("--temp must be >= 0");
    if (!(sp.top_p > 0 && sp.top_p <= 1)) throw UsageError("--top-p must be in (0, 1]");
    if (!(sp.min_p >= 0 && sp.min_p <= 1)) throw UsageError("--min-p must be in [0, 1]");
    if (!(sp.repeat_penalty > 0)) throw UsageError("--repeat-penalty must be > 0");
    const KvType kv = kv_option(args);
    set_threads(args["threads"].as<int>());

    const Model model = load_model(args["model"].as<std::string>());
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
    InferenceState state(model, ro);
    const GenerationResult r =
        generate(state, tokenizer, prompt, n_predict, sp, [](const std::string& text) {
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

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
    add_model_options(options, {.batch_help = "tokens per forward pass when reading the prompt"});
    // clang-format off
    options.add_options()
        ("p,prompt", "prompt text", cxxopts::value<std::string>()->default_value(""))
        ("n,n-predict", "number of tokens to generate", cxxopts::value<int>()->default_value("256"))
        ("h,help", "show this help");
    // clang-format on
    add_sampling_options(options, "-1");
    const auto parsed = parse_command_line(options, argc, argv);
    if (!parsed) return 0;
    const cxxopts::ParseResult& args = *parsed;
    const ModelOptions mo = model_options(args);
    const int n_predict = args["n-predict"].as<int>();
    const SamplerParams sp = sampling_option_values(args);
    if (n_predict < 0) throw UsageError("--n-predict must be >= 0");
    set_threads(mo.threads);

    const LoadedModel loaded(mo);
    const Model& model = loaded.model;
    const Tokenizer& tokenizer = loaded.tokenizer;
    RuntimeOptions ro = loaded.runtime;
    ro.max_logit_rows = 1;  // the last prompt token's or the decoded one's
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

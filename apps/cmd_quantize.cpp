// nibble quantize: any model file the engine reads -> a nibble model file in the
// formats of a recipe, with a progress bar and a per-tensor error table.
#include <cstdio>
#include <cxxopts.hpp>
#include <stdexcept>

#include "apps/commands.h"
#include "models/loader.h"
#include "models/quantize_model.h"

namespace nibble::app {

namespace {

void draw_progress(int done, int total, const std::string& name) {
    constexpr int kWidth = 30;
    const int filled = total > 0 ? done * kWidth / total : kWidth;
    std::fprintf(stderr, "\r[%s%s] %3d/%d %-28.28s", std::string(size_t(filled), '#').c_str(),
                 std::string(size_t(kWidth - filled), ' ').c_str(), done, total, name.c_str());
    if (done == total) std::fputc('\n', stderr);
    std::fflush(stderr);
}

}  // namespace

int quantize_command(int argc, char** argv) {
    cxxopts::Options options(argv[0], "Quantize a model into a nibble model file");
    options.add_options()("input", "model to read (llama2.c .bin, runq q80, GGUF, nibble)",
                          cxxopts::value<std::string>())("output", "nibble model file to write",
                                                         cxxopts::value<std::string>())(
        "format", "format of the linear layers: q4, q4a, nf4, q8 (also f16, f32)",
        cxxopts::value<std::string>()->default_value("q4"))(
        "group-size", "weights per group: 32, 64, 128, 256",
        cxxopts::value<int>()->default_value("32"))(
        "double-quant", "quantize the 4-bit group scales to 8 bits (QLoRA)")(
        "keep", "TENSOR_PATTERN=FORMAT override (glob, or re:REGEX); repeatable; last match wins",
        cxxopts::value<std::vector<std::string>>())(
        "rule",
        "scale choice: search (least squares), simple (max|w|/7, min/max, absmax), minus8 (q4: "
        "largest magnitude -> -8)",
        cxxopts::value<std::string>()->default_value("search"))(
        "no-default-keep", "do not give token_embd/output q8 when the format is 4-bit")(
        "tokenizer", "tokenizer to embed when the input carries none",
        cxxopts::value<std::string>()->default_value(""))(
        "q,quiet", "no progress bar and no table")("h,help", "show this help");
    options.parse_positional({"input", "output"});
    options.positional_help("IN OUT");
    const auto args = options.parse(argc, argv);
    if (args.count("help")) {
        std::fputs(options.help().c_str(), stdout);
        return 0;
    }
    if (!args.count("input") || !args.count("output")) throw UsageError("expected IN and OUT");

    QuantizeRecipe recipe;
    const std::string fname = args["format"].as<std::string>();
    const auto format = parse_format(fname);
    if (!format) {
        throw UsageError("--format: unknown format '" + fname + "' (q4, q4a, nf4, q8, f16, f32)");
    }
    recipe.format = *format;
    recipe.group_size = args["group-size"].as<int>();
    recipe.double_quant = args.count("double-quant") > 0;
    recipe.q8_embedding_and_output = args.count("no-default-keep") == 0;
    const std::string rule = args["rule"].as<std::string>();
    if (rule == "search") {
        recipe.rule = ScaleRule::search;
    } else if (rule == "simple") {
        recipe.rule = ScaleRule::simple;
    } else if (rule == "minus8") {
        recipe.rule = ScaleRule::q4_minus8;
    } else {
        throw UsageError("--rule: unknown rule '" + rule + "' (search, simple, minus8)");
    }
    if (recipe.double_quant && !is_4bit(recipe.format)) {
        throw UsageError("--double-quant: applies to the 4-bit formats only, not " + fname);
    }
    try {
        validate_recipe(recipe);
        if (args.count("keep")) {
            for (const std::string& spec : args["keep"].as<std::vector<std::string>>()) {
                recipe.keep.push_back(parse_keep_rule(spec));
            }
        }
    } catch (const std::invalid_argument& e) {
        throw UsageError(e.what());
    }

    const bool quiet = args.count("quiet") > 0;
    const std::string out_path = args["output"].as<std::string>();
    const Model model = load_model(args["input"].as<std::string>());

    // The tokenizer to embed: --tokenizer, else the input's own, else one found
    // next to the input (as `nibble run` would find it).
    const std::string tokenizer_path = args["tokenizer"].as<std::string>();
    std::string tokenizer_proto = model.tokenizer_proto;
    if (!tokenizer_path.empty() || tokenizer_proto.empty()) {
        try {
            tokenizer_proto = resolve_tokenizer(model, tokenizer_path).serialized_proto();
        } catch (const std::exception& e) {
            if (!tokenizer_path.empty()) throw;
            std::fprintf(stderr, "warning: %s; the output needs --tokenizer to run\n", e.what());
        }
    }

    // Tensor by tensor into the file: the quantized model is never all in memory.
    QuantizeResult result;
    try {
        result = quantize_model_to_file(model, recipe, out_path, tokenizer_proto,
                                        quiet ? QuantizeProgress() : draw_progress);
    } catch (const std::invalid_argument& e) {
        throw UsageError(e.what());
    }
    if (!quiet) std::fputs(format_report(result).c_str(), stdout);
    std::printf("wrote %s (%s, tokenizer %s)\n", out_path.c_str(), format_name(recipe.format),
                tokenizer_proto.empty() ? "not included" : "included");
    return 0;
}

}  // namespace nibble::app

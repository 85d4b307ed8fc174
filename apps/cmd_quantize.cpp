// nibble quantize: any model file the engine reads -> a nibble model file in the
// formats of a recipe, with a progress bar and a per-tensor error table.
// GCC 12 reports a false -Wrestrict in cxxopts' integer parsing when it is
// inlined here (as in apps/sampling_options.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wrestrict"
#endif

#include <cstdio>
#include <cxxopts.hpp>
#include <filesystem>
#include <stdexcept>

#include "apps/commands.h"
#include "apps/validate.h"
#include "models/loader.h"
#include "models/nibble_file.h"
#include "models/output_file.h"
#include "models/quant_budget.h"
#include "models/quant_calibrated.h"
#include "models/quantize_model.h"

namespace nibble::app {

namespace {

bool g_progress_line_open = false;  // the bar's line has no newline yet

void draw_progress(int done, int total, const std::string& name) {
    constexpr int kWidth = 30;
    g_progress_line_open = done != total;
    const int filled = total > 0 ? done * kWidth / total : kWidth;
    std::fprintf(stderr, "\r[%s%s] %3d/%d %-28.28s", std::string(size_t(filled), '#').c_str(),
                 std::string(size_t(kWidth - filled), ' ').c_str(), done, total, name.c_str());
    if (done == total) std::fputc('\n', stderr);
    std::fflush(stderr);
}

void add_quantize_options(cxxopts::Options& options) {
    // clang-format off
    options.add_options()
        ("input", "model to read (llama2.c .bin, runq q80, GGUF, nibble)", cxxopts::value<std::string>())
        ("output", "nibble model file to write", cxxopts::value<std::string>())
        ("format", "format of the linear layers: q4, q4a, nf4, iq4nl, q4k, q6k, q8, q3, q2 (also f16, f32)", cxxopts::value<std::string>()->default_value("q4"))
        ("group-size", "weights per group: 32, 64, 128, 256", cxxopts::value<int>()->default_value("32"))
        ("double-quant", "quantize the group scales (and q4a/q2 minimums) of the 4-, 3- and 2-bit formats to 8 bits (QLoRA)")
        ("keep", "TENSOR_PATTERN=FORMAT[:GROUP] override (glob, or re:REGEX); repeatable; last match wins", cxxopts::value<std::vector<std::string>>())
        ("rule", "scale choice: search (least squares), simple (max|w|/7, min/max, absmax), minus8 (q4: largest magnitude -> -8)", cxxopts::value<std::string>()->default_value("search"))
        ("no-default-keep", "do not give token_embd/output q8 when the format is 4-bit")
        ("tokenizer", "tokenizer to embed when the input carries none", cxxopts::value<std::string>()->default_value(""))
        ("method", "rtn (round to nearest), gptq, awq, awq+gptq (AWQ scales, then GPTQ)", cxxopts::value<std::string>()->default_value("rtn"))
        ("calib", "calibration text for gptq/awq (documents as for perplexity)", cxxopts::value<std::string>())
        ("calib-tokens", "calibration tokens to use (from the start of --calib)", cxxopts::value<int64_t>()->default_value("8192"))
        ("act-order", "gptq: quantize columns in order of decreasing Hessian diagonal")
        ("static-groups", "gptq with --act-order: fit groups on the original columns first")
        ("damp", "gptq: dampening, as a fraction of the mean Hessian diagonal", cxxopts::value<float>()->default_value("0.01"))
        ("file-version", "nibble file version to write: 1 (row-major) or 2 (matrices in interleaved row blocks of 4 rows)", cxxopts::value<int>()->default_value("2"))
        ("target-size", "size budget of the output file (bytes, or with K, M, G: powers of 1000): each linear layer (and on small models the embedding and classifier) gets q2, q3, q4 or q8 by its calibration-weighted error; needs --calib", cxxopts::value<std::string>())
        ("bpw", "size budget in bits per weight of the linear layers (blk.*; the rest as the recipe says)", cxxopts::value<double>())
        ("q,quiet", "no progress bar and no table")
        ("h,help", "show this help");
    // clang-format on
    options.parse_positional({"input", "output"});
    options.positional_help("IN OUT");
}

// --format, --group-size, --double-quant, --rule, --no-default-keep, --keep.
QuantizeRecipe recipe_options(const cxxopts::ParseResult& args) {
    QuantizeRecipe recipe;
    const std::string fname = args["format"].as<std::string>();
    const auto format = parse_format(fname);
    if (!format || is_ggml_block_format(*format)) {  // those come from GGUF files only
        throw UsageError("--format: unknown format '" + fname +
                         "' (q4, q4a, nf4, iq4nl, q4k, q6k, q8, q3, q2, f16, f32)");
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
    if (recipe.double_quant && !supports_double_quant(recipe.format)) {
        throw UsageError("--double-quant: applies to the 4-, 3- and 2-bit formats only, not " +
                         fname);
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
    return recipe;
}

// --method and the calibration options that go with it.
struct MethodOptions {
    CalibratedOptions calibrated;
    int64_t calib_tokens = 0;
};

MethodOptions method_options(const cxxopts::ParseResult& args, const QuantizeRecipe& recipe) {
    const auto method = parse_method(args["method"].as<std::string>());
    if (!method) {
        throw UsageError("--method: unknown method '" + args["method"].as<std::string>() +
                         "' (rtn, gptq, awq, awq+gptq)");
    }
    MethodOptions o;
    CalibratedOptions& calibrated = o.calibrated;
    calibrated.method = *method;
    calibrated.gptq.act_order = args.count("act-order") > 0;
    calibrated.gptq.static_groups = args.count("static-groups") > 0;
    calibrated.gptq.damp = args["damp"].as<float>();
    o.calib_tokens = args["calib-tokens"].as<int64_t>();
    const bool uses_gptq = *method == QuantMethod::gptq || *method == QuantMethod::awq_gptq;
    if (*method != QuantMethod::rtn && !args.count("calib")) {
        throw UsageError(std::string("--method ") + method_name(*method) + " needs --calib TEXT");
    }
    const bool budget = args.count("target-size") > 0 || args.count("bpw") > 0;
    if (budget && !args.count("calib")) {
        throw UsageError("--target-size/--bpw: needs --calib TEXT (the layers' input statistics)");
    }
    if (*method == QuantMethod::rtn && args.count("calib") && !budget) {
        throw UsageError("--calib: --method rtn uses no calibration");
    }
    if (!uses_gptq &&
        (calibrated.gptq.act_order || calibrated.gptq.static_groups || args.count("damp"))) {
        throw UsageError("--act-order, --static-groups and --damp apply to --method gptq only");
    }
    if (calibrated.gptq.static_groups && !calibrated.gptq.act_order) {
        throw UsageError("--static-groups: applies with --act-order only");
    }
    if (!(calibrated.gptq.damp > 0.0f && calibrated.gptq.damp <= 1.0f)) {
        throw UsageError("--damp must be in (0, 1]");
    }
    if (o.calib_tokens < 2 || o.calib_tokens > (int64_t(1) << 24)) {
        throw UsageError("--calib-tokens must be in 2..16777216");
    }
    if (*method != QuantMethod::rtn && !is_grouped(recipe.format)) {
        throw UsageError(std::string("--method ") + method_name(*method) +
                         ": needs a grouped --format (q4, q4a, nf4, iq4nl, q8, q3, q2)");
    }
    bool kquant = recipe.format == WeightFormat::q4k;
    for (const KeepRule& k : recipe.keep)
        kquant = kquant || k.format == WeightFormat::q4k || k.format == WeightFormat::q6k;
    if (*method != QuantMethod::rtn && kquant) {
        throw UsageError(std::string("--method ") + method_name(*method) +
                         ": q4k and q6k are quantized with --method rtn only");
    }
    return o;
}

// The tokenizer to embed: --tokenizer, else the input's own, else one found
// next to the input (as `nibble run` would find it); empty, with a warning,
// when there is none.
std::string embedded_tokenizer(const Model& model, const std::string& tokenizer_path) {
    std::string tokenizer_proto = model.tokenizer_proto;
    if (!tokenizer_path.empty() || tokenizer_proto.empty()) {
        try {
            tokenizer_proto = resolve_tokenizer(model, tokenizer_path).serialized_proto();
        } catch (const std::exception& e) {
            if (!tokenizer_path.empty()) throw;
            std::fprintf(stderr, "warning: %s; the output needs --tokenizer to run\n",
                         escape_for_terminal(e.what()).c_str());
        }
    }
    return tokenizer_proto;
}

// --file-version: the nibble file version the writer produces.
void set_file_version(int version) {
    try {
        set_nibble_write_version(version);
    } catch (const std::invalid_argument& e) {
        throw UsageError(std::string("--file-version: ") + e.what());
    }
}

// GPTQ/AWQ: calibration sequences from --calib, then tensor by tensor into the file.
QuantizeResult quantize_calibrated(const cxxopts::ParseResult& args, const Model& model,
                                   const QuantizeRecipe& recipe, const MethodOptions& m,
                                   const std::string& tokenizer_proto, bool quiet) {
    const std::string calib_path = args["calib"].as<std::string>();
    const Tokenizer tokenizer = resolve_tokenizer(model, args["tokenizer"].as<std::string>());
    const CalibSequences calib = calibration_sequences(read_text_file(calib_path), tokenizer,
                                                       m.calib_tokens, model.config.max_seq_len);
    const char* method = method_name(m.calibrated.method);
    if (!quiet) {
        std::fprintf(stderr, "%s: %lld calibration tokens in %lld sequences from %s\n", method,
                     static_cast<long long>(calib.size()), static_cast<long long>(calib.count()),
                     calib_path.c_str());
    }
    return quantize_calibrated_to_file(model, recipe, m.calibrated, calib,
                                       args["output"].as<std::string>(), tokenizer_proto,
                                       quiet ? QuantizeProgress() : draw_progress);
}

// --target-size SIZE (K, M, G: powers of 1000) or --bpw B; none: both 0.
BudgetTarget budget_target(const cxxopts::ParseResult& args) {
    if (args.count("target-size") && args.count("bpw")) {
        throw UsageError("--target-size and --bpw: give one of them");
    }
    BudgetTarget target;
    if (args.count("bpw")) {
        target.linear_bpw = args["bpw"].as<double>();
        if (!(target.linear_bpw >= 2.0 && target.linear_bpw <= 32.0)) {
            throw UsageError("--bpw must be in 2..32");
        }
        return target;
    }
    if (!args.count("target-size")) return target;
    const std::string s = args["target-size"].as<std::string>();
    size_t used = 0;
    double v = 0.0;
    try {
        v = std::stod(s, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    double unit = 1.0;
    const std::string suffix = s.substr(used);
    if (suffix == "K" || suffix == "k")
        unit = 1e3;
    else if (suffix == "M")
        unit = 1e6;
    else if (suffix == "G")
        unit = 1e9;
    else if (!suffix.empty())
        used = 0;
    if (used == 0 || !(v > 0.0)) {
        throw UsageError("--target-size: '" + s + "' is not a size (e.g. 2.2G, 800M, 1500000)");
    }
    target.file_bytes = uint64_t(v * unit);
    return target;
}

// The budget's formats as --keep rules, with the table printed.
QuantizeRecipe apply_budget(const cxxopts::ParseResult& args, const Model& model,
                            const QuantizeRecipe& recipe, const BudgetTarget& target,
                            const std::string& tokenizer_proto, bool quiet,
                            uint64_t& target_bytes) {
    const Tokenizer tokenizer = resolve_tokenizer(model, args["tokenizer"].as<std::string>());
    const CalibSequences calib =
        calibration_sequences(read_text_file(args["calib"].as<std::string>()), tokenizer,
                              args["calib-tokens"].as<int64_t>(), model.config.max_seq_len);
    // Header, tensor table and tokenizer: a small allowance beyond the blobs.
    const uint64_t overhead = tokenizer_proto.size() + 4096 + 128 * model.tensors().size();
    const BudgetPlan plan = plan_budget(model, recipe, calib, target, overhead);
    if (!quiet) std::fputs(format_budget(plan).c_str(), stdout);
    target_bytes = plan.target_bytes;
    return budget_recipe(recipe, plan);
}

}  // namespace

int quantize_command(int argc, char** argv) {
    cxxopts::Options options(argv[0], "Quantize a model into a nibble model file");
    add_quantize_options(options);
    const auto parsed = parse_command_line(options, argc, argv);
    if (!parsed) return 0;
    const cxxopts::ParseResult& args = *parsed;
    if (!args.count("input") || !args.count("output")) throw UsageError("expected IN and OUT");
    const QuantizeRecipe recipe = recipe_options(args);
    const MethodOptions method = method_options(args, recipe);
    set_file_version(args["file-version"].as<int>());

    const bool quiet = args.count("quiet") > 0;
    const std::string out_path = args["output"].as<std::string>();
    const std::string tokenizer_path = args["tokenizer"].as<std::string>();
    // Before any work: the output must not be an input, a folder, or unwritable.
    const std::string in_path = args["input"].as<std::string>();
    std::vector<std::string> inputs = model_input_files(in_path);
    inputs.push_back(tokenizer_path);
    if (args.count("calib")) inputs.push_back(args["calib"].as<std::string>());
    check_output_path(out_path, inputs);
    // RTN streams: each source tensor is converted when its turn comes and
    // released after (Tensor::deferred). GPTQ/AWQ run the model, so load it whole.
    const bool budget = args.count("target-size") > 0 || args.count("bpw") > 0;
    const bool streamed = method.calibrated.method == QuantMethod::rtn && !budget;
    const Model model = load_model_reporting(args["input"].as<std::string>(),
                                             {.defer_conversion = streamed, .repack = false});
    const std::string tokenizer_proto = embedded_tokenizer(model, tokenizer_path);
    const BudgetTarget target = budget_target(args);
    const bool budget_on = target.file_bytes > 0 || target.linear_bpw > 0.0;
    QuantizeRecipe chosen = recipe;
    uint64_t target_bytes = 0;
    if (budget_on) {
        try {
            chosen =
                apply_budget(args, model, recipe, target, tokenizer_proto, quiet, target_bytes);
        } catch (const std::invalid_argument& e) {
            throw UsageError(e.what());
        }
    }

    // Tensor by tensor into the file: the quantized model is never all in memory.
    QuantizeResult result;
    try {
        if (method.calibrated.method == QuantMethod::rtn) {
            result = quantize_model_to_file(model, chosen, out_path, tokenizer_proto,
                                            quiet ? QuantizeProgress() : draw_progress);
        } else {
            result = quantize_calibrated(args, model, chosen, method, tokenizer_proto, quiet);
        }
    } catch (const std::invalid_argument& e) {
        throw UsageError(e.what());
    } catch (const std::exception& e) {
        // The error on a line of its own, naming the input (a non-finite
        // weight says only which tensor it is in).
        if (g_progress_line_open) std::fputc('\n', stderr);
        g_progress_line_open = false;
        const std::string what = e.what();
        if (what.find("is not finite") == std::string::npos || what.rfind(in_path, 0) == 0) throw;
        throw std::runtime_error(in_path + ": " + what);
    }
    if (!quiet) std::fputs(format_report(result).c_str(), stdout);
    std::printf("wrote %s (%s, tokenizer %s)\n", escape_for_terminal(out_path).c_str(),
                budget_on ? "size budget" : format_name(recipe.format),
                tokenizer_proto.empty() ? "not included" : "included");
    if (budget_on) {
        std::error_code ec;
        const auto size = std::filesystem::file_size(out_path, ec);
        std::printf("size: target %llu bytes, measured %llu (%+.2f%%)\n",
                    static_cast<unsigned long long>(target_bytes),
                    static_cast<unsigned long long>(ec ? 0 : size),
                    100.0 * (double(ec ? 0 : size) / double(target_bytes) - 1.0));
    }
    return 0;
}

}  // namespace nibble::app

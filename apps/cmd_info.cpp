// nibble info: architecture, hyperparameters and every tensor of a model file.
#include <cstdio>
#include <cxxopts.hpp>
#include <set>

#include "apps/commands.h"
#include "apps/validate.h"
#include "kernels/interleave.h"
#include "models/loader.h"

namespace nibble::app {

int info_command(int argc, char** argv) {
    cxxopts::Options options(argv[0], "Describe a model file");
    options.add_options()("model", "model file", cxxopts::value<std::string>())("h,help",
                                                                                "show this help");
    options.parse_positional({"model"});
    options.positional_help("MODEL");
    const auto parsed = parse_command_line(options, argc, argv);
    if (!parsed) return 0;
    const cxxopts::ParseResult& args = *parsed;
    if (!args.count("model")) throw UsageError("missing MODEL");
    // Layouts only: nothing is converted (Tensor::deferred).
    const Model model = load_model(args["model"].as<std::string>(), {.defer_conversion = true});
    const ModelConfig& c = model.config;
    std::printf("file:          %s (%s)\n", model.source_path.c_str(), model.source_format.c_str());
    std::printf("architecture:  %s\n", c.architecture.c_str());
    std::printf("dim %d, hidden %d, layers %d, heads %d, kv heads %d (head size %d, GQA %d:1)\n",
                c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim(),
                c.n_heads / c.n_kv_heads);
    std::printf("vocab %d, context %d, rope theta %g (%s), rms eps %g\n", c.vocab_size,
                c.max_seq_len, double(c.rope_theta),
                c.rope_style == RopeStyle::adjacent_pairs ? "adjacent pairs" : "halves",
                double(c.norm_eps));
    if (const std::string options = c.describe_options(); !options.empty()) {
        std::printf("options:       %s\n", options.c_str());
    }
    std::printf("tokenizer:     %s\n",
                model.tokenizer_proto.empty() ? "not in the file" : "carried by the file");
    for (const std::string& note : model.import_notes)
        std::printf("imported:      %s\n", note.c_str());
    if (model.source_format == "gguf") {  // what a load for running does with the matrices
        std::set<const void*> seen;
        int n = 0;
        for (const Tensor* t : model.tensors()) {
            if (seen.insert(t->blob_id()).second && can_interleave(t->view.layout)) ++n;
        }
        if (n > 0) {
            std::printf(
                "repack:        %d matri%s can be repacked at load into interleaved row "
                "blocks (--repack); by default on this CPU they %s\n",
                n, n == 1 ? "x" : "ces",
                cpu_prefers_interleaved() ? "are" : "are not (kept row-major)");
        }
    }
    std::printf("\n%-28s %-6s %6s %14s %12s %7s\n", "tensor", "format", "group", "shape", "bytes",
                "bpw");
    const void* shared_with = model.token_embedding.blob_id();
    for (const Tensor* t : model.tensors()) {
        const PackedLayout& l = t->view.layout;
        const std::string shape = std::to_string(l.rows) + " x " + std::to_string(l.cols);
        const bool shared = t == &model.output && t->blob_id() == shared_with;
        std::printf("%-28s %-6s %6s %14s %12zu %7.3f%s\n", t->name.c_str(), format_name(l.format),
                    l.group_size ? (std::to_string(l.group_size) +
                                    (l.double_quant && l.format != WeightFormat::q4k ? "+dq" : ""))
                                       .c_str()
                                 : "-",
                    shape.c_str(), l.total_bytes, l.bits_per_weight(),
                    shared ? "  (shares token_embd)" : "");
    }
    const double bpw = 8.0 * double(model.weight_bytes()) / double(model.parameter_count());
    std::printf("\nparameters %lld, weight bytes %zu, %.3f bits per weight\n",
                static_cast<long long>(model.parameter_count()), model.weight_bytes(), bpw);
    return 0;
}

}  // namespace nibble::app

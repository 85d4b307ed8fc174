// nibble synth: a random-weight model in the exact shapes of a real architecture,
// streamed into a nibble file (for speed measurements without real weights).
#include <chrono>
#include <cstdio>
#include <cxxopts.hpp>

#include "apps/commands.h"
#include "apps/validate.h"
#include "models/nibble_file.h"
#include "models/output_file.h"
#include "models/synth.h"

namespace nibble::app {

namespace {

std::optional<ScaleRule> parse_rule(const std::string& name) {
    if (name == "simple") return ScaleRule::simple;
    if (name == "q4_minus8" || name == "minus8") return ScaleRule::q4_minus8;
    if (name == "search") return ScaleRule::search;
    return std::nullopt;
}

// The serialized tokenizer to embed: the one at `tokenizer_path`, which must
// match the shape's vocabulary, or none (said on stderr) when no path is given.
std::string synth_tokenizer_proto(const std::string& tokenizer_path, const SynthShape& shape,
                                  const std::string& output) {
    if (tokenizer_path.empty()) {
        std::fprintf(stderr,
                     "synth: no --tokenizer: %s will carry no tokenizer (pass --tokenizer to "
                     "'nibble run', or put tokenizer.model next to it)\n",
                     output.c_str());
        return "";
    }
    const Tokenizer tokenizer = Tokenizer::from_file(tokenizer_path);
    if (tokenizer.vocab_size() != shape.config.vocab_size) {
        throw std::runtime_error(tokenizer_path + ": tokenizer has " +
                                 std::to_string(tokenizer.vocab_size()) + " tokens, " + shape.name +
                                 " needs " + std::to_string(shape.config.vocab_size));
    }
    return tokenizer.serialized_proto();
}

}  // namespace

int synth_command(int argc, char** argv) {
    std::string shapes;
    for (const SynthShape& s : synth_shapes()) shapes += (shapes.empty() ? "" : "|") + s.name;
    cxxopts::Options options(argv[0], "Write a random-weight model of a real architecture's shape");
    options.add_options()("shape", "architecture: " + shapes, cxxopts::value<std::string>())(
        "format",
        "linear layers: q4, q4a, nf4, iq4nl, q4k, q3, q2, q8, f16, f32 (2- to 4-bit: "
        "embedding and output q8)",
        cxxopts::value<std::string>()->default_value("q4"))(
        "group-size", "weights per scale: 32, 64, 128, 256",
        cxxopts::value<int>()->default_value("32"))(
        "double-quant", "double-quantize the scales (2- to 4-bit formats)")(
        "rule", "scale rule: q4_minus8, simple, search (search: ~0.2 s per million weights)",
        cxxopts::value<std::string>()->default_value("q4_minus8"))(
        "seed", "random seed", cxxopts::value<uint64_t>()->default_value("1"))(
        "tokenizer",
        "SentencePiece tokenizer (the shape's vocabulary size) to embed (none: no tokenizer)",
        cxxopts::value<std::string>()->default_value(""))(
        "t,threads", "threads (0: physical cores)", cxxopts::value<int>()->default_value("0"))(
        "file-version", "nibble file version: 1 (row-major) or 2 (interleaved row blocks)",
        cxxopts::value<int>()->default_value("2"))("o,output", "output nibble file",
                                                   cxxopts::value<std::string>())("h,help",
                                                                                  "show this help");
    const auto parsed = parse_command_line(options, argc, argv);
    if (!parsed) return 0;
    const cxxopts::ParseResult& args = *parsed;
    if (!args.count("shape")) throw UsageError("missing --shape (" + shapes + ")");
    if (!args.count("output")) throw UsageError("missing --output (-o)");
    const std::string path = args["output"].as<std::string>();
    SynthShape shape;
    SynthOptions so;
    try {
        shape = find_synth_shape(args["shape"].as<std::string>());
        const auto format = parse_format(args["format"].as<std::string>());
        if (!format) {
            throw std::invalid_argument("--format: unknown format '" +
                                        args["format"].as<std::string>() + "'");
        }
        so.format = *format;
        so.group_size = args["group-size"].as<int>();
        so.double_quant = args.count("double-quant") > 0;
        const auto rule = parse_rule(args["rule"].as<std::string>());
        if (!rule) throw std::invalid_argument("--rule: must be q4_minus8, simple or search");
        so.rule = *rule;
        so.seed = args["seed"].as<uint64_t>();
        validate_synth_options(so);
        set_nibble_write_version(args["file-version"].as<int>());
    } catch (const std::invalid_argument& e) {
        throw UsageError(e.what());
    }
    const int threads = set_threads(args["threads"].as<int>());
    // Before any work: the output must not be the tokenizer, a folder, or unwritable.
    check_output_path(path, {args["tokenizer"].as<std::string>()});
    const std::string tokenizer_proto =
        synth_tokenizer_proto(args["tokenizer"].as<std::string>(), shape, path);
    const auto start = std::chrono::steady_clock::now();
    auto elapsed = [&] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    int last_percent = -1;
    const SynthResult r = write_synth_model(
        shape, so, tokenizer_proto, path,
        [&](uint64_t done, uint64_t total, const std::string& name) {
            // A line each 5% of the file, and one at the end.
            const int percent = int(100.0 * double(done) / double(total));
            if (percent / 5 == last_percent / 5 && done < total) return;
            last_percent = percent;
            std::fprintf(stderr, "synth: %3d%% %8.1f / %.1f MB  %6.1f s  %s\n", percent,
                         double(done) / 1e6, double(total) / 1e6, elapsed(), name.c_str());
        });
    std::fprintf(
        stderr, "synth: wrote %s: %s, %s, %.3f B parameters, %llu bytes, %d threads, %.1f s\n",
        path.c_str(), shape.name.c_str(), format_name(so.format), double(r.parameters) / 1e9,
        static_cast<unsigned long long>(r.file_bytes), threads, elapsed());
    return 0;
}

}  // namespace nibble::app

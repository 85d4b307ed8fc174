// nibble perplexity: perplexity of a text file under one of the protocols of
// engine/perplexity.h, with the running estimate, and KL divergence / top-1
// agreement against saved full-precision log-probabilities.
#include <cstdio>
#include <cxxopts.hpp>
#include <memory>

#include "apps/commands.h"
#include "apps/validate.h"
#include "engine/kl_divergence.h"
#include "engine/perplexity.h"
#include "models/loader.h"

namespace nibble::app {

namespace {

// CRLF -> LF, so the token stream does not depend on the file's line endings.
std::string normalized(const std::string& text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;
        out.push_back(text[i]);
    }
    return out;
}

}  // namespace

int perplexity_command(int argc, char** argv) {
    cxxopts::Options options(argv[0], "Perplexity of a model on a text file");
    // clang-format off
    options.add_options()
        ("m,model", "model file", cxxopts::value<std::string>())
        ("f,file", "text file, - for stdin (documents split on <|endoftext|> or lone newlines)", cxxopts::value<std::string>())
        ("tokenizer", "tokenizer file", cxxopts::value<std::string>()->default_value(""))
        ("c,ctx-size", "documents protocol: context (0: the model's); documents are cut to ctx-1 tokens", cxxopts::value<int>()->default_value("0"))
        ("ctx", "window protocol: the whole text as one token stream in windows of N tokens, each from a fresh context (0: one window per document)", cxxopts::value<int>()->default_value("0"))
        ("stride", "with --ctx: a window every S tokens, scoring the tokens not scored before (default N: non-overlapping windows scoring every token)", cxxopts::value<int>()->default_value("0"))
        ("second-half", "with --ctx: llama.cpp's protocol (non-overlapping windows, first token replaced by BOS, only the second half scored)")
        ("save-logits", "write the log-probabilities of every scored token to FILE (the base for --kl-base)", cxxopts::value<std::string>())
        ("kl-base", "report KL divergence and top-1 agreement against FILE (written by --save-logits with the same text and protocol)", cxxopts::value<std::string>())
        ("b,batch-size", "tokens per forward pass", cxxopts::value<int>()->default_value("128"))
        ("t,threads", "threads (0: physical cores)", cxxopts::value<int>()->default_value("0"))
        ("kv", "KV cache type: f32, f16, int8", cxxopts::value<std::string>()->default_value("f16"))
        ("q,quiet", "no running estimate")
        ("h,help", "show this help");
    // clang-format on
    const auto args = options.parse(argc, argv);
    if (args.count("help")) {
        std::fputs(options.help().c_str(), stdout);
        return 0;
    }
    reject_extra_arguments(args);
    if (!args.count("model")) throw UsageError("missing --model (-m)");
    if (!args.count("file")) throw UsageError("missing --file (-f)");
    const int context = args["ctx-size"].as<int>();
    const int window = args["ctx"].as<int>();
    int stride = args["stride"].as<int>();
    const bool second_half = args.count("second-half") > 0;
    const int batch = batch_size_option(args);
    if (context < 0 || context == 1) throw UsageError("--ctx-size must be 0 or at least 2");
    if (window < 0 || window == 1) throw UsageError("--ctx must be 0 or at least 2");
    if (window == 0 && (args.count("stride") || second_half)) {
        throw UsageError("--stride and --second-half need --ctx N");
    }
    if (second_half && args.count("stride")) {
        throw UsageError("--second-half: llama.cpp's windows do not overlap; drop --stride");
    }
    if (second_half && window < 4) throw UsageError("--second-half needs --ctx of at least 4");
    if (stride == 0) stride = window;
    if (window > 0 && (stride < 1 || stride > window)) {
        throw UsageError("--stride must be in 1..--ctx");
    }
    if (args.count("save-logits") && args.count("kl-base")) {
        throw UsageError(
            "--save-logits and --kl-base: save the base with the full-precision "
            "model first, then compare");
    }
    const KvType kv = kv_option(args);
    set_threads(args["threads"].as<int>());

    const std::string text_path = args["file"].as<std::string>();
    const std::string text = read_text_file(text_path);
    const Model model = load_model_reporting(args["model"].as<std::string>());
    const Tokenizer tokenizer = resolve_tokenizer(model, args["tokenizer"].as<std::string>());
    const int bos = tokenizer.bos_id();

    RuntimeOptions ro;
    ro.max_batch = batch;
    ro.kv_type = kv;
    std::vector<ScoredWindow> windows;
    int truncated = 0;
    if (window == 0) {
        std::vector<std::vector<int32_t>> docs;
        for (const std::string& doc : split_documents(text)) {
            docs.push_back(tokenizer.encode(doc, false));
        }
        ro.context = context > 0 ? context : model.config.max_seq_len;
        windows = document_windows(docs, bos, ro.context, &truncated);
    } else {
        if (window > model.config.max_seq_len) {
            throw UsageError("--ctx " + std::to_string(window) + " is longer than the model's " +
                             std::to_string(model.config.max_seq_len) + " positions");
        }
        const std::vector<int32_t> stream = tokenizer.encode(normalized(text), false);
        ro.context = window;
        windows = second_half ? llamacpp_windows(stream, bos, window)
                              : strided_windows(stream, bos, window, stride);
    }
    if (windows.empty()) throw std::runtime_error(text_path + ": no text to score");

    const int vocab = model.config.vocab_size;
    std::unique_ptr<LogitsBaseWriter> saver;
    std::unique_ptr<LogitsBaseReader> base;
    if (args.count("save-logits")) {
        saver = std::make_unique<LogitsBaseWriter>(args["save-logits"].as<std::string>(), vocab);
    }
    if (args.count("kl-base")) {
        base = std::make_unique<LogitsBaseReader>(args["kl-base"].as<std::string>(), vocab);
    }
    const bool quiet = args.count("quiet") > 0;
    check_state_memory(model, ro, window == 0 ? "--ctx-size" : "--ctx", "--batch-size");
    InferenceState state(model, ro);
    const PerplexityResult r = score_windows(
        state, windows,
        [&](const float* logits, int32_t target) {
            if (saver) saver->add(logits, target);
            if (base) base->add(logits, target);
        },
        [&](int done, int total, const PerplexityResult& so_far) {
            if (quiet) return;
            std::fprintf(stderr, "\r[%d/%d] perplexity %.4f", done, total, so_far.perplexity());
            if (base) {
                std::fprintf(stderr, ", KL %.6f, top-1 %.2f%%", base->stats().mean_kl(),
                             100.0 * base->stats().top1_agreement());
            }
            if (done == total) std::fputc('\n', stderr);
            std::fflush(stderr);
        });
    const char* protocol = window == 0 ? "documents" : second_half ? "llama.cpp" : "windows";
    std::printf(
        "protocol %s, windows %d, scored tokens %lld, truncated %d, mean NLL %.6f, perplexity "
        "%.6f\n",
        protocol, r.documents, static_cast<long long>(r.scored_tokens), truncated, r.mean_nll(),
        r.perplexity());
    if (saver) {
        saver->finish();
        std::printf("saved log-probabilities of %lld tokens to %s\n",
                    static_cast<long long>(saver->positions()),
                    args["save-logits"].as<std::string>().c_str());
    }
    if (base) {
        base->finish();
        const KlStats& k = base->stats();
        std::printf("KL divergence mean %.6f, max %.6f; top-1 agreement %.4f%% (%lld of %lld)\n",
                    k.mean_kl(), k.max_kl, 100.0 * k.top1_agreement(),
                    static_cast<long long>(k.same_top1), static_cast<long long>(k.positions));
    }
    return 0;
}

}  // namespace nibble::app

// nibble perplexity: perplexity of a text file under one of the protocols of
// eval/perplexity.h, with the running estimate, and KL divergence / top-1
// agreement against saved full-precision log-probabilities.
#include <unistd.h>

#include <cstdio>
#include <cxxopts.hpp>
#include <memory>
#include <optional>

#include "apps/commands.h"
#include "apps/memory_budget.h"
#include "apps/validate.h"
#include "eval/kl_divergence.h"
#include "eval/perplexity.h"
#include "models/input_file.h"
#include "models/loader.h"
#include "models/output_file.h"

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

struct PerplexityOptions {
    ModelOptions model;
    std::string text_path;
    int window = 0;  // --ctx: 0 for the documents protocol
    int stride = 0;
    bool second_half = false;
    std::string save_logits, kl_base;  // empty: not asked for
    bool quiet = false;
};

// Parses and validates the options; nullopt after printing --help.
std::optional<PerplexityOptions> parse_perplexity_options(int argc, char** argv) {
    cxxopts::Options options(argv[0], "Perplexity of a model on a text file");
    add_model_options(options, {.default_batch = 128});
    // clang-format off
    options.add_options()
        ("f,file", "text file, - for stdin (documents split on <|endoftext|> or lone newlines; documents protocol: each cut to ctx-size - 1 tokens)", cxxopts::value<std::string>())
        ("ctx", "window protocol: the whole text as one token stream in windows of N tokens, each from a fresh context (0: one window per document)", cxxopts::value<int>()->default_value("0"))
        ("stride", "with --ctx: a window every S tokens, scoring the tokens not scored before (default N: non-overlapping windows scoring every token)", cxxopts::value<int>()->default_value("0"))
        ("second-half", "with --ctx: llama.cpp's protocol (non-overlapping windows, first token replaced by BOS, only the second half scored)")
        ("save-logits", "write the log-probabilities of every scored token to FILE (the base for --kl-base)", cxxopts::value<std::string>())
        ("kl-base", "report KL divergence and top-1 agreement against FILE (written by --save-logits with the same text and protocol)", cxxopts::value<std::string>())
        ("q,quiet", "no running estimate")
        ("h,help", "show this help");
    // clang-format on
    const auto parsed = parse_command_line(options, argc, argv);
    if (!parsed) return std::nullopt;
    const cxxopts::ParseResult& args = *parsed;
    PerplexityOptions o;
    o.model = model_options(args);
    if (!args.count("file")) throw UsageError("missing --file (-f)");
    o.text_path = args["file"].as<std::string>();
    o.window = args["ctx"].as<int>();
    o.stride = args["stride"].as<int>();
    o.second_half = args.count("second-half") > 0;
    if (args.count("save-logits")) o.save_logits = args["save-logits"].as<std::string>();
    if (args.count("kl-base")) o.kl_base = args["kl-base"].as<std::string>();
    o.quiet = args.count("quiet") > 0;
    if (o.model.context == 1) throw UsageError("--ctx-size must be 0 or at least 2");
    if (o.window < 0 || o.window == 1) throw UsageError("--ctx must be 0 or at least 2");
    if (o.window == 0 && (args.count("stride") || o.second_half)) {
        throw UsageError("--stride and --second-half need --ctx N");
    }
    if (o.second_half && args.count("stride")) {
        throw UsageError("--second-half: llama.cpp's windows do not overlap; drop --stride");
    }
    if (o.second_half && o.window < 4) throw UsageError("--second-half needs --ctx of at least 4");
    if (o.stride == 0) o.stride = o.window;
    if (o.window > 0 && (o.stride < 1 || o.stride > o.window)) {
        throw UsageError("--stride must be in 1..--ctx");
    }
    if (!o.save_logits.empty() && !o.kl_base.empty()) {
        throw UsageError(
            "--save-logits and --kl-base: save the base with the full-precision "
            "model first, then compare");
    }
    return o;
}

// The windows to score under the chosen protocol; sets ro.context to fit them.
std::vector<ScoredWindow> make_windows(const PerplexityOptions& o, const std::string& text,
                                       const Model& model, const Tokenizer& tokenizer,
                                       RuntimeOptions& ro, int& truncated) {
    const int bos = tokenizer.bos_id();
    if (o.window == 0) {
        // Each document is cut to ctx-size - 1 tokens: its text past
        // (ctx-size + 1) * max_token_bytes bytes (then to the next space,
        // where SentencePiece pieces end) is never tokenized, so a huge line
        // costs no more than a short one.
        const size_t keep = size_t(ro.context + 1) * max_token_bytes(tokenizer);
        std::vector<std::vector<int32_t>> docs;
        for (const std::string& doc : split_documents(text)) {
            size_t cut = doc.size();
            if (doc.size() > keep) {
                const size_t space = doc.find_first_of(" \n", keep);
                cut = space != std::string::npos && space - keep < 4096 ? space : keep;
            }
            docs.push_back(tokenizer.encode(std::string_view(doc).substr(0, cut), false));
        }
        return document_windows(docs, bos, ro.context, &truncated);
    }
    if (o.window > model.config.max_seq_len) {
        throw UsageError("--ctx " + std::to_string(o.window) + " is longer than the model's " +
                         std::to_string(model.config.max_seq_len) + " positions");
    }
    // The whole text is one token stream: refused up front when tokenizing it
    // cannot fit in memory.
    const auto available = available_memory_bytes();
    const uint64_t cost = uint64_t(text.size()) * kTokenizeBytesPerTextByte;
    if (available && cost > *available) {
        throw std::runtime_error(o.text_path + ": tokenizing " + byte_size_text(text.size()) +
                                 " of text as one stream needs about " + byte_size_text(cost) +
                                 ", more than the " + byte_size_text(*available) +
                                 " available; score a shorter text");
    }
    const std::vector<int32_t> stream = tokenizer.encode(normalized(text), false);
    ro.context = o.window;
    return o.second_half ? llamacpp_windows(stream, bos, o.window)
                         : strided_windows(stream, bos, o.window, o.stride);
}

// Scores the windows, feeding every scored position to --save-logits or --kl-base.
PerplexityResult score(const PerplexityOptions& o, InferenceState& state,
                       const std::vector<ScoredWindow>& windows, LogitsBaseWriter* saver,
                       LogitsBaseReader* base) {
    return score_windows(
        state, windows,
        [&](const float* logits, int32_t target) {
            if (saver) saver->add(logits, target);
            if (base) base->add(logits, target);
        },
        [&](int done, int total, const PerplexityResult& so_far) {
            if (o.quiet) return;
            std::fprintf(stderr, "\r[%d/%d] perplexity %.4f", done, total, so_far.perplexity());
            if (base) {
                std::fprintf(stderr, ", KL %.6f, top-1 %.2f%%", base->stats().mean_kl(),
                             100.0 * base->stats().top1_agreement());
            }
            if (done == total) std::fputc('\n', stderr);
            std::fflush(stderr);
        });
}

}  // namespace

int perplexity_command(int argc, char** argv) {
    const std::optional<PerplexityOptions> parsed = parse_perplexity_options(argc, argv);
    if (!parsed) return 0;
    const PerplexityOptions& o = *parsed;
    set_threads(o.model.threads);
    // Before anything is read: --save-logits is none of the inputs, and a file;
    // --kl-base a regular file (a FIFO would block).
    if (!o.save_logits.empty()) {
        std::vector<std::string> inputs = model_input_files(o.model.model_path);
        inputs.push_back(o.model.tokenizer_path);
        inputs.push_back(o.text_path);
        check_output_path(o.save_logits, inputs);
    }
    if (!o.kl_base.empty()) ::close(open_regular_file(o.kl_base, "logits base"));

    const std::string text = read_text_file(o.text_path);
    const LoadedModel loaded(o.model);
    const Model& model = loaded.model;
    const Tokenizer& tokenizer = loaded.tokenizer;
    RuntimeOptions ro = loaded.runtime;
    int truncated = 0;
    const std::vector<ScoredWindow> windows =
        make_windows(o, text, model, tokenizer, ro, truncated);
    if (windows.empty()) throw std::runtime_error(o.text_path + ": no text to score");

    const int vocab = model.config.vocab_size;
    std::unique_ptr<TemporaryOutput> saved_file;  // renamed into place when all is written
    std::unique_ptr<LogitsBaseWriter> saver;
    std::unique_ptr<LogitsBaseReader> base;
    if (!o.save_logits.empty()) {
        saved_file = std::make_unique<TemporaryOutput>(o.save_logits);
        saver = std::make_unique<LogitsBaseWriter>(o.save_logits, saved_file->release_fd(), vocab);
    }
    if (!o.kl_base.empty()) base = std::make_unique<LogitsBaseReader>(o.kl_base, vocab);
    check_state_memory(model, ro, o.window == 0 ? "--ctx-size" : "--ctx", "--batch-size");
    InferenceState state(model, ro);
    const PerplexityResult r = score(o, state, windows, saver.get(), base.get());
    const char* protocol = o.window == 0 ? "documents" : o.second_half ? "llama.cpp" : "windows";
    std::printf(
        "protocol %s, windows %d, scored tokens %lld, truncated %d, mean NLL %.6f, perplexity "
        "%.6f\n",
        protocol, r.documents, static_cast<long long>(r.scored_tokens), truncated, r.mean_nll(),
        r.perplexity());
    if (saver) {
        saver->finish();
        saved_file->commit();
        std::printf("saved log-probabilities of %lld tokens to %s\n",
                    static_cast<long long>(saver->positions()),
                    escape_for_terminal(o.save_logits).c_str());
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

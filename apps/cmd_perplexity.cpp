// nibble perplexity: document-wise perplexity of a text file (protocol in engine/perplexity.h).
#include <cstdio>
#include <cxxopts.hpp>
#include <fstream>
#include <sstream>

#include "apps/commands.h"
#include "engine/perplexity.h"
#include "models/loader.h"

namespace nibble::app {

int perplexity_command(int argc, char** argv) {
    cxxopts::Options options(argv[0], "Perplexity of a model on a text file");
    // clang-format off
    options.add_options()
        ("m,model", "model file", cxxopts::value<std::string>())
        ("f,file", "text file (documents split on <|endoftext|> or lone newlines)", cxxopts::value<std::string>())
        ("tokenizer", "tokenizer file", cxxopts::value<std::string>()->default_value(""))
        ("c,ctx-size", "context size (0: the model's); documents are cut to ctx-1 tokens", cxxopts::value<int>()->default_value("0"))
        ("b,batch-size", "tokens per forward pass", cxxopts::value<int>()->default_value("128"))
        ("t,threads", "threads (0: physical cores)", cxxopts::value<int>()->default_value("0"))
        ("kv", "KV cache type: f32, f16, int8", cxxopts::value<std::string>()->default_value("f16"))
        ("h,help", "show this help");
    // clang-format on
    const auto args = options.parse(argc, argv);
    if (args.count("help")) {
        std::fputs(options.help().c_str(), stdout);
        return 0;
    }
    if (!args.count("model")) throw UsageError("missing --model (-m)");
    if (!args.count("file")) throw UsageError("missing --file (-f)");
    const int context = args["ctx-size"].as<int>();
    const int batch = batch_size_option(args);
    if (context < 0 || context == 1) throw UsageError("--ctx-size must be 0 or at least 2");
    const KvType kv = kv_option(args);
    set_threads(args["threads"].as<int>());

    const std::string text_path = args["file"].as<std::string>();
    std::ifstream in(text_path, std::ios::binary);
    if (!in) throw std::runtime_error(text_path + ": cannot open");
    std::stringstream buffer;
    buffer << in.rdbuf();

    const Model model = load_model(args["model"].as<std::string>());
    const Tokenizer tokenizer = resolve_tokenizer(model, args["tokenizer"].as<std::string>());
    std::vector<std::vector<int32_t>> docs;
    for (const std::string& doc : split_documents(buffer.str())) {
        docs.push_back(tokenizer.encode(doc, false));
    }
    if (docs.empty()) throw std::runtime_error(text_path + ": no text to score");
    RuntimeOptions ro;
    ro.context = context > 0 ? context : model.config.max_seq_len;
    ro.max_batch = batch;
    ro.kv_type = kv;
    InferenceState state(model, ro);
    const PerplexityResult r = perplexity(state, docs, tokenizer.bos_id());
    std::printf("documents %d, scored tokens %lld, truncated %d, mean NLL %.6f, perplexity %.6f\n",
                r.documents, static_cast<long long>(r.scored_tokens), r.truncated_documents,
                r.mean_nll(), r.perplexity());
    return 0;
}

}  // namespace nibble::app

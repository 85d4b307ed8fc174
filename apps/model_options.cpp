// The shared start-up of the model commands: option declarations, parsing,
// validation and loading in one place (apps/model_options.h).
// GCC 12 reports a false -Wrestrict in cxxopts' integer parsing when it is
// inlined here (the same code compiles cleanly in other files).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wrestrict"
#endif

#include "apps/model_options.h"

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "apps/validate.h"
#include "kernels/interleave.h"

namespace nibble::app {

void add_model_options(cxxopts::Options& options, const ModelOptionSpec& spec) {
    // clang-format off
    options.add_options()
        ("m,model", "model file (llama2.c .bin, GGUF, nibble)", cxxopts::value<std::string>());
    if (spec.tokenizer_and_context) {
        options.add_options()
            ("tokenizer", "tokenizer (.model, llama2.c tokenizer.bin or tokenizer.json)", cxxopts::value<std::string>()->default_value(""))
            ("c,ctx-size", spec.ctx_help, cxxopts::value<int>()->default_value("0"));
    }
    options.add_options()
        ("b,batch-size", spec.batch_help, cxxopts::value<int>()->default_value(std::to_string(spec.default_batch)));
    if (spec.threads) {
        options.add_options()
            ("t,threads", "threads (0: physical cores)", cxxopts::value<int>()->default_value("0"));
    }
    options.add_options()
        ("kv", "KV cache type: f32, f16, int8", cxxopts::value<std::string>()->default_value("f16"))
        ("repack", "GGUF: repack the matrices at load into interleaved row blocks (default: when this CPU's kernels prefer them)")
        ("no-repack", "GGUF: keep the matrices row-major");
    // clang-format on
}

void add_template_option(cxxopts::Options& options, const std::string& group) {
    options.add_options(group)("template",
                               "chat template: llama2, chatml, zephyr, mistral, llama3, gemma, "
                               "phi3, plain (default: the model's, else plain)",
                               cxxopts::value<std::string>()->default_value(""));
}

std::optional<cxxopts::ParseResult> parse_command_line(cxxopts::Options& options, int argc,
                                                       char** argv) {
    auto args = options.parse(argc, argv);
    if (args.count("help")) {
        std::fputs(options.help().c_str(), stdout);
        return std::nullopt;
    }
    reject_extra_arguments(args);
    return args;
}

KvType kv_option(const cxxopts::ParseResult& args) {
    const auto kv = parse_kv_type(args["kv"].as<std::string>());
    if (!kv) throw UsageError("--kv must be f32, f16 or int8");
    return *kv;
}

int batch_size_option(const cxxopts::ParseResult& args) {
    const int batch = args["batch-size"].as<int>();
    if (batch <= 0 || batch > 4096) throw UsageError("--batch-size must be in 1..4096");
    return batch;
}

std::optional<bool> repack_option(const cxxopts::ParseResult& args) {
    // A flag given as --repack=false counts too: its value says which.
    const bool on = args.count("repack") > 0, off = args.count("no-repack") > 0;
    if (on && off) throw UsageError("--repack and --no-repack exclude each other");
    if (on) return args["repack"].as<bool>();
    if (off) return !args["no-repack"].as<bool>();
    return std::nullopt;
}

LoadOptions load_options(const ModelOptions& o) {
    LoadOptions l;
    l.repack = o.repack;
    return l;
}

std::string repack_note(const Model& model) {
    if (model.source_format != "gguf") return "";
    std::set<const void*> seen;
    int repacked = 0, row_major = 0;
    for (const Tensor* t : model.tensors()) {
        if (!seen.insert(t->blob_id()).second) continue;
        if (t->view.layout.interleave > 1) {
            ++repacked;
        } else if (can_interleave(t->view.layout)) {
            ++row_major;
        }
    }
    auto matrices = [](int n) { return std::to_string(n) + (n == 1 ? " matrix" : " matrices"); };
    if (repacked > 0) {
        return matrices(repacked) + " repacked into interleaved row blocks of " +
               std::to_string(kInterleaveRows) + " rows (--repack)";
    }
    if (row_major > 0) return matrices(row_major) + " kept row-major (--repack interleaves them)";
    return "";
}

ModelOptions model_options(const cxxopts::ParseResult& args, const ModelOptionSpec& spec) {
    if (!args.count("model")) throw UsageError("missing --model (-m)");
    ModelOptions o;
    o.model_path = args["model"].as<std::string>();
    if (spec.tokenizer_and_context) {
        o.tokenizer_path = args["tokenizer"].as<std::string>();
        o.context = args["ctx-size"].as<int>();
        if (o.context < 0) throw UsageError("--ctx-size must be >= 0");
    }
    o.batch = batch_size_option(args);
    o.kv = kv_option(args);
    if (spec.threads) o.threads = args["threads"].as<int>();
    o.repack = repack_option(args);
    // count() is 0 for an option the command did not declare.
    if (args.count("template")) {
        const std::string name = args["template"].as<std::string>();
        if (!name.empty()) {
            o.chat_template = parse_chat_template(name);
            if (!o.chat_template) {
                throw UsageError(
                    "--template must be llama2, chatml, zephyr, mistral, llama3, gemma, phi3 or "
                    "plain");
            }
        }
    }
    return o;
}

RuntimeOptions runtime_options(const ModelOptions& o, const Model& model) {
    RuntimeOptions ro;
    ro.context = o.context > 0 ? o.context : model.config.max_seq_len;
    ro.max_batch = o.batch;
    ro.kv_type = o.kv;
    return ro;
}

ChatTemplate chat_template_for(const ModelOptions& o, const Model& model) {
    if (o.chat_template) return *o.chat_template;
    return detect_chat_template(model.chat_template).value_or(ChatTemplate::plain);
}

Tokenizer resolve_tokenizer(const Model& model, const std::string& tokenizer_path) {
    auto checked = [&](Tokenizer t, const std::string& origin) {
        if (t.vocab_size() != model.config.vocab_size) {
            throw std::runtime_error(origin + ": tokenizer has " + std::to_string(t.vocab_size()) +
                                     " tokens, the model " +
                                     std::to_string(model.config.vocab_size));
        }
        apply_generation_settings(model, t);
        return t;
    };
    if (!tokenizer_path.empty())
        return checked(Tokenizer::from_file(tokenizer_path), tokenizer_path);
    if (!model.tokenizer_proto.empty()) {
        return checked(Tokenizer::from_serialized_proto(model.tokenizer_proto, model.source_path),
                       model.source_path);
    }
    const auto dir = std::filesystem::path(model.source_path).parent_path();
    const std::string vocab = std::to_string(model.config.vocab_size);
    for (const std::string& name :
         std::vector<std::string>{"tokenizer.model", "tokenizer.bin", "tok" + vocab + ".model",
                                  "tok" + vocab + ".bin"}) {
        const auto candidate = dir / name;
        if (!std::filesystem::is_regular_file(candidate)) continue;
        try {
            Tokenizer t = Tokenizer::from_file(candidate.string());
            if (t.vocab_size() == model.config.vocab_size) {
                apply_generation_settings(model, t);
                return t;
            }
        } catch (const std::exception&) {
            // not a usable tokenizer: keep looking
        }
    }
    throw std::runtime_error(model.source_path +
                             ": the file carries no tokenizer and none was found next to it; "
                             "pass --tokenizer PATH");
}

Model load_model_reporting(const std::string& path, const LoadOptions& options) {
    Model model = load_model(path, options);
    for (const std::string& note : model.import_notes) {
        std::fprintf(stderr, "%s: %s\n", path.c_str(), note.c_str());
    }
    if (const std::string note = repack_note(model); !note.empty()) {
        std::fprintf(stderr, "%s: %s\n", path.c_str(), note.c_str());
    }
    return model;
}

LoadedModel::LoadedModel(const ModelOptions& o)
    : model(load_model_reporting(o.model_path, load_options(o))),
      tokenizer(resolve_tokenizer(model, o.tokenizer_path)),
      runtime(runtime_options(o, model)) {}

int set_threads(int requested) {
    int physical_cores = 0;
    if (requested == 0) {
        // Physical cores: distinct (physical id, core id) pairs in /proc/cpuinfo.
        std::ifstream cpuinfo("/proc/cpuinfo");
        std::set<std::pair<int, int>> cores;
        int physical = 0;
        for (std::string line; std::getline(cpuinfo, line);) {
            const auto value = [&] { return std::atoi(line.substr(line.find(':') + 1).c_str()); };
            if (line.rfind("physical id", 0) == 0) physical = value();
            if (line.rfind("core id", 0) == 0) cores.insert({physical, value()});
        }
        physical_cores = cores.empty() ? available_cpus() : int(cores.size());
        physical_cores = std::min(physical_cores, available_cpus());
    }
    const int n = checked_thread_count(requested, physical_cores);
    omp_set_num_threads(n);
    return n;
}

}  // namespace nibble::app

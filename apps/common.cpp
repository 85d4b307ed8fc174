// Helpers shared by the subcommands: tokenizer lookup and thread count.
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
#include "models/loader.h"

namespace nibble::app {

Tokenizer resolve_tokenizer(const Model& model, const std::string& tokenizer_path) {
    auto checked = [&](Tokenizer t, const std::string& origin) {
        if (t.vocab_size() != model.config.vocab_size) {
            throw std::runtime_error(origin + ": tokenizer has " + std::to_string(t.vocab_size()) +
                                     " tokens, the model " +
                                     std::to_string(model.config.vocab_size));
        }
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
            if (t.vocab_size() == model.config.vocab_size) return t;
        } catch (const std::exception&) {
            // not a usable tokenizer: keep looking
        }
    }
    throw std::runtime_error(model.source_path +
                             ": the file carries no tokenizer and none was found next to it; "
                             "pass --tokenizer PATH");
}

Model load_model_reporting(const std::string& path) {
    Model model = load_model(path);
    for (const std::string& note : model.import_notes) {
        std::fprintf(stderr, "%s: %s\n", path.c_str(), note.c_str());
    }
    return model;
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

std::string read_text_file(const std::string& path) {
    return read_text_input(path);
}

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

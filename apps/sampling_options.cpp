// Sampling options: declaration, defaults and validation in one place.
// GCC 12 reports a false -Wrestrict in cxxopts' integer parsing when it is
// inlined here (the same code compiles cleanly in other files).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wrestrict"
#endif

#include "apps/sampling_options.h"

#include <random>

#include "apps/commands.h"

namespace nibble::app {

void add_sampling_options(cxxopts::Options& options, const std::string& default_seed) {
    // clang-format off
    options.add_options("sampling")
        ("s,seed", "random seed (-1: random)", cxxopts::value<int64_t>()->default_value(default_seed))
        ("temp", "temperature (0: greedy)", cxxopts::value<float>()->default_value("0.8"))
        ("top-k", "top-k sampling (0: off)", cxxopts::value<int>()->default_value("40"))
        ("top-p", "top-p sampling (1: off)", cxxopts::value<float>()->default_value("0.95"))
        ("min-p", "min-p sampling (0: off)", cxxopts::value<float>()->default_value("0.05"))
        ("repeat-penalty", "repetition penalty (1: off)", cxxopts::value<float>()->default_value("1.0"))
        ("repeat-last-n", "tokens considered by the penalty (0: off, -1: the whole context)", cxxopts::value<int>()->default_value("64"));
    // clang-format on
}

SamplerParams sampling_option_values(const cxxopts::ParseResult& args) {
    SamplerParams sp;
    sp.temperature = args["temp"].as<float>();
    sp.top_k = args["top-k"].as<int>();
    sp.top_p = args["top-p"].as<float>();
    sp.min_p = args["min-p"].as<float>();
    sp.repeat_penalty = args["repeat-penalty"].as<float>();
    sp.repeat_last_n = args["repeat-last-n"].as<int>();
    const int64_t seed = args["seed"].as<int64_t>();
    sp.seed = seed < 0 ? std::random_device{}() : uint64_t(seed);
    if (!(sp.temperature >= 0)) throw UsageError("--temp must be >= 0");
    if (!(sp.top_p > 0 && sp.top_p <= 1)) throw UsageError("--top-p must be in (0, 1]");
    if (!(sp.min_p >= 0 && sp.min_p <= 1)) throw UsageError("--min-p must be in [0, 1]");
    if (!(sp.repeat_penalty > 0)) throw UsageError("--repeat-penalty must be > 0");
    if (sp.top_k < 0) throw UsageError("--top-k must be >= 0 (0: off)");
    if (sp.repeat_last_n < -1) {
        throw UsageError("--repeat-last-n must be >= -1 (0: off, -1: the whole context)");
    }
    return sp;
}

}  // namespace nibble::app

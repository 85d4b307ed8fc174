// The sampling options shared by run, generate and chat (llama.cpp's flags and
// defaults), and their validated values.
#pragma once
#include <cxxopts.hpp>
#include <string>

#include "engine/sampler.h"

namespace nibble::app {

// Adds -s/--seed (default `default_seed`; -1: random), --temp, --top-k,
// --top-p, --min-p, --repeat-penalty and --repeat-last-n.
void add_sampling_options(cxxopts::Options& options, const std::string& default_seed);

// Throws UsageError naming the option for an out-of-range value.
SamplerParams sampling_option_values(const cxxopts::ParseResult& args);

}  // namespace nibble::app

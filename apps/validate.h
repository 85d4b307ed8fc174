// Checks of what the user asks for, made before any work: thread counts,
// stray arguments, memory for the requested context and batch, -n against the
// context, text inputs, and the error text printed for a failure.
#pragma once
#include <cstdint>
#include <cxxopts.hpp>
#include <string>

#include "engine/forward.h"
#include "engine/model.h"

namespace nibble::app {

// The thread count to use for -t N: refused when negative (UsageError),
// 0 means `default_threads`, larger counts are capped at the CPUs this process may run on with one
// line on stderr (printed once per process).
int checked_thread_count(int requested, int default_threads);
// CPUs this process may run on (sched_getaffinity), at least 1.
int available_cpus();

// Refuses arguments the command does not take (`info A B`): UsageError naming the first.
void reject_extra_arguments(const cxxopts::ParseResult& args);

// Refuses (std::runtime_error, one line) an inference state that would not fit
// in the memory available, naming `context_option` or `batch_option` as the one
// to lower (the memory check is skipped when /proc/meminfo cannot be read).
// When it fits but is longer than the model's trained context, says so on stderr.
void check_state_memory(const Model& model, const RuntimeOptions& options,
                        const std::string& context_option, const std::string& batch_option);

// The number of tokens to generate: n_predict, clipped to what fits in the
// context after the prompt, with one line on stderr when it is clipped.
int clip_n_predict(int n_predict, int prompt_tokens, int context);

// Largest text file read whole (perplexity -f, prompt files).
inline constexpr uint64_t kMaxTextFileBytes = uint64_t(256) << 20;
// A text file the user named (a regular file, or "-" for stdin), at most kMaxTextFileBytes.
std::string read_text_input(const std::string& path);

// `text` made safe for one terminal line: valid UTF-8 is kept, control
// characters and invalid bytes become \n, \t, \xNN; cut to at most max_bytes
// (then ending in "...").
std::string escape_for_terminal(const std::string& text, size_t max_bytes = 600);

}  // namespace nibble::app

// The start-up the model commands share (run, generate, chat, serve,
// perplexity, bench): the options that choose and size a model, parsing with
// --help and the refusal of stray arguments, validation with one line naming
// the option (UsageError, exit 2), and loading the model with its tokenizer.
// Each command declares only its own options besides these.
#pragma once
#include <cxxopts.hpp>
#include <optional>
#include <string>

#include "engine/forward.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "models/loader.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace nibble::app {

// Which shared options a command takes, and the defaults and help that differ.
struct ModelOptionSpec {
    int default_batch = 64;
    std::string batch_help = "tokens per forward pass";
    std::string ctx_help = "context size (0: the model's)";
    // --tokenizer and -c/--ctx-size (bench feeds random ids and sizes the
    // context from its tests).
    bool tokenizer_and_context = true;
    // -t/--threads as one count (bench takes a list of its own).
    bool threads = true;
};

// Declares -m/--model, --tokenizer, -c/--ctx-size, -b/--batch-size,
// -t/--threads, --kv and --repack/--no-repack (as `spec` says) in the default group.
void add_model_options(cxxopts::Options& options, const ModelOptionSpec& spec = {});

// Declares --template (a chat template name; empty: the model's) in `group`.
void add_template_option(cxxopts::Options& options, const std::string& group = "");

// Parses argv: nullopt after printing --help; a stray positional argument or an
// unknown option throws (exit 2).
std::optional<cxxopts::ParseResult> parse_command_line(cxxopts::Options& options, int argc,
                                                       char** argv);

// The validated values of the shared options.
struct ModelOptions {
    std::string model_path;
    std::string tokenizer_path;  // empty: resolve_tokenizer finds one
    int context = 0;             // 0: the model's
    int batch = 0;
    KvType kv = KvType::f16;
    int threads = 0;                            // 0: physical cores
    std::optional<bool> repack;                 // --repack/--no-repack; nullopt: the CPU's choice
    std::optional<ChatTemplate> chat_template;  // --template; nullopt: the model's
};
// Reads and validates the options `spec` declared, and --template when it was
// declared; a missing --model or a bad value throws UsageError naming the option.
ModelOptions model_options(const cxxopts::ParseResult& args, const ModelOptionSpec& spec = {});

// The single values behind the shared options: --kv (f32, f16, int8),
// --batch-size (1..4096) and --repack / --no-repack (at most one of them;
// nullopt: neither, LoadOptions::repack decides).
KvType kv_option(const cxxopts::ParseResult& args);
int batch_size_option(const cxxopts::ParseResult& args);
std::optional<bool> repack_option(const cxxopts::ParseResult& args);

// The load options the shared options give (--repack / --no-repack).
LoadOptions load_options(const ModelOptions& o);
// One line on how a GGUF model's matrices were laid out at load ("16 matrices
// repacked into interleaved row blocks of 4 rows", or kept row-major), or ""
// for another file format or a model without a matrix that can be interleaved.
std::string repack_note(const Model& model);

// The runtime options the shared options give for `model` (its context length
// unless -c).
RuntimeOptions runtime_options(const ModelOptions& o, const Model& model);

// The chat template: --template when given, else the one the model names,
// else plain.
ChatTemplate chat_template_for(const ModelOptions& o, const Model& model);

// The tokenizer for a model: --tokenizer PATH when given, else the one the file
// carries, else a tokenizer file next to the model (tokenizer.model,
// tokenizer.bin, tok<vocab>.model, tok<vocab>.bin) whose vocabulary size matches.
Tokenizer resolve_tokenizer(const Model& model, const std::string& tokenizer_path);

// load_model, then one line per import note on stderr ("PATH: 13 tensors Q4_K
// -> q4a g32, ...") and the repack note: what the loader converted.
Model load_model_reporting(const std::string& path, const LoadOptions& options = {});

// A model loaded as the shared options say: the weights (import notes on
// stderr), its tokenizer and the runtime options. Not movable: an
// InferenceState built on `model` keeps a reference to it.
struct LoadedModel {
    explicit LoadedModel(const ModelOptions& o);
    LoadedModel(const LoadedModel&) = delete;
    LoadedModel& operator=(const LoadedModel&) = delete;

    Model model;
    Tokenizer tokenizer;
    RuntimeOptions runtime;
};

// Sets the OpenMP thread count and returns it: 0 means the number of physical
// cores, a negative count is refused (UsageError), more than the CPUs available
// is capped with a message (apps/validate.h).
int set_threads(int requested);

}  // namespace nibble::app

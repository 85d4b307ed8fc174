// Subcommands of the nibble command line. Each takes the arguments after its
// name (argv[0] is "nibble <command>") and returns the process exit code.
#pragma once
#include <cxxopts.hpp>
#include <memory>
#include <string>

#include "engine/forward.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "models/loader.h"
#include "tokenizer/tokenizer.h"

namespace nibble::app {

int run_command(int argc, char** argv);
int info_command(int argc, char** argv);
int perplexity_command(int argc, char** argv);
int quantize_command(int argc, char** argv);
int synth_command(int argc, char** argv);
int bench_command(int argc, char** argv);
int generate_command(int argc, char** argv);
int chat_command(int argc, char** argv);
int tokenize_command(int argc, char** argv);
int serve_command(int argc, char** argv);

// An invalid option or value: reported as "nibble <command>: <message>", exit 2.
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The tokenizer for a model: --tokenizer PATH when given, else the one the file
// carries, else a tokenizer file next to the model (tokenizer.model,
// tokenizer.bin, tok<vocab>.model, tok<vocab>.bin) whose vocabulary size matches.
Tokenizer resolve_tokenizer(const Model& model, const std::string& tokenizer_path);

// load_model, then one line per import note on stderr ("PATH: 13 tensors Q4_K
// -> q4a g32, ..."): what the loader converted.
Model load_model_reporting(const std::string& path, const LoadOptions& options = {});

// The validated values of the options several commands share:
// --kv (f32, f16, int8) and --batch-size (1..4096).
KvType kv_option(const cxxopts::ParseResult& args);
int batch_size_option(const cxxopts::ParseResult& args);

// The most bytes of text one token of `tokenizer` stands for (its longest
// piece, at least 4): text longer than N times this has more than N tokens.
size_t max_token_bytes(const Tokenizer& tokenizer);

// Tokenizing costs about this many bytes of memory per byte of text
// (libsentencepiece, measured on a 40 MB line: 2.8 GB).
inline constexpr uint64_t kTokenizeBytesPerTextByte = 80;

// The whole content of a text file (or "-" for stdin): a regular file of at
// most kMaxTextFileBytes (apps/validate.h); throws std::runtime_error("PATH: ...").
std::string read_text_file(const std::string& path);

// The options `run`, `perplexity`, `chat` and `generate` share: -m/--model,
// --tokenizer, -c/--ctx-size, -b/--batch-size (default `default_batch`),
// -t/--threads, --kv.
void add_model_options(cxxopts::Options& options, int default_batch, const std::string& batch_help,
                       const std::string& ctx_help = "context size (0: the model's)");
struct ModelOptions {
    std::string model_path;
    std::string tokenizer_path;  // empty: resolve_tokenizer finds one
    int context = 0;             // 0: the model's
    int batch = 0;
    KvType kv = KvType::f16;
    int threads = 0;  // 0: physical cores
};
// Reads and validates them (a missing --model or a bad value: UsageError).
ModelOptions model_options(const cxxopts::ParseResult& args);
// The runtime options they give for `model` (its context length unless -c).
RuntimeOptions runtime_options(const ModelOptions& o, const Model& model);

// Sets the OpenMP thread count and returns it: 0 means the number of physical
// cores, a negative count is refused (UsageError), more than the CPUs available
// is capped with a message (apps/validate.h).
int set_threads(int requested);

}  // namespace nibble::app

// Subcommands of the nibble command line. Each takes the arguments after its
// name (argv[0] is "nibble <command>") and returns the process exit code.
#pragma once
#include <cxxopts.hpp>
#include <memory>
#include <string>

#include "apps/model_options.h"
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

// The most bytes of text one token of `tokenizer` stands for (its longest
// piece, at least 4): text longer than N times this has more than N tokens.
size_t max_token_bytes(const Tokenizer& tokenizer);

// Tokenizing costs about this many bytes of memory per byte of text
// (libsentencepiece, measured on a 40 MB line: 2.8 GB).
inline constexpr uint64_t kTokenizeBytesPerTextByte = 80;

// The whole content of a text file (or "-" for stdin): a regular file of at
// most kMaxTextFileBytes (apps/validate.h); throws std::runtime_error("PATH: ...").
std::string read_text_file(const std::string& path);

}  // namespace nibble::app

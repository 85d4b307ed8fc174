// The nibble command line: dispatches to a subcommand and turns every failure
// into one line on stderr and a non-zero exit code.
#include <cstdio>
#include <cstring>
#include <cxxopts.hpp>
#include <exception>
#include <new>
#include <string>

#include "apps/build_info.h"
#include "apps/commands.h"
#include "apps/validate.h"

using nibble::app::escape_for_terminal;

namespace {

void print_usage() {
    std::fputs(
        "usage: nibble <command> [options]\n"
        "commands:\n"
        "  run         generate text:      nibble run -m MODEL -p PROMPT -n N\n"
        "  generate    batch of prompts:   nibble generate -m MODEL -f PROMPTS --out OUT.jsonl\n"
        "  chat        talk with a model:  nibble chat -m MODEL [--system TEXT]\n"
        "  serve       OpenAI HTTP API:    nibble serve -m MODEL [--port 8080] [--parallel B]\n"
        "  info        describe a model:   nibble info MODEL\n"
        "  perplexity  score a text:       nibble perplexity -m MODEL -f TEXT\n"
        "  quantize    write a 4/8-bit file: nibble quantize IN OUT --format q4\n"
        "  synth       random-weight model: nibble synth --shape llama2-7b -o FILE\n"
        "  bench       speed (pp/tg t/s):   nibble bench -m MODEL -t 1,2 --roofline\n"
        "  tokenize    a text's tokens:     nibble tokenize -m MODEL -p TEXT [--ids]\n"
        "run 'nibble <command> --help' for its options, 'nibble --version' for the build\n",
        stdout);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
        print_usage();
        return argc < 2 ? 2 : 0;
    }
    const std::string command = argv[1];
    if (command == "--version") {
        try {
            nibble::app::print_version(stdout);
            return 0;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "nibble --version: error: %s\n", e.what());
            return 1;
        }
    }
    int (*handler)(int, char**) = nullptr;
    if (command == "run") handler = nibble::app::run_command;
    if (command == "info") handler = nibble::app::info_command;
    if (command == "perplexity") handler = nibble::app::perplexity_command;
    if (command == "quantize") handler = nibble::app::quantize_command;
    if (command == "synth") handler = nibble::app::synth_command;
    if (command == "bench") handler = nibble::app::bench_command;
    if (command == "generate") handler = nibble::app::generate_command;
    if (command == "chat") handler = nibble::app::chat_command;
    if (command == "tokenize") handler = nibble::app::tokenize_command;
    if (command == "serve") handler = nibble::app::serve_command;
    if (handler == nullptr) {
        std::fprintf(stderr, "nibble: unknown command '%s' (try 'nibble --help')\n",
                     escape_for_terminal(command, 80).c_str());
        return 2;
    }
    const std::string program = "nibble " + command;
    argv[1] = const_cast<char*>(program.c_str());
    try {
        return handler(argc - 1, argv + 1);
    } catch (const nibble::app::UsageError& e) {
        std::fprintf(stderr, "%s: %s\n", program.c_str(), escape_for_terminal(e.what()).c_str());
        return 2;
    } catch (const cxxopts::exceptions::exception& e) {
        std::fprintf(stderr, "%s: %s\n", program.c_str(), escape_for_terminal(e.what()).c_str());
        return 2;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "%s: error: out of memory\n", program.c_str());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: error: %s\n", program.c_str(),
                     escape_for_terminal(e.what()).c_str());
        return 1;
    }
}

// nibble tokenize: the ids (and pieces) of a text, with llama.cpp's
// llama-tokenize habits: "%6d -> 'piece'" per token, or --ids for a list
// "[1, 2, 3]"; control tokens written in the text are parsed unless
// --no-parse-special; \n, \t, ... escapes in the text are processed unless
// --no-escape; BOS as the model says unless --no-bos. MODEL is any model
// nibble reads, a (vocabulary-only) GGUF, a tokenizer.json, tokenizer.model
// or tokenizer.bin.
#include <cstdio>
#include <cstring>
#include <cxxopts.hpp>
#include <filesystem>
#include <fstream>

#include "apps/commands.h"
#include "apps/validate.h"
#include "models/gguf_tokenizer.h"
#include "tokenizer/utf8.h"

namespace nibble::app {

namespace {

bool starts_with_gguf_magic(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    char magic[4] = {};
    in.read(magic, 4);
    return in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

Tokenizer load_tokenizer(const std::string& path) {
    namespace fs = std::filesystem;
    const std::string ext = fs::path(path).extension().string();
    if (fs::is_regular_file(path) && (ext == ".json" || ext == ".model")) {
        return Tokenizer::from_file(path);
    }
    if (fs::is_regular_file(path) && starts_with_gguf_magic(path)) {
        return gguf_tokenizer(GgufFile::parse(MappedFile::open(path)));
    }
    try {
        const Model model = load_model(path, {.defer_conversion = true});
        return resolve_tokenizer(model, "");
    } catch (const std::exception&) {
        if (!fs::is_regular_file(path)) throw;
        try {
            return Tokenizer::from_file(path);  // tokenizer.bin
        } catch (const std::exception&) {
        }
        throw;  // the model loader's reason
    }
}

// llama.cpp's string_process_escapes: \n \r \t \' \" \\ and \xNN.
std::string process_escapes(const std::string& in) {
    std::string out;
    for (size_t i = 0; i < in.size(); ++i) {
        if (in[i] != '\\' || i + 1 == in.size()) {
            out += in[i];
            continue;
        }
        const char c = in[++i];
        switch (c) {
            case 'n':
                out += '\n';
                break;
            case 'r':
                out += '\r';
                break;
            case 't':
                out += '\t';
                break;
            case '\'':
            case '"':
            case '\\':
                out += c;
                break;
            case 'x':
                if (i + 2 < in.size() + 0 && std::isxdigit(uint8_t(in[i + 1])) &&
                    std::isxdigit(uint8_t(in[i + 2]))) {
                    out += char(std::stoi(in.substr(i + 1, 2), nullptr, 16));
                    i += 2;
                    break;
                }
                [[fallthrough]];
            default:
                out += '\\';
                out += c;
        }
    }
    return out;
}

}  // namespace

int tokenize_command(int argc, char** argv) {
    cxxopts::Options options(argv[0], "Print the tokens of a text");
    options.add_options()(
        "m,model", "model, GGUF (vocabulary-only too), tokenizer.json, tokenizer.model",
        cxxopts::value<std::string>())("p,prompt", "the text", cxxopts::value<std::string>())(
        "f,file", "read the text from a file", cxxopts::value<std::string>())(
        "stdin", "read the text from standard input")("ids", "print only the ids, as [1, 2, 3]")(
        "no-bos", "never put BOS in front")("no-escape", "do not process \\n, \\t, ... escapes")(
        "no-parse-special", "do not turn control tokens' texts into those tokens")(
        "show-count", "print the number of tokens")(
        "log-disable", "(accepted; nibble logs nothing)")("h,help", "show this help");
    const auto parsed = parse_command_line(options, argc, argv);
    if (!parsed) return 0;
    const cxxopts::ParseResult& args = *parsed;
    if (!args.count("model")) throw UsageError("missing -m MODEL");
    const int sources = int(args.count("prompt") + args.count("file") + args.count("stdin"));
    if (sources != 1) throw UsageError("give exactly one of -p PROMPT, -f FILE, --stdin");
    std::string text = args.count("prompt") ? args["prompt"].as<std::string>()
                       : args.count("file") ? read_text_file(args["file"].as<std::string>())
                                            : read_text_file("-");
    if (!args.count("no-escape")) text = process_escapes(text);

    const Tokenizer tokenizer = load_tokenizer(args["model"].as<std::string>());
    const bool add_bos = !args.count("no-bos");
    const std::vector<int32_t> ids = args.count("no-parse-special")
                                         ? tokenizer.encode(text, add_bos)
                                         : tokenizer.encode_template(text, add_bos);
    std::string out;
    out.reserve(ids.size() * 8);
    if (args.count("ids")) {
        out += '[';
        for (size_t i = 0; i < ids.size(); ++i) {
            if (i > 0) out += ", ";
            out += std::to_string(ids[i]);
        }
        out += "]\n";
    } else {
        for (int32_t id : ids) {
            char number[16];
            std::snprintf(number, sizeof number, "%6d", id);
            out += number;
            out += " -> '";
            // A piece that is part of a character: its bytes as <xx xx>.
            const std::string piece = tokenizer.token_text(id);
            std::string valid;
            append_utf8_replacing_invalid(piece, true, valid);
            if (valid == piece) {
                out += piece + "'\n";
            } else {
                out += '<';
                for (size_t i = 0; i < piece.size(); ++i) {
                    char hex[4];
                    std::snprintf(hex, sizeof hex, "%s%02x", i ? " " : "", uint8_t(piece[i]));
                    out += hex;
                }
                out += ">' (utf-8 decode failure)\n";
            }
        }
    }
    if (args.count("show-count"))
        out += "Total number of tokens: " + std::to_string(ids.size()) + "\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
}

}  // namespace nibble::app

// libFuzzer: the tokenizer settings of a Hugging Face directory
// (tokenizer_config.json, generation_config.json, chat_template.json,
// config.json: BOS/EOS choices and the chat template), applied to tok512's
// SentencePiece model. The input is the four files' texts separated by NUL
// bytes; a missing or empty part is a file that does not exist. Whatever is
// accepted must leave a tokenizer that loads with BOS and EOS control pieces,
// and a recognised chat template must render.
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_hf_checkpoint.h"
#include "models/hf_tokenizer.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace {

constexpr std::array<const char*, 4> kFiles = {"tokenizer_config.json", "generation_config.json",
                                               "chat_template.json", "config.json"};

// The folder holding exactly the files in `mask` (bit i: kFiles[i], a symlink to
// memfd slot i), made once per mask and removed at exit.
const std::string& folder(unsigned mask) {
    static std::array<std::string, 16> dirs;
    static const std::string root = [] {
        char name[] = "/tmp/nibble_fuzz_hftok.XXXXXX";
        if (mkdtemp(name) == nullptr) __builtin_trap();
        static const std::string removed = name;
        std::atexit([] {
            std::error_code ec;
            std::filesystem::remove_all(removed, ec);
        });
        return removed;
    }();
    std::string& dir = dirs[mask];
    if (!dir.empty()) return dir;
    const std::string d = root + "/" + std::to_string(mask);
    std::filesystem::create_directory(d);
    const uint8_t empty = 0;
    for (unsigned i = 0; i < kFiles.size(); ++i) {
        if ((mask & (1u << i)) == 0) continue;
        const std::string target = nibble::fuzz::as_file(&empty, 0, int(i));
        const std::string fd_path =
            "/proc/" + std::to_string(getpid()) + target.substr(std::strlen("/proc/self"));
        if (symlink(fd_path.c_str(), (d + "/" + kFiles[i]).c_str()) != 0) __builtin_trap();
    }
    dir = d;
    return dir;
}

const std::string& tok512_proto() {
    static const std::string proto =
        nibble::Tokenizer::from_file(std::string(NIBBLE_DATA_DIR) + "/tok512.model")
            .serialized_proto();
    return proto;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const std::string llama2 =
        R"({"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", )"
        R"("chat_template": "{% for message in messages %}[INST] {{ message['content'] }} [/INST]{% endfor %}"})";
    const std::string zephyr =
        R"({"bos_token": "<s>", "eos_token": "</s>", "chat_template": "<|user|>\n{{ m }}</s>\n<|assistant|>\n"})";
    const std::string gen = R"({"bos_token_id": 1, "eos_token_id": [2, 0]})";
    const std::string list =
        R"({"chat_template": [{"name": "tool_use", "template": "x"}, )"
        R"({"name": "default", "template": "<|im_start|>user\n{{ m }}<|im_end|>\n"}]})";
    const std::string config = R"({"bos_token_id": 1, "eos_token_id": 2})";
    const std::string nul(1, '\0');
    nibble::fuzz::write_seeds_if_asked({{"llama2", llama2},
                                        {"zephyr_gen", zephyr + nul + gen},
                                        {"all", llama2 + nul + gen + nul + list + nul + config},
                                        {"template_list", nul + nul + list},
                                        {"config_only", nul + nul + nul + config}});
    (void)tok512_proto();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    namespace f = nibble::fuzz;
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    std::array<std::string_view, kFiles.size()> parts;
    unsigned mask = 0;
    size_t at = 0;
    for (unsigned i = 0; i < kFiles.size() && at <= input.size(); ++i) {
        size_t end = input.find('\0', at);
        if (end == std::string_view::npos || i + 1 == kFiles.size()) end = input.size();
        parts[i] = input.substr(at, end - at);
        if (!parts[i].empty()) mask |= 1u << i;
        at = end + 1;
    }
    const std::string& dir = folder(mask);  // before the writes: it may create the memfds
    for (unsigned i = 0; i < kFiles.size(); ++i) {
        if (parts[i].empty()) continue;
        f::as_file(reinterpret_cast<const uint8_t*>(parts[i].data()), parts[i].size(), int(i));
    }
    return f::clean([&] {
        nibble::Model m;
        m.tokenizer_proto = tok512_proto();
        nibble::apply_hf_tokenizer_settings(m, nibble::read_hf_tokenizer_settings(dir));
        const auto tok = nibble::Tokenizer::from_serialized_proto(m.tokenizer_proto, "settings");
        if (!tok.is_control(tok.bos_id()) || !tok.is_control(tok.eos_id())) __builtin_trap();
        if (const auto t = nibble::detect_chat_template(m.chat_template)) {
            const std::vector<nibble::ChatMessage> chat = {
                {nibble::ChatMessage::Role::system, "Be brief."},
                {nibble::ChatMessage::Role::user, "Hi"}};
            (void)tok.encode(nibble::render_chat(*t, chat, true), true);
        }
    });
}

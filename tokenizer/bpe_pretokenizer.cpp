// PCRE2 pre-tokenizers (see bpe_pretokenizer.h).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/bpe_pretokenizer.h"

#include <pcre2.h>

#include <array>
#include <stdexcept>

namespace nibble {

namespace {

// llama.cpp's adaptation of Llama-3's tokenizer.json pattern (the (?i:...)
// contractions spelled out with character classes; the same language).
constexpr const char* kLlama3 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen2's: Llama-3's with single digits.
constexpr const char* kQwen2 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// GPT-2's.
constexpr const char* kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
// The same patterns as tokenizer.json files write them.
constexpr const char* kLlama3Json =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Json =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

bool is_one_of(std::string_view name, std::initializer_list<std::string_view> names) {
    for (std::string_view n : names) {
        if (name == n) return true;
    }
    return false;
}

}  // namespace

std::optional<NamedPreTokenizer> named_pretokenizer(std::string_view name) {
    if (is_one_of(name, {"llama-bpe", "llama3", "llama-v3", "falcon3"})) return {{{kLlama3}, true}};
    if (is_one_of(name, {"dbrx", "smaug-bpe"})) return {{{kLlama3}, false}};
    if (is_one_of(name, {"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"})) {
        return {{{kQwen2}, false}};
    }
    if (is_one_of(name, {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone",
                         "minerva-7b"})) {
        return {{{R"(\p{N})", kGpt2}, false}};
    }
    if (is_one_of(name, {"gpt-2", "gpt2", "phi-2", "roberta-bpe", "mpt", "olmo", "jais"})) {
        return {{{kGpt2}, false}};
    }
    if (name == "default") {
        return {{{R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", "[0-9][0-9][0-9]"}, false}};
    }
    return std::nullopt;
}

std::string pretokenizer_for_regex(std::string_view regex) {
    if (regex == kLlama3Json || regex == kLlama3) return "llama-bpe";
    if (regex == kQwen2Json || regex == kQwen2) return "qwen2";
    if (regex == kGpt2) return "gpt-2";
    return "";
}

struct PreTokenizer::Compiled {
    pcre2_code* code = nullptr;
    ~Compiled() { pcre2_code_free(code); }
};

PreTokenizer::PreTokenizer(const std::vector<std::string>& regexes) {
    for (size_t i = 0; i < regexes.size(); ++i) {
        int error = 0;
        PCRE2_SIZE offset = 0;
        auto compiled = std::make_unique<Compiled>();
        // UTF and UCP: \p{..}, \s and \w by Unicode properties; invalid UTF-8
        // in a text is matched as such instead of failing the match.
        compiled->code = pcre2_compile(
            reinterpret_cast<PCRE2_SPTR>(regexes[i].data()), regexes[i].size(),
            PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &offset, nullptr);
        if (compiled->code == nullptr) {
            std::array<PCRE2_UCHAR, 256> message{};
            pcre2_get_error_message(error, message.data(), message.size());
            throw std::runtime_error("regex " + std::to_string(i) + ": " +
                                     reinterpret_cast<const char*>(message.data()) + " at offset " +
                                     std::to_string(offset));
        }
        pcre2_jit_compile(compiled->code, PCRE2_JIT_COMPLETE);  // interpreted without JIT
        regexes_.push_back(std::move(compiled));
    }
}

PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;
PreTokenizer::~PreTokenizer() = default;

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& words) const {
    if (text.empty()) return;
    if (regexes_.empty()) {
        words.push_back(text);
        return;
    }
    pcre2_match_data* match = pcre2_match_data_create(1, nullptr);
    if (match == nullptr) throw std::bad_alloc();
    try {
        split_level(0, text, words, match);
    } catch (...) {
        pcre2_match_data_free(match);
        throw;
    }
    pcre2_match_data_free(match);
}

void PreTokenizer::split_level(size_t level, std::string_view text,
                               std::vector<std::string_view>& words, void* match_data) const {
    if (level == regexes_.size()) {
        words.push_back(text);
        return;
    }
    auto* match = static_cast<pcre2_match_data*>(match_data);
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t from = 0;  // where the next search starts
    size_t gap = 0;   // start of the text not yet given out
    while (from < text.size()) {
        const int rc = pcre2_match(regexes_[level]->code, subject, text.size(), from,
                                   PCRE2_NO_UTF_CHECK, match, nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            std::array<PCRE2_UCHAR, 256> message{};
            pcre2_get_error_message(rc, message.data(), message.size());
            throw std::runtime_error(std::string("tokenizer: pre-tokenizer regex failed (") +
                                     reinterpret_cast<const char*>(message.data()) + ")");
        }
        const PCRE2_SIZE* span = pcre2_get_ovector_pointer(match);
        const size_t begin = span[0], end = span[1];
        if (end == begin) {  // an empty match: move on by one character
            from = begin + 1;
            while (from < text.size() && (uint8_t(text[from]) & 0xC0) == 0x80) ++from;
            continue;
        }
        if (begin > gap) split_level(level + 1, text.substr(gap, begin - gap), words, match);
        split_level(level + 1, text.substr(begin, end - begin), words, match);
        gap = from = end;
    }
    if (gap < text.size()) split_level(level + 1, text.substr(gap), words, match);
}

}  // namespace nibble

// Splitting text into words before byte-pair merging, with PCRE2 regexes
// (UTF and Unicode properties, so \p{L}, \p{N}, \s and the look-ahead
// \s+(?!\S) behave as in the Hugging Face and llama.cpp tokenizers).
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nibble {

struct NamedPreTokenizer {
    std::vector<std::string> regexes;  // applied one after the other
    bool ignore_merges = false;        // llama.cpp's choice for this name
};

// The regexes llama.cpp (src/llama-vocab.cpp) uses for a GGUF
// tokenizer.ggml.pre name: "llama-bpe" (Llama-3), "qwen2" (Qwen2/2.5/3,
// DeepSeek-R1-Distill-Qwen), "smollm", "gpt-2", "default" and their aliases.
// nullopt for a name it does not know.
std::optional<NamedPreTokenizer> named_pretokenizer(std::string_view name);

// The name whose regexes a tokenizer.json Split pattern is ("" when none):
// Llama-3's and Qwen2's patterns, written with (?i:...) in tokenizer.json.
std::string pretokenizer_for_regex(std::string_view regex);

class PreTokenizer {
  public:
    // Compiles the regexes (JIT where PCRE2 has it). Throws
    // std::runtime_error("regex N: <PCRE2 message>") for an invalid one.
    explicit PreTokenizer(const std::vector<std::string>& regexes);
    PreTokenizer(PreTokenizer&&) noexcept;
    PreTokenizer& operator=(PreTokenizer&&) noexcept;
    ~PreTokenizer();

    // Appends the words of `text` to `words` (views into text; together they
    // cover it). The first regex splits the text into its matches and the
    // gaps between them; each further regex splits those pieces again
    // (llama.cpp's unicode_regex_split, Hugging Face's Split "Isolated").
    void split(std::string_view text, std::vector<std::string_view>& words) const;

  private:
    struct Compiled;
    void split_level(size_t level, std::string_view text, std::vector<std::string_view>& words,
                     void* match_data) const;
    std::vector<std::unique_ptr<Compiled>> regexes_;
};

}  // namespace nibble

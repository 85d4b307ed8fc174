// Byte-pair encoding over a BpeVocab: pre-tokenizer words (or, for
// SentencePiece-style vocabularies, the whole text) are merged by rank, lowest
// first, leftmost among equals, as Hugging Face tokenizers and llama.cpp do.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/bpe_pretokenizer.h"
#include "tokenizer/bpe_vocab.h"

namespace nibble {

class BpeModel {
  public:
    // Checks the vocabulary (merges of tokens it has, a known pre-tokenizer,
    // valid special ids). Throws std::runtime_error("<origin>: <key>: ...").
    BpeModel(BpeVocab vocab, const std::string& origin);

    // Appends the ids of `text`. Control tokens' texts become their ids only
    // with `parse_control` (text a chat template wrote); user-defined added
    // tokens (e.g. Qwen's "<think>") always do, as in llama.cpp and Hugging Face.
    void encode(std::string_view text, bool parse_control, std::vector<int32_t>& out) const;

    // The bytes token `id` stands for when decoding ("" for control tokens);
    // id must be in [0, size()).
    const std::string& token_bytes(int32_t id) const { return bytes_[size_t(id)]; }
    // The id of the token written `text` in the vocabulary, -1 when none.
    int32_t find(std::string_view text) const;
    int32_t size() const { return int32_t(vocab_.tokens.size()); }
    const BpeVocab& vocab() const { return vocab_; }

    // A self-contained byte string (tokens, types, merges as id pairs, the
    // pre-tokenizer, special ids) that Tokenizer::from_serialized_proto reads
    // back; it starts with kSerializedMagic.
    std::string serialize() const;
    static constexpr std::string_view kSerializedMagic{"nibble-bpe\x01", 11};
    static bool is_serialized(std::string_view bytes) {
        return bytes.substr(0, kSerializedMagic.size()) == kSerializedMagic;
    }
    // Throws std::runtime_error("<origin>: ...") for a truncated or
    // inconsistent string.
    static BpeVocab deserialize(std::string_view bytes, const std::string& origin);

  private:
    struct Merge {
        int32_t rank;
        int32_t result;
    };
    struct Scratch;
    void encode_plain(std::string_view text, Scratch& s, std::vector<int32_t>& out) const;
    void encode_word(std::string_view word, Scratch& s, std::vector<int32_t>& out) const;
    void merge_symbols(Scratch& s, std::vector<int32_t>& out) const;
    const Merge* find_merge(int32_t left, int32_t right) const;

    BpeVocab vocab_;
    PreTokenizer pretokenizer_;
    std::unordered_map<std::string_view, int32_t> ids_;  // vocabulary text -> id (into vocab_)
    std::unordered_map<uint64_t, Merge> merges_;         // (left << 32 | right) -> merge
    std::vector<std::string> bytes_;                     // decoded bytes of each token
    std::array<int32_t, 256> byte_tokens_{};             // the token of each single byte, -1: none
    // Added tokens matched in text before pre-tokenization, by first byte,
    // longest first.
    std::array<std::vector<int32_t>, 256> specials_by_first_byte_;
};

}  // namespace nibble

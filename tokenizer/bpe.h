// Byte-pair encoding over a BpeVocab: pre-tokenizer words (or, for
// SentencePiece-style vocabularies, the whole text) are merged by rank, lowest
// first, leftmost among equals, as Hugging Face tokenizers and llama.cpp do.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
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

    // The added token whose text starts at text[at] (the longest; control
    // tokens only with parse_control): {id, length}, or {-1, 0}.
    std::pair<int32_t, size_t> special_at(std::string_view text, size_t at,
                                          bool parse_control) const;

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
    void index_tokens();
    // `fail` throws with the vocabulary's origin.
    void index_merges(const std::function<void(const std::string&)>& fail);
    void encode_plain(std::string_view text, Scratch& s, std::vector<int32_t>& out) const;
    void encode_word(std::string_view word, Scratch& s, std::vector<int32_t>& out) const;
    void merge_symbols(Scratch& s, std::vector<int32_t>& out) const;
    const Merge* find_merge(int32_t left, int32_t right) const;

    // Open-addressing hash tables (linear probing, power-of-two sizes, at most
    // half full): loading a 128k-token, 280k-merge vocabulary looks up every
    // merge's tokens, and node-based maps spend that time in cache misses.
    struct TextSlot {
        uint32_t hash;
        int32_t id;  // -1: empty
    };
    struct MergeSlot {
        uint64_t key;  // left << 32 | right; kNoMerge: empty
        Merge merge;
    };
    static constexpr uint64_t kNoMerge = ~uint64_t(0);
    static uint64_t merge_key(int32_t left, int32_t right) {
        return uint64_t(uint32_t(left)) << 32 | uint32_t(right);
    }

    BpeVocab vocab_;
    PreTokenizer pretokenizer_;
    std::vector<TextSlot> ids_;               // vocabulary text -> id
    std::vector<MergeSlot> merges_;           // (left, right) -> merge
    std::vector<std::string> bytes_;          // decoded bytes of each token
    std::array<int32_t, 256> byte_tokens_{};  // the token of each single byte, -1: none
    // Added tokens matched in text before pre-tokenization, by first byte,
    // longest first.
    std::array<std::vector<int32_t>, 256> specials_by_first_byte_;
};

}  // namespace nibble

// Tokenization, all done by libsentencepiece. Vocabularies that arrive in other
// forms (llama2.c tokenizer.bin, GGUF tokenizer.ggml.* arrays) are converted to
// a SentencePiece ModelProto in memory first.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/vocab.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace nibble {

class Tokenizer {
  public:
    // A SentencePiece .model file, or a llama2.c tokenizer.bin (detected by content).
    // Throws std::runtime_error("<path>: <problem>") for a missing or bad file.
    static Tokenizer from_file(const std::string& path);
    // A vocabulary carried by a model file (GGUF arrays, tokenizer.bin contents).
    static Tokenizer from_vocab(const Vocab& vocab);
    // A serialized SentencePiece ModelProto (what .model files hold).
    static Tokenizer from_serialized_proto(const std::string& proto, const std::string& origin);

    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;
    ~Tokenizer();

    // SentencePiece encoding (dummy prefix as the model says), with BOS first
    // when add_bos is set and the model puts one in front of prompts
    // (add_bos_token()).
    std::vector<int32_t> encode(std::string_view text, bool add_bos) const;
    // Text of a whole sequence, as SentencePiece decodes it (BOS/EOS dropped).
    std::string decode(const std::vector<int32_t>& ids) const;

    // The id of the piece whose text is exactly `piece` (a control or
    // user-defined piece such as "<|im_start|>" in a chat template); -1 when
    // the vocabulary has none.
    int32_t special_id(std::string_view piece) const;

    int32_t bos_id() const;
    int32_t eos_id() const;

    // The model's generation settings (engine/model.h GenerationSettings):
    // whether prompts start with BOS (default true) and ids besides EOS that
    // end generation.
    void set_add_bos_token(bool add) { add_bos_token_ = add; }
    bool add_bos_token() const { return add_bos_token_; }
    void set_extra_eos_ids(std::vector<int32_t> ids) { extra_eos_ids_ = std::move(ids); }
    const std::vector<int32_t>& extra_eos_ids() const { return extra_eos_ids_; }
    // Whether generating `id` ends a sequence: EOS or one of the extra ids.
    bool is_eos(int32_t id) const;
    // The text of piece `id` and whether it is a control piece (what BOS/EOS
    // must be); "" and false outside the vocabulary.
    std::string piece(int32_t id) const;
    bool is_control(int32_t id) const;
    int32_t vocab_size() const;
    // The ModelProto bytes, to embed the tokenizer in a nibble model file.
    const std::string& serialized_proto() const { return proto_; }

  private:
    friend class StreamDecoder;
    Tokenizer() = default;
    std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
    std::string proto_;
    bool add_bos_token_ = true;
    std::vector<int32_t> extra_eos_ids_;
    // A plain piece whose text is never empty: StreamDecoder decodes a window of
    // recent ids after it, so that the window is decoded as mid-text (-1: none).
    int32_t stream_anchor_id_ = -1;
    std::string stream_anchor_text_;
};

// Turns generated ids into text as they arrive, holding back bytes of an
// incomplete UTF-8 character. The text of prompt + generation printed piece by
// piece equals Tokenizer::decode of the whole sequence.
class StreamDecoder {
  public:
    explicit StreamDecoder(const Tokenizer& tokenizer) : tokenizer_(&tokenizer) {}
    // Returns the new text that `id` completes (possibly empty).
    std::string push(int32_t id);
    // Ends the sequence: returns the held-back tail as decode renders it (an
    // incomplete character becomes U+FFFD), then starts over like reset().
    std::string flush();
    void reset();

  private:
    const Tokenizer* tokenizer_;
    std::vector<int32_t> ids_;   // ids since the last commit point
    size_t emitted_bytes_ = 0;   // bytes of the text of ids_ already returned
    bool text_started_ = false;  // some text was committed before ids_
};

}  // namespace nibble

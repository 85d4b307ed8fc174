// Tokenization of two kinds behind one interface:
// - SentencePiece vocabularies, done by libsentencepiece. Those that arrive in
//   other forms (llama2.c tokenizer.bin, GGUF tokenizer.ggml.* arrays of a
//   "llama" vocabulary) are converted to a SentencePiece ModelProto first.
// - Byte-pair vocabularies (GGUF "gpt2", Hugging Face tokenizer.json with a BPE
//   model: Llama-3, Qwen2/2.5/3, SmolLM, Gemma's tokenizer.json), done by
//   BpeModel (bpe.h). Their serialized form (BpeModel::serialize) travels where
//   a ModelProto does (Model::tokenizer_proto, nibble files).
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

class BpeModel;
struct BpeVocab;

class Tokenizer {
  public:
    // A SentencePiece .model file, a llama2.c tokenizer.bin or a Hugging Face
    // tokenizer.json (detected by content; for tokenizer.json, the
    // tokenizer_config.json next to it gives BOS, EOS and add_bos_token).
    // Throws std::runtime_error("<path>: <problem>") for a missing or bad file.
    static Tokenizer from_file(const std::string& path);
    // A byte-pair vocabulary (GGUF "gpt2", tokenizer.json).
    static Tokenizer from_bpe_vocab(BpeVocab vocab, const std::string& origin);
    // A vocabulary carried by a model file (GGUF arrays, tokenizer.bin contents).
    static Tokenizer from_vocab(const Vocab& vocab);
    // A serialized SentencePiece ModelProto (what .model files hold), or a
    // serialized BpeModel.
    static Tokenizer from_serialized_proto(const std::string& proto, const std::string& origin);

    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;
    ~Tokenizer();

    // SentencePiece encoding (dummy prefix as the model says), with BOS first
    // when add_bos is set and the model puts one in front of prompts
    // (add_bos_token()).
    // Text is encoded as user text: control tokens' texts ("<|im_start|>") are
    // not turned into those tokens (see ChatSession::tokenize for template text).
    std::vector<int32_t> encode(std::string_view text, bool add_bos) const;
    // Text a chat template wrote: control and user-defined tokens' texts
    // ("<|im_start|>", "<|eot_id|>", "<start_of_turn>", and "<s>"/"</s>" for
    // SentencePiece BOS/EOS) become their ids, the text between them is
    // encoded as by encode(). Special tokens are not looked for inside the
    // byte ranges `user_text` (sorted [begin, end) pairs): what users wrote.
    std::vector<int32_t> encode_template(
        std::string_view text, bool add_bos,
        const std::vector<std::pair<size_t, size_t>>& user_text = {}) const;
    // The special token whose text starts at text[at] (the longest), as
    // encode_template finds them: {id, length}, or {-1, 0}.
    std::pair<int32_t, size_t> special_at(std::string_view text, size_t at) const;
    // Text of a whole sequence, as SentencePiece decodes it (BOS/EOS dropped);
    // for BPE the tokens' bytes, control tokens dropped, invalid UTF-8 as U+FFFD.
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
    // What token `id` reads as on its own (llama-tokenize's piece): its bytes
    // (spaces as spaces, a byte token as its byte, possibly part of a UTF-8
    // character), a control token as its text.
    std::string token_text(int32_t id) const;
    // Whether this is a byte-pair vocabulary (BpeModel) rather than SentencePiece.
    bool is_bpe() const { return bpe_ != nullptr; }
    // The ModelProto bytes (or the serialized BpeModel), to embed the
    // tokenizer in a nibble model file.
    // (A byte-pair tokenizer serializes itself on the first call.)
    const std::string& serialized_proto() const;

  private:
    friend class StreamDecoder;
    Tokenizer() = default;
    std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;  // SentencePiece, or
    std::unique_ptr<BpeModel> bpe_;                                     // byte-pair
    mutable std::string proto_;
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
    std::string pending_bytes_;  // BPE: bytes of an incomplete UTF-8 character
};

}  // namespace nibble

// Tokenizer on libsentencepiece: .model files are loaded as they are; other
// vocabularies are serialized to a ModelProto first (sentencepiece_proto.cpp).
#include "tokenizer/tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include "tokenizer/bpe.h"
#include "tokenizer/bpe_json.h"
#include "tokenizer/llama2c_vocab.h"
#include "tokenizer/sentencepiece_check.h"
#include "tokenizer/sentencepiece_proto.h"
#include "tokenizer/tokenizer_file.h"
#include "tokenizer/utf8.h"

namespace nibble {
namespace {

// A libsentencepiece status as a short reason, without its source file, line
// and failed condition ("./src/x.cc(232) [cond] message" -> "message").
std::string status_reason(const sentencepiece::util::Status& status) {
    std::string message = status.message();
    if (message.find("ParseFromArray") != std::string::npos) return "not a valid ModelProto";
    const size_t bracket = message.find("] ");
    if (message.find(".cc(") != std::string::npos && bracket != std::string::npos) {
        message = message.substr(bracket + 2);
    }
    while (!message.empty() && (message.back() == ' ' || message.back() == '\n'))
        message.pop_back();
    return message.empty() ? "error code " + std::to_string(int(status.code())) : message;
}

Tokenizer tokenizer_from_vocab(const Vocab& vocab, const std::string& origin) {
    return Tokenizer::from_serialized_proto(serialize_model_proto(vocab, origin), origin);
}

}  // namespace

Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_file(const std::string& path) {
    const std::string bytes = read_tokenizer_file(path);
    if (looks_like_llama2c_vocab(bytes)) {
        return tokenizer_from_vocab(parse_llama2c_vocab(bytes, path), path);
    }
    if (looks_like_json(bytes)) {
        BpeVocab vocab = read_tokenizer_json(bytes, path);
        const auto config = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
        if (std::filesystem::is_regular_file(config)) {
            apply_tokenizer_config(vocab, read_tokenizer_file(config.string()), config.string());
        }
        return from_bpe_vocab(std::move(vocab), path);
    }
    return from_serialized_proto(bytes, path);
}

Tokenizer Tokenizer::from_bpe_vocab(BpeVocab vocab, const std::string& origin) {
    Tokenizer tokenizer;
    tokenizer.add_bos_token_ = vocab.add_bos && vocab.bos_id >= 0;
    tokenizer.bpe_ = std::make_unique<BpeModel>(std::move(vocab), origin);
    return tokenizer;
}

const std::string& Tokenizer::serialized_proto() const {
    if (proto_.empty() && bpe_) proto_ = bpe_->serialize();
    return proto_;
}

Tokenizer Tokenizer::from_vocab(const Vocab& vocab) {
    return tokenizer_from_vocab(vocab, "vocab");
}

Tokenizer Tokenizer::from_serialized_proto(const std::string& proto, const std::string& origin) {
    if (BpeModel::is_serialized(proto)) {
        Tokenizer tokenizer;
        BpeVocab vocab = BpeModel::deserialize(proto, origin);
        tokenizer.add_bos_token_ = vocab.add_bos && vocab.bos_id >= 0;
        tokenizer.bpe_ = std::make_unique<BpeModel>(std::move(vocab), origin);
        tokenizer.proto_ = proto;
        return tokenizer;
    }
    // What the library would abort on instead of returning an error.
    check_model_proto(proto, origin);
    Tokenizer tokenizer;
    tokenizer.processor_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
    const auto status = tokenizer.processor_->LoadFromSerializedProto(proto);
    if (!status.ok()) {
        throw std::runtime_error(origin + ": not a usable SentencePiece model (" +
                                 status_reason(status) + ")");
    }
    if (tokenizer.processor_->GetPieceSize() <= 0) {
        throw std::runtime_error(origin + ": SentencePiece model has no pieces");
    }
    tokenizer.proto_ = proto;

    // The stream anchor: the first plain piece that decodes to some text on
    // its own. Any such piece works; usually it is the first piece after the
    // byte pieces.
    const sentencepiece::SentencePieceProcessor& sp = *tokenizer.processor_;
    for (int id = 0; id < sp.GetPieceSize(); ++id) {
        if (sp.IsControl(id) || sp.IsUnknown(id) || sp.IsUnused(id) || sp.IsByte(id)) continue;
        std::string text;
        if (!sp.Decode(std::vector<int>{id}, &text).ok() || text.empty()) continue;
        tokenizer.stream_anchor_id_ = id;
        tokenizer.stream_anchor_text_ = std::move(text);
        break;
    }
    return tokenizer;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
    if (bpe_) {
        std::vector<int32_t> ids;
        if (add_bos && add_bos_token_ && bos_id() >= 0) ids.push_back(bos_id());
        bpe_->encode(text, false, ids);
        return ids;
    }
    std::vector<int> ids;
    const auto status = processor_->Encode(text, &ids);
    if (!status.ok())
        throw std::runtime_error("tokenizer: encode failed (" + status_reason(status) + ")");
    if (add_bos && add_bos_token_ && bos_id() >= 0) ids.insert(ids.begin(), bos_id());
    return ids;
}

std::pair<int32_t, size_t> Tokenizer::special_at(std::string_view text, size_t at) const {
    if (bpe_) return bpe_->special_at(text, at, true);
    // SentencePiece: "<s>", "</s>", control pieces written "<...>" and pieces
    // written "<|...|>" (user-defined ones, which libsentencepiece does not
    // tell from normal ones).
    if (text.compare(at, 3, "<s>") == 0 && bos_id() >= 0) return {bos_id(), 3};
    if (text.compare(at, 4, "</s>") == 0 && eos_id() >= 0) return {eos_id(), 4};
    if (text[at] != '<') return {-1, 0};
    const size_t close = text.find('>', at + 1);
    if (close == std::string_view::npos || close - at >= 64) return {-1, 0};
    const size_t length = close + 1 - at;
    const int32_t id = special_id(text.substr(at, length));
    if (id < 0 || (!processor_->IsControl(id) && text.compare(at, 2, "<|") != 0)) return {-1, 0};
    return {id, length};
}

std::vector<int32_t> Tokenizer::encode_template(
    std::string_view text, bool add_bos,
    const std::vector<std::pair<size_t, size_t>>& user_text) const {
    std::vector<int32_t> out;
    if (add_bos && add_bos_token_ && bos_id() >= 0) out.push_back(bos_id());
    size_t plain = 0;  // start of the text not yet encoded
    size_t next_user = 0;
    for (size_t at = 0; at < text.size();) {
        while (next_user < user_text.size() && user_text[next_user].second <= at) ++next_user;
        if (next_user < user_text.size() && user_text[next_user].first <= at) {
            at = user_text[next_user].second;  // inside what a user wrote
            continue;
        }
        const auto [id, length] = special_at(text, at);
        if (id < 0) {
            ++at;
            continue;
        }
        if (at > plain) {
            const auto ids = encode(text.substr(plain, at - plain), false);
            out.insert(out.end(), ids.begin(), ids.end());
        }
        out.push_back(id);
        at += length;
        plain = at;
    }
    if (plain < text.size()) {
        const auto ids = encode(text.substr(plain), false);
        out.insert(out.end(), ids.begin(), ids.end());
    }
    return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
    const int32_t n = vocab_size();
    for (int32_t id : ids) {
        if (id < 0 || id >= n) {
            throw std::runtime_error("tokenizer: token id " + std::to_string(id) +
                                     " outside the vocabulary of " + std::to_string(n));
        }
    }
    std::string text;
    if (bpe_) {
        std::string bytes;
        for (int32_t id : ids) bytes += bpe_->token_bytes(id);
        append_utf8_replacing_invalid(bytes, true, text);
        return text;
    }
    const auto status = processor_->Decode(ids, &text);
    if (!status.ok())
        throw std::runtime_error("tokenizer: decode failed (" + status_reason(status) + ")");
    return text;
}

int32_t Tokenizer::special_id(std::string_view piece) const {
    if (bpe_) {
        const int32_t id = bpe_->find(piece);
        const PieceType type = id >= 0 ? bpe_->vocab().types[size_t(id)] : PieceType::normal;
        return type == PieceType::control || type == PieceType::user_defined ? id : -1;
    }
    const int id = processor_->PieceToId(piece);
    // PieceToId matches whole pieces only: a hit is a control or user-defined
    // piece with exactly this text.
    if (id < 0 || processor_->IsUnknown(id)) return -1;
    return id;
}

int32_t Tokenizer::bos_id() const {
    return bpe_ ? bpe_->vocab().bos_id : processor_->bos_id();
}
int32_t Tokenizer::eos_id() const {
    return bpe_ ? bpe_->vocab().eos_id : processor_->eos_id();
}
bool Tokenizer::is_eos(int32_t id) const {
    return id == eos_id() ||
           std::find(extra_eos_ids_.begin(), extra_eos_ids_.end(), id) != extra_eos_ids_.end();
}
std::string Tokenizer::piece(int32_t id) const {
    if (id < 0 || id >= vocab_size()) return "";
    return bpe_ ? bpe_->vocab().tokens[size_t(id)] : processor_->IdToPiece(id);
}
bool Tokenizer::is_control(int32_t id) const {
    if (id < 0 || id >= vocab_size()) return false;
    return bpe_ ? bpe_->vocab().types[size_t(id)] == PieceType::control : processor_->IsControl(id);
}
int32_t Tokenizer::vocab_size() const {
    return bpe_ ? bpe_->size() : processor_->GetPieceSize();
}
std::string Tokenizer::token_text(int32_t id) const {
    if (id < 0 || id >= vocab_size()) return "";
    if (is_control(id)) return piece(id);
    if (bpe_) return bpe_->token_bytes(id);
    if (processor_->IsByte(id)) {
        const std::string p = processor_->IdToPiece(id);  // "<0xNN>"
        return std::string(1, char(std::stoi(p.substr(3, 2), nullptr, 16)));
    }
    const std::string piece = processor_->IdToPiece(id);
    std::string text;
    for (size_t at = 0; at < piece.size();) {
        if (piece.compare(at, 3, "\xE2\x96\x81") == 0) {  // U+2581 -> space
            text += ' ';
            at += 3;
        } else {
            text += piece[at++];
        }
    }
    return text;
}

// ---------------------------------------------------------------------------
// StreamDecoder
//
// SentencePiece decoding is local once some text exists: a piece's text
// depends only on the piece, except that (a) while the text is still empty a
// leading U+2581 is dropped (the dummy prefix), and (b) a run of byte pieces
// <0xNN> is joined and read as UTF-8, invalid bytes becoming U+FFFD. So the
// decoder keeps a window of ids since the last "commit point" (a plain piece
// after which text exists) and decodes [anchor] + window, where the anchor is
// a fixed plain piece that puts the decoder mid-text; the window's text is the
// result minus the anchor's text. Within the window, the trailing byte pieces
// that form an incomplete UTF-8 character are held back until resolved.

namespace {

// Bytes of a UTF-8 sequence that starts with `lead`; 1 for bytes that cannot
// start a multi-byte sequence (ASCII, stray continuations, C0/C1/F5..FF).
size_t utf8_sequence_length(uint8_t lead) {
    if (lead >= 0xC2 && lead <= 0xDF) return 2;
    if (lead >= 0xE0 && lead <= 0xEF) return 3;
    if (lead >= 0xF0 && lead <= 0xF4) return 4;
    return 1;
}

bool is_continuation(uint8_t byte) {
    return (byte & 0xC0) == 0x80;
}

// Number of trailing ids that are byte pieces forming the start of a UTF-8
// character that more byte pieces could still complete.
size_t incomplete_utf8_tail(const sentencepiece::SentencePieceProcessor& sp,
                            const std::vector<int32_t>& ids) {
    // At most 3 trailing bytes can be an incomplete 4-byte character.
    size_t run = 0;
    uint8_t bytes[3];
    while (run < 3 && run < ids.size() && sp.IsByte(ids[ids.size() - 1 - run])) {
        const std::string& piece = sp.IdToPiece(ids[ids.size() - 1 - run]);  // "<0xNN>"
        bytes[run] = static_cast<uint8_t>(std::stoi(piece.substr(3, 2), nullptr, 16));
        ++run;
    }
    // bytes[0] is the last byte. Find the nearest byte that is not a
    // continuation: the character that the tail belongs to starts there.
    for (size_t back = 0; back < run; ++back) {
        if (is_continuation(bytes[back])) continue;
        const size_t have = back + 1;
        return have < utf8_sequence_length(bytes[back]) ? have : 0;
    }
    return 0;
}

// Text of the first `count` ids, decoded after the piece `anchor` (when it is
// not -1) so that they read as the middle of a text; includes the anchor's text.
std::string decode_window(const sentencepiece::SentencePieceProcessor& sp, int32_t anchor,
                          const std::vector<int32_t>& ids, size_t count) {
    std::vector<int> window;
    window.reserve(count + 1);
    if (anchor >= 0) window.push_back(anchor);
    for (size_t i = 0; i < count; ++i) window.push_back(ids[i]);
    std::string text;
    const auto status = sp.Decode(window, &text);
    if (!status.ok()) {
        throw std::runtime_error("tokenizer: decode failed (" + status_reason(status) + ")");
    }
    return text;
}

}  // namespace

std::string StreamDecoder::push(int32_t id) {
    if (tokenizer_->bpe_) {
        // Byte-pair tokens are bytes: print what forms whole characters.
        if (id < 0 || id >= tokenizer_->vocab_size()) {
            throw std::runtime_error("tokenizer: token id " + std::to_string(id) +
                                     " outside the vocabulary of " +
                                     std::to_string(tokenizer_->vocab_size()));
        }
        pending_bytes_ += tokenizer_->bpe_->token_bytes(id);
        std::string out;
        pending_bytes_.erase(0, append_utf8_replacing_invalid(pending_bytes_, false, out));
        return out;
    }
    const sentencepiece::SentencePieceProcessor& sp = *tokenizer_->processor_;
    if (id < 0 || id >= sp.GetPieceSize()) {
        throw std::runtime_error("tokenizer: token id " + std::to_string(id) +
                                 " outside the vocabulary of " + std::to_string(sp.GetPieceSize()));
    }
    ids_.push_back(id);
    const size_t hold = incomplete_utf8_tail(sp, ids_);

    const bool anchored = text_started_ && tokenizer_->stream_anchor_id_ >= 0;
    const std::string text =
        decode_window(sp, anchored ? tokenizer_->stream_anchor_id_ : -1, ids_, ids_.size() - hold);
    const size_t skip = anchored ? tokenizer_->stream_anchor_text_.size() : 0;
    const size_t stable_end = std::max(text.size(), skip);

    std::string out;
    if (skip + emitted_bytes_ < stable_end) {
        out = text.substr(skip + emitted_bytes_);
        emitted_bytes_ = stable_end - skip;
    }
    // Commit after a plain piece once text exists: nothing later changes the
    // text so far. Without an anchor the window just keeps growing.
    const bool plain = !sp.IsByte(id) && !sp.IsControl(id);
    if (hold == 0 && plain && (text_started_ || stable_end > skip) &&
        tokenizer_->stream_anchor_id_ >= 0) {
        ids_.clear();
        emitted_bytes_ = 0;
        text_started_ = true;
    }
    return out;
}

std::string StreamDecoder::flush() {
    if (tokenizer_->bpe_) {
        std::string out;
        append_utf8_replacing_invalid(pending_bytes_, true, out);
        reset();
        return out;
    }
    const sentencepiece::SentencePieceProcessor& sp = *tokenizer_->processor_;
    const bool anchored = text_started_ && tokenizer_->stream_anchor_id_ >= 0;
    const std::string text =
        decode_window(sp, anchored ? tokenizer_->stream_anchor_id_ : -1, ids_, ids_.size());
    const size_t skip = (anchored ? tokenizer_->stream_anchor_text_.size() : 0) + emitted_bytes_;
    std::string out = skip < text.size() ? text.substr(skip) : std::string();
    reset();
    return out;
}

void StreamDecoder::reset() {
    pending_bytes_.clear();
    ids_.clear();
    emitted_bytes_ = 0;
    text_started_ = false;
}

}  // namespace nibble

// Protobuf wire format, as much as a ModelProto needs:
//   key      = varint(field_number << 3 | wire_type)
//   varint   (wire type 0): 7 bits per byte, least significant group first,
//            high bit set on every byte but the last. A negative int32 is
//            sign-extended to 64 bits, so it always takes 10 bytes.
//   fixed32  (wire type 5): 4 bytes little-endian (float scores).
//   bytes    (wire type 2): varint length, then the bytes (strings and
//            embedded messages).
// Field numbers are those of sentencepiece_model.proto:
//   ModelProto      1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
//   SentencePiece   1 piece, 2 score (float), 3 type (enum)
//   TrainerSpec     3 model_type (BPE = 2), 4 vocab_size, 35 byte_fallback,
//                   40 unk_id, 41 bos_id, 42 eos_id, 43 pad_id, 46 bos_piece,
//                   47 eos_piece
//   NormalizerSpec  1 name, 3 add_dummy_prefix, 4 remove_extra_whitespaces,
//                   5 escape_whitespaces
#include "tokenizer/sentencepiece_proto.h"

#include <bit>
#include <cstdint>
#include <stdexcept>
#include <string_view>
#include <unordered_map>

namespace nibble {
namespace {

enum WireType : uint32_t { varint_wire = 0, bytes_wire = 2, fixed32_wire = 5 };

void put_varint(std::string& out, uint64_t value) {
    while (value >= 0x80) {
        out.push_back(static_cast<char>((value & 0x7f) | 0x80));
        value >>= 7;
    }
    out.push_back(static_cast<char>(value));
}

void put_key(std::string& out, uint32_t field, WireType wire) {
    put_varint(out, (static_cast<uint64_t>(field) << 3) | wire);
}

// int32 and enum fields: negative values are sign-extended to 64 bits.
void put_int32(std::string& out, uint32_t field, int32_t value) {
    put_key(out, field, varint_wire);
    put_varint(out, static_cast<uint64_t>(static_cast<int64_t>(value)));
}

void put_bool(std::string& out, uint32_t field, bool value) {
    put_key(out, field, varint_wire);
    put_varint(out, value ? 1 : 0);
}

void put_float(std::string& out, uint32_t field, float value) {
    put_key(out, field, fixed32_wire);
    const uint32_t bits = std::bit_cast<uint32_t>(value);
    for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<char>(bits >> shift));
}

void put_bytes(std::string& out, uint32_t field, const std::string& bytes) {
    put_key(out, field, bytes_wire);
    put_varint(out, bytes.size());
    out += bytes;
}

bool valid_type(PieceType type) {
    const int32_t t = static_cast<int32_t>(type);
    return t >= static_cast<int32_t>(PieceType::normal) &&
           t <= static_cast<int32_t>(PieceType::byte);
}

}  // namespace

std::string serialize_model_proto(const Vocab& vocab, const std::string& origin) {
    const size_t n = vocab.pieces.size();
    if (n == 0) throw std::runtime_error(origin + ": empty vocabulary");
    if (vocab.scores.size() != n || vocab.types.size() != n) {
        throw std::runtime_error(origin + ": vocabulary has " + std::to_string(n) + " pieces but " +
                                 std::to_string(vocab.scores.size()) + " scores and " +
                                 std::to_string(vocab.types.size()) + " types");
    }
    if (n > INT32_MAX) throw std::runtime_error(origin + ": vocabulary too large");
    const auto check_id = [&](int32_t id, const char* what, bool optional) {
        if (optional && id == -1) return;
        if (id < 0 || static_cast<size_t>(id) >= n) {
            throw std::runtime_error(origin + ": " + what + " id " + std::to_string(id) +
                                     " outside the vocabulary of " + std::to_string(n));
        }
    };
    check_id(vocab.unk_id, "unknown", false);
    check_id(vocab.bos_id, "BOS", true);
    check_id(vocab.eos_id, "EOS", true);

    // SentencePiece keeps control and normal pieces in separate maps and so
    // would accept a piece twice; a vocabulary with duplicates is corrupt.
    std::unordered_map<std::string_view, size_t> first_id;
    first_id.reserve(n);
    for (size_t id = 0; id < n; ++id) {
        const auto [it, inserted] = first_id.emplace(vocab.pieces[id], id);
        if (!inserted) {
            throw std::runtime_error(origin + ": piece " + std::to_string(id) + " repeats piece " +
                                     std::to_string(it->second));
        }
    }

    std::string proto;
    bool has_bytes = false;
    std::string message;
    for (size_t id = 0; id < n; ++id) {
        if (vocab.pieces[id].empty()) {
            throw std::runtime_error(origin + ": piece " + std::to_string(id) + " is empty");
        }
        if (!valid_type(vocab.types[id])) {
            throw std::runtime_error(origin + ": piece " + std::to_string(id) + " has type " +
                                     std::to_string(static_cast<int32_t>(vocab.types[id])));
        }
        has_bytes = has_bytes || vocab.types[id] == PieceType::byte;
        message.clear();
        put_bytes(message, 1, vocab.pieces[id]);
        put_float(message, 2, vocab.scores[id]);
        put_int32(message, 3, static_cast<int32_t>(vocab.types[id]));
        put_bytes(proto, 1, message);
    }

    std::string trainer;
    put_int32(trainer, 3, 2);  // model_type = BPE
    put_int32(trainer, 4, static_cast<int32_t>(n));
    put_bool(trainer, 35, has_bytes);  // byte_fallback: unknown characters become <0xNN> pieces
    put_int32(trainer, 40, vocab.unk_id);
    put_int32(trainer, 41, vocab.bos_id);
    put_int32(trainer, 42, vocab.eos_id);
    put_int32(trainer, 43, -1);  // no pad piece
    put_bytes(proto, 2, trainer);

    // The LLaMA tokenizer.model normalizer: no Unicode normalization, spaces
    // kept as they are (runs of spaces are not collapsed), spaces escaped to
    // U+2581, and one U+2581 in front of the text when add_dummy_prefix.
    std::string normalizer;
    put_bytes(normalizer, 1, "identity");
    put_bool(normalizer, 3, vocab.add_dummy_prefix);
    put_bool(normalizer, 4, false);
    put_bool(normalizer, 5, true);
    put_bytes(proto, 3, normalizer);
    return proto;
}

void set_special_pieces(std::string& proto, int32_t bos_id, const std::string& bos, int32_t eos_id,
                        const std::string& eos) {
    std::string trainer;
    if (bos_id >= 0) {
        put_int32(trainer, 41, bos_id);
        put_bytes(trainer, 46, bos);
    }
    if (eos_id >= 0) {
        put_int32(trainer, 42, eos_id);
        put_bytes(trainer, 47, eos);
    }
    put_bytes(proto, 2, trainer);
}

}  // namespace nibble

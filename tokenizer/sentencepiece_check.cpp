// Protobuf wire format, read-only (see sentencepiece_proto.cpp for the writer):
//   key    = varint(field_number << 3 | wire_type), field_number >= 1
//   wire 0 = varint (at most 10 bytes), 1 = 8 bytes, 2 = varint length + bytes,
//   5 = 4 bytes; 3 and 4 (groups, deprecated) never occur in a ModelProto and
//   are refused, like 6 and 7 (invalid).
// ModelProto field 1 is the repeated SentencePiece message, whose field 1 is
// the piece text (the last occurrence wins, as protobuf merges it).
#include "tokenizer/sentencepiece_check.h"

#include <cstdint>
#include <stdexcept>

namespace nibble {
namespace {

enum WireType : uint32_t { varint_wire = 0, fixed64_wire = 1, bytes_wire = 2, fixed32_wire = 5 };

struct Field {
    uint64_t number = 0;
    uint32_t wire = 0;
    std::string_view bytes;  // wire type 2: the payload
};

// A bounds-checked cursor over one message's bytes. `base` is the message's
// offset in the whole proto, for error messages.
class WireReader {
  public:
    WireReader(std::string_view bytes, size_t base, const std::string& origin)
        : bytes_(bytes), base_(base), origin_(origin) {}

    bool done() const { return pos_ == bytes_.size(); }

    Field next() {
        const size_t at = pos_;
        const uint64_t key = varint();
        Field field;
        field.number = key >> 3;
        field.wire = static_cast<uint32_t>(key & 7);
        if (field.number == 0) fail(at, "field number 0");
        switch (field.wire) {
            case varint_wire:
                (void)varint();
                break;
            case fixed64_wire:
                skip(8);
                break;
            case fixed32_wire:
                skip(4);
                break;
            case bytes_wire: {
                const uint64_t length = varint();
                if (length > bytes_.size() - pos_) fail(at, "length beyond the end");
                field_offset_ = base_ + pos_;
                field.bytes = bytes_.substr(pos_, static_cast<size_t>(length));
                pos_ += static_cast<size_t>(length);
                break;
            }
            default:
                fail(at, "wire type " + std::to_string(field.wire));
        }
        return field;
    }

    // Offset in the whole proto of the last wire-type-2 payload.
    size_t field_offset() const { return field_offset_; }

  private:
    uint64_t varint() {
        const size_t at = pos_;
        uint64_t value = 0;
        for (int shift = 0; shift < 70; shift += 7) {
            if (pos_ == bytes_.size()) fail(at, "varint cut short");
            const auto byte = static_cast<uint8_t>(bytes_[pos_++]);
            if (shift < 64) value |= static_cast<uint64_t>(byte & 0x7f) << shift;
            if ((byte & 0x80) == 0) return value;
        }
        fail(at, "varint longer than 10 bytes");
    }

    void skip(size_t n) {
        if (n > bytes_.size() - pos_) fail(pos_, "field beyond the end");
        pos_ += n;
    }

    [[noreturn]] void fail(size_t at, const std::string& what) const {
        throw std::runtime_error(origin_ + ": not a usable SentencePiece model (not a valid " +
                                 "ModelProto: " + what + " at byte " + std::to_string(base_ + at) +
                                 ")");
    }

    std::string_view bytes_;
    size_t base_;
    const std::string& origin_;
    size_t pos_ = 0;
    size_t field_offset_ = 0;
};

}  // namespace

void check_model_proto(std::string_view proto, const std::string& origin) {
    WireReader model(proto, 0, origin);
    size_t index = 0;
    while (!model.done()) {
        const Field field = model.next();
        if (field.number != 1 || field.wire != bytes_wire) continue;
        WireReader piece_message(field.bytes, model.field_offset(), origin);
        std::string_view piece;
        while (!piece_message.done()) {
            const Field f = piece_message.next();
            if (f.number == 1 && f.wire == bytes_wire) piece = f.bytes;
        }
        const std::string what =
            origin + ": not a usable SentencePiece model (piece " + std::to_string(index);
        if (piece.empty()) throw std::runtime_error(what + " is empty)");
        if (piece.find('\0') != std::string_view::npos) {
            throw std::runtime_error(what + " contains a NUL byte)");
        }
        ++index;
    }
}

}  // namespace nibble

// Protobuf wire format, read-only (see sentencepiece_proto.cpp for the writer):
//   key    = varint(field_number << 3 | wire_type), field_number >= 1
//   wire 0 = varint (at most 10 bytes), 1 = 8 bytes, 2 = varint length + bytes,
//   5 = 4 bytes; 3 and 4 (groups, deprecated) never occur in a ModelProto and
//   are refused, like 6 and 7 (invalid).
// ModelProto field 1 is the repeated SentencePiece message, whose field 1 is
// the piece text (the last occurrence wins, as protobuf merges it).
#include "tokenizer/sentencepiece_check.h"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

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

// A precompiled charsmap (NormalizerSpec field 2): u32 trie size in bytes,
// a darts-clone double array of u32 units, then the replacement strings,
// each ending in NUL. A unit: bits 0-7 label, bit 8 has_leaf, bit 9 selects
// a shift of 8 for the offset in bits 10-31; a leaf unit has bit 31 set and
// its value (bits 0-30) in the rest. libsentencepiece walks it with
// commonPrefixSearch over the input bytes: from node base b, byte c leads to
// unit b ^ c if that unit's label is c, then to base (b ^ c) ^ offset, whose
// unit holds the value (an index into the strings) when has_leaf. Nothing of
// this is checked by the library, so every base reachable from the root must
// keep all 256 children inside the array, values must index the strings, and
// no path may hold more than 32 values (the normalizer's result array, on its
// stack) or loop back with a match (an input long enough would overflow it;
// the normalizer then hangs or crashes).
constexpr size_t max_charsmap_results = 32;

uint32_t unit_offset(uint32_t unit) {
    return (unit >> 10) << ((unit & (1u << 9)) >> 6);
}

void check_charsmap(std::string_view blob, const std::string& what) {
    const auto u32 = [&](size_t at) {  // little-endian, as the library reads it
        uint32_t v = 0;
        for (size_t i = 0; i < 4; ++i) v |= uint32_t{static_cast<uint8_t>(blob[at + i])} << (8 * i);
        return v;
    };
    if (blob.size() <= 4) return;  // the library's own "broken blob" error
    const uint32_t trie_bytes = u32(0);
    // Beyond the blob by up to 3 bytes the library takes it and reads past the end.
    if (trie_bytes > blob.size() - 4) throw std::runtime_error(what + " trie beyond its end)");
    const size_t n = trie_bytes / 4;
    const std::string_view strings = blob.substr(4 + size_t{trie_bytes});
    if (n == 0) throw std::runtime_error(what + " no trie)");
    if (strings.empty() || strings.back() != '\0') {
        throw std::runtime_error(what + " strings do not end in NUL)");
    }
    std::vector<uint32_t> units(n);
    for (size_t i = 0; i < n; ++i) units[i] = u32(4 + 4 * i);

    // Depth-first over the bases reachable from the root; most[b] = the most
    // values on a path from base b (computed after all its children).
    enum : uint8_t { unseen, open, closed };
    std::vector<uint8_t> state(n, unseen);
    std::vector<uint16_t> most(n, 0);
    struct Frame {
        uint32_t base;
        uint32_t next_byte;
    };
    std::vector<Frame> stack;
    const auto enter = [&](uint32_t base) {
        if ((size_t{base} | 0xff) >= n)
            throw std::runtime_error(what + " points outside its trie)");
        state[base] = open;
        stack.push_back({base, 0});
    };
    enter(unit_offset(units[0]));
    while (!stack.empty()) {
        Frame& frame = stack.back();
        if (frame.next_byte == 256) {
            state[frame.base] = closed;
            stack.pop_back();
            continue;
        }
        const uint32_t c = frame.next_byte++;
        const uint32_t child = frame.base ^ c;
        const uint32_t unit = units[child];
        if ((unit & 0x800000ffu) != c) continue;
        const uint32_t base = child ^ unit_offset(unit);
        if (base >= n) throw std::runtime_error(what + " points outside its trie)");
        if (((unit >> 8) & 1) != 0) {
            if ((units[base] & 0x7fffffffu) >= strings.size()) {
                throw std::runtime_error(what + " value outside its strings)");
            }
        }
        // An unused unit (0) at base ^ 0 is a NUL leading back to the same base
        // without a match: harmless (it consumes a byte), and in real tries.
        const bool leaf = ((unit >> 8) & 1) != 0;
        if (base == frame.base && !leaf) continue;
        if (state[base] == open) throw std::runtime_error(what + " trie has a cycle)");
        if (state[base] == unseen) {
            enter(base);
            --stack[stack.size() - 2].next_byte;  // revisit this byte once `base` is done
            continue;
        }
        const size_t results = most[base] + (leaf ? 1 : 0);
        if (results > max_charsmap_results) {
            throw std::runtime_error(what + " trie has more than 32 matches on one path)");
        }
        uint16_t& m = most[stack.back().base];
        m = std::max(m, static_cast<uint16_t>(results));
    }
}

}  // namespace

void check_model_proto(std::string_view proto, const std::string& origin) {
    const std::string what = origin + ": not a usable SentencePiece model (";
    WireReader model(proto, 0, origin);
    size_t index = 0;
    // NormalizerSpec (field 3) and denormalizer (field 5): protobuf merges
    // repeated occurrences, the last charsmap winning.
    std::string_view charsmaps[2];
    while (!model.done()) {
        const Field field = model.next();
        if (field.wire != bytes_wire) continue;
        WireReader message(field.bytes, model.field_offset(), origin);
        if (field.number == 3 || field.number == 5) {
            while (!message.done()) {
                const Field f = message.next();
                if (f.number == 2 && f.wire == bytes_wire) charsmaps[field.number == 5] = f.bytes;
            }
            continue;
        }
        if (field.number != 1) continue;
        std::string_view piece;
        while (!message.done()) {
            const Field f = message.next();
            if (f.number == 1 && f.wire == bytes_wire) piece = f.bytes;
        }
        const std::string which = what + "piece " + std::to_string(index);
        if (piece.empty()) throw std::runtime_error(which + " is empty)");
        if (piece.find('\0') != std::string_view::npos) {
            throw std::runtime_error(which + " contains a NUL byte)");
        }
        ++index;
    }
    if (!charsmaps[0].empty()) check_charsmap(charsmaps[0], what + "normalizer charsmap:");
    if (!charsmaps[1].empty()) check_charsmap(charsmaps[1], what + "denormalizer charsmap:");
}

}  // namespace nibble

// Hand-made SentencePiece ModelProto parts in protobuf wire format, appended
// to a real .model in tests (a repeated field may come anywhere; a later
// normalizer_spec is merged into the first, its fields winning).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace nibble::test {

inline std::string varint(uint64_t value) {
    std::string out;
    for (; value >= 0x80; value >>= 7) out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    out.push_back(static_cast<char>(value));
    return out;
}

inline std::string bytes_field(uint32_t field, const std::string& payload) {
    return varint(uint64_t{field} << 3 | 2) + varint(payload.size()) + payload;
}

// One more ModelProto field 1: a SentencePiece message with text `piece`
// (field 1) and type `type` (field 3: 1 normal, 2 unknown, 3 control,
// 4 user-defined, 5 unused).
inline std::string extra_piece(const std::string& piece, int type) {
    return bytes_field(1, bytes_field(1, piece) + varint(3 << 3) + varint(type));
}

// A precompiled charsmap: u32 trie size, the darts-clone units (little
// endian), the replacement strings; as NormalizerSpec field 2 inside ModelProto
// field `spec` (3 normalizer, 5 denormalizer).
inline std::string charsmap_field(uint32_t spec, const std::vector<uint32_t>& units,
                                  const std::string& strings) {
    std::string blob;
    const auto put = [&](uint32_t v) {
        for (int i = 0; i < 4; ++i) blob.push_back(static_cast<char>(v >> (8 * i)));
    };
    put(static_cast<uint32_t>(units.size() * 4));
    for (uint32_t u : units) put(u);
    return bytes_field(spec, bytes_field(2, blob + strings));
}

// A darts-clone unit: label, has_leaf, offset (< 2^22).
inline uint32_t trie_unit(uint32_t label, bool has_leaf, uint32_t offset) {
    return offset << 10 | (has_leaf ? 1u << 8 : 0) | label;
}

// 'a' leads from the root back to the root, with a match each time: the
// library's normalizer read past its 32-entry result array and hung or
// crashed on a long run of 'a'.
inline std::string self_loop_charsmap(uint32_t spec) {
    std::vector<uint32_t> units(256, 0);
    units['a'] = trie_unit('a', true, 'a');
    return charsmap_field(spec, units, std::string("x\0", 2));
}

}  // namespace nibble::test

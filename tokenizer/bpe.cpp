// Byte-pair encoding (see bpe.h).
#include "tokenizer/bpe.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <unordered_map>

namespace nibble {

namespace {

// GPT-2's byte-to-character map: printable Latin-1 bytes stand for
// themselves, the other 68 bytes for U+0100 onwards in byte order, so that a
// byte-level token is printable text ("Ġthe" is " the").
struct ByteLevelMap {
    std::array<uint32_t, 256> code_point{};
    std::array<int16_t, 324> byte{};  // code point -> byte, -1: not a byte's character
    ByteLevelMap() {
        byte.fill(-1);
        uint32_t next = 256;
        for (uint32_t b = 0; b < 256; ++b) {
            const bool printable =
                (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
            code_point[b] = printable ? b : next++;
            byte[code_point[b]] = int16_t(b);
        }
    }
};
const ByteLevelMap kByteLevel;

void append_utf8(uint32_t cp, std::string& out) {
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}

// Length of the UTF-8 character starting at text[i] (1 for an invalid byte).
size_t utf8_length(std::string_view text, size_t i) {
    const auto lead = uint8_t(text[i]);
    size_t n = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (i + n > text.size()) return 1;
    for (size_t k = 1; k < n; ++k) {
        if ((uint8_t(text[i + k]) & 0xC0) != 0x80) return 1;
    }
    return n;
}

// The bytes a byte-level token's characters stand for; false when a character
// is not one of the map's (then the token is taken as literal text).
bool byte_level_bytes(std::string_view text, std::string& out) {
    out.clear();
    for (size_t i = 0; i < text.size();) {
        const size_t n = utf8_length(text, i);
        uint32_t cp = uint8_t(text[i]);
        if (n == 2) cp = ((cp & 0x1F) << 6) | (uint8_t(text[i + 1]) & 0x3F);
        if (n > 2 || (n == 1 && cp >= 0x80) || cp >= kByteLevel.byte.size() ||
            kByteLevel.byte[cp] < 0) {
            return false;
        }
        out += char(kByteLevel.byte[cp]);
        i += n;
    }
    return true;
}

// "<0xNN>" -> NN, or -1.
int byte_piece_value(std::string_view text) {
    if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
    int value = 0;
    for (size_t i = 3; i < 5; ++i) {
        const char c = text[i];
        const int digit = c >= '0' && c <= '9'   ? c - '0'
                          : c >= 'A' && c <= 'F' ? c - 'A' + 10
                          : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                 : -1;
        if (digit < 0) return -1;
        value = value * 16 + digit;
    }
    return value;
}

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581, SentencePiece's space

std::string quoted(std::string_view s) {
    std::string out = "\"";
    for (char c : s.substr(0, 40)) {
        if (uint8_t(c) < 0x20) {
            static const char* hex = "0123456789abcdef";
            out += "\\x";
            out += hex[uint8_t(c) >> 4];
            out += hex[uint8_t(c) & 15];
        } else {
            out += c;
        }
    }
    return out + (s.size() > 40 ? "...\"" : "\"");
}

}  // namespace

// Per-call working memory of encode: reused across the words of one text.
struct BpeModel::Scratch {
    struct Symbol {
        int32_t id;
        int32_t prev, next;  // -1 at the ends
    };
    struct Candidate {
        int32_t rank, left, right;  // symbol positions
        int32_t left_id, right_id, result;
        bool operator>(const Candidate& o) const {
            return rank != o.rank ? rank > o.rank : left > o.left;
        }
    };
    std::vector<std::string_view> words;
    std::vector<Symbol> symbols;
    std::vector<Candidate> heap;
    std::string text;  // a word in vocabulary spelling, or the normalized text
    // Words already encoded in this text -> their ids in cached_ids.
    std::unordered_map<std::string_view, std::pair<uint32_t, uint32_t>> cache;
    std::vector<int32_t> cached_ids;
};

BpeModel::BpeModel(BpeVocab vocab, const std::string& origin)
    : vocab_(std::move(vocab)), pretokenizer_({}) {
    const std::function<void(const std::string&)> fail = [&](const std::string& problem) {
        throw std::runtime_error(origin + ": " + problem);
    };
    const size_t n = vocab_.tokens.size();
    if (n == 0) fail("the vocabulary has no tokens");
    if (n > size_t(INT32_MAX)) fail("too many tokens");
    if (vocab_.types.size() != n) {
        fail("token types: " + std::to_string(vocab_.types.size()) + " for " + std::to_string(n) +
             " tokens");
    }
    for (const auto& [key, id] : {std::pair{"BOS", vocab_.bos_id}, std::pair{"EOS", vocab_.eos_id},
                                  std::pair{"unknown token", vocab_.unk_id}}) {
        if (id < -1 || id >= int32_t(n)) {
            fail(std::string(key) + " id " + std::to_string(id) + " is not a token id (vocab " +
                 std::to_string(n) + ")");
        }
    }
    if (vocab_.regexes.empty() && vocab_.kind == BpeVocab::Kind::byte_level) {
        const auto named = named_pretokenizer(vocab_.pre);
        if (!named) fail("unknown pre-tokenizer " + quoted(vocab_.pre) + " (tokenizer.ggml.pre)");
        try {
            pretokenizer_ = PreTokenizer(named->regexes);
        } catch (const std::exception& e) {
            fail(std::string("pre-tokenizer: ") + e.what());
        }
    } else if (!vocab_.regexes.empty()) {
        try {
            pretokenizer_ = PreTokenizer(vocab_.regexes);
        } catch (const std::exception& e) {
            fail(std::string("pre-tokenizer ") + e.what());
        }
    }

    index_tokens();
    index_merges(fail);
}

// The token table, the bytes each token decodes to, the byte tokens and the
// added tokens looked for in text.
void BpeModel::index_tokens() {
    const size_t n = vocab_.tokens.size();
    size_t table = 16;
    while (table < 2 * n) table *= 2;
    ids_.assign(table, TextSlot{0, -1});
    bytes_.resize(n);
    byte_tokens_.fill(-1);
    std::string scratch;
    for (size_t id = 0; id < n; ++id) {
        const std::string& text = vocab_.tokens[id];
        const PieceType type = vocab_.types[id];
        if (find(text) < 0) {  // the first of equal texts wins
            const auto hash = uint32_t(std::hash<std::string_view>()(text));
            size_t slot = hash & (ids_.size() - 1);
            while (ids_[slot].id >= 0) slot = (slot + 1) & (ids_.size() - 1);
            ids_[slot] = {hash, int32_t(id)};
        }
        std::string& bytes = bytes_[id];
        if (type == PieceType::control) continue;  // decodes to nothing
        if (vocab_.kind == BpeVocab::Kind::byte_level) {
            if (type != PieceType::user_defined && byte_level_bytes(text, scratch)) {
                bytes = scratch;
            } else {
                bytes = text;  // added tokens are written as they read
            }
            if (text.size() <= 2 && type != PieceType::user_defined && bytes.size() == 1 &&
                byte_tokens_[uint8_t(bytes[0])] < 0) {
                byte_tokens_[uint8_t(bytes[0])] = int32_t(id);
            }
        } else {
            const int value = byte_piece_value(text);
            if (value >= 0) {
                bytes.assign(1, char(value));
                if (byte_tokens_[size_t(value)] < 0) byte_tokens_[size_t(value)] = int32_t(id);
                continue;
            }
            for (size_t at = 0; at < text.size();) {  // U+2581 -> space
                if (text.compare(at, kSpaceMark.size(), kSpaceMark) == 0) {
                    bytes += ' ';
                    at += kSpaceMark.size();
                } else {
                    bytes += text[at++];
                }
            }
        }
        if (type == PieceType::user_defined && !text.empty()) {
            specials_by_first_byte_[uint8_t(text[0])].push_back(int32_t(id));
        }
    }
    for (size_t id = 0; id < n; ++id) {
        if (vocab_.types[id] == PieceType::control && !vocab_.tokens[id].empty()) {
            specials_by_first_byte_[uint8_t(vocab_.tokens[id][0])].push_back(int32_t(id));
        }
    }
    for (auto& candidates : specials_by_first_byte_) {
        std::stable_sort(candidates.begin(), candidates.end(), [&](int32_t a, int32_t b) {
            return vocab_.tokens[size_t(a)].size() > vocab_.tokens[size_t(b)].size();
        });
    }
}

// Merges: both sides and their concatenation must be tokens.
void BpeModel::index_merges(const std::function<void(const std::string&)>& fail) {
    const size_t n = vocab_.tokens.size();
    if (!vocab_.merges.empty()) {
        vocab_.merge_ids.clear();
        vocab_.merge_ids.reserve(vocab_.merges.size());
        for (size_t rank = 0; rank < vocab_.merges.size(); ++rank) {
            const auto& [left, right] = vocab_.merges[rank];
            const int32_t l = find(left), r = find(right);
            if (l < 0 || r < 0) {
                fail("merges[" + std::to_string(rank) + "] " + quoted(left) + " " + quoted(right) +
                     ": " + quoted(l < 0 ? left : right) + " is not in the vocabulary");
            }
            vocab_.merge_ids.emplace_back(l, r);
        }
        vocab_.merges.clear();
        vocab_.merges.shrink_to_fit();
    }
    size_t table = 16;
    while (table < 2 * vocab_.merge_ids.size()) table *= 2;
    merges_.assign(table, MergeSlot{kNoMerge, {}});
    std::string joined;
    for (size_t rank = 0; rank < vocab_.merge_ids.size(); ++rank) {
        const auto [l, r] = vocab_.merge_ids[rank];
        if (l < 0 || r < 0 || l >= int32_t(n) || r >= int32_t(n)) {
            fail("merge " + std::to_string(rank) + " names a token id outside the vocabulary");
        }
        joined = vocab_.tokens[size_t(l)];
        joined += vocab_.tokens[size_t(r)];
        const int32_t result = find(joined);
        if (result < 0) {
            fail("merges[" + std::to_string(rank) + "] " + quoted(vocab_.tokens[size_t(l)]) + " " +
                 quoted(vocab_.tokens[size_t(r)]) + ": the merged token " + quoted(joined) +
                 " is not in the vocabulary");
        }
        const uint64_t key = merge_key(l, r);
        size_t slot = size_t((key * 0x9E3779B97F4A7C15ULL) >> 32) & (merges_.size() - 1);
        while (merges_[slot].key != kNoMerge && merges_[slot].key != key) {
            slot = (slot + 1) & (merges_.size() - 1);
        }
        if (merges_[slot].key == kNoMerge) merges_[slot] = {key, {int32_t(rank), result}};
    }
}

int32_t BpeModel::find(std::string_view text) const {
    const auto hash = uint32_t(std::hash<std::string_view>()(text));
    for (size_t slot = hash & (ids_.size() - 1);; slot = (slot + 1) & (ids_.size() - 1)) {
        const TextSlot& s = ids_[slot];
        if (s.id < 0) return -1;
        if (s.hash == hash && vocab_.tokens[size_t(s.id)] == text) return s.id;
    }
}

const BpeModel::Merge* BpeModel::find_merge(int32_t left, int32_t right) const {
    const uint64_t key = merge_key(left, right);
    for (size_t slot = size_t((key * 0x9E3779B97F4A7C15ULL) >> 32) & (merges_.size() - 1);;
         slot = (slot + 1) & (merges_.size() - 1)) {
        const MergeSlot& s = merges_[slot];
        if (s.key == key) return &s.merge;
        if (s.key == kNoMerge) return nullptr;
    }
}

std::pair<int32_t, size_t> BpeModel::special_at(std::string_view text, size_t at,
                                                bool parse_control) const {
    for (int32_t id : specials_by_first_byte_[uint8_t(text[at])]) {
        const std::string& t = vocab_.tokens[size_t(id)];
        if (!parse_control && vocab_.types[size_t(id)] == PieceType::control) continue;
        if (text.compare(at, t.size(), t) == 0) return {id, t.size()};
    }
    return {-1, 0};
}

void BpeModel::encode(std::string_view text, bool parse_control, std::vector<int32_t>& out) const {
    Scratch s;
    // Added tokens first: the text between them is encoded as plain text.
    size_t plain = 0;
    for (size_t at = 0; at < text.size();) {
        const auto [id, length] = special_at(text, at, parse_control);
        if (id < 0) {
            ++at;
            continue;
        }
        encode_plain(text.substr(plain, at - plain), s, out);
        out.push_back(id);
        at += length;
        plain = at;
    }
    encode_plain(text.substr(plain), s, out);
}

void BpeModel::encode_plain(std::string_view text, Scratch& s, std::vector<int32_t>& out) const {
    if (text.empty()) return;
    if (vocab_.kind == BpeVocab::Kind::sentencepiece) {
        // Spaces written as U+2581; the text is one word of characters, those
        // outside the vocabulary as their bytes' tokens.
        s.text.clear();
        for (char c : text) {
            if (c == ' ') {
                s.text += kSpaceMark;
            } else {
                s.text += c;
            }
        }
        s.symbols.clear();
        for (size_t at = 0; at < s.text.size();) {
            const size_t len = utf8_length(s.text, at);
            const int32_t id = find(std::string_view(s.text).substr(at, len));
            if (id >= 0 && vocab_.types[size_t(id)] != PieceType::control) {
                s.symbols.push_back({id, -1, -1});
            } else {
                for (size_t k = 0; k < len; ++k) {
                    const int32_t byte = byte_tokens_[uint8_t(s.text[at + k])];
                    if (byte >= 0) {
                        s.symbols.push_back({byte, -1, -1});
                    } else if (vocab_.unk_id >= 0) {
                        s.symbols.push_back({vocab_.unk_id, -1, -1});
                        break;
                    }
                }
            }
            at += len;
        }
        merge_symbols(s, out);
        return;
    }
    s.words.clear();
    pretokenizer_.split(text, s.words);
    for (std::string_view word : s.words) {
        const auto hit = s.cache.find(word);
        if (hit != s.cache.end()) {
            const auto [offset, count] = hit->second;
            out.insert(out.end(), s.cached_ids.begin() + offset,
                       s.cached_ids.begin() + offset + count);
            continue;
        }
        const size_t first = out.size();
        encode_word(word, s, out);
        s.cache.emplace(word,
                        std::pair{uint32_t(s.cached_ids.size()), uint32_t(out.size() - first)});
        s.cached_ids.insert(s.cached_ids.end(), out.begin() + std::ptrdiff_t(first), out.end());
    }
}

void BpeModel::encode_word(std::string_view word, Scratch& s, std::vector<int32_t>& out) const {
    if (vocab_.ignore_merges) {  // the word as a whole, if the vocabulary has it
        s.text.clear();
        for (char c : word) append_utf8(kByteLevel.code_point[uint8_t(c)], s.text);
        const int32_t id = find(s.text);
        if (id >= 0 && vocab_.types[size_t(id)] != PieceType::control) {
            out.push_back(id);
            return;
        }
    }
    s.symbols.clear();
    for (char c : word) {
        const int32_t id = byte_tokens_[uint8_t(c)];
        if (id >= 0) s.symbols.push_back({id, -1, -1});  // a byte without a token is dropped
    }
    merge_symbols(s, out);
}

// Merges adjacent symbols, the pair of lowest rank first (the leftmost of
// equal ranks), until no pair has a merge; appends the resulting ids. The
// symbols are a linked list; the heap holds candidate pairs, checked when
// taken (a pair whose symbols changed since it was pushed is skipped).
void BpeModel::merge_symbols(Scratch& s, std::vector<int32_t>& out) const {
    auto& sym = s.symbols;
    const auto n = int32_t(sym.size());
    for (int32_t i = 0; i < n; ++i) {
        sym[size_t(i)].prev = i - 1;
        sym[size_t(i)].next = i + 1 < n ? i + 1 : -1;
    }
    s.heap.clear();
    const auto push = [&](int32_t left) {
        if (left < 0) return;
        const int32_t right = sym[size_t(left)].next;
        if (right < 0) return;
        const int32_t l = sym[size_t(left)].id, r = sym[size_t(right)].id;
        const Merge* m = find_merge(l, r);
        if (m == nullptr) return;
        s.heap.push_back({m->rank, left, right, l, r, m->result});
        std::push_heap(s.heap.begin(), s.heap.end(), std::greater<>());
    };
    for (int32_t i = 0; i + 1 < n; ++i) push(i);
    while (!s.heap.empty()) {
        std::pop_heap(s.heap.begin(), s.heap.end(), std::greater<>());
        const Scratch::Candidate c = s.heap.back();
        s.heap.pop_back();
        Scratch::Symbol& left = sym[size_t(c.left)];
        if (left.id != c.left_id || left.next != c.right || sym[size_t(c.right)].id != c.right_id) {
            continue;  // stale
        }
        Scratch::Symbol& right = sym[size_t(c.right)];
        left.id = c.result;
        left.next = right.next;
        if (right.next >= 0) sym[size_t(right.next)].prev = c.left;
        right.id = -1;
        push(left.prev);
        push(c.left);
    }
    for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = sym[size_t(i)].next)
        out.push_back(sym[size_t(i)].id);
}

// ---------------------------------------------------------------------------
// Serialization: magic, kind, ignore_merges, add_bos (u8 each), bos, eos, unk
// (i32), pre (string), regexes (u32 count, strings), tokens (u32 count, then
// u8 type and string each), merges (u32 count, then two i32 ids each).
// Strings are a u32 byte count and the bytes; numbers little-endian.

namespace {

void put_u32(std::string& out, uint32_t v) {
    for (int i = 0; i < 4; ++i) out += char((v >> (8 * i)) & 0xFF);
}
void put_string(std::string& out, std::string_view s) {
    put_u32(out, uint32_t(s.size()));
    out += s;
}

struct Reader {
    std::string_view bytes;
    size_t at = 0;
    const std::string& origin;
    [[noreturn]] void fail(const std::string& what) const {
        throw std::runtime_error(origin + ": serialized BPE tokenizer: " + what);
    }
    void need(size_t n, const char* what) const {
        if (bytes.size() - at < n) fail(std::string("truncated in ") + what);
    }
    uint8_t u8(const char* what) {
        need(1, what);
        return uint8_t(bytes[at++]);
    }
    uint32_t u32(const char* what) {
        need(4, what);
        uint32_t v = 0;
        for (int i = 0; i < 4; ++i) v |= uint32_t(uint8_t(bytes[at + size_t(i)])) << (8 * i);
        at += 4;
        return v;
    }
    std::string string(const char* what) {
        const uint32_t n = u32(what);
        need(n, what);
        std::string s(bytes.substr(at, n));
        at += n;
        return s;
    }
};

}  // namespace

std::string BpeModel::serialize() const {
    std::string out(kSerializedMagic);
    out += char(vocab_.kind);
    out += char(vocab_.ignore_merges ? 1 : 0);
    out += char(vocab_.add_bos ? 1 : 0);
    for (int32_t id : {vocab_.bos_id, vocab_.eos_id, vocab_.unk_id}) put_u32(out, uint32_t(id));
    put_string(out, vocab_.pre);
    put_u32(out, uint32_t(vocab_.regexes.size()));
    for (const std::string& r : vocab_.regexes) put_string(out, r);
    put_u32(out, uint32_t(vocab_.tokens.size()));
    for (size_t i = 0; i < vocab_.tokens.size(); ++i) {
        out += char(vocab_.types[i]);
        put_string(out, vocab_.tokens[i]);
    }
    put_u32(out, uint32_t(vocab_.merge_ids.size()));
    for (const auto& [l, r] : vocab_.merge_ids) {
        put_u32(out, uint32_t(l));
        put_u32(out, uint32_t(r));
    }
    return out;
}

BpeVocab BpeModel::deserialize(std::string_view bytes, const std::string& origin) {
    Reader in{bytes, kSerializedMagic.size(), origin};
    if (!is_serialized(bytes)) in.fail("no magic");
    BpeVocab v;
    const uint8_t kind = in.u8("kind");
    if (kind > uint8_t(BpeVocab::Kind::sentencepiece)) in.fail("unknown kind");
    v.kind = BpeVocab::Kind(kind);
    v.ignore_merges = in.u8("flags") != 0;
    v.add_bos = in.u8("flags") != 0;
    v.bos_id = int32_t(in.u32("special ids"));
    v.eos_id = int32_t(in.u32("special ids"));
    v.unk_id = int32_t(in.u32("special ids"));
    v.pre = in.string("pre-tokenizer");
    const uint32_t n_regexes = in.u32("regexes");
    if (n_regexes > 64) in.fail("too many regexes");
    for (uint32_t i = 0; i < n_regexes; ++i) v.regexes.push_back(in.string("regexes"));
    const uint32_t n_tokens = in.u32("tokens");
    in.need(size_t(n_tokens) * 5, "tokens");
    v.tokens.reserve(n_tokens);
    v.types.reserve(n_tokens);
    for (uint32_t i = 0; i < n_tokens; ++i) {
        const uint8_t type = in.u8("tokens");
        if (type < uint8_t(PieceType::normal) || type > uint8_t(PieceType::byte)) {
            in.fail("token " + std::to_string(i) + " has unknown type " + std::to_string(type));
        }
        v.types.push_back(PieceType(type));
        v.tokens.push_back(in.string("tokens"));
    }
    const uint32_t n_merges = in.u32("merges");
    in.need(size_t(n_merges) * 8, "merges");
    v.merge_ids.reserve(n_merges);
    for (uint32_t i = 0; i < n_merges; ++i) {
        const auto l = int32_t(in.u32("merges"));
        v.merge_ids.emplace_back(l, int32_t(in.u32("merges")));
    }
    if (in.at != bytes.size()) in.fail("trailing bytes");
    return v;
}

}  // namespace nibble

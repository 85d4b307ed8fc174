// GGUF v3 parsing (layout in gguf_reader.h). Nothing is trusted: every count is
// compared with the bytes that remain before anything is allocated, so a
// corrupted file costs at most a few times its own size in memory.
#include "models/gguf_reader.h"

#include <cstring>
#include <limits>
#include <stdexcept>
#include <unordered_set>

#include "kernels/formats.h"
#include "models/ggml_blocks.h"

namespace nibble {

namespace {

constexpr uint32_t kGgufVersion = 3;
constexpr size_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;   // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;  // nesting of arrays inside arrays
constexpr uint64_t kMaxNameLength = 65535;

// Smallest encoding of one value of each type: bounds counts before allocation.
size_t min_encoded_size(GgufType t) {
    switch (t) {
        case GgufType::u8:
        case GgufType::i8:
        case GgufType::boolean:
            return 1;
        case GgufType::u16:
        case GgufType::i16:
            return 2;
        case GgufType::u32:
        case GgufType::i32:
        case GgufType::f32:
            return 4;
        case GgufType::u64:
        case GgufType::i64:
        case GgufType::f64:
        case GgufType::string:
            return 8;  // length only
        case GgufType::array:
            return 4 + 8;  // element type + count
    }
    return 1;
}

bool valid_type(uint32_t t) {
    return t <= uint32_t(GgufType::f64);
}

// Block size (elements) and bytes per block of the ggml types we can size.
struct GgmlTypeSize {
    int64_t block;
    size_t bytes;
};
std::optional<GgmlTypeSize> ggml_type_size(uint32_t type) {
    switch (type) {
        case 0:
            return GgmlTypeSize{1, 4};  // F32
        case 1:
            return GgmlTypeSize{1, 2};  // F16
        case 2:
            return GgmlTypeSize{32, 18};  // Q4_0: f16 d, 16 bytes of nibbles
        case 3:
            return GgmlTypeSize{32, 20};  // Q4_1: f16 d, m, 16 bytes
        case 6:
            return GgmlTypeSize{32, 22};  // Q5_0: f16 d, u32 qh, 16 bytes
        case 7:
            return GgmlTypeSize{32, 24};  // Q5_1: f16 d, m, u32 qh, 16 bytes
        case 8:
            return GgmlTypeSize{32, 34};  // Q8_0: f16 d, 32 int8
        case 9:
            return GgmlTypeSize{32, 36};  // Q8_1: f16 d, s, 32 int8
        case 10:
            return GgmlTypeSize{256, 84};  // Q2_K
        case 11:
            return GgmlTypeSize{256, 110};  // Q3_K
        case 12:
            return GgmlTypeSize{256, 144};  // Q4_K: f16 d, dmin, 12 scale bytes, 128
        case 13:
            return GgmlTypeSize{256, 176};  // Q5_K
        case 14:
            return GgmlTypeSize{256, 210};  // Q6_K
        case 15:
            return GgmlTypeSize{256, 292};  // Q8_K
        case 20:
            return GgmlTypeSize{32, 18};  // IQ4_NL
        case 23:
            return GgmlTypeSize{256, 136};  // IQ4_XS
        case 24:
            return GgmlTypeSize{1, 1};  // I8
        case 25:
            return GgmlTypeSize{1, 2};  // I16
        case 26:
            return GgmlTypeSize{1, 4};  // I32
        case 27:                        // I64
        case 28:                        // F64
            return GgmlTypeSize{1, 8};
        case 30:
            return GgmlTypeSize{1, 2};  // BF16
        default:
            return std::nullopt;
    }
}

// Reads little-endian values from the mapping, refusing to go past its end.
class Reader {
  public:
    explicit Reader(const MappedFile& file) : file_(file) {}

    [[noreturn]] void fail(const std::string& problem) const {
        throw std::runtime_error(file_.path() + ": " + problem);
    }
    size_t at() const { return at_; }
    size_t remaining() const { return file_.size() - at_; }

    const uint8_t* take(size_t bytes, const std::string& what) {
        if (bytes > remaining()) {
            fail("truncated: " + what + " needs " + std::to_string(bytes) + " bytes at offset " +
                 std::to_string(at_) + ", file has " + std::to_string(file_.size()));
        }
        const uint8_t* p = file_.data() + at_;
        at_ += bytes;
        return p;
    }
    template <typename T>
    T read(const std::string& what) {
        T v;
        std::memcpy(&v, take(sizeof v, what), sizeof v);
        return v;
    }
    std::string read_string(const std::string& what, uint64_t max_length) {
        const uint64_t n = read<uint64_t>(what + " length");
        if (n > max_length || n > remaining()) {
            fail(what + " has length " + std::to_string(n) + " at offset " +
                 std::to_string(at_ - 8) + ", but only " + std::to_string(remaining()) +
                 " bytes remain");
        }
        const uint8_t* p = take(size_t(n), what);
        return std::string(reinterpret_cast<const char*>(p), size_t(n));
    }
    // Throws unless `count` values of at least `min_size` bytes each can still fit.
    void check_count(uint64_t count, size_t min_size, const std::string& what) const {
        if (count > remaining() / min_size) {
            fail(what + " count " + std::to_string(count) + " cannot fit in the " +
                 std::to_string(remaining()) + " bytes that remain (truncated or corrupted)");
        }
    }

  private:
    const MappedFile& file_;
    size_t at_ = 0;
};

GgufType read_type(Reader& r, const std::string& what) {
    const uint32_t t = r.read<uint32_t>(what + " type");
    if (!valid_type(t)) r.fail(what + " has unknown value type " + std::to_string(t));
    return GgufType(t);
}

// Reads one scalar of type `t` into v (v.type must already be set by the caller
// for scalars; for array elements the caller copies the result).
void read_scalar(Reader& r, GgufType t, GgufValue& v, const std::string& what) {
    switch (t) {
        case GgufType::u8:
            v.integer = r.read<uint8_t>(what);
            break;
        case GgufType::i8:
            // GGUF i8 is a signed integer: the sign extension is meant.
            v.integer = r.read<int8_t>(what);  // NOLINT(bugprone-signed-char-misuse)
            break;
        case GgufType::u16:
            v.integer = r.read<uint16_t>(what);
            break;
        case GgufType::i16:
            v.integer = r.read<int16_t>(what);
            break;
        case GgufType::u32:
            v.integer = r.read<uint32_t>(what);
            break;
        case GgufType::i32:
            v.integer = r.read<int32_t>(what);
            break;
        case GgufType::i64:
            v.integer = r.read<int64_t>(what);
            break;
        case GgufType::u64:
            v.unsigned_integer = r.read<uint64_t>(what);
            v.integer = int64_t(v.unsigned_integer);
            return;
        case GgufType::f32:
            v.real = r.read<float>(what);
            break;
        case GgufType::f64:
            v.real = r.read<double>(what);
            break;
        case GgufType::boolean: {
            const uint8_t b = r.read<uint8_t>(what);
            if (b > 1) r.fail(what + " is a bool with value " + std::to_string(b));
            v.boolean = b != 0;
            v.integer = b;
            break;
        }
        case GgufType::string:
            v.text = r.read_string(what, r.remaining());
            break;
        case GgufType::array:
            break;  // handled by read_value
    }
    if (v.integer >= 0) v.unsigned_integer = uint64_t(v.integer);
}

GgufValue read_value(Reader& r, GgufType t, const std::string& what, int depth) {
    GgufValue v;
    v.type = t;
    if (t != GgufType::array) {
        read_scalar(r, t, v, what);
        return v;
    }
    if (depth >= kMaxArrayDepth) r.fail(what + " nests arrays too deeply");
    v.element_type = read_type(r, what + " element");
    const uint64_t n = r.read<uint64_t>(what + " array length");
    r.check_count(n, min_encoded_size(v.element_type), what + " array element");
    const size_t count = size_t(n);
    switch (v.element_type) {
        case GgufType::string:
            v.texts.reserve(count);
            for (size_t i = 0; i < count; ++i) {
                v.texts.push_back(
                    r.read_string(what + "[" + std::to_string(i) + "]", r.remaining()));
            }
            break;
        case GgufType::f32:
        case GgufType::f64:
            v.reals.reserve(count);
            for (size_t i = 0; i < count; ++i) {
                GgufValue e;
                read_scalar(r, v.element_type, e, what);
                v.reals.push_back(e.real);
            }
            break;
        case GgufType::array:
            v.arrays.reserve(count);
            for (size_t i = 0; i < count; ++i) {
                v.arrays.push_back(read_value(r, GgufType::array,
                                              what + "[" + std::to_string(i) + "]", depth + 1));
            }
            break;
        default:  // integers and bools
            v.integers.reserve(count);
            for (size_t i = 0; i < count; ++i) {
                GgufValue e;
                read_scalar(r, v.element_type, e, what);
                v.integers.push_back(e.integer);
            }
            break;
    }
    return v;
}

}  // namespace

const char* gguf_type_name(GgufType type) {
    switch (type) {
        case GgufType::u8:
            return "uint8";
        case GgufType::i8:
            return "int8";
        case GgufType::u16:
            return "uint16";
        case GgufType::i16:
            return "int16";
        case GgufType::u32:
            return "uint32";
        case GgufType::i32:
            return "int32";
        case GgufType::f32:
            return "float32";
        case GgufType::boolean:
            return "bool";
        case GgufType::string:
            return "string";
        case GgufType::array:
            return "array";
        case GgufType::u64:
            return "uint64";
        case GgufType::i64:
            return "int64";
        case GgufType::f64:
            return "float64";
    }
    return "unknown";
}

bool GgufValue::is_integer() const {
    switch (type) {
        case GgufType::u8:
        case GgufType::i8:
        case GgufType::u16:
        case GgufType::i16:
        case GgufType::u32:
        case GgufType::i32:
        case GgufType::u64:
        case GgufType::i64:
            return true;
        default:
            return false;
    }
}

size_t GgufValue::array_size() const {
    return texts.size() + reals.size() + integers.size() + arrays.size();
}

int64_t GgufTensorInfo::n_elements() const {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;  // bounded by the parser (fits in the file)
    return n;
}

GgufFile GgufFile::parse(const std::shared_ptr<MappedFile>& file) {
    GgufFile g;
    g.file_ = file;
    Reader r(*file);
    const uint8_t* magic = r.take(4, "magic");
    if (std::memcmp(magic, "GGUF", 4) != 0) r.fail("not a GGUF file (bad magic)");
    g.version_ = r.read<uint32_t>("version");
    if (g.version_ != kGgufVersion) {
        r.fail("GGUF version " + std::to_string(g.version_) + " is not supported (only 3)");
    }
    const uint64_t n_tensors = r.read<uint64_t>("tensor count");
    const uint64_t n_kv = r.read<uint64_t>("metadata count");
    // Each KV pair takes at least key length + type + 1 byte of value; each tensor
    // info at least name length + n_dims + type + offset.
    r.check_count(n_kv, 8 + 4 + 1, "metadata");
    r.check_count(n_tensors, 8 + 4 + 4 + 8, "tensor");

    g.kv_.reserve(size_t(n_kv));
    std::unordered_set<std::string> keys;
    for (uint64_t i = 0; i < n_kv; ++i) {
        GgufKeyValue kv;
        kv.key = r.read_string("metadata key #" + std::to_string(i), kMaxNameLength);
        if (!keys.insert(kv.key).second) r.fail("duplicate metadata key " + kv.key);
        const GgufType t = read_type(r, "metadata " + kv.key);
        kv.value = read_value(r, t, "metadata " + kv.key, 0);
        g.kv_.push_back(std::move(kv));
    }

    if (const GgufValue* a = g.find("general.alignment")) {
        if (a->type != GgufType::u32) r.fail("general.alignment must be a uint32");
        const uint64_t align = a->unsigned_integer;
        if (align == 0 || (align & (align - 1)) != 0 || align > 65536) {
            r.fail("general.alignment " + std::to_string(align) + " is not a power of two");
        }
        g.alignment_ = size_t(align);
    } else {
        g.alignment_ = kDefaultAlignment;
    }

    g.tensors_.reserve(size_t(n_tensors));
    std::unordered_set<std::string> names;
    for (uint64_t i = 0; i < n_tensors; ++i) {
        GgufTensorInfo t;
        t.name = r.read_string("tensor name #" + std::to_string(i), kMaxNameLength);
        if (!names.insert(t.name).second) r.fail("duplicate tensor " + t.name);
        const uint32_t n_dims = r.read<uint32_t>("tensor " + t.name + " n_dims");
        if (n_dims == 0 || n_dims > kMaxDims) {
            r.fail("tensor " + t.name + " has " + std::to_string(n_dims) +
                   " dimensions (1 to 4 allowed)");
        }
        for (uint32_t d = 0; d < n_dims; ++d) {
            const int64_t extent = r.read<int64_t>("tensor " + t.name + " dims");
            if (extent < 0) {
                r.fail("tensor " + t.name + " has negative dimension " + std::to_string(extent));
            }
            t.dims.push_back(extent);
        }
        t.type = r.read<uint32_t>("tensor " + t.name + " type");
        t.offset = r.read<uint64_t>("tensor " + t.name + " offset");
        g.tensors_.push_back(std::move(t));
    }
    g.data_offset_ = align_up(r.at(), g.alignment_);

    // Sizes and placement of the tensor data.
    for (GgufTensorInfo& t : g.tensors_) {
        const auto size = ggml_type_size(t.type);
        if (!size) {
            const std::string name = ggml::type_name(t.type);
            r.fail("tensor " + t.name +
                   (name.rfind("type ", 0) == 0
                        ? " has unknown GGML type " + std::to_string(t.type)
                        : " has type " + name + ", which nibble cannot read"));
        }
        if (t.dims[0] % size->block != 0) {
            r.fail("tensor " + t.name + " has " + std::to_string(t.dims[0]) +
                   " columns, not a multiple of its block size " + std::to_string(size->block));
        }
        // n_bytes = (product of dims / block) * block bytes, refusing overflow.
        uint64_t n_bytes = uint64_t(t.dims[0] / size->block) * size->bytes;
        bool overflow = false;
        for (size_t d = 1; d < t.dims.size(); ++d) {
            overflow |= __builtin_mul_overflow(n_bytes, uint64_t(t.dims[d]), &n_bytes);
        }
        if (overflow || n_bytes > std::numeric_limits<size_t>::max()) {
            r.fail("tensor " + t.name + " has an impossible size (dims overflow 64 bits)");
        }
        t.n_bytes = size_t(n_bytes);
        if (t.offset % g.alignment_ != 0) {
            r.fail("tensor " + t.name + " offset " + std::to_string(t.offset) +
                   " is not a multiple of the alignment " + std::to_string(g.alignment_));
        }
        if (g.data_offset_ > file->size() || t.offset > file->size() - g.data_offset_ ||
            t.n_bytes > file->size() - g.data_offset_ - t.offset) {
            r.fail("truncated: tensor " + t.name + " data [" + std::to_string(t.offset) + ", +" +
                   std::to_string(t.n_bytes) + ") lies outside the file (data section at " +
                   std::to_string(g.data_offset_) + ", file has " + std::to_string(file->size()) +
                   " bytes)");
        }
        t.data = file->data() + g.data_offset_ + t.offset;
    }
    return g;
}

const GgufValue* GgufFile::find(const std::string& key) const {
    for (const auto& kv : kv_) {
        if (kv.key == key) return &kv.value;
    }
    return nullptr;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
    for (const auto& t : tensors_) {
        if (t.name == name) return &t;
    }
    return nullptr;
}

namespace {
[[noreturn]] void wrong_type(const GgufFile& g, const std::string& key, const GgufValue& v,
                             const char* expected) {
    std::string got = gguf_type_name(v.type);
    if (v.type == GgufType::array) got += std::string(" of ") + gguf_type_name(v.element_type);
    throw std::runtime_error(g.path() + ": metadata " + key + " is " + got + ", expected " +
                             expected);
}
}  // namespace

std::optional<int64_t> GgufFile::get_int(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_integer()) wrong_type(*this, key, *v, "an integer");
    if (v->type == GgufType::u64 && v->unsigned_integer > uint64_t(INT64_MAX)) {
        throw std::runtime_error(path() + ": metadata " + key + " value " +
                                 std::to_string(v->unsigned_integer) + " is too large");
    }
    return v->integer;
}

std::optional<double> GgufFile::get_real(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_real()) wrong_type(*this, key, *v, "a float");
    return v->real;
}

std::optional<bool> GgufFile::get_bool(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != GgufType::boolean) wrong_type(*this, key, *v, "a bool");
    return v->boolean;
}

std::optional<std::string> GgufFile::get_string(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != GgufType::string) wrong_type(*this, key, *v, "a string");
    return v->text;
}

const std::vector<std::string>* GgufFile::get_string_array(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return nullptr;
    if (v->type != GgufType::array || v->element_type != GgufType::string) {
        wrong_type(*this, key, *v, "an array of strings");
    }
    return &v->texts;
}

const std::vector<double>* GgufFile::get_real_array(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return nullptr;
    if (v->type != GgufType::array ||
        (v->element_type != GgufType::f32 && v->element_type != GgufType::f64)) {
        wrong_type(*this, key, *v, "an array of floats");
    }
    return &v->reals;
}

const std::vector<int64_t>* GgufFile::get_int_array(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return nullptr;
    GgufValue element;
    element.type = v->element_type;
    if (v->type != GgufType::array || !element.is_integer()) {
        wrong_type(*this, key, *v, "an array of integers");
    }
    return &v->integers;
}

namespace {
[[noreturn]] void vocab_error(const GgufFile& g, const std::string& problem) {
    throw std::runtime_error(g.path() + ": " + problem);
}
}  // namespace

Vocab read_gguf_vocab(const GgufFile& g) {
    const auto model = g.get_string("tokenizer.ggml.model");
    if (!model) vocab_error(g, "no tokenizer.ggml.model; the file carries no vocabulary");
    if (*model != "llama") {
        vocab_error(
            g,
            "tokenizer.ggml.model is \"" + *model +
                R"("; only "llama" (SentencePiece) and "gpt2" (byte-pair) vocabularies are supported)");
    }
    const auto* tokens = g.get_string_array("tokenizer.ggml.tokens");
    if (!tokens || tokens->empty()) vocab_error(g, "tokenizer.ggml.tokens is missing or empty");
    const size_t n = tokens->size();
    if (n > size_t(std::numeric_limits<int32_t>::max())) vocab_error(g, "too many tokens");

    Vocab vocab;
    vocab.pieces = *tokens;
    vocab.scores.assign(n, 0.0f);
    vocab.types.assign(n, PieceType::normal);
    if (const auto* scores = g.get_real_array("tokenizer.ggml.scores")) {
        if (scores->size() != n) {
            vocab_error(g, "tokenizer.ggml.scores has " + std::to_string(scores->size()) +
                               " entries for " + std::to_string(n) + " tokens");
        }
        for (size_t i = 0; i < n; ++i) vocab.scores[i] = float((*scores)[i]);
    }
    if (const auto* types = g.get_int_array("tokenizer.ggml.token_type")) {
        if (types->size() != n) {
            vocab_error(g, "tokenizer.ggml.token_type has " + std::to_string(types->size()) +
                               " entries for " + std::to_string(n) + " tokens");
        }
        for (size_t i = 0; i < n; ++i) {
            const int64_t t = (*types)[i];
            if (t < int64_t(PieceType::normal) || t > int64_t(PieceType::byte)) {
                vocab_error(g, "token " + std::to_string(i) + " has unknown token type " +
                                   std::to_string(t));
            }
            vocab.types[i] = PieceType(int32_t(t));
        }
    }
    auto token_id = [&](const char* key, int32_t fallback) {
        const auto id = g.get_int(key);
        if (!id) return fallback;
        if (*id < 0 || *id >= int64_t(n)) {
            vocab_error(g, std::string(key) + " " + std::to_string(*id) +
                               " is not a token id (vocab " + std::to_string(n) + ")");
        }
        return int32_t(*id);
    };
    vocab.bos_id = token_id("tokenizer.ggml.bos_token_id", vocab.bos_id);
    vocab.eos_id = token_id("tokenizer.ggml.eos_token_id", vocab.eos_id);
    vocab.unk_id = token_id("tokenizer.ggml.unknown_token_id", vocab.unk_id);
    if (const auto prefix = g.get_bool("tokenizer.ggml.add_space_prefix")) {
        vocab.add_dummy_prefix = *prefix;
    }
    for (int32_t id : {vocab.bos_id, vocab.eos_id, vocab.unk_id}) {
        if (id >= int32_t(n)) {
            vocab_error(g, "default special token id " + std::to_string(id) +
                               " is outside the vocab of " + std::to_string(n));
        }
    }
    return vocab;
}

}  // namespace nibble

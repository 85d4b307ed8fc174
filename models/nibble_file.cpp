// nibble model files: writing (streaming) and loading (mmap, validated, no copy).
// The byte layout is specified in docs/FORMAT.md.
#include "models/nibble_file.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string_view>

#include "engine/tensor_registry.h"
#include "kernels/interleave.h"
#include "models/output_file.h"
#include "models/safetensors.h"

namespace nibble {

namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

// The header must begin with these bytes (after the 8-byte length); the version
// string follows. Detection compares only this prefix, so a file from a future
// version is still recognised and then refused with a clear message.
constexpr std::string_view kMagicPrefix =
    R"({"__metadata__":{"format":"nibble","nibble_version":")";

// Suffix of the entry holding a tensor's act-order column permutation.
constexpr const char* kColumnOrderSuffix = ".column_order";

// Weights whose f32 blob needs no padding are stored as safetensors F32 with their
// real shape; everything else is U8 [padded bytes].
bool stored_as_f32(const PackedLayout& l) {
    return l.format == WeightFormat::f32 && l.total_bytes % kSectionAlign == 0;
}

json config_to_json(const ModelConfig& c) {
    ordered_json j;
    j["architecture"] = c.architecture;
    j["dim"] = c.dim;
    j["hidden_dim"] = c.hidden_dim;
    j["n_layers"] = c.n_layers;
    j["n_heads"] = c.n_heads;
    j["n_kv_heads"] = c.n_kv_heads;
    j["vocab_size"] = c.vocab_size;
    j["max_seq_len"] = c.max_seq_len;
    // float -> double is exact and nlohmann prints doubles so that they parse back
    // to the same value, so the floats round-trip bit for bit.
    j["rope_theta"] = double(c.rope_theta);
    j["norm_eps"] = double(c.norm_eps);
    j["rope_style"] = c.rope_style == RopeStyle::adjacent_pairs ? "adjacent_pairs" : "halves";
    // Written only when used, so files of models without them are unchanged.
    if (c.rope_scale != 1.0f) j["rope_scale"] = double(c.rope_scale);
    if (c.sliding_window > 0) j["sliding_window"] = c.sliding_window;
    // The options of the later architectures (ModelConfig), likewise.
    const ModelConfig llama;
    if (c.head_size != llama.head_size) j["head_size"] = c.head_size;
    if (c.qkv_bias) j["qkv_bias"] = true;
    if (c.qk_norm) j["qk_norm"] = true;
    if (c.post_norms) j["post_norms"] = true;
    if (c.activation == FfnActivation::gelu_tanh) j["activation"] = "gelu_tanh";
    if (c.embedding_scale != 1.0f) j["embedding_scale"] = double(c.embedding_scale);
    if (c.query_scale != 0.0f) j["query_scale"] = double(c.query_scale);
    if (c.attn_logit_softcap != 0.0f) j["attn_logit_softcap"] = double(c.attn_logit_softcap);
    if (c.final_logit_softcap != 0.0f) j["final_logit_softcap"] = double(c.final_logit_softcap);
    if (c.sliding_window_pattern != 0) j["sliding_window_pattern"] = c.sliding_window_pattern;
    if (c.rope_theta_local != 0.0f) j["rope_theta_local"] = double(c.rope_theta_local);
    if (c.rope_factors == RopeFactors::single) j["rope_factors"] = "single";
    if (c.rope_factors == RopeFactors::long_short) j["rope_factors"] = "long_short";
    if (c.rope_original_context != 0) j["rope_original_context"] = c.rope_original_context;
    if (c.rope_attn_factor != 1.0f) j["rope_attn_factor"] = double(c.rope_attn_factor);
    return j;
}

// The canonical tensor names of a model with these hyperparameters, in file order.
std::vector<std::string> canonical_names(const ModelConfig& c) {
    std::vector<std::string> names;
    for (const TensorSlot& slot : tensor_slots(c)) names.push_back(slot.gguf_name);
    return names;
}

bool output_is_shared(const Model& m) {
    return m.output.view.data != nullptr && m.output.view.data == m.token_embedding.view.data;
}

// ---- reading helpers: every accessor checks the JSON type it needs ----

struct HeaderReader {
    const std::string& path;

    [[noreturn]] void fail(const std::string& what) const {
        throw std::runtime_error(path + ": " + what);
    }
    const json& member(const json& obj, const char* key, const std::string& where) const {
        if (!obj.is_object()) fail(where + " is not a JSON object");
        const auto it = obj.find(key);
        if (it == obj.end()) fail(where + " has no \"" + key + "\"");
        return *it;
    }
    std::string string(const json& obj, const char* key, const std::string& where) const {
        const json& v = member(obj, key, where);
        if (!v.is_string()) fail(where + ": \"" + key + "\" is not a string");
        return v.get<std::string>();
    }
    uint64_t unsigned_value(const json& v, const std::string& what) const {
        if (!v.is_number_unsigned()) fail(what + " is not a non-negative integer");
        return v.get<uint64_t>();
    }
    int int_field(const json& obj, const char* key, const std::string& where) const {
        const uint64_t v = unsigned_value(member(obj, key, where), where + " \"" + key + "\"");
        if (v > uint64_t(1) << 30) fail(where + " \"" + key + "\" is implausibly large");
        return int(v);
    }
    float float_field(const json& obj, const char* key, const std::string& where) const {
        const json& v = member(obj, key, where);
        if (!v.is_number()) fail(where + " \"" + key + "\" is not a number");
        const double d = v.get<double>();
        if (!std::isfinite(d)) fail(where + " \"" + key + "\" is not finite");
        return float(d);
    }
    json parse(std::string_view text, const std::string& what) const {
        try {
            return json::parse(text.begin(), text.end());
        } catch (const json::parse_error& e) {
            // Not e.what(): it quotes the bytes around the error, raw.
            fail(what + " is not valid JSON (syntax error at byte " + std::to_string(e.byte) +
                 " of " + std::to_string(text.size()) + ")");
        } catch (const json::exception& e) {
            fail(what + " is not valid JSON (error " + std::to_string(e.id) + ")");
        }
    }
};

ModelConfig config_from_json(const HeaderReader& r, const json& j) {
    const std::string where = "nibble.config";
    ModelConfig c;
    c.architecture = r.string(j, "architecture", where);
    c.dim = r.int_field(j, "dim", where);
    c.hidden_dim = r.int_field(j, "hidden_dim", where);
    c.n_layers = r.int_field(j, "n_layers", where);
    c.n_heads = r.int_field(j, "n_heads", where);
    c.n_kv_heads = r.int_field(j, "n_kv_heads", where);
    c.vocab_size = r.int_field(j, "vocab_size", where);
    c.max_seq_len = r.int_field(j, "max_seq_len", where);
    c.rope_theta = r.float_field(j, "rope_theta", where);
    c.norm_eps = r.float_field(j, "norm_eps", where);
    if (j.contains("rope_scale")) c.rope_scale = r.float_field(j, "rope_scale", where);
    if (j.contains("sliding_window")) c.sliding_window = r.int_field(j, "sliding_window", where);
    auto flag = [&](const char* key) {
        if (!j.contains(key)) return false;
        if (!j[key].is_boolean()) r.fail(where + " \"" + key + "\" is not true or false");
        return j[key].get<bool>();
    };
    auto real = [&](const char* key, float& out) {
        if (j.contains(key)) out = r.float_field(j, key, where);
    };
    auto integer = [&](const char* key, int& out) {
        if (j.contains(key)) out = r.int_field(j, key, where);
    };
    integer("head_size", c.head_size);
    c.qkv_bias = flag("qkv_bias");
    c.qk_norm = flag("qk_norm");
    c.post_norms = flag("post_norms");
    if (j.contains("activation")) {
        const std::string a = r.string(j, "activation", where);
        if (a != "gelu_tanh") r.fail(where + ": unknown activation '" + a + "'");
        c.activation = FfnActivation::gelu_tanh;
    }
    real("embedding_scale", c.embedding_scale);
    real("query_scale", c.query_scale);
    real("attn_logit_softcap", c.attn_logit_softcap);
    real("final_logit_softcap", c.final_logit_softcap);
    integer("sliding_window_pattern", c.sliding_window_pattern);
    real("rope_theta_local", c.rope_theta_local);
    if (j.contains("rope_factors")) {
        const std::string f = r.string(j, "rope_factors", where);
        if (f == "single") {
            c.rope_factors = RopeFactors::single;
        } else if (f == "long_short") {
            c.rope_factors = RopeFactors::long_short;
        } else {
            r.fail(where + ": unknown rope_factors '" + f + "'");
        }
    }
    integer("rope_original_context", c.rope_original_context);
    real("rope_attn_factor", c.rope_attn_factor);
    const std::string style = r.string(j, "rope_style", where);
    if (style == "adjacent_pairs") {
        c.rope_style = RopeStyle::adjacent_pairs;
    } else if (style == "halves") {
        c.rope_style = RopeStyle::halves;
    } else {
        r.fail(where + ": unknown rope_style '" + style + "'");
    }
    try {
        c.validate();
    } catch (const std::exception& e) {
        r.fail(e.what());
    }
    return c;
}

PackedLayout layout_from_json(const HeaderReader& r, const json& j, const std::string& name,
                              int version) {
    const std::string where = "nibble.tensors[" + name + "]";
    const std::string fname = r.string(j, "format", where);
    const auto format = parse_format(fname);
    if (!format) r.fail(where + ": unknown format '" + fname + "'");
    const int rows = r.int_field(j, "rows", where);
    const int cols = r.int_field(j, "cols", where);
    const int group = r.int_field(j, "group_size", where);
    const json& dq = r.member(j, "double_quant", where);
    if (!dq.is_boolean()) r.fail(where + ": \"double_quant\" is not a boolean");
    if (!is_grouped(*format) && (group != 0 || dq.get<bool>())) {
        r.fail(where + ": format " + fname + " takes no group size or double quantization");
    }
    int interleave = 1;
    if (const auto it = j.find("interleave"); it != j.end()) {
        if (version < 2) r.fail(where + ": \"interleave\" needs nibble file version 2");
        if (!it->is_number_integer()) r.fail(where + ": \"interleave\" is not an integer");
        const int64_t v = it->get<int64_t>();
        interleave = v == 1 || v == kInterleaveRows ? int(v) : -1;
        if (interleave < 0) {
            r.fail(where + ": interleave " + std::to_string(v) + " is not 1 or " +
                   std::to_string(kInterleaveRows));
        }
    }
    try {
        return with_interleave(make_layout(*format, rows, cols, group, dq.get<bool>()), interleave);
    } catch (const std::invalid_argument& e) {
        r.fail(where + ": " + e.what());
    }
}

// The nibble keys of __metadata__, checked and parsed.
// The implicit move constructor moves nlohmann::json members. json's move
// constructor is noexcept; clang-tidy 14 follows a throw inside json_value
// that a move cannot reach.
// NOLINTNEXTLINE(bugprone-exception-escape)
struct Metadata {
    json config;   // nibble.config
    json tensors;  // nibble.tensors: name -> layout
    bool shared_output = false;
    int version = 0;             // nibble_version: 1 or 2
    std::string tokenizer_text;  // nibble.tokenizer_bytes as written
    uint64_t tokenizer_bytes = 0;
    std::string chat_template;      // nibble.chat_template, optional
    GenerationSettings generation;  // nibble.add_bos_token, nibble.extra_eos_ids, optional
};

Metadata read_metadata(const HeaderReader& r, const json& metadata) {
    json header = json::object();
    header["__metadata__"] = metadata;
    const json& meta = r.member(header, "__metadata__", "header");
    const std::string version = r.string(meta, "nibble_version", "__metadata__");
    if (version != "1" && version != "2") {
        r.fail("nibble file version " + version +
               " is not supported (this build reads versions 1 and 2); upgrade nibble");
    }
    if (r.string(meta, "format", "__metadata__") != "nibble") r.fail("format is not nibble");
    Metadata m;
    m.version = version == "1" ? 1 : 2;
    m.config = r.parse(r.string(meta, "nibble.config", "__metadata__"), "nibble.config");
    m.tensors = r.parse(r.string(meta, "nibble.tensors", "__metadata__"), "nibble.tensors");
    if (!m.tensors.is_object()) r.fail("nibble.tensors is not a JSON object");
    const std::string shared_text = r.string(meta, "nibble.shared_output", "__metadata__");
    if (shared_text != "true" && shared_text != "false") {
        r.fail("nibble.shared_output is '" + shared_text + "', not true or false");
    }
    m.shared_output = shared_text == "true";
    m.tokenizer_text = r.string(meta, "nibble.tokenizer_bytes", "__metadata__");
    const std::string& tok = m.tokenizer_text;
    if (tok.empty() || tok.size() > 12 ||
        !std::all_of(tok.begin(), tok.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
        r.fail("nibble.tokenizer_bytes '" + tok + "' is not a byte count");
    }
    m.tokenizer_bytes = std::stoull(tok);
    if (meta.contains("nibble.chat_template")) {
        m.chat_template = r.string(meta, "nibble.chat_template", "__metadata__");
    }
    if (meta.contains("nibble.add_bos_token")) {
        const std::string add = r.string(meta, "nibble.add_bos_token", "__metadata__");
        if (add != "true" && add != "false") {
            r.fail("nibble.add_bos_token is '" + add + "', not true or false");
        }
        m.generation.add_bos_token = add == "true";
    }
    if (meta.contains("nibble.extra_eos_ids")) {
        const json ids =
            r.parse(r.string(meta, "nibble.extra_eos_ids", "__metadata__"), "nibble.extra_eos_ids");
        if (!ids.is_array()) r.fail("nibble.extra_eos_ids is not a JSON list");
        for (const json& id : ids) {
            if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
                id.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
                r.fail("nibble.extra_eos_ids has an entry that is not a token id");
            }
            m.generation.extra_eos_ids.push_back(int32_t(id.get<int64_t>()));
        }
    }
    return m;
}

// The data section starts 64-byte aligned.
void check_data_start(const HeaderReader& r, const SafetensorsFile& st) {
    const uint64_t n = st.header_bytes();
    if ((8 + n) % kSectionAlign != 0) {
        r.fail("data section starts at byte " + std::to_string(8 + n) + ", not a multiple of " +
               std::to_string(kSectionAlign));
    }
}

// Every entry starts 64-byte aligned, and together they cover the data section
// without gaps or overlaps.
void check_entries(const HeaderReader& r, const SafetensorsFile& st) {
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const auto& [name, e] : st.tensors()) {
        if (e.begin % kSectionAlign != 0) {
            r.fail("tensor " + name + ": offset " + std::to_string(e.begin) +
                   " is not a multiple of " + std::to_string(kSectionAlign));
        }
        ranges.emplace_back(e.begin, e.end);
    }
    std::sort(ranges.begin(), ranges.end());
    uint64_t covered = 0;
    for (const auto& [b, e] : ranges) {
        if (b != covered) r.fail("tensor data has a gap or overlap at byte " + std::to_string(b));
        covered = e;
    }
    if (covered != st.data_bytes()) {
        r.fail("tensors cover " + std::to_string(covered) + " bytes but the data section has " +
               std::to_string(st.data_bytes()) + " (truncated or trailing bytes)");
    }
}

// Hands out the model's tensors by name, each checked against its layout in
// nibble.tensors, and remembers which entries were used.
class TensorBinder {
  public:
    TensorBinder(const HeaderReader& r, const SafetensorsFile& st, const Metadata& meta)
        : r_(r), data_(st.data_section()), meta_(meta), entries_(st.tensors()) {}

    Tensor operator()(const std::string& name) {
        const auto info = meta_.tensors.find(name);
        if (info == meta_.tensors.end()) r_.fail("nibble.tensors has no entry for " + name);
        const SafetensorsEntry& e = entry(name);
        const PackedLayout layout = layout_from_json(r_, *info, name, meta_.version);
        check_storage(name, e, layout);
        used_.insert(name);
        Tensor t;
        t.name = name;
        t.view.layout = layout;
        t.view.data = data_ + e.begin;
        if (const auto co = info->find("column_order"); co != info->end()) {
            if (!co->is_boolean())
                r_.fail("nibble.tensors[" + name + "]: column_order is not a boolean");
            if (co->get<bool>()) t.column_order = column_order(name, layout.cols);
        }
        return t;
    }

    bool stored(const std::string& name) const { return entries_.count(name) > 0; }

    // The tokenizer entry, which must hold exactly nibble.tokenizer_bytes (padded).
    std::string tokenizer() {
        const SafetensorsEntry& e = entry(kNibbleTokenizerTensor);
        if (e.dtype != "U8" || e.shape.size() != 1 || e.shape[0] != e.end - e.begin ||
            e.end - e.begin != align_up(meta_.tokenizer_bytes, kSectionAlign)) {
            r_.fail(std::string("tensor ") + kNibbleTokenizerTensor + " does not hold " +
                    meta_.tokenizer_text + " bytes");
        }
        used_.insert(kNibbleTokenizerTensor);
        return std::string(reinterpret_cast<const char*>(data_ + e.begin),
                           size_t(meta_.tokenizer_bytes));
    }

    // Every stored tensor and every listed layout belongs to the model.
    void check_all_used() const {
        for (const auto& [name, e] : entries_) {
            if (!used_.count(name)) r_.fail("unexpected tensor " + name);
        }
        for (const auto& [name, v] : meta_.tensors.items()) {
            if (!used_.count(name) && !(meta_.shared_output && name == "output.weight")) {
                r_.fail("nibble.tensors lists unknown tensor " + name);
            }
        }
    }

  private:
    const SafetensorsEntry& entry(const std::string& name) const {
        const auto it = entries_.find(name);
        if (it == entries_.end()) r_.fail("tensor " + name + " is missing");
        return it->second;
    }

    // F32 tensors are stored with their shape, packed ones as padded U8 bytes.
    void check_storage(const std::string& name, const SafetensorsEntry& e,
                       const PackedLayout& layout) const {
        const uint64_t size = e.end - e.begin;
        if (e.dtype == "F32") {
            const bool shape_ok =
                layout.format == WeightFormat::f32 &&
                ((e.shape.size() == 2 && e.shape[0] == uint64_t(layout.rows) &&
                  e.shape[1] == uint64_t(layout.cols)) ||
                 (layout.rows == 1 && e.shape.size() == 1 && e.shape[0] == uint64_t(layout.cols)));
            if (!shape_ok) r_.fail("tensor " + name + ": F32 shape does not match nibble.tensors");
            if (size != layout.total_bytes) {
                r_.fail("tensor " + name + " has " + std::to_string(size) +
                        " bytes, its layout needs " + std::to_string(layout.total_bytes));
            }
        } else if (e.dtype == "U8") {
            const uint64_t padded = align_up(layout.total_bytes, kSectionAlign);
            if (e.shape.size() != 1 || e.shape[0] != size) {
                r_.fail("tensor " + name + ": U8 shape does not match its data_offsets");
            }
            if (size != padded) {
                r_.fail("tensor " + name + " has " + std::to_string(size) + " bytes, its " +
                        format_name(layout.format) + " layout needs " + std::to_string(padded));
            }
        } else {
            r_.fail("tensor " + name + ": dtype " + e.dtype + " is not U8 or F32");
        }
    }

    // "<name>.column_order": I32 [cols], a permutation of 0..cols-1.
    const int32_t* column_order(const std::string& name, int64_t cols) {
        const std::string key = name + kColumnOrderSuffix;
        const SafetensorsEntry& e = entry(key);
        if (e.dtype != "I32" || e.shape != std::vector<uint64_t>{uint64_t(cols)} ||
            e.end - e.begin != 4 * uint64_t(cols)) {
            r_.fail("tensor " + key + " is not I32 [" + std::to_string(cols) + "]");
        }
        const auto* order = reinterpret_cast<const int32_t*>(data_ + e.begin);
        std::vector<bool> seen(static_cast<size_t>(cols), false);
        for (int64_t j = 0; j < cols; ++j) {
            const int32_t v = order[j];
            if (v < 0 || v >= cols || seen[size_t(v)]) {
                r_.fail("tensor " + key + " is not a permutation of the columns");
            }
            seen[size_t(v)] = true;
        }
        used_.insert(key);
        return order;
    }

    const HeaderReader& r_;
    const uint8_t* data_;
    const Metadata& meta_;
    const std::map<std::string, SafetensorsEntry>& entries_;
    std::set<std::string> used_;
};

// Every weight of the tensor registry; a shared classifier is the embedding.
void bind_weights(Model& m, TensorBinder& tensor, const HeaderReader& r, bool shared_output) {
    m.layers.resize(size_t(m.config.n_layers));
    for (const TensorSlot& slot : tensor_slots(m.config)) {
        if (slot.model_member == &Model::output && shared_output) {
            if (tensor.stored(slot.gguf_name)) r.fail("output.weight is stored although shared");
            m.output = m.token_embedding;
            m.output.name = slot.gguf_name;
        } else {
            slot.in(m) = tensor(slot.gguf_name);
        }
    }
}

}  // namespace

bool is_nibble_file(const MappedFile& file) {
    return file.size() >= 8 + kMagicPrefix.size() &&
           std::memcmp(file.data() + 8, kMagicPrefix.data(), kMagicPrefix.size()) == 0;
}

Model load_nibble_file(const std::shared_ptr<MappedFile>& file) {
    const HeaderReader r{file->path()};
    if (!is_nibble_file(*file)) r.fail("not a nibble model file (no nibble header)");
    const SafetensorsFile st = SafetensorsFile::parse(file);
    check_data_start(r, st);
    const Metadata meta = read_metadata(r, st.metadata());
    check_entries(r, st);

    Model m;
    m.config = config_from_json(r, meta.config);
    m.source_path = file->path();
    m.source_format = "nibble";
    TensorBinder tensor(r, st, meta);
    bind_weights(m, tensor, r, meta.shared_output);
    if (meta.tokenizer_bytes > 0) m.tokenizer_proto = tensor.tokenizer();
    m.chat_template = meta.chat_template;
    m.generation = meta.generation;
    for (int32_t id : m.generation.extra_eos_ids) {
        if (id >= m.config.vocab_size) {
            r.fail("nibble.extra_eos_ids: " + std::to_string(id) + " is outside the vocab of " +
                   std::to_string(m.config.vocab_size));
        }
    }
    tensor.check_all_used();
    try {
        m.validate();
    } catch (const std::exception& e) {
        r.fail(e.what());
    }
    m.storage.push_back(file);
    return m;
}

// ---- writing ----

namespace {
std::atomic<int> g_write_version{2};
}  // namespace

void set_nibble_write_version(int version) {
    if (version != 1 && version != 2) {
        throw std::invalid_argument("nibble file version " + std::to_string(version) +
                                    " cannot be written (1 or 2)");
    }
    g_write_version.store(version);
}

int nibble_write_version() {
    return g_write_version.load();
}

NibbleFileWriter::NibbleFileWriter(const std::string& path, const ModelConfig& config,
                                   std::vector<NibbleTensorDecl> tensors, bool shared_output,
                                   size_t tokenizer_bytes, const std::string& chat_template,
                                   const GenerationSettings& generation)
    : path_(path), tensors_(std::move(tensors)), tokenizer_bytes_(tokenizer_bytes) {
    try {
        config.validate();
    } catch (const std::exception& e) {
        throw std::runtime_error(path + ": " + e.what());
    }
    ordered_json infos = ordered_json::object();
    ordered_json header = ordered_json::object();
    ordered_json& meta = header["__metadata__"];
    meta["format"] = "nibble";
    meta["nibble_version"] = std::to_string(nibble_write_version());
    meta["nibble.config"] = config_to_json(config).dump();
    // nibble.tensors is filled below and stored as a string once complete.
    meta["nibble.tensors"] = "";
    meta["nibble.shared_output"] = shared_output ? "true" : "false";
    meta["nibble.tokenizer_bytes"] = std::to_string(tokenizer_bytes);
    if (!chat_template.empty()) meta["nibble.chat_template"] = chat_template;
    if (!generation.add_bos_token) meta["nibble.add_bos_token"] = "false";
    if (!generation.extra_eos_ids.empty()) {
        meta["nibble.extra_eos_ids"] = json(generation.extra_eos_ids).dump();
    }

    uint64_t at = 0;
    for (const NibbleTensorDecl& t : tensors_) {
        if (t.name.empty() || t.name == "__metadata__" || t.name == kNibbleTokenizerTensor ||
            header.contains(t.name)) {
            throw std::runtime_error(path + ": bad or duplicate tensor name '" + t.name + "'");
        }
        const PackedLayout& l = t.layout;
        infos[t.name] = {{"format", format_name(l.format)},
                         {"rows", l.rows},
                         {"cols", l.cols},
                         {"group_size", l.group_size},
                         {"double_quant", l.double_quant}};
        // Version 2: every matrix that can be is stored interleaved.
        const bool interleave = nibble_write_version() >= 2 && can_interleave(l);
        stored_.push_back(with_interleave(l, interleave ? kInterleaveRows : 1));
        if (interleave) infos[t.name]["interleave"] = kInterleaveRows;
        const uint64_t padded = align_up(l.total_bytes, kSectionAlign);
        ordered_json entry;
        if (stored_as_f32(l)) {
            entry["dtype"] = "F32";
            entry["shape"] =
                l.rows == 1 ? ordered_json::array({l.cols}) : ordered_json::array({l.rows, l.cols});
        } else {
            entry["dtype"] = "U8";
            entry["shape"] = ordered_json::array({padded});
        }
        entry["data_offsets"] = ordered_json::array({at, at + padded});
        header[t.name] = entry;
        at += padded;
        if (t.column_order != nullptr) {
            infos[t.name]["column_order"] = true;
            const uint64_t bytes = 4 * uint64_t(l.cols),
                           order_padded = align_up(bytes, kSectionAlign);
            if (order_padded != bytes) {
                throw std::runtime_error(path + ": tensor " + t.name +
                                         " has a column order but not a multiple of 16 columns");
            }
            header[t.name + kColumnOrderSuffix] = {
                {"dtype", "I32"},
                {"shape", ordered_json::array({l.cols})},
                {"data_offsets", ordered_json::array({at, at + bytes})}};
            at += bytes;
        }
    }
    if (tokenizer_bytes > 0) {
        const uint64_t padded = align_up(tokenizer_bytes, kSectionAlign);
        header[kNibbleTokenizerTensor] = {{"dtype", "U8"},
                                          {"shape", ordered_json::array({padded})},
                                          {"data_offsets", ordered_json::array({at, at + padded})}};
        at += padded;
    }
    // (the header object has grown: `meta` may no longer be a valid reference)
    header["__metadata__"]["nibble.tensors"] = infos.dump();

    // Header padded with spaces so the data section starts at a multiple of 64.
    std::string text = header.dump();
    text.append(align_up(8 + text.size(), kSectionAlign) - 8 - text.size(), ' ');
    file_size_ = 8 + text.size() + at;

    temp_ = std::make_unique<TemporaryOutput>(path);
    out_ = fdopen(temp_->fd(), "wb");
    if (out_ == nullptr) {
        throw std::runtime_error(path + ": cannot write " + temp_->temp_path() + ": " +
                                 std::strerror(errno));
    }
    temp_->release_fd();
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
    write_padded(len, 8, 8);
    write_padded(text.data(), text.size(), text.size());
}

NibbleFileWriter::~NibbleFileWriter() {
    if (out_ != nullptr) std::fclose(out_);
    // temp_ removes the temporary file unless finish() renamed it.
}

void NibbleFileWriter::write_padded(const void* data, size_t bytes, size_t padded) {
    static const uint8_t zeros[kSectionAlign] = {};
    bool ok = bytes == 0 || std::fwrite(data, 1, bytes, out_) == bytes;
    for (size_t left = padded - bytes; ok && left > 0;) {
        const size_t n = std::min(left, sizeof zeros);
        ok = std::fwrite(zeros, 1, n, out_) == n;
        left -= n;
    }
    if (!ok) throw std::runtime_error(path_ + ": write failed: " + std::strerror(errno));
}

void NibbleFileWriter::write_tensor(const std::string& name, const uint8_t* data, size_t bytes) {
    if (out_ == nullptr) throw std::runtime_error(path_ + ": writer is closed");
    if (next_ >= tensors_.size() || tensors_[next_].name != name) {
        throw std::runtime_error(path_ + ": tensor " + name + " written out of the declared order");
    }
    const PackedLayout& l = tensors_[next_].layout;
    if (bytes != l.total_bytes) {
        throw std::runtime_error(path_ + ": tensor " + name + " has " + std::to_string(bytes) +
                                 " bytes, declared " + std::to_string(l.total_bytes));
    }
    const PackedLayout& stored = stored_[next_];
    if (stored.interleave != l.interleave) {
        if (converted_.size() < bytes) converted_.resize(bytes);
        convert_interleave(l, data, stored, converted_.data());
        data = converted_.data();
    }
    write_padded(data, bytes, align_up(bytes, kSectionAlign));
    if (const int32_t* order = tensors_[next_].column_order) {
        write_padded(order, 4 * size_t(l.cols), 4 * size_t(l.cols));
    }
    ++next_;
}

void NibbleFileWriter::write_tokenizer(const std::string& proto) {
    if (out_ == nullptr) throw std::runtime_error(path_ + ": writer is closed");
    if (next_ != tensors_.size() || tokenizer_written_ || proto.size() != tokenizer_bytes_) {
        throw std::runtime_error(path_ + ": tokenizer written out of order or with the wrong size");
    }
    write_padded(proto.data(), proto.size(), align_up(proto.size(), kSectionAlign));
    tokenizer_written_ = true;
}

void NibbleFileWriter::finish() {
    if (out_ == nullptr) throw std::runtime_error(path_ + ": writer is closed");
    if (next_ != tensors_.size() || (tokenizer_bytes_ > 0 && !tokenizer_written_)) {
        throw std::runtime_error(path_ + ": " + std::to_string(tensors_.size() - next_) +
                                 " declared tensors were not written");
    }
    const bool ok = std::fflush(out_) == 0;
    const bool closed = std::fclose(out_) == 0;
    out_ = nullptr;
    if (!ok || !closed) {
        const int err = errno;
        temp_->discard();
        throw std::runtime_error(path_ + ": write failed: " + std::strerror(err));
    }
    temp_->commit();
}

void save_nibble_file(const Model& model, const std::string& path) {
    try {
        model.validate();
    } catch (const std::exception& e) {
        throw std::runtime_error(path + ": " + e.what());
    }
    const bool shared = output_is_shared(model);
    if (shared &&
        (model.output.view.layout.format != model.token_embedding.view.layout.format ||
         model.output.view.layout.total_bytes != model.token_embedding.view.layout.total_bytes)) {
        throw std::runtime_error(path + ": output shares the embedding's data with another layout");
    }
    const std::vector<std::string> names = canonical_names(model.config);
    std::vector<NibbleTensorDecl> decls;
    std::vector<const Tensor*> order;
    const auto all = model.tensors();
    for (size_t i = 0; i < all.size(); ++i) {
        const Tensor* t = all[i];
        if (t->name != names[i]) {
            throw std::runtime_error(path + ": tensor '" + t->name + "' should be named " +
                                     names[i]);
        }
        if (shared && t == &model.output) continue;
        decls.push_back({t->name, t->view.layout, t->column_order});
        order.push_back(t);
    }
    NibbleFileWriter writer(path, model.config, std::move(decls), shared,
                            model.tokenizer_proto.size(), model.chat_template, model.generation);
    for (const Tensor* t : order)
        writer.write_tensor(t->name, t->view.data, t->view.layout.total_bytes);
    if (!model.tokenizer_proto.empty()) writer.write_tokenizer(model.tokenizer_proto);
    writer.finish();
}

}  // namespace nibble

// Hugging Face checkpoints (see hf.h). Tensor names and shapes come from the
// tensor registry (engine/tensor_registry.h).
#include "models/hf.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <tuple>

#include "engine/tensor_registry.h"
#include "models/gptq_import.h"
#include "models/hf_tokenizer.h"
#include "models/safetensors.h"
#include "models/source_tensor.h"
#include "tokenizer/tokenizer.h"

namespace nibble {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

[[noreturn]] void fail(const std::string& where, const std::string& problem) {
    throw std::runtime_error(where + ": " + problem);
}

json read_json(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path.string(), "cannot open");
    std::stringstream text;
    text << in.rdbuf();
    try {
        json j = json::parse(text.str());
        if (!j.is_object()) fail(path.string(), "is not a JSON object");
        return j;
    } catch (const json::parse_error& e) {
        // Not e.what(): nlohmann quotes the raw bytes around the error.
        fail(path.string(), "not valid JSON (syntax error at byte " + std::to_string(e.byte) +
                                " of " + std::to_string(text.str().size()) + ")");
    } catch (const json::exception& e) {  // out_of_range 406: a number beyond a double
        fail(path.string(), "not valid JSON (error " + std::to_string(e.id) +
                                (e.id == 406 ? ": a number out of range)" : ")"));
    }
}

// j[key] when present and not null, else nullptr; a value of another JSON type
// than `want` is an error naming the key (json::value() would throw nlohmann's
// type_error text instead).
const json* field(const json& j, const char* key, json::value_t want, const char* what,
                  const std::string& where) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return nullptr;
    const bool ok = want == json::value_t::number_float ? it->is_number() : it->type() == want;
    if (!ok) fail(where, std::string("\"") + key + "\" is not " + what);
    return &*it;
}

std::string string_field(const json& j, const char* key, const std::string& where,
                         const std::string& fallback) {
    const json* v = field(j, key, json::value_t::string, "a string", where);
    return v ? v->get<std::string>() : fallback;
}

int int_field(const json& j, const char* key, const std::string& where, int fallback = -1) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
        if (fallback >= 0) return fallback;
        fail(where, std::string("config.json has no \"") + key + "\"");
    }
    if (!it->is_number_integer() || it->get<int64_t>() <= 0 ||
        it->get<int64_t>() > std::numeric_limits<int>::max()) {
        fail(where, std::string("config.json \"") + key + "\" is not a positive integer");
    }
    return int(it->get<int64_t>());
}

double real_field(const json& j, const char* key, const std::string& where, double fallback) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    if (!it->is_number() || !(it->get<double>() > 0.0)) {
        fail(where, std::string("config.json \"") + key + "\" is not a positive number");
    }
    return it->get<double>();
}

// What config.json says: the hyperparameters, and what the loader must add:
// RoPE factors computed from rope_scaling, Gemma's (1 + w) norms, Phi-3's
// fused projections.
struct HfConfig {
    ModelConfig c;
    std::vector<float> rope_freqs, rope_long, rope_short;
    bool norms_plus_one = false;  // Gemma: weights applied as (1 + w)
    bool fused = false;           // Phi-3: qkv_proj and gate_up_proj
};

// The model_type of config.json's first "architectures" entry (the class that
// loads it), or its "model_type" when it lists none.
std::string model_type(const json& j, const std::string& where) {
    const auto a = j.find("architectures");
    if (a == j.end() || !a->is_array() || a->empty() || !(*a)[0].is_string()) {
        std::string type = string_field(j, "model_type", where, "");
        if (type.empty()) fail(where, "config.json names no architectures and no model_type");
        return type;
    }
    const std::string arch = (*a)[0].get<std::string>();
    static const std::map<std::string, std::string> kTypes = {
        {"LlamaForCausalLM", "llama"},   {"MistralForCausalLM", "mistral"},
        {"Qwen2ForCausalLM", "qwen2"},   {"Qwen3ForCausalLM", "qwen3"},
        {"Gemma2ForCausalLM", "gemma2"}, {"Gemma3ForCausalLM", "gemma3_text"},
        {"Phi3ForCausalLM", "phi3"}};
    const auto it = kTypes.find(arch);
    if (it == kTypes.end()) {
        fail(where, "architecture " + arch +
                        " is not supported (LlamaForCausalLM, MistralForCausalLM, "
                        "Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma2ForCausalLM, "
                        "Gemma3ForCausalLM, Phi3ForCausalLM)");
    }
    return it->second;
}

std::vector<float> float_list(const json& rs, const char* key, size_t n, const std::string& where) {
    const json* v = field(rs, key, json::value_t::array, "a list", where);
    if (v == nullptr || v->size() != n) {
        fail(where, std::string("rope_scaling \"") + key + "\" is not a list of " +
                        std::to_string(n) + " numbers");
    }
    std::vector<float> out;
    for (const json& x : *v) {
        if (!x.is_number() || !(x.get<double>() > 0.0)) {
            fail(where, std::string("rope_scaling \"") + key + "\" holds a non-positive value");
        }
        out.push_back(float(x.get<double>()));
    }
    return out;
}

// Llama-3.1's rope_scaling (type llama3), as divisors of the frequencies
// (llama.cpp's rope_freqs): 1 for short wavelengths, `factor` for long ones,
// interpolated between.
std::vector<float> llama3_rope_freqs(const ModelConfig& c, const json& rs,
                                     const std::string& where) {
    const double factor = real_field(rs, "factor", where, 8.0);
    const double low = real_field(rs, "low_freq_factor", where, 1.0);
    const double high = real_field(rs, "high_freq_factor", where, 4.0);
    const double old_context = real_field(rs, "original_max_position_embeddings", where, 8192.0);
    if (!(high > low)) fail(where, "rope_scaling high_freq_factor must exceed low_freq_factor");
    const double low_wavelen = old_context / low, high_wavelen = old_context / high;
    std::vector<float> out;
    const int d = c.head_dim();
    for (int i = 0; i < d / 2; ++i) {
        const double freq = 1.0 / std::pow(double(c.rope_theta), double(2 * i) / double(d));
        const double wavelen = 2.0 * M_PI / freq;
        if (wavelen < high_wavelen) {
            out.push_back(1.0f);
        } else if (wavelen > low_wavelen) {
            out.push_back(float(factor));
        } else {
            const double smooth = (old_context / wavelen - low) / (high - low);
            out.push_back(float(1.0 / ((1.0 - smooth) / factor + smooth)));
        }
    }
    return out;
}

HfConfig read_config(const json& j, const std::string& where) {
    const std::string type = model_type(j, where);
    static const char* const kTypes[] = {"llama",  "mistral",     "qwen2", "qwen3",
                                         "gemma2", "gemma3_text", "phi3"};
    if (std::find(std::begin(kTypes), std::end(kTypes), type) == std::end(kTypes)) {
        fail(where, "model_type " + type +
                        " is not supported (llama, mistral, qwen2, qwen3, gemma2, gemma3_text, "
                        "phi3)");
    }
    HfConfig h;
    ModelConfig& c = h.c;
    const bool gemma = type == "gemma2" || type == "gemma3_text";
    c.architecture = type == "mistral" ? "llama" : type == "gemma3_text" ? "gemma3" : type;
    c.dim = int_field(j, "hidden_size", where);
    c.hidden_dim = int_field(j, "intermediate_size", where);
    c.n_layers = int_field(j, "num_hidden_layers", where);
    c.n_heads = int_field(j, "num_attention_heads", where);
    c.n_kv_heads = int_field(j, "num_key_value_heads", where, c.n_heads);
    c.vocab_size = int_field(j, "vocab_size", where);
    c.max_seq_len = int_field(j, "max_position_embeddings", where);
    c.rope_theta = float(real_field(j, "rope_theta", where, 10000.0));
    c.norm_eps = float(real_field(j, "rms_norm_eps", where, 1e-6));
    c.rope_style = RopeStyle::halves;
    if (const auto hd = j.find("head_dim"); hd != j.end() && !hd->is_null()) {
        const int head_dim = int_field(j, "head_dim", where);
        if (head_dim != c.dim / c.n_heads || c.dim % c.n_heads != 0) c.head_size = head_dim;
    }
    // Qwen's configs carry a sliding_window that applies only with use_sliding_window.
    const json* use_window =
        field(j, "use_sliding_window", json::value_t::boolean, "true or false", where);
    const bool qwen = type == "qwen2" || type == "qwen3";
    if (const auto sw = j.find("sliding_window");
        sw != j.end() && !sw->is_null() && (!qwen || (use_window && use_window->get<bool>()))) {
        c.sliding_window = int_field(j, "sliding_window", where);
    }
    if (type == "qwen2") c.qkv_bias = true;
    if (type == "qwen3") c.qk_norm = true;
    if (gemma) {
        h.norms_plus_one = true;
        c.embedding_scale = std::sqrt(float(c.dim));
        c.activation = FfnActivation::gelu_tanh;
        c.post_norms = true;
        c.query_scale = float(
            1.0 / std::sqrt(real_field(j, "query_pre_attn_scalar", where, double(c.head_dim()))));
        if (type == "gemma2") {
            c.attn_logit_softcap = float(real_field(j, "attn_logit_softcapping", where, 0.0));
            c.final_logit_softcap = float(real_field(j, "final_logit_softcapping", where, 0.0));
            c.sliding_window_pattern = 2;
        } else {
            c.qk_norm = true;
            c.sliding_window_pattern = int_field(j, "sliding_window_pattern", where, 6);
            c.rope_theta_local = float(real_field(j, "rope_local_base_freq", where, 10000.0));
        }
    }
    if (type == "phi3") h.fused = true;
    if (const json* rs = field(j, "rope_scaling", json::value_t::object, "an object", where)) {
        const std::string kind =
            string_field(*rs, "rope_type", where, string_field(*rs, "type", where, "?"));
        const json* f = field(*rs, "factor", json::value_t::number_float, "a number", where);
        const double factor = f ? f->get<double>() : 0.0;
        if (kind == "linear" && factor >= 1.0) {
            c.rope_scale = float(factor);
        } else if (kind == "llama3" && (type == "llama" || type == "mistral")) {
            c.rope_factors = RopeFactors::single;
            h.rope_freqs = llama3_rope_freqs(c, *rs, where);
        } else if ((kind == "longrope" || kind == "su") && type == "phi3") {
            // Phi-3 LongRoPE: per-frequency divisors for long and short contexts,
            // cos and sin scaled by sqrt(1 + ln(s) / ln(original)), s = context / original.
            c.rope_factors = RopeFactors::long_short;
            c.rope_original_context =
                int_field(j, "original_max_position_embeddings", where, c.max_seq_len);
            const double scale = double(c.max_seq_len) / double(c.rope_original_context);
            c.rope_attn_factor =
                scale > 1.0 ? float(std::sqrt(1.0 + std::log(scale) /
                                                        std::log(double(c.rope_original_context))))
                            : 1.0f;
            const size_t n = size_t(c.head_dim() / 2);
            h.rope_long = float_list(*rs, "long_factor", n, where);
            h.rope_short = float_list(*rs, "short_factor", n, where);
        } else {
            fail(where, "rope_scaling type \"" + kind +
                            "\" is not supported (linear; llama3 for llama; longrope for phi3)");
        }
    }
    try {
        c.validate();
    } catch (const std::exception& e) {
        fail(where, e.what());
    }
    return h;
}

// The safetensors files of the checkpoint and which one holds each tensor.
struct Shards {
    std::map<std::string, SafetensorsFile> files;  // by file name
    std::map<std::string, std::string> owner;      // tensor -> file name

    const SafetensorsEntry* find(const std::string& tensor, std::string& file) const {
        const auto o = owner.find(tensor);
        if (o == owner.end()) return nullptr;
        file = files.at(o->second).path();
        return files.at(o->second).find(tensor);
    }
    // The mapping holding a tensor that find() found.
    std::shared_ptr<const MappedFile> mapping(const std::string& tensor) const {
        return files.at(owner.at(tensor)).file();
    }
};

Shards open_shards(const fs::path& dir, const std::string& single) {
    Shards s;
    auto open = [&](const std::string& name) {
        if (s.files.count(name)) return;
        const fs::path p = dir / name;
        if (!fs::is_regular_file(p)) fail(p.string(), "missing (listed by the checkpoint)");
        s.files.emplace(name, SafetensorsFile::parse(MappedFile::open(p.string())));
    };
    const fs::path index = dir / "model.safetensors.index.json";
    if (!single.empty()) {
        open(single);
        for (const auto& [name, e] : s.files.at(single).tensors()) s.owner[name] = single;
    } else if (fs::is_regular_file(index)) {
        const json j = read_json(index);
        const auto map = j.find("weight_map");
        if (map == j.end() || !map->is_object()) fail(index.string(), "no \"weight_map\" object");
        for (const auto& [tensor, file] : map->items()) {
            if (!file.is_string())
                fail(index.string(), "weight_map[" + tensor + "] is not a file name");
            const std::string name = file.get<std::string>();
            if (name.find('/') != std::string::npos)
                fail(index.string(), "shard " + name + " is not in the directory");
            open(name);
            s.owner[tensor] = name;
        }
    } else if (fs::is_regular_file(dir / "model.safetensors")) {
        open("model.safetensors");
        for (const auto& [name, e] : s.files.at("model.safetensors").tensors()) {
            s.owner[name] = "model.safetensors";
        }
    } else {
        fail(dir.string(), "no model.safetensors or model.safetensors.index.json");
    }
    return s;
}

// The encoding of a safetensors dtype nibble reads unpacked.
std::optional<SourceEncoding> dense_encoding(const std::string& dtype) {
    if (dtype == "F32") return SourceEncoding::f32;
    if (dtype == "F16") return SourceEncoding::f16;
    if (dtype == "BF16") return SourceEncoding::bf16;
    return std::nullopt;
}

// One tensor: checked shape and dtype, then viewed or converted
// (models/source_tensor.h).
// A part of a fused tensor: rows [first_row, first_row + its rows) of the
// checkpoint's tensor `hf_name`, which has `all_rows` rows.
struct RowRange {
    std::string hf_name;
    int64_t first_row = 0, all_rows = 0;
};

Tensor load_tensor(Model& m, const Shards& shards, const TensorSlot& slot, const std::string& where,
                   bool defer, const RowRange* part = nullptr) {
    std::string file;
    const std::string& hf_name = part ? part->hf_name : slot.hf_name;
    const SafetensorsEntry* e = shards.find(hf_name, file);
    if (e == nullptr) fail(where, "tensor " + hf_name + " is missing");
    const auto [rows, cols] = tensor_shape(m.config, slot.shape);
    const int64_t stored_rows = part ? part->all_rows : rows;
    const bool shape_ok =
        slot.is_norm() ? e->shape == std::vector<uint64_t>{uint64_t(cols)}
                       : e->shape == std::vector<uint64_t>{uint64_t(stored_rows), uint64_t(cols)};
    if (!shape_ok) {
        std::string shape;
        for (uint64_t d : e->shape) {  // (not `"x" + to_string`: gcc 12's false -Wrestrict)
            if (!shape.empty()) shape += 'x';
            shape += std::to_string(d);
        }
        fail(file, "tensor " + hf_name + " has shape [" + shape + "], expected " +
                       std::to_string(stored_rows) + "x" + std::to_string(cols));
    }
    const std::optional<SourceEncoding> encoding = dense_encoding(e->dtype);
    if (!encoding) {
        fail(file, "tensor " + hf_name + " has dtype " + e->dtype +
                       ", which is not supported (F32, F16, BF16)");
    }
    const size_t row_bytes = size_t(cols) * safetensors_dtype_size(e->dtype);
    if (e->end - e->begin != uint64_t(stored_rows) * row_bytes) {
        fail(file, "tensor " + hf_name + " data does not match its shape");
    }
    SourceTensor source;
    source.name = slot.gguf_name;
    source.encoding = *encoding;
    source.rows = rows;
    source.cols = cols;
    source.data = e->data + (part ? size_t(part->first_row) * row_bytes : 0);
    source.n_bytes = size_t(rows) * row_bytes;
    if (defer) return defer_tensor(m, shards.mapping(hf_name), source, slot.is_norm());
    return convert_tensor(m, source, slot.is_norm());
}

// quantization_config of an AutoGPTQ / AutoAWQ checkpoint; nullopt without one.
std::optional<PackedQuantConfig> read_quant_config(const json& config, const std::string& where) {
    const json* it =
        field(config, "quantization_config", json::value_t::object, "an object", where);
    if (it == nullptr) return std::nullopt;
    const json& j = *it;
    const std::string method = string_field(j, "quant_method", where, "?");
    PackedQuantConfig q;
    if (method == "gptq") {
        q.method = PackedQuantConfig::Method::gptq;
        q.zeros_minus_one = string_field(j, "checkpoint_format", where, "gptq") != "gptq_v2";
    } else if (method == "awq") {
        q.method = PackedQuantConfig::Method::awq;
        q.zeros_minus_one = false;
        const std::string version = string_field(j, "version", where, "gemm");
        if (version != "gemm" && version != "GEMM") {
            fail(where, "AWQ version \"" + version + "\" is not supported (only GEMM)");
        }
    } else {
        fail(where, "quantization method \"" + method + "\" is not supported (gptq, awq)");
    }
    const auto bits = j.find("bits") != j.end() ? j.find("bits") : j.find("w_bit");
    if (bits == j.end() || !bits->is_number_integer() || bits->get<int64_t>() != 4) {
        fail(where, "only 4-bit GPTQ/AWQ checkpoints are supported");
    }
    const auto group =
        j.find("group_size") != j.end() ? j.find("group_size") : j.find("q_group_size");
    if (group == j.end() || !group->is_number_integer())
        fail(where, "quantization_config has no group_size");
    const int64_t g = group->get<int64_t>();
    if (g <= 0 || g > std::numeric_limits<int>::max()) {
        fail(where,
             "quantization_config group_size " + std::to_string(g) + " is not a positive integer");
    }
    q.group_size = int(g);
    return q;
}

// A packed 4-bit linear layer "<prefix>.qweight" (+ qzeros, scales, g_idx), or
// an empty tensor when the checkpoint stores this one unquantized.
Tensor load_packed(Model& m, const Shards& shards, const TensorSlot& slot,
                   const PackedQuantConfig& q) {
    const std::string prefix = slot.hf_name.substr(0, slot.hf_name.size() - 7);  // ".weight"
    std::string file;
    const SafetensorsEntry* qweight = shards.find(prefix + ".qweight", file);
    if (qweight == nullptr) return {};
    const SafetensorsEntry* qzeros = shards.find(prefix + ".qzeros", file);
    const SafetensorsEntry* scales = shards.find(prefix + ".scales", file);
    if (qzeros == nullptr || scales == nullptr)
        fail(file, prefix + " has qweight but no qzeros/scales");
    const PackedSource packed{q, qweight, qzeros, scales, shards.find(prefix + ".g_idx", file)};
    SourceTensor source;
    source.name = slot.gguf_name;
    source.encoding = SourceEncoding::packed_4bit;
    std::tie(source.rows, source.cols) = tensor_shape(m.config, slot.shape);
    source.packed = &packed;
    try {
        return convert_tensor(m, source, false);
    } catch (const std::exception& e) {
        fail(file, std::string(e.what()) + " (" + prefix + ")");
    }
}

// Gemma's norm weight w, applied as (1 + w): stored as 1 + w, as llama.cpp's
// converter writes it, so the forward pass has one RMSNorm.
Tensor plus_one(Model& m, const Tensor& norm) {
    Tensor out = make_owned_tensor(m, norm.name, norm.view.layout);
    auto* w = reinterpret_cast<float*>(writable(out));
    for (int64_t i = 0; i < norm.cols(); ++i) w[i] = 1.0f + norm.f32()[i];
    return out;
}

// Phi-3: wq, wk, wv from the rows of qkv_proj; w_gate, w_up from gate_up_proj.
Tensor load_fused_part(Model& m, const Shards& shards, const TensorSlot& slot,
                       const std::string& where, bool defer) {
    for (const FusedTensorSpec& f : kFusedTensors) {
        RowRange part{hf_layer_name(slot.layer, f.hf), 0, 0};
        int64_t first = -1;
        for (int i = 0; i < f.n_parts; ++i) {
            if (f.parts[i] == slot.layer_member) first = part.all_rows;
            part.all_rows += tensor_shape(m.config, f.part_shapes[i]).first;
        }
        if (first < 0) continue;
        part.first_row = first;
        return load_tensor(m, shards, slot, where, defer, &part);
    }
    throw std::logic_error("tensor " + slot.gguf_name + " is not a fused part");
}

}  // namespace

Model load_hf_model(const std::string& path, bool defer) {
    fs::path dir = path;
    std::string single;
    if (!fs::is_directory(dir)) {
        single = dir.filename().string();
        dir = dir.parent_path().empty() ? fs::path(".") : dir.parent_path();
    }
    const fs::path config_path = dir / "config.json";
    if (!fs::is_regular_file(config_path)) {
        fail(path, "no config.json next to the weights (a Hugging Face checkpoint needs one)");
    }
    const json config = read_json(config_path);
    Model m;
    const HfConfig hf = read_config(config, config_path.string());
    m.config = hf.c;
    m.source_path = path;
    m.source_format = "hf";
    m.layers.resize(size_t(m.config.n_layers));
    const Shards shards = open_shards(dir, single);
    for (const auto& [name, file] : shards.files) m.storage.push_back(file.file());

    const json* tie = field(config, "tie_word_embeddings", json::value_t::boolean, "true or false",
                            config_path.string());
    const bool tied = tie != nullptr && tie->get<bool>();
    const auto quant = read_quant_config(config, config_path.string());
    int packed = 0;
    for (const TensorSlot& slot : tensor_slots(m.config)) {
        std::string file;
        if (slot.hf_name.empty()) {  // RoPE factors: computed from config.json
            const std::vector<float>& v = slot.model_member == &Model::rope_freqs ? hf.rope_freqs
                                          : slot.model_member == &Model::rope_factors_long
                                              ? hf.rope_long
                                              : hf.rope_short;
            slot.in(m) = make_owned_tensor(m, slot.gguf_name,
                                           make_layout(WeightFormat::f32, 1, int64_t(v.size())));
            std::memcpy(writable(slot.in(m)), v.data(), v.size() * sizeof(float));
            continue;
        }
        if (hf.fused && slot.layer >= 0 && is_fused_part(slot.layer_member)) {
            slot.in(m) = load_fused_part(m, shards, slot, path, defer);
            continue;
        }
        if (slot.model_member == &Model::output && (tied || !shards.find(slot.hf_name, file))) {
            m.output = m.token_embedding;  // tied classifier
            m.output.name = slot.gguf_name;
            continue;
        }
        if (quant && !slot.is_norm() && slot.shape != TensorShape::embedding) {
            Tensor t = load_packed(m, shards, slot, *quant);
            if (!t.empty()) {
                slot.in(m) = t;
                ++packed;
                continue;
            }
        }
        slot.in(m) = load_tensor(m, shards, slot, path, defer);
        if (hf.norms_plus_one && slot.shape != TensorShape::embedding && slot.is_norm()) {
            slot.in(m) = plus_one(m, slot.in(m));
        }
    }
    try {
        m.validate();
    } catch (const std::exception& e) {
        fail(path, e.what());
    }
    m.import_notes.push_back("Hugging Face checkpoint (" + m.config.architecture +
                             "), RoPE on halves (rotate_half)" +
                             std::string(tied ? ", tied embeddings" : "") +
                             (hf.norms_plus_one ? ", norm weights w stored as 1 + w" : "") +
                             (hf.fused ? ", fused qkv and gate_up split by rows" : ""));
    if (quant) {
        m.import_notes.push_back(
            std::to_string(packed) + " " +
            (quant->method == PackedQuantConfig::Method::gptq ? "GPTQ" : "AWQ") +
            " 4-bit tensors -> q4 g" + std::to_string(quant->group_size) +
            " (symmetric) or q4a (zero points as fp16 minimums), same codes and scales; act-order "
            "g_idx kept as a column order");
    }
    if (m.config.sliding_window > 0) {
        m.import_notes.push_back("sliding-window attention over the last " +
                                 std::to_string(m.config.sliding_window) + " positions");
    }

    const fs::path tok = dir / "tokenizer.model";
    const fs::path tok_json = dir / "tokenizer.json";
    if (fs::is_regular_file(tok)) {
        m.tokenizer_proto = Tokenizer::from_file(tok.string()).serialized_proto();
    } else if (fs::is_regular_file(tok_json)) {  // byte-pair (Llama-3, Qwen, Gemma)
        const Tokenizer bpe = Tokenizer::from_file(tok_json.string());
        m.tokenizer_proto = bpe.serialized_proto();
        m.generation.add_bos_token = bpe.add_bos_token();
    }
    apply_hf_tokenizer_settings(m, read_hf_tokenizer_settings(dir.string()));
    return m;
}

}  // namespace nibble

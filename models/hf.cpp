// Hugging Face checkpoints (see hf.h). Tensor names and shapes come from the
// tensor registry (engine/tensor_registry.h).
#include "models/hf.h"

#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "engine/tensor_registry.h"
#include "models/ggml_blocks.h"
#include "models/gguf_import.h"
#include "models/gptq_import.h"
#include "models/hf_tokenizer.h"
#include "models/safetensors.h"
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

ModelConfig read_config(const json& j, const std::string& where) {
    std::string arch = "(none)";
    if (const auto a = j.find("architectures");
        a != j.end() && a->is_array() && !a->empty() && (*a)[0].is_string()) {
        arch = (*a)[0].get<std::string>();
    }
    if (arch != "LlamaForCausalLM" && arch != "MistralForCausalLM") {
        fail(where,
             "architecture " + arch + " is not supported (LlamaForCausalLM, MistralForCausalLM)");
    }
    ModelConfig c;
    c.architecture = "llama";
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
        if (!hd->is_number_integer() || c.n_heads <= 0 || hd->get<int64_t>() != c.dim / c.n_heads) {
            fail(where, "config.json head_dim differs from hidden_size / num_attention_heads");
        }
    }
    if (const json* rs = field(j, "rope_scaling", json::value_t::object, "an object", where)) {
        const std::string type =
            string_field(*rs, "type", where, string_field(*rs, "rope_type", where, "?"));
        const json* f = field(*rs, "factor", json::value_t::number_float, "a number", where);
        const double factor = f ? f->get<double>() : 0.0;
        if (type != "linear" || !(factor >= 1.0)) {
            fail(where, "rope_scaling type \"" + type + "\" is not supported (only linear)");
        }
        c.rope_scale = float(factor);
    }
    if (const auto sw = j.find("sliding_window"); sw != j.end() && !sw->is_null()) {
        c.sliding_window = int_field(j, "sliding_window", where);
    }
    try {
        c.validate();
    } catch (const std::exception& e) {
        fail(where, e.what());
    }
    return c;
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

uint32_t ggml_type_of(const std::string& dtype) {
    if (dtype == "F32") return ggml::F32;
    if (dtype == "F16") return ggml::F16;
    if (dtype == "BF16") return ggml::BF16;
    return std::numeric_limits<uint32_t>::max();
}

// One tensor: checked shape and dtype, then viewed or converted like GGUF's
// dense types.
Tensor load_tensor(Model& m, const Shards& shards, const TensorSlot& slot, const std::string& where,
                   bool defer) {
    std::string file;
    const SafetensorsEntry* e = shards.find(slot.hf_name, file);
    if (e == nullptr) fail(where, "tensor " + slot.hf_name + " is missing");
    const auto [rows, cols] = tensor_shape(m.config, slot.shape);
    const bool shape_ok = slot.is_norm()
                              ? e->shape == std::vector<uint64_t>{uint64_t(cols)}
                              : e->shape == std::vector<uint64_t>{uint64_t(rows), uint64_t(cols)};
    if (!shape_ok) {
        std::string shape;
        for (uint64_t d : e->shape) {  // (not `"x" + to_string`: gcc 12's false -Wrestrict)
            if (!shape.empty()) shape += 'x';
            shape += std::to_string(d);
        }
        fail(file, "tensor " + slot.hf_name + " has shape [" + shape + "], expected " +
                       std::to_string(rows) + "x" + std::to_string(cols));
    }
    const uint32_t type = ggml_type_of(e->dtype);
    if (type == std::numeric_limits<uint32_t>::max()) {
        fail(file, "tensor " + slot.hf_name + " has dtype " + e->dtype +
                       ", which is not supported (F32, F16, BF16)");
    }
    if (e->end - e->begin != uint64_t(rows * cols) * safetensors_dtype_size(e->dtype)) {
        fail(file, "tensor " + slot.hf_name + " data does not match its shape");
    }
    if (defer) {
        return defer_ggml_tensor(m, shards.mapping(slot.hf_name), slot.gguf_name, type, rows, cols,
                                 e->data, size_t(e->end - e->begin), slot.is_norm());
    }
    return import_ggml_tensor(m, slot.gguf_name, type, rows, cols, e->data, slot.is_norm());
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
    const SafetensorsEntry* g_idx = shards.find(prefix + ".g_idx", file);
    const auto [rows, cols] = tensor_shape(m.config, slot.shape);
    try {
        return import_packed_4bit(m, slot.gguf_name, q, rows, cols, *qweight, *qzeros, *scales,
                                  g_idx);
    } catch (const std::exception& e) {
        fail(file, std::string(e.what()) + " (" + prefix + ")");
    }
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
    m.config = read_config(config, config_path.string());
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
    }
    try {
        m.validate();
    } catch (const std::exception& e) {
        fail(path, e.what());
    }
    m.import_notes.push_back("Hugging Face checkpoint, RoPE on halves (rotate_half)" +
                             std::string(tied ? ", tied embeddings" : ""));
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

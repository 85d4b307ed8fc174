// Hugging Face tokenizer settings (see hf_tokenizer.h).
#include "models/hf_tokenizer.h"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "tokenizer/bpe.h"
#include "tokenizer/sentencepiece_proto.h"
#include "tokenizer/tokenizer.h"

namespace nibble {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr std::uintmax_t kMaxFileBytes = 16u << 20;

[[noreturn]] void fail(const fs::path& file, const std::string& problem) {
    throw std::runtime_error(file.string() + ": " + problem);
}

// The text of an optional small file, or nullopt when it does not exist.
std::optional<std::string> read_optional(const fs::path& path) {
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (!fs::exists(st)) return std::nullopt;
    if (!fs::is_regular_file(st)) fail(path, "not a regular file");
    if (fs::file_size(path, ec) > kMaxFileBytes || ec) fail(path, "larger than 16 MiB");
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path, "cannot open");
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

std::optional<json> read_optional_object(const fs::path& path) {
    const auto text = read_optional(path);
    if (!text) return std::nullopt;
    json j;
    try {
        j = json::parse(*text);
    } catch (const json::parse_error& e) {
        fail(path, "not valid JSON (at byte " + std::to_string(e.byte) + ")");
    } catch (const json::exception& e) {  // out_of_range 406: a number beyond a double
        fail(path, "not valid JSON (error " + std::to_string(e.id) +
                       (e.id == 406 ? ": a number out of range)" : ")"));
    }
    if (!j.is_object()) fail(path, "not a JSON object");
    return j;
}

bool is_token_id(const json& v) {
    return v.is_number_integer() && v.get<int64_t>() >= 0 &&
           v.get<int64_t>() <= std::numeric_limits<int32_t>::max();
}

// j[key] as a token id (an integer, or with `rest` a non-empty list whose
// first id is returned and the others appended to *rest).
std::optional<int32_t> token_id(const json& j, const char* key, const fs::path& file,
                                std::vector<int32_t>* rest = nullptr) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    if (is_token_id(*it)) return int32_t(it->get<int64_t>());
    if (rest != nullptr && it->is_array() && !it->empty()) {
        for (const json& v : *it) {
            if (!is_token_id(v)) fail(file, std::string("\"") + key + "\" has a non-id entry");
        }
        for (size_t i = 1; i < it->size(); ++i) rest->push_back(int32_t((*it)[i].get<int64_t>()));
        return int32_t((*it)[0].get<int64_t>());
    }
    fail(file, std::string("\"") + key + "\" is not a token id");
}

// j[key] as a token's text: a string or an AddedToken object {"content": ...}.
std::string token_text(const json& j, const char* key, const fs::path& file) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return "";
    if (it->is_string()) return it->get<std::string>();
    if (it->is_object()) {
        const auto c = it->find("content");
        if (c != it->end() && c->is_string()) return c->get<std::string>();
    }
    fail(file, std::string("\"") + key + R"(" is not a token (a string or {"content": ...}))");
}

// tokenizer_config's chat_template: a string, or [{"name", "template"}, ...].
std::string config_template(const json& j, const fs::path& file) {
    const auto it = j.find("chat_template");
    if (it == j.end() || it->is_null()) return "";
    if (it->is_string()) return it->get<std::string>();
    if (it->is_array()) {
        std::string first;
        for (const json& t : *it) {
            if (!t.is_object() || !t.contains("template") || !t["template"].is_string()) {
                fail(file, R"("chat_template" list entries need a "template" string)");
            }
            // (not t.value("name", ...): it throws nlohmann's type_error for a non-string)
            if (const auto name = t.find("name"); name != t.end() && *name == "default")
                return t["template"].get<std::string>();
            if (first.empty()) first = t["template"].get<std::string>();
        }
        return first;
    }
    fail(file, "\"chat_template\" is not a string or a list of templates");
}

void add_choice(std::vector<SpecialTokenChoice>& out, std::string text, std::optional<int32_t> id,
                const char* file) {
    if (!text.empty() || id) out.push_back({std::move(text), id, file});
}

}  // namespace

HfTokenizerSettings read_hf_tokenizer_settings(const std::string& dir_path) {
    const fs::path dir(dir_path);
    HfTokenizerSettings s;
    const json none = json::object();
    const fs::path gen_path = dir / "generation_config.json";
    const fs::path tok_path = dir / "tokenizer_config.json";
    const fs::path cfg_path = dir / "config.json";
    const json gen = read_optional_object(gen_path).value_or(none);
    const json tok = read_optional_object(tok_path).value_or(none);
    const json cfg = read_optional_object(cfg_path).value_or(none);

    add_choice(s.bos, token_text(tok, "bos_token", tok_path), std::nullopt,
               "tokenizer_config.json");
    add_choice(s.bos, "", token_id(gen, "bos_token_id", gen_path), "generation_config.json");
    add_choice(s.bos, "", token_id(cfg, "bos_token_id", cfg_path), "config.json");
    add_choice(s.eos, "", token_id(gen, "eos_token_id", gen_path, &s.other_eos_ids),
               "generation_config.json");
    add_choice(s.eos, token_text(tok, "eos_token", tok_path), std::nullopt,
               "tokenizer_config.json");
    if (const auto it = tok.find("add_bos_token"); it != tok.end() && !it->is_null()) {
        if (!it->is_boolean()) fail(tok_path, "\"add_bos_token\" is not true or false");
        s.add_bos_token = it->get<bool>();
    }
    std::vector<int32_t> config_rest;  // config.json lists are rare; only the first counts
    add_choice(s.eos, "", token_id(cfg, "eos_token_id", cfg_path, &config_rest), "config.json");

    if (auto t = read_optional(dir / "chat_template.jinja")) {
        s.chat_template = std::move(*t);
        s.chat_template_file = "chat_template.jinja";
    } else if (const auto j = read_optional_object(dir / "chat_template.json")) {
        s.chat_template = config_template(*j, dir / "chat_template.json");
        s.chat_template_file = "chat_template.json";
    } else {
        s.chat_template = config_template(tok, tok_path);
        s.chat_template_file = "tokenizer_config.json";
    }
    if (s.chat_template.empty()) s.chat_template_file.clear();
    return s;
}

void apply_hf_tokenizer_settings(Model& m, const HfTokenizerSettings& s) {
    std::string note;
    const auto say = [&note](const std::string& part) {
        note += note.empty() ? "tokenizer settings: " : "; ";
        note += part;
    };
    if (!s.chat_template.empty()) {
        m.chat_template = s.chat_template;
        say("chat template from " + s.chat_template_file);
    }
    if (m.tokenizer_proto.empty()) {
        if (!s.bos.empty() || !s.eos.empty()) say("no tokenizer.model, BOS/EOS settings unused");
    } else if (!s.bos.empty() || !s.eos.empty()) {
        const bool bpe = BpeModel::is_serialized(m.tokenizer_proto);
        const Tokenizer tok = Tokenizer::from_serialized_proto(
            m.tokenizer_proto, bpe ? "tokenizer.json" : "tokenizer.model");
        // The first choice, if it names a control piece of tokenizer.model.
        const auto choose = [&](const std::vector<SpecialTokenChoice>& choices, int32_t current,
                                const char* what) {
            if (choices.empty()) return current;
            const SpecialTokenChoice& c = choices.front();
            const int32_t id = c.id ? *c.id : tok.special_id(c.text);
            const std::string named = c.id ? "id " + std::to_string(*c.id) : "\"" + c.text + "\"";
            if (!tok.is_control(id)) {
                say(std::string(what) + " " + named + " (" + c.file +
                    ") is not a control piece of tokenizer.model, kept " + std::to_string(current));
                return current;
            }
            say(std::string(what) + " " + std::to_string(id) + " \"" + tok.piece(id) + "\" (" +
                c.file + ")");
            return id;
        };
        const int32_t bos = choose(s.bos, tok.bos_id(), "BOS");
        const int32_t eos = choose(s.eos, tok.eos_id(), "EOS");
        if ((bos != tok.bos_id() || eos != tok.eos_id()) && bpe) {
            BpeVocab vocab = BpeModel::deserialize(m.tokenizer_proto, "tokenizer.json");
            vocab.bos_id = bos;
            vocab.eos_id = eos;
            m.tokenizer_proto =
                Tokenizer::from_bpe_vocab(std::move(vocab), "tokenizer.json").serialized_proto();
        } else if (bos != tok.bos_id() || eos != tok.eos_id()) {
            set_special_pieces(m.tokenizer_proto, bos, tok.piece(bos), eos, tok.piece(eos));
        }
    }
    if (s.add_bos_token) {
        m.generation.add_bos_token = *s.add_bos_token;
        say(std::string("add_bos_token ") + (*s.add_bos_token ? "true" : "false") +
            " (tokenizer_config.json)");
    }
    std::string extra;
    for (int32_t id : s.other_eos_ids) {
        if (id >= m.config.vocab_size) {
            say("EOS id " + std::to_string(id) +
                " (generation_config.json) is not a token id, "
                "ignored");
            continue;
        }
        m.generation.extra_eos_ids.push_back(id);
        extra += (extra.empty() ? "" : ", ") + std::to_string(id);
    }
    if (!extra.empty()) say("further EOS ids " + extra + " (generation_config.json)");
    if (!note.empty()) m.import_notes.push_back(note);
}

}  // namespace nibble

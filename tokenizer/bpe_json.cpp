// tokenizer.json -> BpeVocab (see bpe_json.h).
#include "tokenizer/bpe_json.h"

#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "tokenizer/bpe_pretokenizer.h"

namespace nibble {

namespace {

using json = nlohmann::json;

struct JsonReader {
    const std::string& origin;
    [[noreturn]] void fail(const std::string& key, const std::string& problem) const {
        throw std::runtime_error(origin + ": " + key + ": " + problem);
    }
    // j[key] as a string ("" when absent), failing for another type.
    std::string string(const json& j, const char* key, const std::string& path) const {
        const auto it = j.find(key);
        if (it == j.end() || it->is_null()) return "";
        if (!it->is_string()) fail(path + "." + key, "not a string");
        return it->get<std::string>();
    }
};

// Visits a pre-tokenizer or each of a Sequence's.
template <typename F>
void for_each_step(const json& j, const char* list_key, F&& f) {
    if (!j.is_object()) return;
    const auto type = j.find("type");
    if (type != j.end() && *type == "Sequence") {
        const auto steps = j.find(list_key);
        if (steps != j.end() && steps->is_array()) {
            for (const json& step : *steps) for_each_step(step, list_key, f);
        }
        return;
    }
    f(j);
}

// Hugging Face's Split patterns come as {"Regex": "..."} or {"String": "..."}.
std::string split_regex(const json& step, const JsonReader& r) {
    const auto pattern = step.find("pattern");
    if (pattern == step.end() || !pattern->is_object())
        r.fail("pre_tokenizer", "Split without a pattern");
    if (const auto re = pattern->find("Regex"); re != pattern->end() && re->is_string()) {
        return re->get<std::string>();
    }
    if (const auto s = pattern->find("String"); s != pattern->end() && s->is_string()) {
        return "\\Q" + s->get<std::string>() + "\\E";
    }
    r.fail("pre_tokenizer", R"(Split pattern is neither {"Regex": ...} nor {"String": ...})");
}

// Tokens by id: model.vocab, then added_tokens (which may repeat ids).
void read_tokens(const json& j, const json& model, const JsonReader& r, BpeVocab& v) {
    std::map<int64_t, std::pair<std::string, PieceType>> by_id;
    const auto vocab_it = model.find("vocab");
    if (vocab_it == model.end() || !vocab_it->is_object())
        r.fail("model.vocab", "missing or not an object");
    for (const auto& [token, id] : vocab_it->items()) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= INT32_MAX) {
            r.fail("model.vocab", "the id of \"" + token + "\" is not a token id");
        }
        by_id[id.get<int64_t>()] = {token, PieceType::normal};
    }
    if (const auto added = j.find("added_tokens"); added != j.end() && !added->is_null()) {
        if (!added->is_array()) r.fail("added_tokens", "not a list");
        for (const json& t : *added) {
            const auto id = t.is_object() ? t.find("id") : t.end();
            if (!t.is_object() || id == t.end() || !id->is_number_integer() ||
                id->get<int64_t>() < 0 || id->get<int64_t>() >= INT32_MAX) {
                r.fail("added_tokens", "an entry without a valid \"id\"");
            }
            const std::string content = r.string(t, "content", "added_tokens");
            const auto special = t.find("special");
            const bool is_special =
                special != t.end() && special->is_boolean() && special->get<bool>();
            by_id[id->get<int64_t>()] = {content,
                                         is_special ? PieceType::control : PieceType::user_defined};
        }
    }
    if (by_id.empty()) r.fail("model.vocab", "empty");
    const int64_t n = by_id.rbegin()->first + 1;
    v.tokens.resize(size_t(n));
    v.types.assign(size_t(n), PieceType::unused);  // ids no entry names
    for (auto& [id, entry] : by_id) {
        v.tokens[size_t(id)] = std::move(entry.first);
        v.types[size_t(id)] = entry.second;
    }
}

void read_merges(const json& model, const JsonReader& r, BpeVocab& v) {
    // Merges: "a b" or ["a", "b"].
    const auto merges = model.find("merges");
    if (merges == model.end() || !merges->is_array())
        r.fail("model.merges", "missing or not a list");
    v.merges.reserve(merges->size());
    for (size_t i = 0; i < merges->size(); ++i) {
        const json& m = (*merges)[i];
        const std::string key = "model.merges[" + std::to_string(i) + "]";
        if (m.is_string()) {
            const std::string& s = m.get_ref<const std::string&>();
            const size_t space = s.find(' ');
            if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
                r.fail(key, "\"" + s + "\" is not two tokens separated by a space");
            }
            v.merges.emplace_back(s.substr(0, space), s.substr(space + 1));
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
            v.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
        } else {
            r.fail(key, R"(not "a b" or ["a", "b"])");
        }
    }
    if (const auto im = model.find("ignore_merges"); im != model.end() && im->is_boolean()) {
        v.ignore_merges = im->get<bool>();
    }
}

// Byte-level or SentencePiece-style, and the pre-tokenizer's regexes.
void read_pretokenizer(const json& j, bool byte_fallback, const JsonReader& r, BpeVocab& v) {
    bool byte_level = false;
    const json none = json::object();
    const json& pre = j.contains("pre_tokenizer") ? j["pre_tokenizer"] : none;
    const json& decoder = j.contains("decoder") ? j["decoder"] : none;
    for_each_step(decoder, "decoders", [&](const json& step) {
        if (step.value("type", json()) == "ByteLevel") byte_level = true;
    });
    for_each_step(pre, "pretokenizers", [&](const json& step) {
        const auto t = step.find("type");
        if (t == step.end() || !t->is_string()) r.fail("pre_tokenizer", "a step without a type");
        const std::string step_type = t->get<std::string>();
        if (step_type == "ByteLevel") {
            byte_level = true;
            const auto use_regex = step.find("use_regex");
            if (use_regex == step.end() || (use_regex->is_boolean() && use_regex->get<bool>())) {
                v.regexes.push_back(named_pretokenizer("gpt-2")->regexes[0]);
            }
            const auto prefix = step.find("add_prefix_space");
            if (prefix != step.end() && prefix->is_boolean() && prefix->get<bool>()) {
                r.fail("pre_tokenizer", "ByteLevel add_prefix_space is not supported");
            }
        } else if (step_type == "Split") {
            const std::string behavior = r.string(step, "behavior", "pre_tokenizer");
            if (!byte_fallback && behavior != "Isolated") {
                r.fail("pre_tokenizer", "Split behavior \"" + behavior + "\" is not supported");
            }
            v.regexes.push_back(split_regex(step, r));
        } else if (step_type == "Digits") {
            v.regexes.emplace_back(R"(\p{N})");
        } else if (!byte_fallback) {
            r.fail("pre_tokenizer", "\"" + step_type + "\" is not supported");
        }
    });
    if (byte_level) {
        v.kind = BpeVocab::Kind::byte_level;
        // Named patterns: the same words as llama.cpp's pre-tokenizers.
        if (v.regexes.size() == 1 && !pretokenizer_for_regex(v.regexes[0]).empty()) {
            v.pre = pretokenizer_for_regex(v.regexes[0]);
            v.regexes.clear();
        } else if (v.regexes.size() == 2 && v.regexes[0] == R"(\p{N})" &&
                   pretokenizer_for_regex(v.regexes[1]) == "gpt-2") {
            v.pre = "smollm";
            v.regexes.clear();
        } else {
            v.pre.clear();
        }
    } else if (byte_fallback) {
        // Gemma: spaces -> U+2581 by the normalizer; its Split on " " then
        // finds none, so the text is one word.
        v.kind = BpeVocab::Kind::sentencepiece;
        v.regexes.clear();
        v.pre.clear();
        for (size_t id = 0; id < v.tokens.size(); ++id) {
            const std::string& t = v.tokens[id];
            if (v.types[id] == PieceType::normal && t.size() == 6 && t.compare(0, 3, "<0x") == 0 &&
                t[5] == '>') {
                v.types[id] = PieceType::byte;
            }
        }
    } else {
        r.fail("pre_tokenizer", "neither byte-level (ByteLevel) nor byte fallback BPE");
    }
}

// BOS: the special token a TemplateProcessing post-processor puts first.
void read_bos(const json& j, BpeVocab& v) {
    const json none = json::object();
    // Without one, llama.cpp's choice for the pre-tokenizer: Llama-3 puts BOS
    // (tokenizer_config.json's bos_token) in front of prompts.
    v.add_bos = v.pre == "llama-bpe";
    const json& post = j.contains("post_processor") ? j["post_processor"] : none;
    for_each_step(post, "processors", [&](const json& step) {
        if (step.value("type", json()) != "TemplateProcessing") return;
        const auto single = step.find("single");
        if (single == step.end() || !single->is_array() || single->empty()) return;
        const json& first = (*single)[0];
        if (!first.is_object() || !first.contains("SpecialToken")) return;
        const json& special = first["SpecialToken"];
        if (!special.is_object() || !special.contains("id") || !special["id"].is_string()) return;
        const std::string& bos = special["id"].get_ref<const std::string&>();
        for (size_t id = 0; id < v.tokens.size(); ++id) {
            if (v.tokens[id] == bos) {
                v.bos_id = int32_t(id);
                v.add_bos = true;
                break;
            }
        }
    });
}

}  // namespace

bool looks_like_json(const std::string& bytes) {
    const size_t first = bytes.find_first_not_of(" \t\r\n");
    return first != std::string::npos && bytes[first] == '{';
}

BpeVocab read_tokenizer_json(const std::string& text, const std::string& origin) {
    const JsonReader r{origin};
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception& e) {
        throw std::runtime_error(origin + ": not valid JSON (" + std::string(e.what()) + ")");
    }
    if (!j.is_object()) r.fail("(top level)", "not a JSON object");
    const auto model_it = j.find("model");
    if (model_it == j.end() || !model_it->is_object()) r.fail("model", "missing");
    const json& model = *model_it;
    const std::string type = r.string(model, "type", "model");
    if (type != "BPE") {
        r.fail("model.type", "\"" + type + "\" is not supported (only BPE models are)");
    }
    BpeVocab v;
    read_tokens(j, model, r, v);
    read_merges(model, r, v);
    const auto fallback = model.find("byte_fallback");
    const bool byte_fallback =
        fallback != model.end() && fallback->is_boolean() && fallback->get<bool>();
    const std::string unk = r.string(model, "unk_token", "model");

    read_pretokenizer(j, byte_fallback, r, v);
    if (!unk.empty()) {
        for (size_t id = 0; id < v.tokens.size(); ++id) {
            if (v.tokens[id] == unk) {
                v.unk_id = int32_t(id);
                if (v.types[id] == PieceType::normal) v.types[id] = PieceType::unknown;
                break;
            }
        }
    }

    read_bos(j, v);
    return v;
}

void apply_tokenizer_config(BpeVocab& v, const std::string& text, const std::string& origin) {
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception& e) {
        throw std::runtime_error(origin + ": not valid JSON (" + std::string(e.what()) + ")");
    }
    if (!j.is_object()) throw std::runtime_error(origin + ": not a JSON object");
    const auto token_id = [&](const char* key) {
        const auto it = j.find(key);
        if (it == j.end()) return -1;
        const json& t = it->is_object() && it->contains("content") ? (*it)["content"] : *it;
        if (!t.is_string()) return -1;
        for (size_t id = 0; id < v.tokens.size(); ++id) {
            if (v.tokens[id] == t.get_ref<const std::string&>()) return int32_t(id);
        }
        return -1;
    };
    if (const int32_t bos = token_id("bos_token"); bos >= 0) v.bos_id = bos;
    if (const int32_t eos = token_id("eos_token"); eos >= 0) v.eos_id = eos;
    if (const auto add = j.find("add_bos_token"); add != j.end() && add->is_boolean()) {
        v.add_bos = add->get<bool>() && v.bos_id >= 0;
    }
}

}  // namespace nibble

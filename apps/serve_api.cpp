// OpenAI request bodies -> CompletionRequest, and the response, chunk, model
// list and error JSON, shaped as OpenAI's API documents them.
#include "apps/serve_api.h"

#include <nlohmann/json.hpp>

namespace nibble::app {

namespace {

using Json = nlohmann::ordered_json;

constexpr size_t kMaxStopStrings = 16;
constexpr size_t kMaxStopBytes = 256;
constexpr int kMaxTopLogprobs = 20;

std::string dump(const Json& j) {
    return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

ParsedCompletion fail(const std::string& param, const std::string& message) {
    ParsedCompletion out;
    out.error.status = 400;
    out.error.param = param;
    out.error.message = message;
    return out;
}

// request_json's problems start with the key in quotes: that key is the param.
std::string quoted_key(const std::string& message) {
    if (message.empty() || message[0] != '"') return "";
    const size_t end = message.find('"', 1);
    return end == std::string::npos ? "" : message.substr(1, end - 1);
}

std::optional<ChatMessage::Role> parse_role(const std::string& role) {
    if (role == "system" || role == "developer") return ChatMessage::Role::system;
    if (role == "user") return ChatMessage::Role::user;
    if (role == "assistant") return ChatMessage::Role::assistant;
    return std::nullopt;
}

// "content": a string, null, or an array of {"type": "text", "text": ...} parts.
bool read_content(const Json& content, std::string* out) {
    if (content.is_null()) return true;
    if (content.is_string()) {
        *out = content.get<std::string>();
        return true;
    }
    if (!content.is_array()) return false;
    for (const Json& part : content) {
        if (!part.is_object()) return false;
        const auto type = part.find("type");
        const auto text = part.find("text");
        if (type == part.end() || *type != "text" || text == part.end() || !text->is_string()) {
            return false;
        }
        *out += text->get<std::string>();
    }
    return true;
}

std::string read_messages(const Json& j, std::vector<ChatMessage>* out) {
    const auto messages = j.find("messages");
    if (messages == j.end()) return "missing \"messages\"";
    if (!messages->is_array() || messages->empty()) {
        return "\"messages\" must be a non-empty array";
    }
    for (size_t i = 0; i < messages->size(); ++i) {
        const Json& m = (*messages)[i];
        const std::string at = "\"messages[" + std::to_string(i) + "]";
        if (!m.is_object()) return at + "\" must be an object";
        const auto role = m.find("role");
        std::optional<ChatMessage::Role> r;
        if (role != m.end() && role->is_string()) r = parse_role(role->get<std::string>());
        if (!r) return at + R"(.role" must be "system", "user" or "assistant")";
        ChatMessage message{*r, ""};
        const auto content = m.find("content");
        if (content == m.end() || !read_content(*content, &message.content)) {
            return at + ".content\" must be a string or an array of text parts";
        }
        out->push_back(std::move(message));
    }
    return "";
}

// The value of `name` as an int in [lo, hi] when present.
std::string read_bounded_int(const Json& j, const char* name, int lo, int hi,
                             std::optional<int>* out) {
    const auto it = j.find(name);
    if (it == j.end() || it->is_null()) return "";
    if (!it->is_number_integer() || *it < lo || *it > hi) {
        return std::string("\"") + name + "\" must be an integer in " + std::to_string(lo) + ".." +
               std::to_string(hi);
    }
    *out = it->get<int>();
    return "";
}

std::string read_bool(const Json& j, const char* name, bool* out) {
    const auto it = j.find(name);
    if (it == j.end() || it->is_null()) return "";
    if (!it->is_boolean()) return std::string("\"") + name + "\" must be a boolean";
    *out = it->get<bool>();
    return "";
}

// "logprobs" and "top_logprobs" of a chat request, or "logprobs" N of a
// completion request -> the number of top tokens (-1: none).
std::string read_logprobs(const Json& j, bool chat, int* out) {
    std::string e;
    if (chat) {
        bool wanted = false;
        std::optional<int> top;
        if (!(e = read_bool(j, "logprobs", &wanted)).empty()) return e;
        if (!(e = read_bounded_int(j, "top_logprobs", 0, kMaxTopLogprobs, &top)).empty()) return e;
        if (top && !wanted) return R"("top_logprobs" needs "logprobs": true)";
        *out = wanted ? top.value_or(0) : -1;
        return "";
    }
    std::optional<int> n;
    if (!(e = read_bounded_int(j, "logprobs", 0, kMaxTopLogprobs, &n)).empty()) return e;
    *out = n.value_or(-1);
    return "";
}

Json usage_json(const Usage& u) {
    Json j;
    j["prompt_tokens"] = u.prompt_tokens;
    j["completion_tokens"] = u.completion_tokens;
    j["total_tokens"] = u.prompt_tokens + u.completion_tokens;
    j["prompt_tokens_details"] = {{"cached_tokens", u.cached_tokens}};
    return j;
}

Json bytes_of(const std::string& text) {
    Json bytes = Json::array();
    for (unsigned char c : text) bytes.push_back(int(c));
    return bytes;
}

// Chat: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}.
// Completions: {"tokens", "token_logprobs", "top_logprobs", "text_offset"}.
Json logprobs_json(const std::vector<TokenLogprobs>& tokens, bool chat, size_t text_offset) {
    if (chat) {
        Json content = Json::array();
        for (const TokenLogprobs& t : tokens) {
            Json top = Json::array();
            for (const auto& [text, logprob] : t.top) {
                top.push_back({{"token", text}, {"logprob", logprob}, {"bytes", bytes_of(text)}});
            }
            content.push_back({{"token", t.text},
                               {"logprob", t.logprob},
                               {"bytes", bytes_of(t.text)},
                               {"top_logprobs", top}});
        }
        return {{"content", content}};
    }
    Json j;
    j["tokens"] = Json::array();
    j["token_logprobs"] = Json::array();
    j["top_logprobs"] = Json::array();
    j["text_offset"] = Json::array();
    for (const TokenLogprobs& t : tokens) {
        j["tokens"].push_back(t.text);
        j["token_logprobs"].push_back(t.logprob);
        Json top = Json::object();
        for (const auto& [text, logprob] : t.top) top[text] = logprob;
        j["top_logprobs"].push_back(top);
        j["text_offset"].push_back(text_offset);
        text_offset += t.text.size();
    }
    return j;
}

Json header_json(const ResponseHeader& h, const char* object) {
    Json j;
    j["id"] = h.id;
    j["object"] = object;
    j["created"] = h.created;
    j["model"] = h.model;
    return j;
}

}  // namespace

std::string error_json(const ApiError& error) {
    Json e;
    e["message"] = error.message;
    e["type"] = error.type;
    e["param"] = error.param.empty() ? Json(nullptr) : Json(error.param);
    e["code"] = error.code.empty() ? Json(nullptr) : Json(error.code);
    Json j;
    j["error"] = e;
    return dump(j);
}

ParsedCompletion parse_completion_request(std::string_view body, bool chat) {
    const Json j = Json::parse(body.begin(), body.end(), nullptr, false);
    if (j.is_discarded()) return fail("", "the request body is not valid JSON");
    if (!j.is_object()) return fail("", "the request body must be a JSON object");
    CompletionRequest r;
    r.chat = chat;
    std::string e;
    if (chat) {
        if (!(e = read_messages(j, &r.messages)).empty()) {
            const std::string key = quoted_key(e);
            return fail(key.empty() ? "messages" : key, e);
        }
    } else {
        const auto prompt = j.find("prompt");
        if (prompt == j.end()) return fail("prompt", "missing \"prompt\"");
        // A list holding one string is the same prompt (what several clients send).
        const bool one_string_list =
            prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string();
        if (!prompt->is_string() && !one_string_list) {
            return fail("prompt", "\"prompt\" must be a string");
        }
        r.prompt = one_string_list ? (*prompt)[0].get<std::string>() : prompt->get<std::string>();
    }
    RequestKeys keys;
    keys.n_predict = "max_tokens";
    keys.temperature = "temperature";
    if (!(e = read_request_options(j, keys, &r.options)).empty()) return fail(quoted_key(e), e);
    if (!r.options.n_predict && j.contains("max_completion_tokens")) {
        keys.n_predict = "max_completion_tokens";
        RequestSpec alias;
        if (!(e = read_request_options(j, keys, &alias)).empty()) return fail(quoted_key(e), e);
        r.options.n_predict = alias.n_predict;
    }
    if (r.options.stop.size() > kMaxStopStrings) {
        return fail("stop",
                    "\"stop\" may hold at most " + std::to_string(kMaxStopStrings) + " strings");
    }
    for (const std::string& s : r.options.stop) {
        if (s.size() > kMaxStopBytes) {
            return fail("stop", "each \"stop\" string must be at most " +
                                    std::to_string(kMaxStopBytes) + " bytes");
        }
    }
    if (const auto n = j.find("n"); n != j.end() && !n->is_null() && *n != 1) {
        return fail("n", "\"n\" must be 1 (one choice per request)");
    }
    if (!(e = read_bool(j, "stream", &r.stream)).empty()) return fail("stream", e);
    if (!(e = read_bool(j, "ignore_eos", &r.ignore_eos)).empty()) return fail("ignore_eos", e);
    if (const auto so = j.find("stream_options"); so != j.end() && !so->is_null()) {
        if (!so->is_object()) return fail("stream_options", "\"stream_options\" must be an object");
        if (!(e = read_bool(*so, "include_usage", &r.include_usage)).empty()) {
            return fail("stream_options.include_usage", e);
        }
    }
    if (!(e = read_logprobs(j, chat, &r.logprobs)).empty()) return fail(quoted_key(e), e);
    return {std::move(r), {}};
}

const char* openai_finish_reason(FinishReason reason) {
    return reason == FinishReason::length ? "length" : "stop";
}

std::string completion_json(const ResponseHeader& h, const std::string& text, FinishReason reason,
                            const Usage& usage, const std::vector<TokenLogprobs>* logprobs) {
    Json j = header_json(h, h.chat ? "chat.completion" : "text_completion");
    Json choice;
    choice["index"] = 0;
    if (h.chat) {
        choice["message"] = {{"role", "assistant"}, {"content", text}};
    } else {
        choice["text"] = text;
    }
    choice["logprobs"] = logprobs ? logprobs_json(*logprobs, h.chat, 0) : Json(nullptr);
    choice["finish_reason"] = openai_finish_reason(reason);
    j["choices"] = Json::array({choice});
    j["usage"] = usage_json(usage);
    return dump(j);
}

std::string chunk_json(const ResponseHeader& h, const std::string& text, bool first,
                       const std::vector<TokenLogprobs>* logprobs) {
    Json j = header_json(h, h.chat ? "chat.completion.chunk" : "text_completion");
    Json choice;
    choice["index"] = 0;
    if (h.chat) {
        Json delta;
        if (first) delta["role"] = "assistant";
        delta["content"] = text;
        choice["delta"] = delta;
    } else {
        choice["text"] = text;
    }
    choice["logprobs"] = logprobs ? logprobs_json(*logprobs, h.chat, 0) : Json(nullptr);
    choice["finish_reason"] = nullptr;
    j["choices"] = Json::array({choice});
    return dump(j);
}

std::string final_chunk_json(const ResponseHeader& h, FinishReason reason, const Usage* usage) {
    Json j = header_json(h, h.chat ? "chat.completion.chunk" : "text_completion");
    Json choice;
    choice["index"] = 0;
    if (h.chat) {
        choice["delta"] = Json::object();
    } else {
        choice["text"] = "";
    }
    choice["logprobs"] = nullptr;
    choice["finish_reason"] = openai_finish_reason(reason);
    j["choices"] = Json::array({choice});
    if (usage) j["usage"] = usage_json(*usage);
    return dump(j);
}

std::string models_json(const std::string& model, long long created) {
    Json m;
    m["id"] = model;
    m["object"] = "model";
    m["created"] = created;
    m["owned_by"] = "nibble";
    Json j;
    j["object"] = "list";
    j["data"] = Json::array({m});
    return dump(j);
}

}  // namespace nibble::app

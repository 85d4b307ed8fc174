// Prompts-file lines and JSON request objects -> RequestSpec, with every value
// checked and a one-phrase error for the first problem.
#include "apps/request_json.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>

namespace nibble {

namespace {

using Json = nlohmann::ordered_json;

bool is_blank(std::string_view s) {
    return s.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

// Reads key `name` when present; returns an error phrase or "" when fine.
std::string read_int(const Json& j, const char* name, int64_t lo, int64_t hi,
                     std::optional<int64_t>* out) {
    const auto it = j.find(name);
    if (it == j.end() || it->is_null()) return "";
    if (!it->is_number_integer()) return std::string("\"") + name + "\" must be an integer";
    const bool is_unsigned = it->is_number_unsigned();
    const uint64_t u = is_unsigned ? it->get<uint64_t>() : 0;
    const int64_t v =
        is_unsigned ? int64_t(std::min<uint64_t>(u, uint64_t(INT64_MAX))) : it->get<int64_t>();
    if (v < lo || v > hi || (is_unsigned && u > uint64_t(INT64_MAX))) {
        return std::string("\"") + name + "\" must be in " + std::to_string(lo) + ".." +
               std::to_string(hi);
    }
    *out = v;
    return "";
}

// A finite number with lo <= v (lo < v when lo_open) and v <= hi; `range` names
// the interval in the error.
std::string read_float(const Json& j, const char* name, double lo, double hi, bool lo_open,
                       const char* range, std::optional<float>* out) {
    const auto it = j.find(name);
    if (it == j.end() || it->is_null()) return "";
    if (!it->is_number()) return std::string("\"") + name + "\" must be a number";
    const double v = it->get<double>();
    const bool ok = std::isfinite(v) && (lo_open ? v > lo : v >= lo) && v <= hi;
    if (!ok) return std::string("\"") + name + "\" must be " + range;
    *out = float(v);
    return "";
}

std::string read_stop(const Json& j, std::vector<std::string>* out) {
    const auto it = j.find("stop");
    if (it == j.end() || it->is_null()) return "";
    const char* const bad = R"("stop" must be a non-empty string or an array of them)";
    if (it->is_string()) {
        out->push_back(it->get<std::string>());
    } else if (it->is_array()) {
        for (const Json& s : *it) {
            if (!s.is_string()) return bad;
            out->push_back(s.get<std::string>());
        }
    } else {
        return bad;
    }
    for (const std::string& s : *out) {
        if (s.empty()) return bad;
    }
    return "";
}

std::string read_options(const Json& j, const RequestKeys& keys, RequestSpec* spec) {
    std::optional<int64_t> n_predict, top_k, seed;
    std::string e;
    if (!(e = read_int(j, keys.n_predict, -1, 1 << 30, &n_predict)).empty()) return e;
    if (!(e = read_int(j, "top_k", 0, INT32_MAX, &top_k)).empty()) return e;
    if (!(e = read_int(j, "seed", 0, INT64_MAX, &seed)).empty()) return e;
    if (!(e = read_float(j, keys.temperature, 0.0, 1e30, false, ">= 0", &spec->temperature))
             .empty())
        return e;
    if (!(e = read_float(j, "top_p", 0.0, 1.0, true, "in (0, 1]", &spec->top_p)).empty()) return e;
    if (!(e = read_float(j, "min_p", 0.0, 1.0, false, "in [0, 1]", &spec->min_p)).empty()) return e;
    if (!(e = read_stop(j, &spec->stop)).empty()) return e;
    if (n_predict) spec->n_predict = int(*n_predict);
    if (top_k) spec->top_k = int(*top_k);
    if (seed) spec->seed = uint64_t(*seed);
    return "";
}

}  // namespace

std::string read_request_options(const nlohmann::json& j, const RequestKeys& keys,
                                 RequestSpec* spec) {
    // Only the options are read, so the order of keys does not matter here.
    return read_options(Json::parse(j.dump()), keys, spec);
}

PreviousOutput scan_previous_output(std::string_view text) {
    PreviousOutput out;
    size_t start = 0;
    while (start < text.size()) {
        const size_t newline = text.find('\n', start);
        const bool last = newline == std::string_view::npos;
        const size_t end = last ? text.size() : newline;
        const std::string_view line = text.substr(start, end - start);
        const Json j = Json::parse(line.begin(), line.end(), nullptr, false);
        const bool result = !j.is_discarded() && j.is_object() && j.contains("id") &&
                            j.contains("prompt") && j.contains("completion");
        if (!result) {
            // A killed run leaves at most one line unfinished, at the end.
            if (last && line.rfind("{\"id\":", 0) == 0) {
                out.cut_line = true;
                return out;
            }
            out.ids.clear();
            out.keep_bytes = 0;
            out.error = "line " + std::to_string(out.lines + 1) +
                        " is not an output line of nibble generate";
            return out;
        }
        out.ids.insert(j["id"].dump(-1, ' ', false, Json::error_handler_t::replace));
        ++out.lines;
        out.keep_bytes = last ? text.size() : newline + 1;
        start = end + 1;
    }
    return out;
}

bool looks_like_jsonl(std::string_view text) {
    const size_t at = text.find_first_not_of(" \t\r\n");
    return at != std::string_view::npos && text[at] == '{';
}

ParsedLine parse_request_line(std::string_view line, int line_number, bool json) {
    ParsedLine out;
    if (is_blank(line)) {
        out.blank = true;
        return out;
    }
    RequestSpec spec;
    spec.id = std::to_string(line_number);
    spec.id_json = spec.id;
    spec.numeric_id = true;
    if (!json) {
        if (line.back() == '\r') line.remove_suffix(1);
        spec.prompt = std::string(line);
        out.spec = std::move(spec);
        return out;
    }
    const Json j = Json::parse(line.begin(), line.end(), nullptr, false);
    if (j.is_discarded()) {
        out.error = "invalid JSON";
        return out;
    }
    if (!j.is_object()) {
        out.error = "not a JSON object";
        return out;
    }
    const auto prompt = j.find("prompt");
    if (prompt == j.end()) {
        out.error = "missing \"prompt\"";
        return out;
    }
    if (!prompt->is_string() || prompt->get<std::string>().empty()) {
        out.error = "\"prompt\" must be a non-empty string";
        return out;
    }
    spec.prompt = prompt->get<std::string>();
    if (const auto id = j.find("id"); id != j.end() && !id->is_null()) {
        // Any JSON value; integers keep every digit (int64 and uint64 ranges).
        spec.id_json = id->dump(-1, ' ', false, Json::error_handler_t::replace);
        spec.numeric_id = !id->is_string();
        spec.id = id->is_string() ? id->get<std::string>() : spec.id_json;
    }
    out.error = read_options(j, RequestKeys{}, &spec);
    if (out.error.empty()) out.spec = std::move(spec);
    return out;
}

}  // namespace nibble

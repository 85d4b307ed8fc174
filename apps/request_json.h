// One generation request as text: a line of a `nibble generate` prompts file
// (plain text, or a JSON object with per-prompt options), and later a server's
// request body. Pure string -> struct: no files, no tokenizer.
#pragma once
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace nibble {

// Options a request may set; unset ones take the command's defaults.
struct RequestSpec {
    std::string id;       // the "id" string's text, other ids as JSON text, else the line number
    std::string id_json;  // the id as JSON text, as given: a prompt's key ("3" and 3 differ)
    bool numeric_id = false;  // the id is not a JSON string
    std::string prompt;
    std::optional<int> n_predict;  // -1: until EOS or the end of the context
    std::optional<float> temperature, top_p, min_p;
    std::optional<int> top_k;
    std::optional<uint64_t> seed;
    std::vector<std::string> stop;
};

struct ParsedLine {
    bool blank = false;               // nothing to do (empty or whitespace-only line)
    std::optional<RequestSpec> spec;  // set when the line is a valid request
    std::string error;                // set when it is not: what is wrong, without the line number
};

// Parses line `line_number` (1-based) of a prompts file. `json` selects the
// JSONL form: an object with "prompt" (required, a non-empty string) and
// optional "id" (any JSON value, kept as given; null: the line number),
// "n_predict" (integer >= -1), "temp" (>= 0), "top_k" (integer >= 0), "top_p" (0 < p <= 1), "min_p"
// (0..1), "seed" (integer
// >= 0), "stop" (string or array of strings); other keys are ignored. In the
// plain form the whole line (without a trailing '\r') is the prompt and the
// id is the line number. Never throws for bad input: it sets `error`.
ParsedLine parse_request_line(std::string_view line, int line_number, bool json);

// A previous output of `nibble generate` read for --resume. Every line must be
// a JSON object with "id", "prompt" and "completion"; a last line without a
// newline is kept when it is one, and dropped when it is the start of one cut
// short by a killed run ({"id": ...). Anything else refuses the file (`error`
// set, naming the line): the caller must then leave it untouched.
struct PreviousOutput {
    std::set<std::string> ids;  // the id of each result, as JSON text
    uint64_t keep_bytes = 0;    // the whole results, a cut last line left out
    int64_t lines = 0;          // results kept
    bool cut_line = false;      // a last line cut short is left out
    std::string error;
};
PreviousOutput scan_previous_output(std::string_view text);

// The keys of the options whose names differ between a prompts file and an
// OpenAI-style request body (nibble serve: "max_tokens", "temperature").
struct RequestKeys {
    const char* n_predict = "n_predict";
    const char* temperature = "temp";
};

// Reads the options of request object `j` (every key of RequestSpec but the
// id and the prompt) with the checks above; returns "" or the first problem,
// which starts with the key in quotes.
std::string read_request_options(const nlohmann::json& j, const RequestKeys& keys,
                                 RequestSpec* spec);

// Whether a prompts file is JSONL: its first non-blank line starts with '{'.
bool looks_like_jsonl(std::string_view text);

}  // namespace nibble

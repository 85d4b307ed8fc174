// libFuzzer: `nibble generate` prompts files (plain lines or JSONL requests),
// split into lines as cmd_generate does and parsed both ways. The parser never
// throws; what it returns must keep its promises (request_json.h).
#include <cmath>
#include <string_view>

#include "apps/request_json.h"

namespace {

void check(const nibble::ParsedLine& p, std::string_view line, bool json) {
    const int parts = int(p.blank) + int(p.spec.has_value()) + int(!p.error.empty());
    if (parts != 1) __builtin_trap();  // exactly one of blank, request, error
    if (!p.spec) return;
    const nibble::RequestSpec& s = *p.spec;
    if (s.id.empty() || s.prompt.empty()) __builtin_trap();
    if (!json && s.prompt != line.substr(0, s.prompt.size())) __builtin_trap();
    if (s.n_predict && *s.n_predict < -1) __builtin_trap();
    if (s.temperature && !(std::isfinite(*s.temperature) && *s.temperature >= 0)) __builtin_trap();
    if (s.top_p && !(*s.top_p > 0 && *s.top_p <= 1)) __builtin_trap();
    if (s.min_p && !(*s.min_p >= 0 && *s.min_p <= 1)) __builtin_trap();
    for (const auto& stop : s.stop) {
        if (stop.empty()) __builtin_trap();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const bool jsonl = nibble::looks_like_jsonl(text);
    int line_number = 0;
    for (size_t at = 0; at <= text.size();) {
        size_t end = text.find('\n', at);
        if (end == std::string_view::npos) end = text.size();
        const std::string_view line = text.substr(at, end - at);
        ++line_number;
        check(nibble::parse_request_line(line, line_number, jsonl), line, jsonl);
        check(nibble::parse_request_line(line, line_number, !jsonl), line, !jsonl);
        at = end + 1;
    }
    return 0;
}

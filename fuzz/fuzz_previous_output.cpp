// libFuzzer: a file given to `nibble generate --resume` (apps/request_json.h,
// scan_previous_output). It never throws; a refusal keeps nothing, and what it
// keeps is a prefix of whole result lines whose ids it reports.
#include <string>
#include <string_view>

#include "apps/request_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const nibble::PreviousOutput out = nibble::scan_previous_output(text);
    if (!out.error.empty()) {
        // Refused: the caller leaves the file untouched, so nothing is kept.
        if (out.keep_bytes != 0 || !out.ids.empty() || out.cut_line) __builtin_trap();
        return 0;
    }
    if (out.keep_bytes > text.size()) __builtin_trap();
    if (out.ids.size() > size_t(out.lines)) __builtin_trap();
    // The kept part ends a line (or the text); only a cut last line follows it.
    const std::string_view kept = text.substr(0, out.keep_bytes);
    if (out.keep_bytes < text.size()) {
        if (!out.cut_line) __builtin_trap();
        if (!kept.empty() && kept.back() != '\n') __builtin_trap();
        if (text.find('\n', out.keep_bytes) != std::string_view::npos) __builtin_trap();
    }
    // Scanning the kept part alone gives the same results.
    const nibble::PreviousOutput again = nibble::scan_previous_output(kept);
    if (!again.error.empty() || again.ids != out.ids || again.lines != out.lines ||
        again.keep_bytes != out.keep_bytes || again.cut_line) {
        __builtin_trap();
    }
    return 0;
}

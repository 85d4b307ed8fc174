// UTF-8 validation with replacement (see utf8.h).
#include "tokenizer/utf8.h"

#include <cstdint>

namespace nibble {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Bytes of the sequence `lead` starts (0: cannot start one), and the range of
// its second byte (narrower after E0, ED, F0, F4: no overlong forms, surrogates
// or code points above U+10FFFF).
struct Lead {
    size_t length;
    uint8_t second_min, second_max;
};
Lead lead_of(uint8_t b) {
    if (b < 0x80) return {1, 0, 0};
    if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
    if (b == 0xE0) return {3, 0xA0, 0xBF};
    if (b == 0xED) return {3, 0x80, 0x9F};
    if (b >= 0xE1 && b <= 0xEF) return {3, 0x80, 0xBF};
    if (b == 0xF0) return {4, 0x90, 0xBF};
    if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
    if (b == 0xF4) return {4, 0x80, 0x8F};
    return {0, 0, 0};
}

}  // namespace

size_t append_utf8_replacing_invalid(std::string_view bytes, bool at_end, std::string& out) {
    size_t i = 0;
    while (i < bytes.size()) {
        const Lead lead = lead_of(uint8_t(bytes[i]));
        if (lead.length == 1) {
            out += bytes[i++];
            continue;
        }
        if (lead.length == 0) {
            out += kReplacement;
            ++i;
            continue;
        }
        // How many bytes after the lead continue the sequence validly.
        size_t valid = 1;
        while (valid < lead.length && i + valid < bytes.size()) {
            const auto b = uint8_t(bytes[i + valid]);
            const bool ok =
                valid == 1 ? (b >= lead.second_min && b <= lead.second_max) : (b & 0xC0) == 0x80;
            if (!ok) break;
            ++valid;
        }
        if (valid == lead.length) {
            out.append(bytes.substr(i, valid));
        } else if (i + valid == bytes.size() && !at_end) {
            return i;  // incomplete so far: wait for more bytes
        } else {
            out += kReplacement;
        }
        i += valid;
    }
    return i;
}

}  // namespace nibble

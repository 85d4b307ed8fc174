// Turning decoded token bytes into valid UTF-8, piece by piece: a character
// whose bytes have not all arrived is held back; invalid bytes become U+FFFD
// (one per maximal invalid subpart, as Unicode recommends and Hugging Face's
// decode with errors="replace" does).
#pragma once
#include <string>
#include <string_view>

namespace nibble {

// Appends the valid UTF-8 of `bytes` to `out`, invalid parts as U+FFFD, and
// returns how many bytes were used: all of them when `at_end`, otherwise all
// but an incomplete character at the end (to be passed again with what follows).
size_t append_utf8_replacing_invalid(std::string_view bytes, bool at_end, std::string& out);

}  // namespace nibble

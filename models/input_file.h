// Opening files the user names as inputs (models, text) without trusting them:
// only regular files are accepted, checked before any read, and opened with
// O_NONBLOCK so that a FIFO or device cannot block the check.
#pragma once
#include <cstdint>
#include <string>

namespace nibble {

// Opens `path` read-only and returns its descriptor once fstat says it is a
// regular file; `kind` names the role in messages ("model", "text file"). Throws
// std::runtime_error("<path>: <problem>") for a missing file, a directory, a
// FIFO, a device or a socket. The caller closes the descriptor.
int open_regular_file(const std::string& path, const char* kind, uint64_t* size = nullptr);

// The whole content of a regular file of at most `max_bytes` bytes, or of
// standard input when `path` is "-" and allow_stdin (read up to max_bytes + 1
// bytes, so an endless stream is refused, not read). Throws
// std::runtime_error("<path>: <problem>"); "-" is named "stdin".
std::string read_input_file(const std::string& path, const char* kind, uint64_t max_bytes,
                            bool allow_stdin);

// "1.5 GiB", "12.0 MiB", "512 bytes".
std::string byte_size_text(uint64_t bytes);

}  // namespace nibble

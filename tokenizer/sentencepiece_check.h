// Checks serialized SentencePiece ModelProto bytes for what libsentencepiece
// does not refuse with a status but throws its own exception on while loading,
// so that such a model is a one-line error naming the file.
#pragma once
#include <string>
#include <string_view>

namespace nibble {

// Walks the protobuf wire format of `proto` (bounds-checked; only the pieces'
// texts are read) and throws std::runtime_error, prefixed with `origin`, for
// bytes that are not protobuf wire format, and for a piece that is empty or
// contains a NUL byte: libsentencepiece builds its tries (Darts) from the
// pieces as C strings, and a piece starting with NUL is a zero-length key, on
// which its trie builder throws Darts::Details::Exception out of
// LoadFromSerializedProto (not a std::runtime_error; its text names the
// library's source file); a piece with a NUL inside would be cut there.
void check_model_proto(std::string_view proto, const std::string& origin);

}  // namespace nibble

// Writes a SentencePiece ModelProto in protobuf wire format, so that a
// vocabulary carried by a model file can be loaded by libsentencepiece
// (Debian ships no sentencepiece_model.pb.h, so we serialize it ourselves).
#pragma once
#include <string>

#include "tokenizer/vocab.h"

namespace nibble {

// A BPE ModelProto with byte fallback, the identity normalizer and the
// vocabulary's pieces, scores and types. `origin` prefixes error messages.
// Throws std::runtime_error for an inconsistent vocabulary.
std::string serialize_model_proto(const Vocab& vocab, const std::string& origin);

}  // namespace nibble

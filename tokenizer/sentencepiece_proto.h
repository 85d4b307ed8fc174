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

// Makes piece `bos` (id bos_id) and piece `eos` (id eos_id) the BOS and EOS of a
// serialized ModelProto. libsentencepiece finds BOS/EOS by piece text
// (TrainerSpec bos_piece/eos_piece, which must name control pieces), so both the
// ids and the pieces are set, by appending a second trainer_spec: protobuf
// merges a repeated embedded message field, later fields winning. A negative
// id leaves that one as it was.
void set_special_pieces(std::string& proto, int32_t bos_id, const std::string& bos, int32_t eos_id,
                        const std::string& eos);

}  // namespace nibble

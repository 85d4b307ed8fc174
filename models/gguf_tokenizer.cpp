// GGUF vocabularies of both kinds (see gguf_tokenizer.h).
#include "models/gguf_tokenizer.h"

#include <stdexcept>

#include "tokenizer/bpe_pretokenizer.h"

namespace nibble {

namespace {

[[noreturn]] void fail(const GgufFile& g, const std::string& problem) {
    throw std::runtime_error(g.path() + ": " + problem);
}

}  // namespace

BpeVocab read_gguf_bpe_vocab(const GgufFile& g) {
    BpeVocab v;
    const auto* tokens = g.get_string_array("tokenizer.ggml.tokens");
    if (!tokens || tokens->empty()) fail(g, "tokenizer.ggml.tokens is missing or empty");
    const size_t n = tokens->size();
    if (n > size_t(INT32_MAX)) fail(g, "tokenizer.ggml.tokens: too many tokens");
    v.tokens = *tokens;
    v.types.assign(n, PieceType::normal);
    if (const auto* types = g.get_int_array("tokenizer.ggml.token_type")) {
        if (types->size() != n) {
            fail(g, "tokenizer.ggml.token_type has " + std::to_string(types->size()) +
                        " entries for " + std::to_string(n) + " tokens");
        }
        for (size_t i = 0; i < n; ++i) {
            const int64_t t = (*types)[i];
            if (t < int64_t(PieceType::normal) || t > int64_t(PieceType::byte)) {
                fail(g, "tokenizer.ggml.token_type: token " + std::to_string(i) +
                            " has unknown type " + std::to_string(t));
            }
            v.types[i] = PieceType(int32_t(t));
        }
    }
    const auto* merges = g.get_string_array("tokenizer.ggml.merges");
    if (!merges) fail(g, "tokenizer.ggml.merges is missing (needed by a \"gpt2\" vocabulary)");
    v.merges.reserve(merges->size());
    for (size_t i = 0; i < merges->size(); ++i) {
        const std::string& m = (*merges)[i];
        const size_t space = m.find(' ', 1);  // llama.cpp: the first space after the first byte
        if (space == std::string::npos) {
            fail(g, "tokenizer.ggml.merges[" + std::to_string(i) +
                        "] has no space between two tokens");
        }
        v.merges.emplace_back(m.substr(0, space), m.substr(space + 1));
    }
    v.pre = g.get_string("tokenizer.ggml.pre").value_or("default");
    const auto named = named_pretokenizer(v.pre);
    if (!named) fail(g, "tokenizer.ggml.pre \"" + v.pre + "\" is not a known pre-tokenizer");
    v.ignore_merges = named->ignore_merges;
    // llama.cpp puts BOS in front for llama-bpe unless the file says otherwise.
    v.add_bos = named->ignore_merges;
    if (const auto add = g.get_bool("tokenizer.ggml.add_bos_token")) v.add_bos = *add;
    const auto token_id = [&](const char* key) {
        const auto id = g.get_int(key);
        if (!id) return -1;
        if (*id < 0 || *id >= int64_t(n)) {
            fail(g, std::string(key) + " " + std::to_string(*id) + " is not a token id (vocab " +
                        std::to_string(n) + ")");
        }
        return int32_t(*id);
    };
    v.bos_id = token_id("tokenizer.ggml.bos_token_id");
    v.eos_id = token_id("tokenizer.ggml.eos_token_id");
    v.unk_id = token_id("tokenizer.ggml.unknown_token_id");
    if (v.bos_id < 0) v.add_bos = false;
    return v;
}

Tokenizer gguf_tokenizer(const GgufFile& g) {
    const auto model = g.get_string("tokenizer.ggml.model");
    if (model && *model == "gpt2")
        return Tokenizer::from_bpe_vocab(read_gguf_bpe_vocab(g), g.path());
    const Vocab vocab = read_gguf_vocab(g);  // "llama", or one line naming the model
    try {
        Tokenizer tokenizer = Tokenizer::from_vocab(vocab);
        if (const auto add = g.get_bool("tokenizer.ggml.add_bos_token")) {
            tokenizer.set_add_bos_token(*add);
        }
        return tokenizer;
    } catch (const std::exception& e) {
        fail(g, std::string("embedded vocabulary: ") + e.what());
    }
}

}  // namespace nibble

// Byte-pair tokenizers: llama.cpp's test vectors for llama-bpe (Llama-3) and
// qwen2 (Qwen2/2.5/3), read both from the vocabulary-only GGUF files and from
// the Hugging Face tokenizer.json files (shared/data/tokenizers, MANIFEST.md):
// the same ids both ways, decode(encode(s)) == s, streamed decoding that never
// splits a character, special tokens only where a template writes them, and
// bad vocabularies refused with the key named.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "models/gguf_tokenizer.h"
#include "test_data.h"
#include "tokenizer/bpe.h"
#include "tokenizer/bpe_json.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

using namespace nibble;
using nibble::test::data_path;
using nibble::test::read_text;

namespace {

struct Vectors {
    std::vector<std::string> inputs;
    std::vector<std::vector<int32_t>> ids;
};

// "<name>.inp": cases separated by "\n__ggml_vocab_test__\n"; "<name>.out":
// one line of ids per case, without BOS.
Vectors read_vectors(const std::string& gguf) {
    Vectors v;
    const std::string text = read_text(gguf + ".inp");
    const std::string sep = "\n__ggml_vocab_test__\n";
    size_t start = 0;
    for (size_t at = text.find(sep); at != std::string::npos; at = text.find(sep, start)) {
        v.inputs.push_back(text.substr(start, at - start));
        start = at + sep.size();
    }
    std::istringstream out(read_text(gguf + ".out"));
    for (std::string line; std::getline(out, line);) {
        std::istringstream ids(line);
        std::vector<int32_t> row;
        for (int32_t id; ids >> id;) row.push_back(id);
        v.ids.push_back(row);
    }
    REQUIRE(v.inputs.size() == 46);
    REQUIRE(v.ids.size() == v.inputs.size());
    return v;
}

const Tokenizer& gguf_vocab(const std::string& name) {
    static std::map<std::string, Tokenizer> cache;
    auto it = cache.find(name);
    if (it == cache.end()) {
        const GgufFile g = GgufFile::parse(MappedFile::open(data_path("tokenizers/" + name)));
        it = cache.emplace(name, gguf_tokenizer(g)).first;
    }
    return it->second;
}

const Tokenizer& json_vocab(const std::string& dir) {
    static std::map<std::string, Tokenizer> cache;
    auto it = cache.find(dir);
    if (it == cache.end()) {
        it = cache
                 .emplace(dir,
                          Tokenizer::from_file(data_path("tokenizers/" + dir + "/tokenizer.json")))
                 .first;
    }
    return it->second;
}

void check_vectors(const Tokenizer& tok, const Vectors& v) {
    int matched = 0;
    for (size_t i = 0; i < v.inputs.size(); ++i) {
        CAPTURE(i);
        CAPTURE(v.inputs[i]);
        const std::vector<int32_t> ids = tok.encode(v.inputs[i], false);
        CHECK(ids == v.ids[i]);
        matched += ids == v.ids[i];
        CHECK(tok.decode(ids) == v.inputs[i]);
    }
    CHECK(matched == 46);
}

// Whether `s` is well-formed UTF-8 (checked here independently of the tokenizer).
bool valid_utf8(const std::string& s) {
    for (size_t i = 0; i < s.size();) {
        const auto b = uint8_t(s[i]);
        const size_t n = b < 0x80         ? 1
                         : (b >> 5) == 6  ? 2
                         : (b >> 4) == 14 ? 3
                         : (b >> 3) == 30 ? 4
                                          : 0;
        if (n == 0 || i + n > s.size()) return false;
        for (size_t k = 1; k < n; ++k) {
            if ((uint8_t(s[i + k]) & 0xC0) != 0x80) return false;
        }
        i += n;
    }
    return true;
}

}  // namespace

TEST_CASE("llama-bpe: the 46 vectors from the GGUF vocabulary and from tokenizer.json") {
    const Vectors v = read_vectors(data_path("tokenizers/ggml-vocab-llama-bpe.gguf"));
    const Tokenizer& gguf = gguf_vocab("ggml-vocab-llama-bpe.gguf");
    CHECK(gguf.is_bpe());
    CHECK(gguf.vocab_size() == 128256);
    check_vectors(gguf, v);
    const Tokenizer& json = json_vocab("llama3");
    CHECK(json.vocab_size() == 128256);
    check_vectors(json, v);
    // BOS: both put <|begin_of_text|> in front.
    CHECK(gguf.piece(gguf.bos_id()) == "<|begin_of_text|>");
    CHECK(json.bos_id() == gguf.bos_id());
    CHECK(gguf.encode("Hi", true).front() == gguf.bos_id());
    CHECK(json.encode("Hi", true).front() == gguf.bos_id());
}

TEST_CASE("qwen2: the 46 vectors from the GGUF vocabulary and from tokenizer.json") {
    const Vectors v = read_vectors(data_path("tokenizers/ggml-vocab-qwen2.gguf"));
    check_vectors(gguf_vocab("ggml-vocab-qwen2.gguf"), v);
    check_vectors(json_vocab("qwen3"), v);
    // Qwen puts no BOS in front of prompts.
    CHECK_FALSE(json_vocab("qwen3").add_bos_token());
    CHECK(json_vocab("qwen3").encode("Hi", true) == json_vocab("qwen3").encode("Hi", false));
    CHECK(json_vocab("qwen3").piece(json_vocab("qwen3").eos_id()) == "<|im_end|>");
}

TEST_CASE("the serialized form (model files carry it) tokenizes the same") {
    const Vectors v = read_vectors(data_path("tokenizers/ggml-vocab-qwen2.gguf"));
    const Tokenizer& tok = gguf_vocab("ggml-vocab-qwen2.gguf");
    const Tokenizer back = Tokenizer::from_serialized_proto(tok.serialized_proto(), "serialized");
    CHECK(back.vocab_size() == tok.vocab_size());
    CHECK(back.eos_id() == tok.eos_id());
    check_vectors(back, v);
    std::string cut = tok.serialized_proto();
    cut.resize(cut.size() - 3);
    CHECK_THROWS_WITH_AS(Tokenizer::from_serialized_proto(cut, "cut.bin"),
                         doctest::Contains("cut.bin"), std::runtime_error);
}

TEST_CASE("streamed decoding prints whole characters and adds up to decode") {
    const Vectors v = read_vectors(data_path("tokenizers/ggml-vocab-llama-bpe.gguf"));
    const Tokenizer& tok = gguf_vocab("ggml-vocab-llama-bpe.gguf");
    // Emoji and CJK split across byte tokens are among the vectors; so are
    // these (a 4-byte character and a lone byte token in the middle).
    std::vector<std::string> texts = v.inputs;
    texts.emplace_back("🦙🦙 llama 𝄞 日本語");
    int split_characters = 0;
    for (const std::string& text : texts) {
        CAPTURE(text);
        const auto ids = tok.encode(text, false);
        StreamDecoder stream(tok);
        std::string printed;
        for (int32_t id : ids) {
            const std::string piece = stream.push(id);
            CHECK(valid_utf8(piece));
            split_characters += !valid_utf8(tok.token_text(id));
            printed += piece;
        }
        printed += stream.flush();
        CHECK(printed == tok.decode(ids));
        CHECK(printed == text);
    }
    CHECK(split_characters > 0);  // some tokens do end inside a character
    // A sequence that ends inside a character: U+FFFD, as decode renders it.
    const auto ids = tok.encode("🦙", false);
    REQUIRE(ids.size() > 1);
    StreamDecoder stream(tok);
    CHECK(stream.push(ids[0]).empty());
    CHECK(stream.flush() == "\xEF\xBF\xBD");
    CHECK(tok.decode({ids[0]}) == "\xEF\xBF\xBD");
}

TEST_CASE("special tokens: single ids from templates, plain text from user text") {
    const Tokenizer& qwen = json_vocab("qwen3");
    const int32_t im_start = qwen.special_id("<|im_start|>");
    REQUIRE(im_start == 151644);
    CHECK(qwen.is_control(im_start));
    const auto user = qwen.encode("<|im_start|>user", false);
    CHECK(std::find(user.begin(), user.end(), im_start) == user.end());
    CHECK(user.size() > 3);
    CHECK(qwen.decode(user) == "<|im_start|>user");
    // Control tokens decode to nothing (as BOS/EOS do), user-defined added
    // tokens (Qwen's <think>) are text that always maps to its token.
    CHECK(qwen.decode({im_start}) == "");
    const int32_t think = qwen.special_id("<think>");
    REQUIRE(think >= 0);
    CHECK_FALSE(qwen.is_control(think));
    CHECK(qwen.encode("a<think>b", false) ==
          std::vector<int32_t>{qwen.encode("a", false)[0], think, qwen.encode("b", false)[0]});
    CHECK(qwen.decode({think}) == "<think>");
    const Tokenizer& llama = gguf_vocab("ggml-vocab-llama-bpe.gguf");
    const auto eot = llama.encode("<|eot_id|>", false);
    CHECK(eot.size() > 1);
    CHECK(std::find(eot.begin(), eot.end(), llama.special_id("<|eot_id|>")) == eot.end());
}

TEST_CASE("Gemma's tokenizer.json: SentencePiece-style BPE with byte fallback") {
    const Tokenizer& gemma = json_vocab("gemma3");
    CHECK(gemma.vocab_size() == 262145);  // 262144 + <image_soft_token>
    CHECK(gemma.piece(gemma.bos_id()) == "<bos>");
    CHECK(gemma.piece(gemma.eos_id()) == "<end_of_turn>");  // tokenizer_config.json
    const auto ids = gemma.encode("Hello world", false);
    REQUIRE(ids.size() == 2);
    CHECK(gemma.piece(ids[0]) == "Hello");
    CHECK(gemma.piece(ids[1]) == "\xE2\x96\x81world");  // U+2581 "world"
    // A character outside the vocabulary becomes its bytes' tokens.
    const std::string rare = "\xF3\xA0\x80\x81";  // U+E0001 LANGUAGE TAG
    const auto bytes = gemma.encode(rare, false);
    REQUIRE(bytes.size() == 4);
    CHECK(gemma.piece(bytes[0]) == "<0xF3>");
    const Vectors v = read_vectors(data_path("tokenizers/ggml-vocab-llama-bpe.gguf"));
    for (const std::string& text : v.inputs) {
        CAPTURE(text);
        CHECK(gemma.decode(gemma.encode(text, false)) == text);
    }
    CHECK(gemma.special_id("<start_of_turn>") >= 0);
}

TEST_CASE("bad vocabularies: one message naming the key") {
    BpeVocab v;
    v.tokens = {"a", "b", "ab"};
    v.types.assign(3, PieceType::normal);
    v.merges = {{"a", "b"}};
    v.pre = "gpt-2";
    CHECK(Tokenizer::from_bpe_vocab(v, "ok").encode("ab", false) == std::vector<int32_t>{2});
    BpeVocab unknown_pre = v;
    unknown_pre.pre = "llama-9";
    CHECK_THROWS_WITH_AS(Tokenizer::from_bpe_vocab(unknown_pre, "x.gguf"),
                         doctest::Contains("unknown pre-tokenizer \"llama-9\""),
                         std::runtime_error);
    BpeVocab missing = v;
    missing.merges.emplace_back("a", "c");
    CHECK_THROWS_WITH_AS(Tokenizer::from_bpe_vocab(missing, "x.gguf"),
                         doctest::Contains("merges[1] \"a\" \"c\": \"c\" is not in the vocabulary"),
                         std::runtime_error);
    BpeVocab no_result = v;
    no_result.merges.emplace_back("b", "a");
    CHECK_THROWS_WITH_AS(Tokenizer::from_bpe_vocab(no_result, "x.gguf"),
                         doctest::Contains("the merged token \"ba\" is not in the vocabulary"),
                         std::runtime_error);
    BpeVocab bad_regex = v;
    bad_regex.pre.clear();
    bad_regex.regexes = {"(unclosed"};
    CHECK_THROWS_WITH_AS(Tokenizer::from_bpe_vocab(bad_regex, "t.json"),
                         doctest::Contains("regex 0"), std::runtime_error);

    const std::string json = R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1},
        "merges": ["a b"]}, "pre_tokenizer": {"type": "ByteLevel", "use_regex": true}})";
    CHECK_THROWS_WITH_AS(Tokenizer::from_bpe_vocab(read_tokenizer_json(json, "t.json"), "t.json"),
                         doctest::Contains("merged token \"ab\""), std::runtime_error);
    CHECK_THROWS_WITH_AS(read_tokenizer_json(R"({"model": {"type": "Unigram"}})", "t.json"),
                         doctest::Contains("t.json: model.type"), std::runtime_error);
    CHECK_THROWS_WITH_AS(
        read_tokenizer_json(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a"]},
                               "pre_tokenizer": {"type": "ByteLevel"}})",
                            "t.json"),
        doctest::Contains("model.merges[0]"), std::runtime_error);
}

TEST_CASE("chat templates: their special tokens are single ids, users' text never is") {
    using Role = ChatMessage::Role;
    const std::vector<ChatMessage> messages = {
        {Role::system, "Be brief."},
        {Role::user, "Say <|im_start|> and <|eot_id|> and <start_of_turn>"},
    };
    struct Case {
        ChatTemplate t;
        const Tokenizer* tok;
        std::vector<std::string> specials;  // written by the template
    };
    const std::vector<Case> cases = {
        {ChatTemplate::chatml, &json_vocab("qwen3"), {"<|im_start|>", "<|im_end|>"}},
        {ChatTemplate::llama3,
         &gguf_vocab("ggml-vocab-llama-bpe.gguf"),
         {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}},
        {ChatTemplate::gemma, &json_vocab("gemma3"), {"<bos>", "<start_of_turn>", "<end_of_turn>"}},
    };
    for (const Case& c : cases) {
        CAPTURE(chat_template_name(c.t));
        const RenderedChat r = render_chat_marked(c.t, messages, true);
        const auto ids = c.tok->encode_template(r.text, false, r.contents);
        for (const std::string& s : c.specials) {
            CAPTURE(s);
            const int32_t id = c.tok->special_id(s);
            REQUIRE(id >= 0);
            // Each special the template writes is one id, as often as written.
            size_t written = 0;
            for (size_t at = r.text.find(s); at != std::string::npos; at = r.text.find(s, at + 1)) {
                const bool in_content =
                    std::any_of(r.contents.begin(), r.contents.end(),
                                [&](auto range) { return at >= range.first && at < range.second; });
                written += !in_content;
            }
            CHECK(written > 0);
            CHECK(size_t(std::count(ids.begin(), ids.end(), id)) == written);
        }
        // The user's message comes back as text; without the ranges the
        // markers in it would have become special tokens.
        CHECK(c.tok->decode(ids).find("Say <|im_start|> and <|eot_id|> and <start_of_turn>") !=
              std::string::npos);
        CHECK(c.tok->encode_template(r.text, false).size() < ids.size());
        CHECK(c.tok->special_id(chat_end_of_turn(c.t)) >= 0);
    }
}

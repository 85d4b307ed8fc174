// Hugging Face config.json values of the wrong JSON type (found by
// fuzz/fuzz_hf_config: nlohmann's type_error escaped with its internal text):
// each is a std::runtime_error naming config.json and the key, never
// nlohmann's message; out-of-int quantization fields are not truncated into
// valid ones. Uses the fuzzers' tiny checkpoint (fuzz/fuzz_hf_checkpoint.h).
#include <doctest/doctest.h>

#include <fstream>
#include <stdexcept>
#include <string>

#include "fuzz/fuzz_hf_checkpoint.h"
#include "models/hf.h"
#include "test_data.h"

using namespace nibble;
using json = nlohmann::json;

namespace {

// A checkpoint folder with the tiny weights and `config` as config.json text.
std::string checkpoint(const std::string& name, const std::string& config) {
    const auto dir = test::temp_dir("hf_config_errors") / name;
    std::filesystem::create_directories(dir);
    const auto [header, data] = fuzz::tiny_weights();
    std::ofstream(dir / "model.safetensors", std::ios::binary)
        << fuzz::safetensors_bytes(header, data);
    std::ofstream(dir / "config.json", std::ios::binary) << config;
    return dir.string();
}

// Loading fails with one message naming config.json and `expect`.
void check_refused(const std::string& name, const std::string& config, const std::string& expect) {
    CAPTURE(name);
    std::string message;
    try {
        (void)load_hf_model(checkpoint(name, config));
    } catch (const std::runtime_error& e) {
        message = e.what();
    }
    CAPTURE(message);
    CHECK(message.find("config.json") != std::string::npos);
    CHECK(message.find(expect) != std::string::npos);
    CHECK(message.find("json.exception") == std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
}

json with(const char* key, json value) {
    json c = fuzz::tiny_config();
    c[key] = std::move(value);
    return c;
}

json gptq(json bits, json group) {
    return with("quantization_config",
                {{"quant_method", "gptq"}, {"bits", std::move(bits)}, {"group_size", group}});
}

}  // namespace

TEST_CASE("the tiny checkpoint loads, plain and with its GPTQ tensor") {
    const Model plain = load_hf_model(checkpoint("plain", fuzz::tiny_config().dump()));
    CHECK(plain.config.dim == 32);
    CHECK(plain.layers.size() == 1);
    const Model packed = load_hf_model(checkpoint("gptq", gptq(4, 32).dump()));
    CHECK(packed.layers[0].w_down.format() != plain.layers[0].w_down.format());
}

TEST_CASE("config.json values of the wrong type are named, not nlohmann's type_error") {
    check_refused("rope_scaling_number", with("rope_scaling", 5).dump(),
                  "\"rope_scaling\" is not an object");
    check_refused("rope_factor_string",
                  with("rope_scaling", {{"type", "linear"}, {"factor", "x"}}).dump(),
                  "\"factor\" is not a number");
    check_refused("rope_type_number", with("rope_scaling", {{"type", 1}, {"factor", 2}}).dump(),
                  "\"type\" is not a string");
    check_refused("quantization_config_array", with("quantization_config", {1}).dump(),
                  "\"quantization_config\" is not an object");
    check_refused("quant_method_number", with("quantization_config", {{"quant_method", 5}}).dump(),
                  "\"quant_method\" is not a string");
    check_refused(
        "awq_version_number",
        with("quantization_config", {{"quant_method", "awq"}, {"version", 2}, {"w_bit", 4}}).dump(),
        "\"version\" is not a string");
    check_refused("tie_string", with("tie_word_embeddings", "yes").dump(),
                  "\"tie_word_embeddings\" is not true or false");
    check_refused("top_level_array", "[1, 2]", "is not a JSON object");
}

TEST_CASE("config.json syntax errors give the byte position, without the raw bytes") {
    check_refused("syntax", "{\"hidden_size\": \x01\xff}", "syntax error at byte ");
    std::string message;
    try {
        (void)load_hf_model(checkpoint("syntax2", "{\"a\": \x01\xff}"));
    } catch (const std::runtime_error& e) {
        message = e.what();
    }
    CHECK(message.find('\xff') == std::string::npos);
}

TEST_CASE("GPTQ bits and group_size beyond int are not truncated into valid values") {
    // 4294967300 = 2^32 + 4 and 4294967328 = 2^32 + 32 used to become 4 and 32.
    check_refused("bits_wrap", gptq(4294967300ll, 32).dump(), "only 4-bit");
    check_refused("group_wrap", gptq(4, 4294967328ll).dump(), "group_size 4294967328");
}

TEST_CASE("chat_template.json: a template name that is not a string is not nlohmann's type_error") {
    const std::string dir = checkpoint("template_name", fuzz::tiny_config().dump());
    std::ofstream(dir + "/chat_template.json")
        << R"({"chat_template": [{"name": 5, "template": "first"}, )"
        << R"({"name": "default", "template": "chosen"}]})";
    const Model m = load_hf_model(dir);
    CHECK(m.chat_template == "chosen");
}

TEST_CASE("a number beyond a double in config.json or tokenizer_config.json is a clean error") {
    // found by fuzz/fuzz_hf_config: nlohmann throws out_of_range (406), not
    // parse_error, and it escaped as an unknown exception
    check_refused("huge_number", R"({"hidden_size": 1e999})", "a number out of range");
    const std::string dir = checkpoint("huge_in_tokenizer_config", fuzz::tiny_config().dump());
    std::ofstream(dir + "/tokenizer_config.json") << R"({"bos_token": 33333333e3333})";
    std::string message;
    try {
        (void)load_hf_model(dir);
    } catch (const std::runtime_error& e) {
        message = e.what();
    }
    CHECK(message.find("tokenizer_config.json") != std::string::npos);
    CHECK(message.find("a number out of range") != std::string::npos);
}

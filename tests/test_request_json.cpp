// Lines of a nibble generate prompts file: plain and JSONL forms, every option,
// and the error phrase for each kind of bad line.
#include <doctest/doctest.h>

#include "apps/request_json.h"

using namespace nibble;

TEST_CASE("plain lines are prompts with the line number as id") {
    const ParsedLine p = parse_request_line("Once upon a time\r", 7, false);
    REQUIRE(p.spec);
    CHECK(p.error.empty());
    CHECK(p.spec->prompt == "Once upon a time");
    CHECK(p.spec->id == "7");
    CHECK(p.spec->numeric_id);
    CHECK_FALSE(p.spec->n_predict);
    // A plain line starting with '{' is still a prompt in a plain file.
    CHECK(parse_request_line("{not json", 1, false).spec->prompt == "{not json");
    CHECK(parse_request_line("   ", 2, false).blank);
    CHECK(parse_request_line("", 2, true).blank);
}

TEST_CASE("JSONL lines carry id, prompt and per-prompt options") {
    const ParsedLine p = parse_request_line(
        R"({"id": "a-1", "prompt": "The cat", "n_predict": 12, "temp": 0.5, "top_k": 5,)"
        R"( "top_p": 0.9, "min_p": 0.1, "seed": 123, "stop": ["\n", "."], "extra": [1]})",
        3, true);
    REQUIRE(p.spec);
    const RequestSpec& s = *p.spec;
    CHECK(s.id == "a-1");
    CHECK_FALSE(s.numeric_id);
    CHECK(s.prompt == "The cat");
    CHECK(*s.n_predict == 12);
    CHECK(*s.temperature == 0.5f);
    CHECK(*s.top_k == 5);
    CHECK(*s.top_p == 0.9f);
    CHECK(*s.min_p == 0.1f);
    CHECK(*s.seed == 123);
    CHECK(s.stop == std::vector<std::string>{"\n", "."});

    const ParsedLine q = parse_request_line(R"({"id": 42, "prompt": "x", "stop": "END"})", 9, true);
    REQUIRE(q.spec);
    CHECK(q.spec->id == "42");
    CHECK(q.spec->numeric_id);
    CHECK(q.spec->stop == std::vector<std::string>{"END"});
    CHECK_FALSE(q.spec->temperature);
    // No id: the line number.
    CHECK(parse_request_line(R"({"prompt": "x"})", 5, true).spec->id == "5");
}

TEST_CASE("bad JSONL lines give an error and no request") {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {R"({"prompt": "x")", "invalid JSON"},
        {R"(["prompt"])", "not a JSON object"},
        {R"({"id": 1})", "missing \"prompt\""},
        {R"({"prompt": ""})", "\"prompt\" must be a non-empty string"},
        {R"({"prompt": 5})", "\"prompt\" must be a non-empty string"},
        {R"({"prompt": "x", "id": 1.5})", "\"id\" must be a string or an integer"},
        {R"({"prompt": "x", "n_predict": -2})", "\"n_predict\" must be in -1..1073741824"},
        {R"({"prompt": "x", "n_predict": "5"})", "\"n_predict\" must be an integer"},
        {R"({"prompt": "x", "temp": -1})", "\"temp\" must be >= 0"},
        {R"({"prompt": "x", "top_p": 0})", "\"top_p\" must be in (0, 1]"},
        {R"({"prompt": "x", "min_p": 1.5})", "\"min_p\" must be in [0, 1]"},
        {R"({"prompt": "x", "seed": -1})", "\"seed\" must be in 0..9223372036854775807"},
        {R"({"prompt": "x", "seed": 18446744073709551615})",
         "\"seed\" must be in 0..9223372036854775807"},
        {R"({"prompt": "x", "stop": [""]})",
         "\"stop\" must be a non-empty string or an array of them"},
        {R"({"prompt": "x", "stop": [1]})",
         "\"stop\" must be a non-empty string or an array of them"},
    };
    for (const auto& c : cases) {  // (CAPTURE of a structured binding: clang 14 rejects it)
        const std::string& line = c.first;
        const std::string& error = c.second;
        CAPTURE(line);
        const ParsedLine p = parse_request_line(line, 1, true);
        CHECK_FALSE(p.spec);
        CHECK_FALSE(p.blank);
        CHECK(p.error == error);
    }
}

TEST_CASE("a file is JSONL when its first non-blank line is an object") {
    CHECK(looks_like_jsonl("\n  {\"prompt\": \"x\"}\n"));
    CHECK_FALSE(looks_like_jsonl("Once upon a time\n{\"prompt\": 1}\n"));
    CHECK_FALSE(looks_like_jsonl(""));
}

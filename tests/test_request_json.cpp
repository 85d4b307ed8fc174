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
        {R"({"prompt": "x", "top_k": -5})", "\"top_k\" must be in 0..2147483647"},
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

TEST_CASE("ids of any JSON type are kept as given, and \"3\" is not 3") {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"9223372036854775808", "9223372036854775808"},
        {"18446744073709551615", "18446744073709551615"},
        {"-9223372036854775808", "-9223372036854775808"},
        {"3", "3"},
        {R"("3")", R"("3")"},
        {"1.5", "1.5"},
        {"true", "true"},
        {R"(["a", {"z": 1, "b": 2}])", R"(["a",{"z":1,"b":2}])"},
    };
    for (const auto& c : cases) {
        const std::string line = R"({"id": )" + c.first + R"(, "prompt": "x"})";
        CAPTURE(line);
        const ParsedLine p = parse_request_line(line, 1, true);
        REQUIRE(p.spec);
        CHECK(p.spec->id_json == c.second);
    }
    CHECK(parse_request_line(R"({"id": "3", "prompt": "x"})", 1, true).spec->id == "3");
    CHECK_FALSE(parse_request_line(R"({"id": "3", "prompt": "x"})", 1, true).spec->numeric_id);
    CHECK(parse_request_line(R"({"id": null, "prompt": "x"})", 4, true).spec->id_json == "4");
}

TEST_CASE("a previous output: whole lines kept, a cut last line left out, anything else refused") {
    const std::string a = R"({"id":1,"prompt":"p","completion":"c"})";
    const std::string b = R"({"id":"1","prompt":"p","completion":"c"})";
    PreviousOutput r = scan_previous_output(a + "\n" + b + "\n");
    CHECK(r.error.empty());
    CHECK(r.ids == std::set<std::string>{"1", "\"1\""});
    CHECK(r.lines == 2);
    CHECK(r.keep_bytes == a.size() + b.size() + 2);
    // a whole last line without its newline is a result like any other
    r = scan_previous_output(a + "\n" + b);
    CHECK(r.error.empty());
    CHECK(r.lines == 2);
    CHECK(r.keep_bytes == a.size() + b.size() + 1);
    CHECK_FALSE(r.cut_line);
    // a line a killed run left unfinished
    r = scan_previous_output(a + "\n" + R"({"id":2,"prom)");
    CHECK(r.error.empty());
    CHECK(r.lines == 1);
    CHECK(r.keep_bytes == a.size() + 1);
    CHECK(r.cut_line);
    CHECK(scan_previous_output("").lines == 0);
    for (const std::string& text :
         {std::string("hello\nworld"), std::string("world"), std::string(R"({"id": 1})") + "\n",
          a + "\nplain text", R"({"id":2,"prom)" + std::string("\n") + a}) {
        CAPTURE(text);
        r = scan_previous_output(text);
        CHECK_FALSE(r.error.empty());
        CHECK(r.ids.empty());
        CHECK(r.keep_bytes == 0);
    }
    CHECK(scan_previous_output(a + "\nnope").error ==
          "line 2 is not an output line of nibble generate");
}

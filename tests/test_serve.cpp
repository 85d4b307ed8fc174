// nibble serve end to end on loopback with stories260K: concurrent streamed
// greedy completions equal `nibble run`, a disconnect frees its slot for the
// queued request, a full queue answers 503, bad bodies 400 naming the field,
// a wrong or missing API key 401, SIGTERM drains and exits 0.
#include <doctest/doctest.h>

#include <future>
#include <nlohmann/json.hpp>

#include "serve_client.h"

using nibble::test::data_path;
using nibble::test::http;
using nibble::test::HttpReply;
using nibble::test::ServeProcess;
using Json = nlohmann::json;

namespace {

std::vector<std::string> model_args() {
    return {"-m", data_path("stories260K.bin"), "--tokenizer", data_path("tok512.model"), "-t",
            "1"};
}

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

// The text of a streamed completion, and its last chunk (finish reason, usage).
struct Streamed {  // NOLINT(bugprone-exception-escape): a test helper
    std::string text;
    Json last;
    bool done = false;
};

Streamed read_stream(const HttpReply& reply) {
    Streamed s;
    for (const std::string& data : reply.events()) {
        if (data == "[DONE]") {
            s.done = true;
            continue;
        }
        const Json chunk = Json::parse(data);
        const Json& choice = chunk["choices"][0];
        if (choice.contains("text")) s.text += choice["text"].get<std::string>();
        s.last = chunk;
    }
    return s;
}

double metric(int port, const std::string& name) {
    const std::string text = http(port, "GET", "/metrics").body;
    const size_t at = text.find("\n" + name + " ");
    REQUIRE(at != std::string::npos);
    return std::stod(text.substr(at + name.size() + 2));
}

// A long generation: ignore_eos with a context of 32768 tokens takes seconds.
const char* const kLongStream =
    R"({"prompt":"Once upon a time","max_tokens":-1,"ignore_eos":true,"stream":true,"temperature":0})";

}  // namespace

TEST_CASE("32 concurrent streamed greedy completions at --parallel 8 equal nibble run") {
    ServeProcess server(with(model_args(), {"--parallel", "8"}));
    const std::vector<std::string> starts = {"Once upon a time", "Tom had a dog",
                                             "The sun was",      "Lily and Ben",
                                             "One day, a cat",   "There was a big tree"};
    std::vector<std::string> prompts;
    prompts.reserve(32);
    for (int i = 0; i < 32; ++i) {
        prompts.push_back(starts[size_t(i) % starts.size()] +
                          (i < 6 ? "" : " and " + starts[size_t(i / 6) % starts.size()]));
    }
    const int n = 40;
    std::vector<std::future<HttpReply>> replies;
    for (const std::string& p : prompts) {
        Json body = {{"prompt", p}, {"max_tokens", n}, {"temperature", 0}, {"stream", true}};
        replies.push_back(std::async(std::launch::async, [&server, body] {
            return http(server.port, "POST", "/v1/completions", body.dump());
        }));
    }
    for (size_t i = 0; i < prompts.size(); ++i) {
        CAPTURE(prompts[i]);
        const HttpReply reply = replies[i].get();
        CAPTURE(reply.raw);
        REQUIRE(reply.status == 200);
        CHECK(reply.headers.find("text/event-stream") != std::string::npos);
        const Streamed s = read_stream(reply);
        CHECK(s.done);
        REQUIRE(s.last.contains("usage"));
        const int generated = s.last["usage"]["completion_tokens"].get<int>();
        CHECK(generated <= n);
        CHECK(s.last["choices"][0]["finish_reason"] == (generated == n ? "length" : "stop"));
        // nibble run prints the prompt, then the completion, then a newline.
        const auto run = nibble::test::run_nibble_streams(
            "run -m " + data_path("stories260K.bin") + " --tokenizer " + data_path("tok512.model") +
            " --temp 0 -n " + std::to_string(n) + " -p '" + prompts[i] + "'");
        REQUIRE(run.exit_code == 0);
        CHECK(run.out == prompts[i] + s.text + "\n");
    }
}

TEST_CASE("a disconnect frees its slot for the queued request; a full queue gives 503") {
    ServeProcess server(with(model_args(), {"--parallel", "1", "--queue", "1", "-c", "32768"}));
    // A streams for seconds; B waits for the only slot; C finds the queue full.
    std::string first;
    struct Socket {  // closed on every path, so that a failed REQUIRE does not wait on B
        int fd;
        ~Socket() {
            if (fd >= 0) close(fd);
        }
    } a{nibble::test::http_until(server.port, "/v1/completions", kLongStream, "data: ", &first)};
    REQUIRE(first.find("200 OK") != std::string::npos);
    auto b = std::async(std::launch::async, [&] {
        return http(server.port, "POST", "/v1/completions",
                    R"({"prompt":"Tom had a dog","max_tokens":5,"temperature":0})");
    });
    // (up to 30 s: on a loaded machine the request may take long to reach the queue)
    for (int i = 0; i < 1200 && metric(server.port, "nibble_queue_length") < 1 &&
                    b.wait_for(std::chrono::milliseconds(0)) == std::future_status::timeout;
         ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    // What the server saw, should B not be counted as queued.
    const std::string seen = http(server.port, "GET", "/metrics").body + "\nserver log:\n" +
                             nibble::test::read_text(server.log_path);
    CAPTURE(seen);
    REQUIRE(b.wait_for(std::chrono::milliseconds(0)) == std::future_status::timeout);
    REQUIRE(metric(server.port, "nibble_queue_length") == 1);
    const HttpReply c = http(server.port, "POST", "/v1/completions", R"({"prompt":"x"})");
    CHECK(c.status == 503);
    CHECK(c.headers.find("Retry-After: ") != std::string::npos);
    CHECK(Json::parse(c.body)["error"]["type"] == "server_error");
    CHECK(b.wait_for(std::chrono::milliseconds(0)) == std::future_status::timeout);

    close(a.fd);  // A's client goes away: A is cancelled, B gets the slot.
    a.fd = -1;
    REQUIRE(b.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
    const HttpReply reply = b.get();
    CHECK(reply.status == 200);
    CHECK(Json::parse(reply.body)["usage"]["completion_tokens"] == 5);
    // A stopped long before its end of context (32767 tokens).
    CHECK(metric(server.port, "nibble_generated_tokens_total") < 16000);
    CHECK(metric(server.port, "nibble_requests_in_flight") == 0);
}

TEST_CASE("malformed bodies and wrong types give 400 naming the field") {
    ServeProcess server(model_args());
    struct Case {
        const char* path;
        const char* body;
        const char* param;  // "" for none (the body itself)
    };
    const Case cases[] = {
        {"/v1/completions", "{not json", ""},
        {"/v1/completions", "[1, 2]", ""},
        {"/v1/completions", R"({"max_tokens": 5})", "prompt"},
        {"/v1/completions", R"({"prompt": 7})", "prompt"},
        {"/v1/completions", R"({"prompt": "a", "max_tokens": "ten"})", "max_tokens"},
        {"/v1/completions", R"({"prompt": "a", "max_tokens": 100000})", "max_tokens"},
        {"/v1/completions", R"({"prompt": "a", "temperature": -1})", "temperature"},
        {"/v1/completions", R"({"prompt": "a", "top_p": 0})", "top_p"},
        {"/v1/completions", R"({"prompt": "a", "top_k": 1.5})", "top_k"},
        {"/v1/completions", R"({"prompt": "a", "min_p": 2})", "min_p"},
        {"/v1/completions", R"({"prompt": "a", "seed": -3})", "seed"},
        {"/v1/completions", R"({"prompt": "a", "stop": [1]})", "stop"},
        {"/v1/completions", R"({"prompt": "a", "n": 2})", "n"},
        {"/v1/completions", R"({"prompt": "a", "stream": "yes"})", "stream"},
        {"/v1/completions", R"({"prompt": "a", "logprobs": 99})", "logprobs"},
        {"/v1/chat/completions", R"({"messages": "hi"})", "messages"},
        {"/v1/chat/completions", R"({"messages": [{"role": "cat", "content": "x"}]})",
         "messages[0].role"},
        {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": 3}]})",
         "messages[0].content"},
        {"/v1/chat/completions",
         R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})", "top_logprobs"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.body);
        const HttpReply r = http(server.port, "POST", c.path, c.body);
        CHECK(r.status == 400);
        const Json j = Json::parse(r.body, nullptr, false);
        REQUIRE(j.is_object());
        CHECK(j["error"]["type"] == "invalid_request_error");
        CHECK(!j["error"]["message"].get<std::string>().empty());
        if (*c.param) {
            CHECK(j["error"]["param"] == c.param);
        } else {
            CHECK(j["error"]["param"].is_null());
        }
    }
    // A prompt longer than the context (512) names the prompt.
    std::string long_prompt;
    for (int i = 0; i < 600; ++i) long_prompt += "dog ";
    const HttpReply r =
        http(server.port, "POST", "/v1/completions", Json({{"prompt", long_prompt}}).dump());
    CHECK(r.status == 400);
    CHECK(Json::parse(r.body)["error"]["param"] == "prompt");
    // Unknown fields are ignored.
    const HttpReply ok = http(server.port, "POST", "/v1/completions",
                              R"({"prompt": "a", "max_tokens": 2, "frobnicate": [1]})");
    CHECK(ok.status == 200);
    // A body over --max-body is refused.
    const HttpReply big = http(server.port, "POST", "/v1/completions",
                               Json({{"prompt", std::string(2 << 20, 'a')}}).dump());
    CHECK(big.status == 413);
}

TEST_CASE("a wrong or missing API key gives 401") {
    ServeProcess server(with(model_args(), {"--api-key", "s3cret-key"}));
    const std::string body = R"({"prompt": "a", "max_tokens": 2})";
    CHECK(http(server.port, "POST", "/v1/completions", body).status == 401);
    CHECK(http(server.port, "POST", "/v1/completions", body, "Authorization: Bearer s3cret-kez\r\n")
              .status == 401);
    CHECK(http(server.port, "POST", "/v1/completions", body, "Authorization: Bearer s3cret\r\n")
              .status == 401);
    CHECK(http(server.port, "GET", "/v1/models", "", "Authorization: s3cret-key\r\n").status ==
          401);
    const HttpReply bad = http(server.port, "GET", "/v1/models");
    CHECK(Json::parse(bad.body)["error"]["type"] == "authentication_error");
    CHECK(http(server.port, "POST", "/v1/completions", body, "Authorization: Bearer s3cret-key\r\n")
              .status == 200);
    CHECK(http(server.port, "GET", "/health").status == 200);  // for load balancers
}

TEST_CASE("chat completions, logprobs and the models list") {
    ServeProcess server(with(model_args(), {"--alias", "tiny"}));
    const Json models = Json::parse(http(server.port, "GET", "/v1/models").body);
    CHECK(models["data"][0]["id"] == "tiny");
    const HttpReply r = http(
        server.port, "POST", "/v1/chat/completions",
        R"({"messages":[{"role":"user","content":"Tom had a dog"}],"max_tokens":6,"temperature":0,"logprobs":true,"top_logprobs":3})");
    REQUIRE(r.status == 200);
    const Json j = Json::parse(r.body);
    CHECK(j["object"] == "chat.completion");
    CHECK(j["choices"][0]["message"]["role"] == "assistant");
    const Json& content = j["choices"][0]["logprobs"]["content"];
    REQUIRE(content.size() == 6);
    std::string joined;
    for (const Json& t : content) {
        joined += t["token"].get<std::string>();
        REQUIRE(t["top_logprobs"].size() == 3);
        // Greedy: the chosen token is the most likely one; probabilities <= 1, sorted.
        CHECK(t["top_logprobs"][0]["token"] == t["token"]);
        CHECK(t["logprob"].get<double>() <= 0.0);
        CHECK(t["top_logprobs"][0]["logprob"] >= t["top_logprobs"][1]["logprob"]);
    }
    CHECK(joined == j["choices"][0]["message"]["content"]);

    // A second conversation with the same system prompt reuses its KV cache.
    const std::string system =
        "Once upon a time there was a little girl named Lily who loved to play in the park.";
    int cached[2] = {0, 0};
    for (int i = 0; i < 2; ++i) {
        const Json body = {
            {"messages",
             {{{"role", "system"}, {"content", system}},
              {{"role", "user"}, {"content", i == 0 ? "Tom had a dog" : "Sue ran"}}}},
            {"max_tokens", 4}};
        const HttpReply reply = http(server.port, "POST", "/v1/chat/completions", body.dump());
        REQUIRE(reply.status == 200);
        cached[i] = Json::parse(reply.body)["usage"]["prompt_tokens_details"]["cached_tokens"];
    }
    CHECK(cached[0] < 5);
    CHECK(cached[1] > 15);
}

TEST_CASE("SIGTERM lets a running stream finish, refuses new requests, exits 0") {
    ServeProcess server(with(model_args(), {"-c", "32768"}));
    std::string read;
    const int fd = nibble::test::http_until(
        server.port, "/v1/completions",
        R"({"prompt":"Once upon a time","max_tokens":3000,"ignore_eos":true,"stream":true})",
        "data: ", &read);
    REQUIRE(read.find("200 OK") != std::string::npos);
    kill(server.pid, SIGTERM);
    // New requests are refused while the stream runs (503 or no connection).
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK(http(server.port, "GET", "/health").status != 200);
    // The stream ends normally: all 3000 tokens, then [DONE].
    char buffer[16384];
    ssize_t n;
    while ((n = recv(fd, buffer, sizeof buffer, 0)) > 0 || (n < 0 && errno == EINTR)) {
        if (n > 0) read.append(buffer, size_t(n));
    }
    close(fd);
    const HttpReply reply = nibble::test::parse_reply(read);
    const Streamed s = read_stream(reply);
    CHECK(s.done);
    CHECK(s.last["usage"]["completion_tokens"] == 3000);
    CHECK(server.signal_and_wait(SIGTERM, 30) == 0);
}

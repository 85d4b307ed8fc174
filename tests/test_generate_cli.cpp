// nibble generate end to end on stories260K: JSONL options, bad lines reported
// and skipped, outputs independent of --parallel, and --resume after a kill.
#include <doctest/doctest.h>
#include <signal.h>  // NOLINT(modernize-deprecated-headers): kill is POSIX

#include <algorithm>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "test_data.h"

using nibble::test::data_path;
using nibble::test::read_text;
using nibble::test::run_nibble;
using Json = nlohmann::json;

namespace {

const std::filesystem::path& dir() {
    static const auto d = nibble::test::temp_dir("nibble_test_generate");
    return d;
}

std::string model_args() {
    return "-m " + data_path("stories260K.bin") + " --tokenizer " + data_path("tok512.model");
}

std::string write_file(const std::string& name, const std::string& text) {
    return nibble::test::write_file(dir() / name, text);
}

std::vector<Json> output_lines(const std::string& path) {
    std::vector<Json> out;
    std::istringstream lines(read_text(path));
    for (std::string line; std::getline(lines, line);) out.push_back(Json::parse(line));
    return out;
}

// id -> the line without its timing, as text.
std::map<std::string, std::string> by_id(const std::vector<Json>& lines) {
    std::map<std::string, std::string> out;
    for (Json j : lines) {
        j.erase("seconds");
        out[j["id"].dump()] = j.dump();
    }
    return out;
}

std::string story_prompts(int n) {
    const char* starts[] = {"Once upon a time", "The cat", "Tim had a big red ball. He",
                            "One day, Lily", "The sun was hot and"};
    std::string text;
    for (int i = 0; i < n; ++i) {
        text += std::string(starts[i % 5]) + (i % 3 ? " and the dog" : "") + "\n";
    }
    return text;
}

}  // namespace

TEST_CASE("JSONL prompts with per-prompt options; bad lines are reported and skipped") {
    const std::string long_prompt(400, 'a');
    const std::string prompts = write_file(
        "prompts.jsonl",
        R"({"id": "short", "prompt": "Once upon a time", "n_predict": 5, "temp": 0})"
        "\n"
        R"({"id": 2, "prompt": "The cat", "n_predict": 30, "temp": 1.0, "seed": 7, "top_k": 3})"
        "\n"
        R"({"id": 3, "prompt": "oops)"
        "\n\n"
        R"({"id": 4, "n_predict": 3})"
        "\n"
        R"({"id": "stop", "prompt": "Once upon a time", "n_predict": 60, "temp": 0, "stop": ["Lily"]})"
        "\n"
        R"({"id": "long", "prompt": ")" +
            long_prompt + R"("})" + "\n" + R"({"id": "short", "prompt": "duplicate"})" + "\n");
    const std::string out = (dir() / "out.jsonl").string();
    const auto r = run_nibble(
        "generate " + model_args() + " -f " + prompts + " --out " + out + " -c 128 --parallel 3",
        nibble::test::Capture::stderr_only);
    CHECK(r.exit_code == 0);
    CHECK(r.text.find(prompts + ":3: invalid JSON (skipped)") != std::string::npos);
    CHECK(r.text.find(prompts + ":5: missing \"prompt\" (skipped)") != std::string::npos);
    CHECK(r.text.find(prompts + ":7: the prompt has") != std::string::npos);
    CHECK(r.text.find(prompts + ":8: duplicate id \"short\" (skipped)") != std::string::npos);
    CHECK(r.text.find("generate: 3 prompts completed, 4 skipped") != std::string::npos);
    const auto lines = output_lines(out);
    REQUIRE(lines.size() == 3);
    std::map<std::string, Json> got;
    for (const Json& j : lines) got[j["id"].dump()] = j;
    const Json& s = got.at("\"short\"");
    CHECK(s["prompt"] == "Once upon a time");
    CHECK(s["n_completion"] == 5);
    CHECK(s["finish_reason"] == "length");
    CHECK(s["n_prompt"].get<int>() > 1);
    CHECK(s["seconds"].get<double>() >= 0.0);
    const Json& two = got.at("2");  // numeric ids stay numbers
    CHECK(two["n_completion"].get<int>() <= 30);
    const Json& stop = got.at("\"stop\"");
    CHECK(stop["finish_reason"] == "stop");
    CHECK(stop["completion"].get<std::string>().find("Lily") == std::string::npos);
    // The greedy completion of the same prompt, cut where "Lily" starts.
    const std::string greedy = s["completion"];
    CHECK(greedy.rfind(stop["completion"].get<std::string>().substr(0, greedy.size()), 0) == 0);
}

TEST_CASE("outputs do not depend on --parallel, greedy or seeded") {
    const std::string prompts = write_file("plain.txt", story_prompts(20));
    for (const std::string temp : {"0", "0.8"}) {
        CAPTURE(temp);
        std::map<std::string, std::string> results[2];
        int k = 0;
        for (const std::string parallel : {"1", "8"}) {
            const std::string out = (dir() / ("p" + parallel + ".jsonl")).string();
            const auto r = run_nibble("generate " + model_args() + " -f " + prompts + " --out " +
                                          out + " -n 40 --temp " + temp + " --parallel " + parallel,
                                      nibble::test::Capture::stderr_only);
            CHECK(r.exit_code == 0);
            // Not a terminal: plain progress lines, the last at 100%.
            CHECK(r.text.find("generate: 20/20 done (100%)") != std::string::npos);
            results[k++] = by_id(output_lines(out));
        }
        CHECK(results[0].size() == 20);
        CHECK(results[0] == results[1]);
    }
}

TEST_CASE("a run killed half-way and resumed gives the same set of outputs") {
    const int n = 200;
    const std::string prompts = write_file("many.txt", story_prompts(n));
    const std::string common =
        "generate " + model_args() + " -f " + prompts + " -n 120 --parallel 4 -t 1";
    const std::string full = (dir() / "full.jsonl").string();
    REQUIRE(run_nibble(common + " --out " + full, nibble::test::Capture::stderr_only).exit_code ==
            0);
    const auto expected = by_id(output_lines(full));
    REQUIRE(expected.size() == size_t(n));

    const std::string partial = (dir() / "partial.jsonl").string();
    std::filesystem::remove(partial);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        const std::string cmd = std::string(NIBBLE_BINARY) + " " + common + " --out " + partial;
        execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
        _exit(127);
    }
    // Kill it once some lines are out.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    size_t lines_seen = 0;
    while (std::chrono::steady_clock::now() < deadline) {
        const std::string text = read_text(partial);
        lines_seen = size_t(std::count(text.begin(), text.end(), '\n'));
        if (lines_seen >= size_t(n / 10)) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status));
    const std::string cut = read_text(partial);
    const size_t before = size_t(std::count(cut.begin(), cut.end(), '\n'));
    MESSAGE("killed after " << before << " of " << n << " lines");
    CHECK(before < size_t(n));  // really interrupted

    const auto r =
        run_nibble(common + " --out " + partial + " --resume", nibble::test::Capture::stderr_only);
    CHECK(r.exit_code == 0);
    CHECK(r.text.find("already in") != std::string::npos);
    const auto resumed = output_lines(partial);
    CHECK(resumed.size() == size_t(n));  // no id twice
    CHECK(by_id(resumed) == expected);
}

TEST_CASE("generate: usage errors and unreadable files") {
    const std::string prompts = write_file("one.txt", "Once upon a time\n");
    const std::string out = (dir() / "e.jsonl").string();
    auto err = [&](const std::string& args) {
        return run_nibble("generate " + args, nibble::test::Capture::stderr_only);
    };
    auto r = err(model_args() + " -f " + prompts);
    CHECK(r.exit_code == 2);
    CHECK(r.text == "nibble generate: missing --out\n");
    r = err(model_args() + " -f " + prompts + " --out " + out + " --parallel 0");
    CHECK(r.exit_code == 2);
    CHECK(r.text == "nibble generate: --parallel must be in 1..256\n");
    r = err(model_args() + " -f /nonexistent/p.txt --out " + out);
    CHECK(r.exit_code == 1);
    // read as any text input (a regular file of bounded size, or - for stdin)
    CHECK(r.text ==
          "nibble generate: error: /nonexistent/p.txt: cannot open: No such file or directory\n");
    const std::string junk = write_file("junk.jsonl", "not json at all\n");
    r = err(model_args() + " -f " + prompts + " --out " + junk + " --resume");
    CHECK(r.exit_code == 1);
    CHECK(r.text.find("junk.jsonl: line 1 is not an output line of nibble generate") !=
          std::string::npos);
}

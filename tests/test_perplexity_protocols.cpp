// Perplexity protocols (documents, strided windows, llama.cpp's second half)
// and the KL-divergence base file, through the library and `nibble perplexity`.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <numeric>

#include "eval/kl_divergence.h"
#include "eval/perplexity.h"
#include "models/loader.h"
#include "test_data.h"

using namespace nibble;
using nibble::test::Capture;
using nibble::test::data_path;
using nibble::test::run_nibble;
using nibble::test::temp_dir;

namespace {

// How many times each stream token is scored by a list of windows, checking
// that every scored target is the stream token it claims to be.
std::vector<int> coverage(const std::vector<int32_t>& stream, const std::vector<ScoredWindow>& ws,
                          size_t stride, bool second_half) {
    std::vector<int> count(stream.size(), 0);
    for (size_t k = 0; k < ws.size(); ++k) {
        const ScoredWindow& w = ws[k];
        REQUIRE(w.targets.size() >= w.inputs.size());
        const size_t begin = k * stride + (second_half ? 1 : 0);
        for (size_t i = size_t(w.first_scored); i < w.inputs.size(); ++i) {
            REQUIRE(begin + i < stream.size());
            CHECK(w.targets[i] == stream[begin + i]);
            ++count[begin + i];
        }
    }
    return count;
}

double ppl_of(const std::string& text) {
    const size_t at = text.rfind("perplexity ");
    return at == std::string::npos ? -1.0 : std::atof(text.c_str() + at + 11);
}

}  // namespace

TEST_CASE("strided windows score every stream token exactly once") {
    std::vector<int32_t> stream(1000);
    std::iota(stream.begin(), stream.end(), 3);
    for (int stride : {64, 32, 17}) {
        const auto ws = strided_windows(stream, 1, 64, stride);
        CAPTURE(stride);
        for (const auto& w : ws) {
            CHECK(w.inputs.front() == 1);
            CHECK(w.inputs.size() <= 64);
        }
        const auto count = coverage(stream, ws, size_t(stride), false);
        CHECK(std::all_of(count.begin(), count.end(), [](int c) { return c == 1; }));
    }
    CHECK_THROWS(strided_windows(stream, 1, 64, 65));
}

TEST_CASE("llama.cpp windows score the second half of whole chunks") {
    std::vector<int32_t> stream(1000);
    std::iota(stream.begin(), stream.end(), 3);
    const auto ws = llamacpp_windows(stream, 1, 128);
    REQUIRE(ws.size() == 7);  // 1000 / 128, the tail dropped
    int64_t scored = 0;
    for (const auto& w : ws) {
        CHECK(w.inputs.size() == 127);
        CHECK(w.inputs.front() == 1);
        CHECK(w.first_scored == 64);
        scored += int64_t(w.inputs.size()) - w.first_scored;
    }
    CHECK(scored == 7 * 63);
    const auto count = coverage(stream, ws, 128, true);
    CHECK(std::accumulate(count.begin(), count.end(), 0) == 7 * 63);
}

TEST_CASE("nibble perplexity: protocols, running estimate, KL base") {
    const std::string model = " -m " + data_path("stories260K.bin") + " --tokenizer " +
                              data_path("tok512.model") + " -t 1";
    const std::string text = " -f " + data_path("corpus/tinystories_sample.txt");
    const auto docs = run_nibble("perplexity" + model + text, Capture::stdout_only);
    REQUIRE(docs.exit_code == 0);
    CHECK(docs.text.find("protocol documents") != std::string::npos);
    const auto windows =
        run_nibble("perplexity" + model + text + " --ctx 128", Capture::stdout_only);
    REQUIRE(windows.exit_code == 0);
    const auto sliding =
        run_nibble("perplexity" + model + text + " --ctx 128 --stride 64", Capture::stdout_only);
    REQUIRE(sliding.exit_code == 0);
    const auto half =
        run_nibble("perplexity" + model + text + " --ctx 128 --second-half", Capture::stdout_only);
    REQUIRE(half.exit_code == 0);
    CHECK(half.text.find("protocol llama.cpp") != std::string::npos);
    // More context per scored token gives a lower perplexity on this model.
    CHECK(ppl_of(sliding.text) < ppl_of(windows.text));
    CHECK(ppl_of(half.text) > 1.0);
    const auto progress =
        run_nibble("perplexity" + model + text + " --ctx 128", Capture::stderr_only);
    CHECK(progress.text.find("perplexity") != std::string::npos);

    const std::string base = (temp_dir("nibble_test_ppl") / "base.nbkl").string();
    const auto saved =
        run_nibble("perplexity" + model + text + " --save-logits " + base, Capture::stdout_only);
    REQUIRE(saved.exit_code == 0);
    LogitsBaseReader same(base, 512);  // a readable file
    const auto self =
        run_nibble("perplexity" + model + text + " --kl-base " + base, Capture::stdout_only);
    REQUIRE(self.exit_code == 0);
    CHECK(self.text.find("KL divergence mean 0.000000") != std::string::npos);
    CHECK(self.text.find("top-1 agreement 100.0000%") != std::string::npos);
    // The q8 runq checkpoint differs a little: KL above zero, top-1 mostly equal.
    const std::string q80 = " -m " + data_path("stories260K_q80.bin") + " --tokenizer " +
                            data_path("tok512.model") + " -t 1";
    const auto q =
        run_nibble("perplexity" + q80 + text + " --kl-base " + base, Capture::stdout_only);
    REQUIRE(q.exit_code == 0);
    const size_t at = q.text.find("KL divergence mean ");
    REQUIRE(at != std::string::npos);
    const double kl = std::atof(q.text.c_str() + at + 19);
    CHECK(kl > 0.0);
    CHECK(kl < 0.05);
    // Another protocol does not match the saved positions: one line, exit 1.
    const auto other = run_nibble("perplexity" + model + text + " --ctx 64 --kl-base " + base,
                                  Capture::stderr_only);
    CHECK(other.exit_code == 1);
    CHECK(other.text.find(base) != std::string::npos);
    const auto bad = run_nibble("perplexity" + model + text + " --stride 3", Capture::stderr_only);
    CHECK(bad.exit_code == 2);
    CHECK(bad.text.find("--ctx") != std::string::npos);
}

// `nibble quantize` end to end: a 4-bit stories260K written by the CLI is
// described by `nibble info`, tells a story with `nibble run`, keeps its
// perplexity close to FP32, and bad options exit with code 2 and one line.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "eval/perplexity.h"
#include "kernels/interleave.h"
#include "models/loader.h"
#include "test_data.h"
#include "tokenizer/tokenizer.h"

using namespace nibble;
using nibble::test::data_path;
using nibble::test::read_text;

namespace {

std::string temp_path(const std::string& name) {
    return (nibble::test::temp_dir("nibble_test_quantize_cli") / name).string();
}

using nibble::test::CliStreams;
using nibble::test::run_nibble_streams;

// Perplexity on the first documents of the TinyStories excerpt.
double perplexity_of(const Model& model, const Tokenizer& tok) {
    std::vector<std::vector<int32_t>> docs;
    for (const std::string& d :
         split_documents(read_text(data_path("corpus/tinystories_excerpt.txt")))) {
        docs.push_back(tok.encode(d, false));
        if (docs.size() == 30) break;
    }
    RuntimeOptions ro;
    ro.context = model.config.max_seq_len;
    ro.max_batch = 128;
    InferenceState state(model, ro);
    return perplexity(state, docs, tok.bos_id()).perplexity();
}

}  // namespace

TEST_CASE("nibble quantize writes a 4-bit stories260K that info, run and perplexity accept") {
    const std::string out = temp_path("out.nbl");
    const CliStreams q = run_nibble_streams("quantize '" + data_path("stories260K.bin") + "' '" +
                                            out + "' --format q4 --group-size 32");
    CAPTURE(q.err);
    REQUIRE(q.exit_code == 0);
    // The per-tensor table and totals, and a progress bar on stderr.
    CHECK(q.out.find("blk.4.ffn_down.weight") != std::string::npos);
    CHECK(q.out.find("rel RMS") != std::string::npos);
    CHECK(q.out.find("bits per weight") != std::string::npos);
    CHECK(q.err.find("48/48") != std::string::npos);

    const CliStreams info = run_nibble_streams("info '" + out + "'");
    REQUIRE(info.exit_code == 0);
    CHECK(info.out.find("(nibble)") != std::string::npos);
    CHECK(info.out.find("blk.0.attn_q.weight          q4 ") != std::string::npos);
    CHECK(info.out.find("token_embd.weight            q8 ") != std::string::npos);
    CHECK(info.out.find("carried by the file") != std::string::npos);

    // No --tokenizer: the file carries it.
    const CliStreams run =
        run_nibble_streams("run -m '" + out + "' -p 'Once upon a time' -n 40 --temp 0 -t 1");
    CAPTURE(run.err);
    REQUIRE(run.exit_code == 0);
    CAPTURE(run.out);
    CHECK(run.out.rfind("Once upon a time", 0) == 0);
    int common = 0;
    for (const char* w : {" there ", " was ", " little ", " girl", " boy", " day", " she ", " he ",
                          " play", " named ", " loved ", " the "}) {
        common += run.out.find(w) != std::string::npos;
    }
    CHECK(common >= 4);
    CHECK(run.out.size() > 100);  // 40 tokens of text, not an early stop

    // Perplexity within 25% of FP32 (on 30 documents of the excerpt).
    const Tokenizer tok = Tokenizer::from_file(data_path("tok512.model"));
    const double fp32 = perplexity_of(load_model(data_path("stories260K.bin")), tok);
    const Model q4_model = load_model(out);
    const double q4 = perplexity_of(q4_model, tok);
    CAPTURE(fp32);
    CAPTURE(q4);
    CHECK(q4 > fp32 * 0.98);
    CHECK(q4 < fp32 * 1.25);

    // Version 2 by default (matrices in interleaved row blocks); --file-version 1
    // writes the row-major version 1.
    CHECK(read_text(out).find(R"("nibble_version":"2")") != std::string::npos);
    CHECK(q4_model.layers[0].wq.view.layout.interleave == kInterleaveRows);
    const std::string v1 = temp_path("out_v1.nbl");
    REQUIRE(run_nibble_streams("quantize '" + data_path("stories260K.bin") + "' '" + v1 +
                               "' --format q4 --group-size 32 --file-version 1")
                .exit_code == 0);
    CHECK(read_text(v1).find(R"("nibble_version":"1")") != std::string::npos);
    CHECK(load_model(v1).layers[0].wq.view.layout.interleave == 1);

    const CliStreams ppl = run_nibble_streams(
        "perplexity -m '" + out + "' -f '" + data_path("corpus/tinystories_sample.txt") + "' -t 1");
    CHECK(ppl.exit_code == 0);
    CHECK(ppl.out.find("perplexity") != std::string::npos);
}

TEST_CASE("bad options exit with code 2 and one line naming the option") {
    // (built with append: GCC 12 warns falsely on "'" + std::string temporaries)
    std::string in = "'";
    in.append(data_path("stories260K.bin")).append("' '").append(temp_path("bad.nbl")).append("'");
    const std::pair<std::string, std::string> cases[] = {
        {"--format q5", "--format"},
        {"--group-size 48", "--group-size"},
        {"--keep token_embd.weight", "--keep"},
        {"--keep token_embd.weight=q7", "--keep"},
        {"--keep 'blk.99.*=q8'", "--keep"},
        {"--rule best", "--rule"},
        {"--format q8 --double-quant", "--double-quant"},
    };
    for (const auto& c : cases) {  // (CAPTURE of a structured binding: clang 14 rejects it)
        const std::string& options = c.first;
        const std::string& name = c.second;
        CAPTURE(options);
        const CliStreams r = run_nibble_streams("quantize " + in + " " + options);
        CAPTURE(r.err);
        CHECK(r.exit_code == 2);
        CHECK(r.err.rfind("nibble quantize: " + name, 0) == 0);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
    CHECK_FALSE(std::filesystem::exists(temp_path("bad.nbl")));
    // A missing input is a runtime error (exit 1) naming the file.
    const CliStreams missing =
        run_nibble_streams("quantize /nonexistent/model.bin " + temp_path("x.nbl"));
    CHECK(missing.exit_code == 1);
    CHECK(missing.err.find("/nonexistent/model.bin") != std::string::npos);
}

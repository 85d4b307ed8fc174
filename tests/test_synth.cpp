// nibble synth: random-weight models in real architectures' shapes, streamed into
// nibble files. Checks the file loads with the right shapes, formats and
// tokenizer, that the weights have the asked-for statistics, that the bytes
// depend only on the seed (not on chunking), and that bad options fail cleanly.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "kernels/matmul.h"
#include "models/loader.h"
#include "models/synth.h"
#include "test_data.h"
#include "tokenizer/tokenizer.h"

using namespace nibble;
using nibble::test::data_path;
using nibble::test::read_text;

namespace {

std::filesystem::path temp_dir() {
    return nibble::test::temp_dir("nibble_test_synth");
}

using nibble::test::CliOutcome;

// Runs `nibble ARGS`, capturing stderr only.
CliOutcome run_nibble(const std::string& args) {
    return nibble::test::run_nibble(args, nibble::test::Capture::stderr_only);
}

std::string synth_file(const std::string& name, const std::string& extra) {
    std::string path = (temp_dir() / name).string();
    const CliOutcome o = run_nibble("synth --shape stories15m --tokenizer " +
                                    data_path("tokenizer.model") + " -o " + path + " " + extra);
    INFO(o.text);
    REQUIRE(o.exit_code == 0);
    return path;
}

struct Moments {
    double mean = 0.0, sd = 0.0;
};

Moments dequantized_moments(const Tensor& t) {
    std::vector<float> row(size_t(t.cols()));
    double s = 0.0, ss = 0.0;
    for (int64_t r = 0; r < t.rows(); ++r) {
        dequantize_row(t.view, r, row.data());
        for (float v : row) {
            s += v;
            ss += double(v) * v;
        }
    }
    const double n = double(t.rows() * t.cols());
    Moments m;
    m.mean = s / n;
    m.sd = std::sqrt(ss / n - m.mean * m.mean);
    return m;
}

}  // namespace

TEST_CASE("random rows are N(0, stddev^2), reproducible, and differ between rows") {
    constexpr int64_t n = 1 << 20;
    std::vector<float> a(n), b(n), c(n);
    synth_random_row(5, 3, 17, 0.02f, a.data(), n);
    synth_random_row(5, 3, 17, 0.02f, b.data(), n);
    synth_random_row(5, 3, 18, 0.02f, c.data(), n);
    CHECK(a == b);
    CHECK(a != c);
    double s = 0.0, ss = 0.0;
    int64_t within1 = 0, within2 = 0;
    for (float v : a) {
        s += v;
        ss += double(v) * v;
        within1 += std::fabs(v) < 0.02f;
        within2 += std::fabs(v) < 0.04f;
    }
    const double mean = s / n, sd = std::sqrt(ss / n - mean * mean);
    // Standard errors with 2^20 samples: mean 2e-5, sd 1.4e-5, fractions 5e-4.
    CHECK(std::fabs(mean) < 1e-4);
    CHECK(sd == doctest::Approx(0.02).epsilon(0.005));
    CHECK(double(within1) / n == doctest::Approx(0.682689).epsilon(0.005));
    CHECK(double(within2) / n == doctest::Approx(0.954500).epsilon(0.002));
}

TEST_CASE("synth stories15m q4: shapes, formats, tokenizer, weight statistics") {
    const std::string path = synth_file("a.nib", "--seed 7");
    const Model m = load_model(path);
    const SynthShape& shape = find_synth_shape("stories15m");
    CHECK(m.config.dim == 288);
    CHECK(m.config.hidden_dim == 768);
    CHECK(m.config.n_layers == 6);
    CHECK(m.config.n_heads == 6);
    CHECK(m.config.n_kv_heads == 6);
    CHECK(m.config.vocab_size == 32000);
    CHECK(m.config.max_seq_len == 256);
    CHECK(m.config.max_seq_len == shape.config.max_seq_len);
    // The default recipe: q4 g32 linear layers, q8 embedding, shared classifier.
    CHECK(m.token_embedding.format() == WeightFormat::q8);
    CHECK(m.token_embedding.rows() == 32000);
    CHECK(m.output.view.data == m.token_embedding.view.data);
    for (const LayerWeights& l : m.layers) {
        for (const Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
            CHECK(t->format() == WeightFormat::q4);
            CHECK(t->view.layout.group_size == 32);
            CHECK_FALSE(t->view.layout.double_quant);
        }
        CHECK(l.w_gate.rows() == 768);
        CHECK(l.w_down.cols() == 768);
        for (const Tensor* t : {&l.attn_norm, &l.ffn_norm}) {
            REQUIRE(t->format() == WeightFormat::f32);
            CHECK(std::all_of(t->f32(), t->f32() + t->cols(), [](float v) { return v == 1.0f; }));
        }
    }
    CHECK(std::all_of(m.output_norm.f32(), m.output_norm.f32() + 288,
                      [](float v) { return v == 1.0f; }));
    CHECK(m.parameter_count() == 32000 * 288 + 6 * (4 * 288 * 288 + 3 * 288 * 768 + 2 * 288) + 288);

    // The real LLaMA tokenizer is carried.
    CHECK(m.tokenizer_proto == read_text(data_path("tokenizer.model")));
    const Tokenizer tok = Tokenizer::from_serialized_proto(m.tokenizer_proto, path);
    CHECK(tok.vocab_size() == 32000);

    // N(0, 0.02) after quantization: q4 adds noise of about step/sqrt(12) with a
    // step near 2.1 * 0.02 / 8, i.e. sd grows by well under 1%.
    for (const Tensor* t :
         {&m.layers[0].wq, &m.layers[3].w_down, &m.layers[5].w_up, &m.token_embedding}) {
        CAPTURE(t->name);
        const Moments mo = dequantized_moments(*t);
        CHECK(std::fabs(mo.mean) < 5e-4);
        CHECK(mo.sd == doctest::Approx(0.02).epsilon(0.03));
    }
    // Different tensors got different weights.
    std::vector<float> r0(288), r1(288);
    dequantize_row(m.layers[0].wq.view, 0, r0.data());
    dequantize_row(m.layers[0].wk.view, 0, r1.data());
    CHECK(r0 != r1);
}

TEST_CASE("synth: same seed gives the same bytes, another seed other bytes") {
    const std::string a = synth_file("seed7_a.nib", "--seed 7");
    const std::string b = synth_file("seed7_b.nib", "--seed 7 -t 1");
    const std::string c = synth_file("seed8.nib", "--seed 8");
    const std::string ta = read_text(a), tb = read_text(b), tc = read_text(c);
    CHECK(ta.size() > 13000000);
    CHECK(ta == tb);
    REQUIRE(ta.size() == tc.size());
    CHECK(ta != tc);
    // Only the weights differ: the header and tokenizer are the same.
    CHECK(ta.substr(0, 4096) == tc.substr(0, 4096));
}

// A small model of the same structure (vocab 512), quick to write several times.
SynthShape tiny_shape() {
    SynthShape s = find_synth_shape("stories15m");
    s.name = "tiny";
    s.config.dim = 96;
    s.config.hidden_dim = 200;  // not a multiple of any group size: short last group
    s.config.n_layers = 2;
    s.config.n_heads = 4;
    s.config.n_kv_heads = 2;
    s.config.vocab_size = 512;
    s.shared_output = false;
    return s;
}

TEST_CASE("synth: the bytes depend neither on the chunk size nor on the thread count") {
    const SynthShape shape = tiny_shape();
    for (const WeightFormat f : {WeightFormat::q4, WeightFormat::q4a, WeightFormat::nf4,
                                 WeightFormat::q8, WeightFormat::f16}) {
        CAPTURE(format_name(f));
        SynthOptions whole;
        whole.format = f;
        whole.group_size = 64;
        whole.rule = ScaleRule::simple;
        whole.chunk_weights = int64_t(1) << 40;
        SynthOptions pieces = whole;
        pieces.chunk_weights = 1000;  // 10 rows of 96 columns, 5 of 200
        const std::string pa = (temp_dir() / "whole.nib").string();
        const std::string pb = (temp_dir() / "pieces.nib").string();
        omp_set_num_threads(1);
        const SynthResult ra = write_synth_model(shape, whole, "", pa);
        omp_set_num_threads(2);
        const SynthResult rb = write_synth_model(shape, pieces, "", pb);
        omp_set_num_threads(1);
        CHECK(ra.file_bytes == std::filesystem::file_size(pa));
        CHECK(ra.file_bytes == rb.file_bytes);
        CHECK(ra.parameters == rb.parameters);
        CHECK(read_text(pa) == read_text(pb));
        const Model m = load_model(pb);
        CHECK(m.layers[1].w_down.format() == f);
        CHECK(m.layers[1].w_down.cols() == 200);
        CHECK(m.layers[1].wk.rows() == 48);
        CHECK(m.output.format() == (f == WeightFormat::f16 ? f : WeightFormat::q8));
        CHECK(m.output.view.data != m.token_embedding.view.data);
        CHECK(m.tokenizer_proto.empty());
    }
}

TEST_CASE("synth: double quantization and f16") {
    const std::string dq = synth_file("dq.nib", "--format nf4 --group-size 64 --double-quant");
    const Model m = load_model(dq);
    CHECK(m.layers[0].wq.format() == WeightFormat::nf4);
    CHECK(m.layers[0].wq.view.layout.double_quant);
    CHECK(m.layers[0].wq.view.layout.group_size == 64);
    CHECK(m.token_embedding.format() == WeightFormat::q8);
    CHECK(dequantized_moments(m.layers[1].w_gate).sd == doctest::Approx(0.02).epsilon(0.05));

    // nibble's 2-bit format: double-quantized too, embedding and classifier q8.
    const std::string q2 = synth_file("q2.nib", "--format q2 --group-size 64 --double-quant");
    const Model m2 = load_model(q2);
    CHECK(m2.layers[0].wq.format() == WeightFormat::q2);
    CHECK(m2.layers[0].wq.view.layout.double_quant);
    CHECK(m2.token_embedding.format() == WeightFormat::q8);
    CHECK(m2.output.format() == WeightFormat::q8);
    CHECK(dequantized_moments(m2.layers[1].w_gate).sd == doctest::Approx(0.02).epsilon(0.15));

    const std::string f16 = synth_file("f16.nib", "--format f16");
    const Model h = load_model(f16);
    CHECK(h.layers[0].wq.format() == WeightFormat::f16);
    CHECK(h.token_embedding.format() == WeightFormat::f16);
    const Moments mo = dequantized_moments(h.layers[4].w_up);
    CHECK(std::fabs(mo.mean) < 3e-4);
    CHECK(mo.sd == doctest::Approx(0.02).epsilon(0.01));
}

TEST_CASE("synth: the architectures' shapes") {
    const ModelConfig& l7 = find_synth_shape("llama2-7b").config;
    CHECK((l7.dim == 4096 && l7.hidden_dim == 11008 && l7.n_layers == 32 && l7.n_heads == 32 &&
           l7.n_kv_heads == 32 && l7.vocab_size == 32000 && l7.max_seq_len == 4096));
    const ModelConfig& m7 = find_synth_shape("mistral-7b").config;
    CHECK((m7.dim == 4096 && m7.hidden_dim == 14336 && m7.n_layers == 32 && m7.n_kv_heads == 8));
    CHECK(m7.rope_theta == 1e6f);
    const ModelConfig& t1 = find_synth_shape("tinyllama-1.1b").config;
    CHECK((t1.dim == 2048 && t1.hidden_dim == 5632 && t1.n_layers == 22 && t1.n_kv_heads == 4 &&
           t1.max_seq_len == 2048));
    // Parameter counts as published: 6.74 B and 1.10 B.
    int64_t p7 = 0, p1 = 0;
    for (const auto& d : synth_tensor_decls(find_synth_shape("llama2-7b"), {})) {
        p7 += d.layout.rows * d.layout.cols;
    }
    for (const auto& d : synth_tensor_decls(find_synth_shape("tinyllama-1.1b"), {})) {
        p1 += d.layout.rows * d.layout.cols;
    }
    CHECK(p7 == 6738415616);
    CHECK(p1 == 1100048384);
    CHECK_THROWS_AS(find_synth_shape("llama3-8b"), std::invalid_argument);
}

TEST_CASE("synth: the later architectures' shapes have their published parameter counts") {
    // Parameters as the model cards and safetensors headers count them (RoPE
    // factors are computed buffers there, so not counted), and vocabularies.
    struct Published {
        const char* shape;
        int64_t parameters;
        int vocab;
    };
    for (const Published& p :
         {Published{"llama3.2-1b", 1235814400, 128256},
          Published{"llama3.1-8b", 8030261248, 128256},
          Published{"qwen2.5-0.5b", 494032768, 151936}, Published{"qwen2.5-7b", 7615616512, 152064},
          Published{"qwen3-0.6b", 596049920, 151936}, Published{"gemma2-2b", 2614341888, 256000},
          Published{"gemma3-1b", 999885952, 262144}, Published{"phi3-mini", 3821079552, 32064}}) {
        CAPTURE(p.shape);
        const SynthShape& shape = find_synth_shape(p.shape);
        CHECK(shape.config.vocab_size == p.vocab);
        CHECK_NOTHROW(shape.config.validate());
        int64_t n = 0;
        for (const auto& d : synth_tensor_decls(shape, {})) {
            if (d.name.find("rope_") == std::string::npos) n += d.layout.rows * d.layout.cols;
        }
        CHECK(n == p.parameters);
    }
}

TEST_CASE("synth without --tokenizer writes a model without one and says so") {
    const std::string path = (temp_dir() / "no_tokenizer.nib").string();
    const CliOutcome o = run_nibble("synth --shape stories15m --format f16 -o " + path);
    CAPTURE(o.text);
    REQUIRE(o.exit_code == 0);
    CHECK(o.text.find("no --tokenizer") != std::string::npos);
    CHECK(o.text.find(path) != std::string::npos);
    const Model m = load_model(path);
    CHECK(m.tokenizer_proto.empty());
    CHECK(m.config.vocab_size == 32000);
}

TEST_CASE("synth: bad options give one line and exit code 2; bad files exit 1") {
    const std::string out = (temp_dir() / "never.nib").string();
    const std::string tok = " --tokenizer " + data_path("tokenizer.model");
    struct Case {
        std::string args;
        int code;
        std::string message;
    };
    const std::vector<Case> cases{
        {"synth --shape llama9 -o " + out + tok, 2, "--shape"},
        {"synth -o " + out + tok, 2, "--shape"},
        {"synth --shape stories15m" + tok, 2, "--output"},
        {"synth --shape stories15m --format q5 -o " + out + tok, 2, "--format"},
        {"synth --shape stories15m --group-size 48 -o " + out + tok, 2, "--group-size"},
        {"synth --shape stories15m --format q8 --double-quant -o " + out + tok, 2,
         "--double-quant"},
        {"synth --shape stories15m --rule best -o " + out + tok, 2, "--rule"},
        {"synth --shape stories15m --tokenizer /nonexistent/tok.model -o " + out, 1,
         "/nonexistent/tok.model"},
        {"synth --shape stories15m --tokenizer " + data_path("tok512.model") + " -o " + out, 1,
         "512"},
        {"synth --shape stories15m -o /nonexistent_dir/x.nib" + tok, 1, "/nonexistent_dir/x.nib"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.args);
        const CliOutcome o = run_nibble(c.args);
        CAPTURE(o.text);
        CHECK(o.exit_code == c.code);
        CHECK(o.text.find(c.message) != std::string::npos);
        CHECK(std::count(o.text.begin(), o.text.end(), '\n') == 1);
    }
    CHECK_FALSE(std::filesystem::exists(out));
}

// The quantization pipeline: recipes (default q8 embedding/output, --keep
// overrides, norms f32), recipe errors, and the exact size effect of double
// quantization on a written file.
#include <doctest/doctest.h>
#include <omp.h>

#include <cstring>
#include <filesystem>

#include "models/loader.h"
#include "models/nibble_file.h"
#include "models/quantize_model.h"
#include "test_data.h"
#include "test_models.h"

using namespace nibble;
using nibble::test::data_path;
using nibble::test::stories260k;

namespace {

std::string temp_path(const std::string& name) {
    return (nibble::test::temp_dir("nibble_test_quantize_model") / name).string();
}

QuantizeRecipe recipe(WeightFormat f, int group, bool dq,
                      const std::vector<std::string>& keep = {}) {
    QuantizeRecipe r;
    r.format = f;
    r.group_size = group;
    r.double_quant = dq;
    for (const auto& k : keep) r.keep.push_back(parse_keep_rule(k));
    return r;
}

void check_invalid(const std::function<void()>& f, const std::string& prefix) {
    try {
        f();
        FAIL("no exception");
    } catch (const std::invalid_argument& e) {
        CAPTURE(e.what());
        CHECK(std::string(e.what()).rfind(prefix, 0) == 0);
    }
}

uint64_t header_length(const std::string& path) {
    const std::string bytes = nibble::test::read_text(path);
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    return n;
}

}  // namespace

TEST_CASE("default recipe: 4-bit linear layers, q8 embedding and output, f32 norms") {
    const QuantizeResult q = quantize_model(stories260k(), recipe(WeightFormat::q4, 32, false));
    const Model& m = q.model;
    CHECK(m.token_embedding.format() == WeightFormat::q8);
    CHECK(m.token_embedding.view.layout.group_size == 32);
    CHECK(m.output.view.data == m.token_embedding.view.data);  // still shared
    CHECK(m.output_norm.format() == WeightFormat::f32);
    for (const LayerWeights& l : m.layers) {
        CHECK(l.attn_norm.format() == WeightFormat::f32);
        CHECK(l.ffn_norm.format() == WeightFormat::f32);
        for (const Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
            CHECK(t->format() == WeightFormat::q4);
            CHECK(t->view.layout.group_size == 32);
        }
    }
    // Norms are copied exactly; the report covers every tensor.
    CHECK(std::memcmp(m.output_norm.view.data, stories260k().output_norm.view.data, 64 * 4) == 0);
    REQUIRE(q.tensors.size() == stories260k().tensors().size());
    for (const TensorReport& t : q.tensors) {
        CAPTURE(t.name);
        if (t.layout.format == WeightFormat::f32) {
            CHECK(t.rel_rms == 0.0);
        } else if (t.layout.format == WeightFormat::q8) {
            CHECK(t.rel_rms > 0.0);
            CHECK(t.rel_rms < 0.01);
        } else {
            CHECK(t.rel_rms > 0.03);
            CHECK(t.rel_rms < 0.12);
        }
    }
    CHECK(q.tensors.back().shared);
    CHECK(q.weight_bytes == m.weight_bytes());
    CHECK(q.parameters == stories260k().parameter_count());
    CHECK(q.linear_bits_per_weight() > 4.5);
    CHECK(q.linear_bits_per_weight() < 5.0);

    // Without the default exception everything but the norms is 4-bit.
    QuantizeRecipe plain = recipe(WeightFormat::nf4, 64, false);
    plain.q8_embedding_and_output = false;
    const Model p = quantize_model(stories260k(), plain).model;
    CHECK(p.token_embedding.format() == WeightFormat::nf4);
    CHECK(p.output.view.data == p.token_embedding.view.data);
    // q8 as the main format: no exception needed, all q8.
    const Model q8 = quantize_model(stories260k(), recipe(WeightFormat::q8, 128, true)).model;
    CHECK(q8.layers[0].wq.format() == WeightFormat::q8);
    CHECK_FALSE(q8.layers[0].wq.view.layout.double_quant);  // dq is for 4-bit only
}

TEST_CASE("--keep overrides: globs, regexes, last match wins, norms stay f32") {
    const QuantizeResult q = quantize_model(
        stories260k(),
        recipe(WeightFormat::q4a, 64, true,
               {"*=q4a", "blk.*.ffn_down.weight=q8", R"(re:blk\.[13]\.attn_[qk]\.weight=nf4)",
                "output.weight=q4", "token_embd.weight=f32"}));
    const Model& m = q.model;
    CHECK(m.token_embedding.format() == WeightFormat::f32);
    CHECK(m.output.format() == WeightFormat::q4);  // no longer shared
    CHECK(m.output.view.data != m.token_embedding.view.data);
    CHECK(m.output.view.layout.double_quant);
    for (int l = 0; l < int(m.layers.size()); ++l) {
        const LayerWeights& w = m.layers[size_t(l)];
        CAPTURE(l);
        CHECK(w.w_down.format() == WeightFormat::q8);
        CHECK_FALSE(w.w_down.view.layout.double_quant);
        CHECK(w.wq.format() == (l == 1 || l == 3 ? WeightFormat::nf4 : WeightFormat::q4a));
        CHECK(w.wk.format() == (l == 1 || l == 3 ? WeightFormat::nf4 : WeightFormat::q4a));
        CHECK(w.wv.format() == WeightFormat::q4a);
        CHECK(w.wv.view.layout.double_quant);
        CHECK(w.attn_norm.format() == WeightFormat::f32);  // "*" does not reach the norms
    }
    // Last matching rule wins.
    const Model last =
        quantize_model(stories260k(), recipe(WeightFormat::q4, 32, false,
                                             {"blk.0.*=q8", "blk.0.attn_v.weight=nf4"}))
            .model;
    CHECK(last.layers[0].wq.format() == WeightFormat::q8);
    CHECK(last.layers[0].wv.format() == WeightFormat::nf4);
    CHECK(last.layers[1].wq.format() == WeightFormat::q4);
    // FORMAT:GROUP sets the group size of the matching tensors alone.
    const Model grouped =
        quantize_model(stories260k(),
                       recipe(WeightFormat::q4, 32, true,
                              {"blk.0.ffn_down.weight=q2:64", "output.weight=q3:64"}))
            .model;
    CHECK(grouped.layers[0].w_down.format() == WeightFormat::q2);
    CHECK(grouped.layers[0].w_down.view.layout.group_size == 64);
    CHECK(grouped.output.format() == WeightFormat::q3);
    CHECK(grouped.output.view.layout.group_size == 64);
    CHECK(grouped.layers[1].w_down.view.layout.group_size == 32);
    // The saved file carries the mixed formats.
    const std::string path = temp_path("mixed.nbl");
    save_nibble_file(m, path);
    const Model loaded = load_model(path);
    CHECK(loaded.layers[1].wq.format() == WeightFormat::nf4);
    CHECK(loaded.output.format() == WeightFormat::q4);
}

TEST_CASE("recipe errors name the option") {
    check_invalid([] { parse_keep_rule("token_embd.weight"); }, "--keep: expected");
    check_invalid([] { parse_keep_rule("=q8"); }, "--keep: expected");
    check_invalid([] { parse_keep_rule("output.weight="); }, "--keep: expected");
    check_invalid([] { parse_keep_rule("output.weight=q5"); }, "--keep: unknown format 'q5'");
    check_invalid([] { parse_keep_rule("re:blk.(=q8"); }, "--keep: bad pattern");
    check_invalid([] { parse_keep_rule("output.weight=q2:48"); }, "--keep: group size '48'");
    check_invalid([] { parse_keep_rule("output.weight=q2:"); }, "--keep: group size ''");
    check_invalid([] { parse_keep_rule("output.weight=q6k:64"); }, "--keep: q6k in");
    check_invalid([] { parse_keep_rule("output.weight=f16:64"); }, "--keep: f16 in");
    check_invalid([] { quantize_model(stories260k(), recipe(WeightFormat::q4, 48, false)); },
                  "--group-size: 48");
    check_invalid(
        [] { quantize_model(stories260k(), recipe(WeightFormat::q4, 32, false, {"blk.9.*=q8"})); },
        "--keep: pattern 'blk.9.*' matches no");
    check_invalid(
        [] {
            quantize_model(stories260k(),
                           recipe(WeightFormat::q4, 32, false, {"*_norm.weight=q8"}));
        },
        "--keep: pattern");
    // A glob's '.' is literal.
    CHECK(parse_keep_rule("blk.*.attn_q.weight=q8").matches("blk.12.attn_q.weight"));
    CHECK_FALSE(parse_keep_rule("blk.*.attn_q.weight=q8").matches("blkX3.attn_q.weight"));
    CHECK(parse_keep_rule("blk.?.ffn_*=q8").matches("blk.3.ffn_up.weight"));
    CHECK_FALSE(parse_keep_rule("blk.?.ffn_*=q8").matches("blk.13.ffn_up.weight"));
}

TEST_CASE("double quantization changes the file by exactly the predicted bytes") {
    for (WeightFormat f : {WeightFormat::q4, WeightFormat::q4a, WeightFormat::nf4}) {
        for (int g : {32, 64, 128}) {
            CAPTURE(format_name(f));
            CAPTURE(g);
            const QuantizeResult plain = quantize_model(stories260k(), recipe(f, g, false));
            const QuantizeResult dq = quantize_model(stories260k(), recipe(f, g, true));
            // Prediction from the layouts alone: per stored tensor, the padded blob
            // size with and without double quantization.
            int64_t predicted = 0;
            size_t weight_predicted = 0;
            for (const Tensor* t : plain.model.tensors()) {
                if (t == &plain.model.output) continue;  // shared: stored once
                const PackedLayout& l = t->view.layout;
                const PackedLayout with =
                    make_layout(l.format, l.rows, l.cols, l.group_size, is_4bit(l.format));
                predicted += int64_t(align_up(l.total_bytes, kSectionAlign)) -
                             int64_t(align_up(with.total_bytes, kSectionAlign));
                weight_predicted += l.total_bytes - with.total_bytes;
            }
            CHECK(predicted > 0);
            CHECK(plain.weight_bytes - dq.weight_bytes == weight_predicted);
            const std::string a = temp_path("plain.nbl"), b = temp_path("dq.nbl");
            save_nibble_file(plain.model, a);
            save_nibble_file(dq.model, b);
            const int64_t size_a = int64_t(std::filesystem::file_size(a));
            const int64_t size_b = int64_t(std::filesystem::file_size(b));
            const int64_t header_a = int64_t(header_length(a)),
                          header_b = int64_t(header_length(b));
            // Data sections differ by exactly the prediction; the JSON header only by
            // the spelling of the flags and offsets.
            CHECK((size_a - 8 - header_a) - (size_b - 8 - header_b) == predicted);
            CHECK(size_a - size_b == predicted + (header_a - header_b));
        }
    }
}

TEST_CASE("every input the loader reads can be quantized") {
    for (const char* input : {"stories260K.bin", "stories260K.gguf", "stories260K_q80.bin"}) {
        CAPTURE(input);
        const Model source = load_model(data_path(input));
        const QuantizeResult q = quantize_model(source, recipe(WeightFormat::q4, 32, false));
        const std::string path = temp_path("from_input.nbl");
        save_nibble_file(q.model, path);
        const Model loaded = load_model(path);
        CHECK(loaded.layers[0].wq.format() == WeightFormat::q4);
        // Requantizing a nibble file with the same recipe copies every blob.
        const QuantizeResult again = quantize_model(loaded, recipe(WeightFormat::q4, 32, false));
        for (const auto& t : again.tensors) CHECK(t.rel_rms == 0.0);
    }
}

TEST_CASE("the streaming pipeline writes the same file as save_nibble_file") {
    Model source = load_model(data_path("stories260K.bin"));
    source.tokenizer_proto = nibble::test::read_text(data_path("tok512.model"));
    for (const QuantizeRecipe& r :
         {recipe(WeightFormat::q4, 32, false), recipe(WeightFormat::q4a, 64, true),
          recipe(WeightFormat::nf4, 32, true, {"output.weight=q4"})}) {
        const QuantizeResult in_memory = quantize_model(source, r);
        const std::string a = temp_path("memory.nbl"), b = temp_path("stream.nbl");
        save_nibble_file(in_memory.model, a);
        const QuantizeResult streamed =
            quantize_model_to_file(source, r, b, source.tokenizer_proto);
        CHECK(nibble::test::read_text(a) == nibble::test::read_text(b));
        CHECK(streamed.weight_bytes == in_memory.weight_bytes);
        REQUIRE(streamed.tensors.size() == in_memory.tensors.size());
        for (size_t i = 0; i < streamed.tensors.size(); ++i) {
            CHECK(streamed.tensors[i].rel_rms == in_memory.tensors[i].rel_rms);
            CHECK(streamed.tensors[i].shared == in_memory.tensors[i].shared);
        }
        CHECK_FALSE(std::filesystem::exists(b + ".tmp"));
    }
}

TEST_CASE("row slices quantized in parallel equal quantize_matrix on the whole matrix") {
    // 520 x 530 Gaussian-ish weights with a few outlier columns: big enough for the
    // sliced path, a short last slice (520 = 8 x 64 + 8) and a short last group.
    const int64_t rows = 520, cols = 530;
    std::vector<float> w(size_t(rows * cols));
    uint64_t state = 12345;
    for (size_t i = 0; i < w.size(); ++i) {
        float sum = 0.0f;  // Irwin-Hall: sum of 4 uniforms, centred
        for (int k = 0; k < 4; ++k) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            sum += float(state >> 40) / float(1 << 24);
        }
        w[i] = (sum - 2.0f) * (i % size_t(cols) == 7 ? 20.0f : 1.0f);
    }
    omp_set_num_threads(2);
    // Not a structured binding: CAPTURE's lambda captures f, which clang 14
    // (clang-tidy) rejects for a binding.
    for (const auto& format_group :
         {std::pair{WeightFormat::q4, 32}, std::pair{WeightFormat::q4a, 64},
          std::pair{WeightFormat::nf4, 256}, std::pair{WeightFormat::q8, 128}}) {
        const WeightFormat f = format_group.first;
        const int g = format_group.second;
        CAPTURE(format_name(f));
        const PackedLayout layout = make_layout(f, rows, cols, g);
        const std::vector<uint8_t> whole = quantize_matrix(w.data(), layout);
        std::vector<uint8_t> sliced(layout.total_bytes, 0);
        quantize_matrix_parallel(w.data(), layout, sliced.data());
        CHECK(whole == sliced);
    }
    omp_set_num_threads(1);
}

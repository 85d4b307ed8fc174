// nibble model files: stories260K saved in f32 and every quantized format and
// loaded back by mmap -- same bytes, pointers into the mapping, same logits bit for
// bit, tokenizer carried.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/forward.h"
#include "kernels/interleave.h"
#include "models/loader.h"
#include "models/nibble_file.h"
#include "models/quantize_model.h"
#include "test_data.h"
#include "tokenizer/tokenizer.h"

using namespace nibble;
using nibble::test::data_path;

namespace {

std::string temp_path(const std::string& name) {
    return (nibble::test::temp_dir("nibble_test_nibble_file") / name).string();
}

Model stories_with_tokenizer() {
    Model m = load_model(data_path("stories260K.bin"));
    m.tokenizer_proto = Tokenizer::from_file(data_path("tok512.model")).serialized_proto();
    return m;
}

// All logits of BOS + "Once upon a time there was" (and a few more tokens).
std::vector<float> logits_of(const Model& model) {
    const std::vector<int32_t> ids{1, 403, 407, 261, 378, 439, 300, 261, 407, 418, 274, 313};
    std::vector<BatchToken> batch;
    for (size_t i = 0; i < ids.size(); ++i) batch.push_back({ids[i], int32_t(i), 0, true});
    RuntimeOptions ro;
    ro.context = 32;
    ro.max_batch = 16;
    InferenceState state(model, ro);
    const float* logits = state.forward(batch);
    return std::vector<float>(logits, logits + ids.size() * size_t(model.config.vocab_size));
}

// Saves `model` as version 2 (interleaved where it can be), reloads it through a
// mapping we hold, and checks everything.
void check_round_trip(const Model& model, const std::string& file_name) {
    const std::string path = temp_path(file_name);
    save_nibble_file(model, path);  // (version 2 is the default)
    CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
    auto file = MappedFile::open(path);
    REQUIRE(is_nibble_file(*file));
    const Model loaded = load_nibble_file(file);
    CHECK(loaded.source_format == "nibble");
    CHECK(loaded.config.dim == model.config.dim);
    CHECK(loaded.config.norm_eps == model.config.norm_eps);
    CHECK(loaded.config.rope_theta == model.config.rope_theta);
    CHECK(loaded.tokenizer_proto == model.tokenizer_proto);

    const auto a = model.tensors();
    const auto b = loaded.tensors();
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
        CAPTURE(a[i]->name);
        CHECK(b[i]->name == a[i]->name);
        const PackedLayout& la = a[i]->view.layout;
        const PackedLayout& lb = b[i]->view.layout;
        CHECK(lb.format == la.format);
        CHECK(lb.group_size == la.group_size);
        CHECK(lb.double_quant == la.double_quant);
        REQUIRE(lb.total_bytes == la.total_bytes);
        // Version 2: every matrix that can be is stored interleaved.
        CHECK(lb.interleave == (can_interleave(la) ? kInterleaveRows : 1));
        // Not copied: the tensor lies in the mapping, 64-byte aligned.
        CHECK(file->contains(b[i]->view.data, lb.total_bytes));
        CHECK(reinterpret_cast<uintptr_t>(b[i]->view.data) % kSectionAlign == 0);
        // The same bytes once the codes are back in the in-memory (row-major) order.
        std::vector<uint8_t> back(lb.total_bytes);
        convert_interleave(lb, b[i]->view.data, la, back.data());
        CHECK(std::memcmp(a[i]->view.data, back.data(), la.total_bytes) == 0);
    }
    // A shared classifier is stored once and still shared after loading.
    const bool shared = model.output.view.data == model.token_embedding.view.data;
    CHECK((loaded.output.view.data == loaded.token_embedding.view.data) == shared);

    const std::vector<float> expected = logits_of(model);
    const std::vector<float> got = logits_of(loaded);
    REQUIRE(expected.size() == got.size());
    CHECK(std::memcmp(expected.data(), got.data(), expected.size() * sizeof(float)) == 0);

    // load_model detects the format from the content.
    const Model via_loader = load_model(path);
    CHECK(via_loader.source_format == "nibble");
    CHECK(via_loader.weight_bytes() == model.weight_bytes());
}

}  // namespace

TEST_CASE("f32 stories260K round-trips through a nibble file") {
    const Model model = stories_with_tokenizer();
    check_round_trip(model, "f32.nbl");
    // Unpadded f32 tensors are plain safetensors F32 entries with their real shape.
    const std::string path = temp_path("f32.nbl");
    const std::string bytes = nibble::test::read_text(path);
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    CHECK((8 + n) % 64 == 0);
    const auto header = nlohmann::json::parse(bytes.substr(8, n));
    CHECK(header["token_embd.weight"]["dtype"] == "F32");
    CHECK(header["token_embd.weight"]["shape"] == nlohmann::json::array({512, 64}));
    CHECK(header["blk.0.attn_norm.weight"]["shape"] == nlohmann::json::array({64}));
    CHECK_FALSE(header.contains("output.weight"));  // shared classifier stored once
    CHECK(header["tokenizer.sentencepiece"]["dtype"] == "U8");
    const std::string magic = R"({"__metadata__":{"format":"nibble","nibble_version":"2",)";
    CHECK(bytes.compare(8, magic.size(), magic) == 0);
    // The file is 8 + header + tensors, nothing else.
    const auto& meta = header["__metadata__"];
    CHECK(meta["nibble.shared_output"] == "true");
    CHECK(std::stoul(meta["nibble.tokenizer_bytes"].get<std::string>()) ==
          Tokenizer::from_file(data_path("tok512.model")).serialized_proto().size());
}

TEST_CASE("quantized stories260K round-trips bit for bit in every format") {
    const Model source = stories_with_tokenizer();
    struct Case {
        WeightFormat format;
        int group;
        bool dq;
    };
    const Case cases[] = {
        {WeightFormat::q4, 32, false},  {WeightFormat::q4, 64, true},
        {WeightFormat::q4a, 32, true},  {WeightFormat::q4a, 128, false},
        {WeightFormat::nf4, 64, false}, {WeightFormat::nf4, 256, true},
        {WeightFormat::q8, 32, false},  {WeightFormat::f16, 32, false},
    };
    for (const Case& c : cases) {
        QuantizeRecipe recipe;
        recipe.format = c.format;
        recipe.group_size = c.group;
        recipe.double_quant = c.dq;
        const std::string name = std::string(format_name(c.format)) + "_g" +
                                 std::to_string(c.group) + (c.dq ? "_dq" : "");
        CAPTURE(name);
        const QuantizeResult q = quantize_model(source, recipe);
        check_round_trip(q.model, name + ".nbl");
    }
    // The classifier unshared (different format than the embedding) is stored twice.
    QuantizeRecipe recipe;
    recipe.keep.push_back(parse_keep_rule("output.weight=nf4"));
    const QuantizeResult q = quantize_model(source, recipe);
    REQUIRE(q.model.output.view.data != q.model.token_embedding.view.data);
    check_round_trip(q.model, "unshared.nbl");
}

TEST_CASE("the carried tokenizer works without a tokenizer file") {
    const Model source = stories_with_tokenizer();
    const std::string path = temp_path("tok.nbl");
    save_nibble_file(quantize_model(source, QuantizeRecipe{}).model, path);
    const Model loaded = load_model(path);
    const Tokenizer a = Tokenizer::from_file(data_path("tok512.model"));
    const Tokenizer b = Tokenizer::from_serialized_proto(loaded.tokenizer_proto, path);
    CHECK(b.vocab_size() == 512);
    CHECK(b.encode("Once upon a time, a little dog", true) ==
          a.encode("Once upon a time, a little dog", true));
}

TEST_CASE("a model without a tokenizer is written and read without one") {
    const Model source = load_model(data_path("stories260K.bin"));
    REQUIRE(source.tokenizer_proto.empty());
    const std::string path = temp_path("notok.nbl");
    save_nibble_file(source, path);
    const Model loaded = load_model(path);
    CHECK(loaded.tokenizer_proto.empty());
}

TEST_CASE("the streaming writer refuses out-of-order or incomplete writes") {
    const Model m = load_model(data_path("stories260K.bin"));
    std::vector<NibbleTensorDecl> decls;
    for (const Tensor* t : m.tensors()) {
        if (t != &m.output) decls.push_back({t->name, t->view.layout});
    }
    const std::string path = temp_path("partial.nbl");
    {
        NibbleFileWriter w(path, m.config, decls, true, 0);
        CHECK_THROWS_AS(w.write_tensor("blk.0.attn_q.weight", m.layers[0].wq.view.data,
                                       m.layers[0].wq.view.layout.total_bytes),
                        std::runtime_error);
        w.write_tensor("token_embd.weight", m.token_embedding.view.data,
                       m.token_embedding.view.layout.total_bytes);
        CHECK_THROWS_AS(w.write_tensor("blk.0.attn_norm.weight", m.token_embedding.view.data, 4),
                        std::runtime_error);
        CHECK_THROWS_AS(w.finish(), std::runtime_error);
    }
    // Nothing half-written is left behind.
    CHECK_FALSE(std::filesystem::exists(path));
    CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST_CASE("a version-1 (row-major) and a version-2 (interleaved) file give the same logits") {
    const Model source = stories_with_tokenizer();
    for (const WeightFormat f : {WeightFormat::q4, WeightFormat::q8, WeightFormat::iq4nl}) {
        QuantizeRecipe recipe;
        recipe.format = f;
        recipe.double_quant = f == WeightFormat::q4;
        const QuantizeResult q = quantize_model(source, recipe);
        const std::string name = format_name(f);
        CAPTURE(name);
        const std::string v1 = temp_path(name + "_v1.nbl"), v2 = temp_path(name + "_v2.nbl");
        set_nibble_write_version(1);
        save_nibble_file(q.model, v1);
        set_nibble_write_version(2);
        save_nibble_file(q.model, v2);
        CHECK(nibble::test::read_text(v1).find(R"("nibble_version":"1")") != std::string::npos);
        const Model a = load_model(v1), b = load_model(v2);
        CHECK(a.layers[0].wq.view.layout.interleave == 1);
        CHECK(b.layers[0].wq.view.layout.interleave == kInterleaveRows);
        const std::vector<float> la = logits_of(a), lb = logits_of(b);
        REQUIRE(la.size() == lb.size());
        CHECK(std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)) == 0);
        // Written again from the interleaved model: version 1 is row-major again.
        const std::string again = temp_path(name + "_again.nbl");
        set_nibble_write_version(1);
        save_nibble_file(b, again);
        set_nibble_write_version(2);
        CHECK(nibble::test::read_text(again) == nibble::test::read_text(v1));
    }
    CHECK_THROWS_AS(set_nibble_write_version(3), std::invalid_argument);
}

// load_gguf: stories260K.gguf gives the same weights as stories260K.bin, bit for
// bit, viewed in place; F16 copies (written here) keep matrices as f16 views and
// widen norms to f32; unsupported tensor types and broken files are refused.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "gguf_rewrite.h"
#include "kernels/fp16.h"
#include "models/gguf.h"
#include "models/gguf_reader.h"
#include "models/loader.h"
#include "test_data.h"
#include "tokenizer/tokenizer.h"

using namespace nibble;

namespace {

const std::string kData = NIBBLE_DATA_DIR;
const std::string kGguf = kData + "/stories260K.gguf";
const std::string kBin = kData + "/stories260K.bin";

std::string temp_path(const std::string& name) {
    return (nibble::test::temp_dir("nibble_test_gguf_model") / name).string();
}

using test::read_bytes;

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes, size_t n) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(n));
    REQUIRE(out.good());
}

// stories260K.gguf rewritten: `type_of(name)` gives each tensor's new GGML
// type (0 F32, 1 F16, 9 Q8_1 filled with zeros), -1 drops it.
std::string rewrite_gguf(const std::string& name,
                         const std::function<int(const std::string&)>& type_of) {
    std::string path = temp_path(name);
    test::rewrite_gguf(kGguf, path, [&](const GgufTensorInfo& t, const float* src) {
        test::Rewrite r;
        r.type = type_of(t.name);
        const size_t n = size_t(t.n_elements());
        if (r.type == 0) {
            r.data.assign(t.data, t.data + t.n_bytes);
        } else if (r.type == 1) {
            for (size_t i = 0; i < n; ++i) test::append<uint16_t>(r.data, fp32_to_fp16(src[i]));
        } else if (r.type > 0) {
            r.data.resize(n / 32 * 36, 0);  // Q8_1 blocks of 32
        }
        return r;
    });
    return path;
}

void expect_load_error(const std::string& path, const std::string& fragment) {
    bool threw = false;
    try {
        load_model(path);
    } catch (const std::runtime_error& e) {
        threw = true;
        const std::string msg = e.what();
        CHECK_MESSAGE(msg.rfind(path + ": ", 0) == 0, msg);
        CHECK_MESSAGE(msg.find(fragment) != std::string::npos, msg);
    }
    CHECK_MESSAGE(threw, path);
}

}  // namespace

TEST_CASE("stories260K.gguf equals stories260K.bin bit for bit, in place") {
    auto file = MappedFile::open(kGguf);
    const Model g = load_gguf(file);
    const Model b = load_model(kBin);
    CHECK(g.source_format == "gguf");
    CHECK(g.source_path == kGguf);

    const ModelConfig& c = g.config;
    CHECK(c.architecture == "llama");
    CHECK(c.dim == 64);
    CHECK(c.hidden_dim == 172);
    CHECK(c.n_layers == 5);
    CHECK(c.n_heads == 8);
    CHECK(c.n_kv_heads == 4);
    CHECK(c.vocab_size == 512);
    CHECK(c.max_seq_len == 2048);  // the converter's default, not the .bin's 512
    CHECK(c.rope_theta == 10000.0f);
    CHECK(c.norm_eps == 1e-5f);
    CHECK(c.rope_style == RopeStyle::adjacent_pairs);
    CHECK(c.dim == b.config.dim);
    CHECK(c.hidden_dim == b.config.hidden_dim);
    CHECK(c.n_kv_heads == b.config.n_kv_heads);

    const auto gt = g.tensors();
    const auto bt = b.tensors();
    REQUIRE(gt.size() == bt.size());
    REQUIRE(gt.size() == 2 + 5 * 9 + 1);
    for (size_t i = 0; i < gt.size(); ++i) {
        CAPTURE(gt[i]->name);
        CHECK(gt[i]->name == bt[i]->name);
        CHECK(gt[i]->format() == WeightFormat::f32);
        REQUIRE(gt[i]->rows() == bt[i]->rows());
        REQUIRE(gt[i]->cols() == bt[i]->cols());
        const size_t bytes = size_t(gt[i]->rows() * gt[i]->cols()) * 4;
        CHECK(gt[i]->view.layout.total_bytes == bytes);
        CHECK(std::memcmp(gt[i]->view.data, bt[i]->view.data, bytes) == 0);
        // Zero copy for the matrices: the tensor lies inside the mapping's
        // address range (norm vectors are copied, and their pages released).
        const auto* lo = file->data();
        const bool inside = gt[i]->view.data >= lo && gt[i]->view.data + bytes <= lo + file->size();
        CHECK(inside == (gt[i]->rows() > 1));
    }
    // output.weight is a separate copy in this file (not shared).
    CHECK(g.output.view.data != g.token_embedding.view.data);

    // The embedded vocabulary became a tokenizer equal to tok512's.
    REQUIRE_FALSE(g.tokenizer_proto.empty());
    const Tokenizer tok = Tokenizer::from_serialized_proto(g.tokenizer_proto, "gguf");
    const Tokenizer ref = Tokenizer::from_file(kData + "/tok512.model");
    CHECK(tok.vocab_size() == 512);
    for (const char* text : {"Once upon a time", "The cat", "", "Lily's dog ran 42 miles!"}) {
        CHECK(tok.encode(text, true) == ref.encode(text, true));
    }
    CHECK(tok.encode("Once upon a time", true) == std::vector<int32_t>{1, 403, 407, 261, 378});
}

TEST_CASE("load_model detects GGUF") {
    const Model m = load_model(kGguf);
    CHECK(m.source_format == "gguf");
    CHECK(m.parameter_count() > 0);
}

TEST_CASE("F16 GGUF: matrices stay f16 in place, norms become f32") {
    const std::string path = rewrite_gguf("stories_f16.gguf", [](const std::string&) { return 1; });
    auto file = MappedFile::open(path);
    const Model h = load_gguf(file);
    const Model f = load_model(kBin);
    const auto ht = h.tensors();
    const auto ft = f.tensors();
    REQUIRE(ht.size() == ft.size());
    for (size_t i = 0; i < ht.size(); ++i) {
        CAPTURE(ht[i]->name);
        const Tensor& t = *ht[i];
        const bool is_norm = t.rows() == 1;
        const size_t n = size_t(t.rows() * t.cols());
        const float* ref = ft[i]->f32();
        if (is_norm) {
            REQUIRE(t.format() == WeightFormat::f32);
            CHECK_FALSE(file->contains(t.view.data, 1));  // converted copy
            for (size_t k = 0; k < n; ++k) CHECK(t.f32()[k] == round_to_fp16(ref[k]));
        } else {
            REQUIRE(t.format() == WeightFormat::f16);
            CHECK(t.view.layout.total_bytes == n * 2);
            CHECK(file->contains(t.view.data, n * 2));  // zero copy
            size_t mismatches = 0;
            for (size_t k = 0; k < n; ++k) {
                uint16_t bits;
                std::memcpy(&bits, t.view.data + 2 * k, 2);
                mismatches += bits != fp32_to_fp16(ref[k]);
            }
            CHECK(mismatches == 0);
        }
    }
}

TEST_CASE("GGUF tokenizer.ggml.add_bos_token and eot_token_id: no BOS, EOT ends generation") {
    const Model plain = load_model(kGguf);
    CHECK(plain.generation.add_bos_token);
    CHECK(plain.generation.extra_eos_ids.empty());
    test::ExtraMetadata extra;
    extra.add_bool("tokenizer.ggml.add_bos_token", false);
    extra.add_u32("tokenizer.ggml.eot_token_id", 300);
    const std::string path = temp_path("stories_settings.gguf");
    test::rewrite_gguf(
        kGguf, path,
        [](const GgufTensorInfo& t, const float*) {
            return test::Rewrite{0, std::vector<uint8_t>(t.data, t.data + t.n_bytes)};
        },
        extra);
    const Model m = load_model(path);
    CHECK_FALSE(m.generation.add_bos_token);
    CHECK(m.generation.extra_eos_ids == std::vector<int32_t>{300});
    Tokenizer t = Tokenizer::from_serialized_proto(m.tokenizer_proto, path);
    apply_generation_settings(m, t);
    Tokenizer base = Tokenizer::from_serialized_proto(plain.tokenizer_proto, kGguf);
    apply_generation_settings(plain, base);
    const auto with_bos = base.encode("Once upon a time", true);
    REQUIRE(with_bos.front() == base.bos_id());
    CHECK(t.encode("Once upon a time", true) ==
          std::vector<int32_t>(with_bos.begin() + 1, with_bos.end()));
    CHECK(t.is_eos(300));
    CHECK(t.is_eos(t.eos_id()));
    CHECK_FALSE(base.is_eos(300));

    test::ExtraMetadata bad;
    bad.add_u32("tokenizer.ggml.eot_token_id", 512);  // the vocab has 512 tokens
    const std::string bad_path = temp_path("stories_bad_eot.gguf");
    test::rewrite_gguf(
        kGguf, bad_path,
        [](const GgufTensorInfo& t, const float*) {
            return test::Rewrite{0, std::vector<uint8_t>(t.data, t.data + t.n_bytes)};
        },
        bad);
    try {
        load_model(bad_path);
        FAIL("an EOT id outside the vocab was accepted");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()).find("tokenizer.ggml.eot_token_id 512 is not a token id") !=
              std::string::npos);
    }
}

TEST_CASE("a missing output.weight shares the token embedding") {
    const std::string path = rewrite_gguf("stories_tied.gguf", [](const std::string& name) {
        return name == "output.weight" ? -1 : 0;
    });
    const Model m = load_model(path);
    CHECK(m.output.name == "output.weight");
    CHECK(m.output.view.data == m.token_embedding.view.data);
    CHECK(m.output.rows() == 512);
}

TEST_CASE("unsupported tensor types and missing tensors are refused") {
    const std::string q8 = rewrite_gguf("stories_q8_1.gguf", [](const std::string& name) {
        return name == "blk.2.attn_k.weight" ? 9 : 0;
    });
    expect_load_error(q8, "tensor blk.2.attn_k.weight has type Q8_1, which nibble cannot import");
    const std::string missing = rewrite_gguf("stories_no_ffn_up.gguf", [](const std::string& name) {
        return name == "blk.3.ffn_up.weight" ? -1 : 0;
    });
    expect_load_error(missing, "blk.3.ffn_up.weight is missing");
}

TEST_CASE("a vocab-only GGUF is not a model") {
    expect_load_error(kData + "/ggml-vocab-llama-spm.gguf", "tensor token_embd.weight is missing");
}

TEST_CASE("truncated and patched model files fail with their path") {
    const auto bytes = read_bytes(kGguf);
    for (size_t cut : {size_t(30), size_t(5000), size_t(14000), size_t(14200), bytes.size() / 2,
                       bytes.size() - 4}) {
        CAPTURE(cut);
        const std::string path = temp_path("cut_" + std::to_string(cut) + ".gguf");
        write_bytes(path, bytes, cut);
        expect_load_error(path, "");
    }
    // A wrong shape: block_count says 6 layers.
    auto patched = bytes;
    const std::string key = "llama.block_count";
    bool found = false;
    for (size_t i = 8; i + key.size() + 8 <= patched.size() && !found; ++i) {
        if (std::memcmp(&patched[i], key.data(), key.size()) == 0) {
            const uint32_t six = 6;
            std::memcpy(&patched[i + key.size() + 4], &six, 4);
            found = true;
        }
    }
    REQUIRE(found);
    const std::string path = temp_path("six_layers.gguf");
    write_bytes(path, patched, patched.size());
    expect_load_error(path, "blk.5.attn_norm.weight is missing");
}

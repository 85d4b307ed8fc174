// Hugging Face checkpoints: stories260K exported here as a HF directory (Q/K
// rows permuted to the rotate_half layout, as transformers' converter does) in
// F32, as shards and in BF16 gives the llama2.c file's logits; tied and untied
// classifiers; a Mistral sliding window shorter than the prompt against a
// direct computation; unsupported architectures and missing files;
// generation_config.json / tokenizer_config.json / chat_template.jinja.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "engine/forward.h"
#include "engine/scheduler.h"
#include "engine/tensor_registry.h"
#include "kernels/fp16.h"
#include "kernels/matmul.h"
#include "kernels/matmul_dispatch.h"
#include "models/loader.h"
#include "models/nibble_file.h"
#include "models/quantize_model.h"
#include "test_data.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

using namespace nibble;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct HfTensor {
    std::string name;
    std::vector<uint64_t> shape;
    std::vector<float> values;
    std::string dtype;         // with raw: the stored dtype
    std::vector<uint8_t> raw;  // bytes as stored (packed GPTQ tensors)
};

uint16_t to_bf16(float v) {  // round to nearest even
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    bits += 0x7fff + ((bits >> 16) & 1);
    return uint16_t(bits >> 16);
}

float bf16_value(float v) {
    const uint32_t bits = uint32_t(to_bf16(v)) << 16;
    float out;
    std::memcpy(&out, &bits, 4);
    return out;
}

void write_safetensors(const fs::path& path, const std::vector<HfTensor>& tensors, bool bf16) {
    json header = json::object();
    std::string data;
    for (const HfTensor& t : tensors) {
        const size_t begin = data.size();
        if (!t.raw.empty()) {
            data.append(reinterpret_cast<const char*>(t.raw.data()), t.raw.size());
            header[t.name] = {
                {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {begin, data.size()}}};
            continue;
        }
        for (float v : t.values) {
            if (bf16) {
                const uint16_t b = to_bf16(v);
                data.append(reinterpret_cast<const char*>(&b), 2);
            } else {
                data.append(reinterpret_cast<const char*>(&v), 4);
            }
        }
        header[t.name] = {{"dtype", bf16 ? "BF16" : "F32"},
                          {"shape", t.shape},
                          {"data_offsets", {begin, data.size()}}};
    }
    header["__metadata__"] = {{"format", "pt"}};
    const std::string text = header.dump();
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    const uint64_t n = text.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << text << data;
    REQUIRE(out.good());
}

// HF's q/k_proj rows from llama2.c's: within each head, HF row i (first half) is
// Meta's row 2i and HF row i + d/2 is Meta's row 2i + 1.
std::vector<float> to_rotate_half(const Tensor& t, int head_dim) {
    std::vector<float> out(size_t(t.rows() * t.cols()));
    const int64_t cols = t.cols(), half = head_dim / 2;
    for (int64_t r = 0; r < t.rows(); ++r) {
        const int64_t h = r / head_dim, i = r % head_dim;
        const int64_t meta = h * head_dim + (i < half ? 2 * i : 2 * (i - half) + 1);
        std::memcpy(&out[size_t(r * cols)], t.f32() + meta * cols, size_t(cols) * 4);
    }
    return out;
}

struct Export {
    bool shards = false;
    bool bf16 = false;
    bool untied = false;
    bool round_to_bf16 = false;  // F32 file holding BF16-rounded values
    int sliding_window = 0;
    std::string architecture = "LlamaForCausalLM";
    // Linear layers as act-order GPTQ (asymmetric, group 32, g_idx); with
    // gptq_reference, the same dequantized weights as F32 instead.
    bool gptq = false, gptq_reference = false;
};

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out.insert(out.end(), p, p + sizeof v);
}

// Round-to-nearest asymmetric 4-bit GPTQ of W[rows][cols] (HF row order) with
// group 32 over the act-order permutation `perm` (group g = columns
// perm[32g .. 32g+32)). Scales keep 6 significant bits, so scale * zero is an
// exact fp16 and the import is exact. Returns the packed tensors; `values`
// becomes the dequantized matrix.
std::vector<HfTensor> gptq_pack(const std::string& prefix, std::vector<float>& values, int64_t rows,
                                int64_t cols, const std::vector<int32_t>& perm) {
    const int64_t groups = cols / 32;
    std::vector<int32_t> g_idx(static_cast<size_t>(cols));
    for (int64_t j = 0; j < cols; ++j) g_idx[size_t(perm[size_t(j)])] = int32_t(j / 32);
    std::vector<uint8_t> q(size_t(rows * cols)), z(size_t(rows * groups));
    std::vector<uint16_t> d(size_t(rows * groups));
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t g = 0; g < groups; ++g) {
            float lo = 1e30f, hi = -1e30f;
            for (int64_t j = 32 * g; j < 32 * g + 32; ++j) {
                const float w = values[size_t(r * cols + perm[size_t(j)])];
                lo = std::min(lo, w), hi = std::max(hi, w);
            }
            uint16_t h = fp32_to_fp16(std::max((hi - lo) / 15.0f, 1e-3f));
            h = uint16_t(h & ~0x1f);  // 6 significant bits
            const float scale = fp16_to_fp32(h);
            const int zero = std::clamp(int(std::lround(-lo / scale)), 1, 15);
            d[size_t(r * groups + g)] = h;
            z[size_t(r * groups + g)] = uint8_t(zero);
            for (int64_t j = 32 * g; j < 32 * g + 32; ++j) {
                const size_t i = size_t(r * cols + perm[size_t(j)]);
                const int code = std::clamp(int(std::lround(values[i] / scale)) + zero, 0, 15);
                q[i] = uint8_t(code);
                values[i] = scale * float(code - zero);
            }
        }
    }
    HfTensor qweight{prefix + ".qweight", {uint64_t(cols / 8), uint64_t(rows)}, {}, "I32", {}};
    for (int64_t i8 = 0; i8 < cols / 8; ++i8) {
        for (int64_t r = 0; r < rows; ++r) {
            uint32_t word = 0;
            for (int k = 0; k < 8; ++k)
                word |= uint32_t(q[size_t(r * cols + 8 * i8 + k)]) << (4 * k);
            put(qweight.raw, word);
        }
    }
    HfTensor qzeros{prefix + ".qzeros", {uint64_t(groups), uint64_t(rows / 8)}, {}, "I32", {}};
    for (int64_t g = 0; g < groups; ++g) {
        for (int64_t r8 = 0; r8 < rows / 8; ++r8) {
            uint32_t word = 0;
            for (int k = 0; k < 8; ++k) {
                word |= uint32_t(z[size_t((8 * r8 + k) * groups + g)] - 1) << (4 * k);  // zero - 1
            }
            put(qzeros.raw, word);
        }
    }
    HfTensor scales{prefix + ".scales", {uint64_t(groups), uint64_t(rows)}, {}, "F16", {}};
    for (int64_t g = 0; g < groups; ++g) {
        for (int64_t r = 0; r < rows; ++r) put(scales.raw, d[size_t(r * groups + g)]);
    }
    HfTensor gidx{prefix + ".g_idx", {uint64_t(cols)}, {}, "I32", {}};
    for (int32_t v : g_idx) put(gidx.raw, v);
    return {qweight, qzeros, scales, gidx};
}

fs::path export_stories(const std::string& name, const Export& e) {
    const Model src = load_model(test::data_path("stories260K.bin"));
    const ModelConfig& c = src.config;
    fs::path dir = test::temp_dir("nibble_test_hf") / name;
    fs::remove_all(dir);
    fs::create_directories(dir);
    json config = {{"architectures", {e.architecture}},
                   {"model_type", e.architecture == "MistralForCausalLM" ? "mistral" : "llama"},
                   {"hidden_size", c.dim},
                   {"intermediate_size", c.hidden_dim},
                   {"num_hidden_layers", c.n_layers},
                   {"num_attention_heads", c.n_heads},
                   {"num_key_value_heads", c.n_kv_heads},
                   {"vocab_size", c.vocab_size},
                   {"max_position_embeddings", c.max_seq_len},
                   {"rope_theta", 10000.0},
                   {"rms_norm_eps", 1e-5},
                   {"tie_word_embeddings", !e.untied},
                   {"torch_dtype", e.bf16 ? "bfloat16" : "float32"}};
    if (e.sliding_window > 0) config["sliding_window"] = e.sliding_window;
    if (e.gptq) {
        config["quantization_config"] = {{"quant_method", "gptq"},
                                         {"bits", 4},
                                         {"group_size", 32},
                                         {"desc_act", true},
                                         {"sym", false}};
    }
    std::ofstream(dir / "config.json") << config.dump(2);
    fs::copy_file(test::data_path("tok512.model"), dir / "tokenizer.model");

    std::vector<HfTensor> tensors;
    for (const TensorSlot& slot : tensor_slots(c)) {
        if (slot.model_member == &Model::output && !e.untied) continue;
        const Tensor& t = slot.in(src);
        HfTensor h{slot.hf_name, {}, {}, "F32", {}};
        h.shape = slot.is_norm() ? std::vector<uint64_t>{uint64_t(t.cols())}
                                 : std::vector<uint64_t>{uint64_t(t.rows()), uint64_t(t.cols())};
        if (slot.layer >= 0 &&
            (slot.layer_member == &LayerWeights::wq || slot.layer_member == &LayerWeights::wk)) {
            h.values = to_rotate_half(t, c.head_dim());
        } else {
            h.values.assign(t.f32(), t.f32() + t.rows() * t.cols());
        }
        if (e.round_to_bf16) {
            for (float& v : h.values) v = bf16_value(v);
        }
        if ((e.gptq || e.gptq_reference) && slot.layer >= 0 && !slot.is_norm() &&
            t.cols() % 32 == 0 && t.rows() % 8 == 0) {
            // One act-order permutation per input: q/k/v share one, gate/up another.
            uint32_t seed = uint32_t(slot.layer * 10);
            if (slot.layer_member == &LayerWeights::wo) seed += 1;
            if (slot.layer_member == &LayerWeights::w_gate ||
                slot.layer_member == &LayerWeights::w_up)
                seed += 2;
            std::vector<int32_t> perm(static_cast<size_t>(t.cols()));
            std::iota(perm.begin(), perm.end(), 0);
            std::shuffle(perm.begin(), perm.end(), std::mt19937(seed));
            const std::string prefix = slot.hf_name.substr(0, slot.hf_name.size() - 7);
            auto packed = gptq_pack(prefix, h.values, t.rows(), t.cols(), perm);
            if (e.gptq) {
                for (auto& p : packed) tensors.push_back(std::move(p));
                continue;
            }
        }
        tensors.push_back(std::move(h));
    }
    if (!e.shards) {
        write_safetensors(dir / "model.safetensors", tensors, e.bf16);
        return dir;
    }
    const size_t split = tensors.size() / 2;
    const std::vector<HfTensor> a(tensors.begin(), tensors.begin() + std::ptrdiff_t(split));
    const std::vector<HfTensor> b(tensors.begin() + std::ptrdiff_t(split), tensors.end());
    write_safetensors(dir / "model-00001-of-00002.safetensors", a, e.bf16);
    write_safetensors(dir / "model-00002-of-00002.safetensors", b, e.bf16);
    json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", json::object()}};
    for (const auto& t : a) index["weight_map"][t.name] = "model-00001-of-00002.safetensors";
    for (const auto& t : b) index["weight_map"][t.name] = "model-00002-of-00002.safetensors";
    std::ofstream(dir / "model.safetensors.index.json") << index.dump(2);
    return dir;
}

const std::vector<int32_t> kTokens{1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298};

std::vector<float> all_logits(const Model& model) {
    set_matmul_activation_mode(ActivationMode::fp32);
    RuntimeOptions ro;
    ro.max_batch = int(kTokens.size());
    InferenceState state(model, ro);
    std::vector<BatchToken> batch;
    for (size_t i = 0; i < kTokens.size(); ++i) batch.push_back({kTokens[i], int32_t(i), 0, true});
    const float* y = state.forward(batch);
    std::vector<float> out(y, y + kTokens.size() * size_t(model.config.vocab_size));
    set_matmul_activation_mode(ActivationMode::int8);
    return out;
}

double max_difference(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    double worst = 0.0;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, double(std::fabs(a[i] - b[i])));
    return worst;
}

// A direct double-precision forward pass of an all-f32 model with halves RoPE
// and a sliding window: every position attends to the `window` latest ones.
std::vector<double> direct_last_logits(const Model& m, int window) {
    const ModelConfig& c = m.config;
    const size_t dim = size_t(c.dim), n = kTokens.size();
    const int hd = c.head_dim();
    // Index of element i of head `head` in a vector of heads.
    auto at = [hd](int head, int i) { return size_t(head) * size_t(hd) + size_t(i); };
    auto matvec = [](const Tensor& w, const std::vector<double>& x) {
        std::vector<double> y(size_t(w.rows()), 0.0);
        for (int64_t r = 0; r < w.rows(); ++r) {
            for (int64_t k = 0; k < w.cols(); ++k)
                y[size_t(r)] += double(w.f32()[r * w.cols() + k]) * x[size_t(k)];
        }
        return y;
    };
    auto rmsnorm = [&](const std::vector<double>& x, const Tensor& w) {
        double ss = 0.0;
        for (double v : x) ss += v * v;
        const double s = 1.0 / std::sqrt(ss / double(x.size()) + double(c.norm_eps));
        std::vector<double> y(x.size());
        for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * s * double(w.f32()[i]);
        return y;
    };
    auto rope = [&](std::vector<double>& v, int heads, int pos) {
        for (int h = 0; h < heads; ++h) {
            for (int i = 0; i < hd / 2; ++i) {
                const double angle = pos * std::pow(double(c.rope_theta), -2.0 * i / hd);
                const double a = v[at(h, i)], b = v[at(h, i + hd / 2)];
                v[at(h, i)] = a * std::cos(angle) - b * std::sin(angle);
                v[at(h, i + hd / 2)] = a * std::sin(angle) + b * std::cos(angle);
            }
        }
    };
    std::vector<std::vector<double>> x(n, std::vector<double>(dim));
    for (size_t p = 0; p < n; ++p) {
        const float* e = m.token_embedding.f32() + size_t(kTokens[p]) * dim;
        for (size_t i = 0; i < dim; ++i) x[p][i] = e[i];
    }
    for (const LayerWeights& w : m.layers) {
        std::vector<std::vector<double>> q(n), k(n), v(n);
        for (int p = 0; p < int(n); ++p) {
            const auto xn = rmsnorm(x[size_t(p)], w.attn_norm);
            q[size_t(p)] = matvec(w.wq, xn);
            k[size_t(p)] = matvec(w.wk, xn);
            v[size_t(p)] = matvec(w.wv, xn);
            rope(q[size_t(p)], c.n_heads, p);
            rope(k[size_t(p)], c.n_kv_heads, p);
        }
        for (int p = 0; p < int(n); ++p) {
            std::vector<double> att(dim, 0.0);
            const int first = std::max(0, p - window + 1);
            for (int h = 0; h < c.n_heads; ++h) {
                const int kh = h / (c.n_heads / c.n_kv_heads);
                std::vector<double> s;
                double mx = -1e300;
                for (int t = first; t <= p; ++t) {
                    double dot = 0.0;
                    for (int i = 0; i < hd; ++i)
                        dot += q[size_t(p)][at(h, i)] * k[size_t(t)][at(kh, i)];
                    s.push_back(dot / std::sqrt(double(hd)));
                    mx = std::max(mx, s.back());
                }
                double sum = 0.0;
                for (double& e : s) sum += (e = std::exp(e - mx));
                for (int t = first; t <= p; ++t) {
                    for (int i = 0; i < hd; ++i) {
                        att[at(h, i)] += s[size_t(t - first)] / sum * v[size_t(t)][at(kh, i)];
                    }
                }
            }
            const auto o = matvec(w.wo, att);
            for (size_t i = 0; i < dim; ++i) x[size_t(p)][i] += o[i];
        }
        for (size_t p = 0; p < n; ++p) {
            const auto xn = rmsnorm(x[p], w.ffn_norm);
            auto g = matvec(w.w_gate, xn);
            const auto u = matvec(w.w_up, xn);
            for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
            const auto d = matvec(w.w_down, g);
            for (size_t i = 0; i < dim; ++i) x[p][i] += d[i];
        }
    }
    return matvec(m.output, rmsnorm(x.back(), m.output_norm));
}

void expect_error(const std::string& path, const std::string& fragment) {
    const auto out = test::run_nibble("info " + path, test::Capture::stderr_only);
    CHECK(out.exit_code == 1);
    CHECK_MESSAGE(out.text.find(fragment) != std::string::npos, out.text);
    CHECK(std::count(out.text.begin(), out.text.end(), '\n') == 1);
}

}  // namespace

TEST_CASE("a HF directory of stories260K gives the llama2.c file's logits") {
    const Model bin = load_model(test::data_path("stories260K.bin"));
    const std::vector<float> expected = all_logits(bin);
    const fs::path dir = export_stories("f32", {});
    const Model hf = load_model(dir.string());
    CHECK(hf.source_format == "hf");
    CHECK(hf.config.rope_style == RopeStyle::halves);
    CHECK(hf.output.view.data == hf.token_embedding.view.data);  // tied
    REQUIRE_FALSE(hf.tokenizer_proto.empty());
    // Same weights, RoPE on halves of the permuted rows: the same math up to
    // FP32 summation order.
    CHECK(max_difference(all_logits(hf), expected) < 1e-5);
    // The model.safetensors file itself opens the checkpoint too.
    CHECK(max_difference(all_logits(load_model((dir / "model.safetensors").string())), expected) <
          1e-5);

    Export untied;
    untied.untied = true;
    const Model u = load_model(export_stories("untied", untied).string());
    CHECK(u.output.view.data != u.token_embedding.view.data);
    CHECK(max_difference(all_logits(u), expected) < 1e-5);

    Export shards;
    shards.shards = true;
    CHECK(max_difference(all_logits(load_model(export_stories("shards", shards).string())),
                         expected) < 1e-5);
}

TEST_CASE("BF16 checkpoints read exactly: same logits as F32 holding the rounded values") {
    Export bf16;
    bf16.bf16 = true;
    Export rounded;
    rounded.round_to_bf16 = true;
    const Model a = load_model(export_stories("bf16", bf16).string());
    const Model b = load_model(export_stories("bf16_as_f32", rounded).string());
    CHECK(max_difference(all_logits(a), all_logits(b)) == 0.0);
    // And within BF16 rounding of the original: measured 0.02 on logits of std 3.
    CHECK(max_difference(all_logits(a),
                         all_logits(load_model(test::data_path("stories260K.bin")))) < 0.2);
}

TEST_CASE("a Mistral sliding window shorter than the prompt attends to the window only") {
    Export e;
    e.architecture = "MistralForCausalLM";
    e.sliding_window = 4;
    const Model m = load_model(export_stories("mistral_window", e).string());
    CHECK(m.config.sliding_window == 4);
    const std::vector<float> logits = all_logits(m);
    const size_t last = (kTokens.size() - 1) * 512;
    const std::vector<double> direct = direct_last_logits(m, 4);
    const std::vector<double> full = direct_last_logits(m, int(kTokens.size()));
    double worst = 0.0, window_effect = 0.0;
    for (size_t v = 0; v < 512; ++v) {
        worst = std::max(worst, std::fabs(double(logits[last + v]) - direct[v]));
        window_effect = std::max(window_effect, std::fabs(direct[v] - full[v]));
    }
    CHECK(worst < 1e-4);
    CHECK(window_effect > 0.1);  // the window matters for this prompt
}

TEST_CASE("unsupported architectures and missing files give one line naming them") {
    Export qwen;
    qwen.architecture = "GPT2LMHeadModel";
    expect_error(export_stories("qwen2", qwen).string(),
                 "architecture GPT2LMHeadModel is not supported");
    Export shards;
    shards.shards = true;
    const fs::path dir = export_stories("missing_shard", shards);
    fs::remove(dir / "model-00002-of-00002.safetensors");
    expect_error(dir.string(), "model-00002-of-00002.safetensors: missing");
    const fs::path lone = test::temp_dir("nibble_test_hf") / "lone";
    fs::remove_all(lone);
    fs::create_directories(lone);
    fs::copy_file(export_stories("lone_src", {}) / "model.safetensors", lone / "model.safetensors");
    expect_error((lone / "model.safetensors").string(), "no config.json next to the weights");
    expect_error(lone.string() + "/nothing.bin", "cannot open");
}

TEST_CASE(
    "an act-order GPTQ checkpoint imports exactly, runs, and keeps its column order in a nibble "
    "file") {
    Export gptq;
    gptq.gptq = true;
    Export reference;
    reference.gptq_reference = true;
    const Model q = load_model(export_stories("gptq", gptq).string());
    const Model f = load_model(export_stories("gptq_reference", reference).string());
    int permuted = 0;
    for (const TensorSlot& slot : tensor_slots(q.config)) {
        const Tensor& t = slot.in(q);
        const Tensor& ref = slot.in(f);
        if (t.format() != WeightFormat::q4a) continue;
        CAPTURE(t.name);
        REQUIRE(t.column_order != nullptr);
        ++permuted;
        // Stored column j is column column_order[j]: the dequantized rows equal
        // the reference matrix gathered into that order, exactly.
        std::vector<float> row(size_t(t.cols()));
        size_t mismatches = 0;
        for (int64_t r = 0; r < t.rows(); ++r) {
            dequantize_row(t.view, r, row.data());
            for (int64_t j = 0; j < t.cols(); ++j) {
                mismatches += row[size_t(j)] != ref.f32()[r * t.cols() + t.column_order[j]];
            }
        }
        CHECK(mismatches == 0);
    }
    // q, k, v, o of every layer (gate/up have 172 rows and down 172 columns,
    // which GPTQ's packing by 8 cannot hold: they stay F32)
    CHECK(permuted == 5 * 4);
    const std::vector<float> expected = all_logits(f);
    CHECK(max_difference(all_logits(q), expected) < 1e-5);
    // Without the gather the logits would differ: the orders are not identity.
    const fs::path nbl = test::temp_dir("nibble_test_hf") / "gptq.nbl";
    save_nibble_file(q, nbl.string());
    const Model back = load_model(nbl.string());
    REQUIRE(back.layers[0].wq.column_order != nullptr);
    CHECK(std::equal(back.layers[0].wq.column_order, back.layers[0].wq.column_order + 64,
                     q.layers[0].wq.column_order));
    CHECK(max_difference(all_logits(back), expected) < 1e-5);
}

TEST_CASE("streamed (deferred) HF loads quantize to the same file as whole loads") {
    Export bf16;
    bf16.bf16 = true;
    Export gptq;
    gptq.gptq = true;
    Export untied;
    untied.untied = true;
    // (no structured binding: clang 14 cannot capture one in doctest's CAPTURE)
    for (const auto& entry : {std::pair{"bf16", bf16}, {"gptq", gptq}, {"untied", untied}}) {
        const char* name = entry.first;
        const Export& e = entry.second;
        CAPTURE(name);
        const std::string dir = export_stories(std::string("stream_") + name, e).string();
        const Model deferred = load_model(dir, {.defer_conversion = true});
        int waiting = 0;
        for (const Tensor* t : deferred.tensors()) waiting += t->deferred != nullptr;
        CHECK(waiting > 0);  // BF16/F32 matrices wait; GPTQ layers are converted at once
        const Model whole = load_model(dir);
        CHECK(deferred.weight_bytes() == whole.weight_bytes());
        const fs::path out = test::temp_dir("nibble_test_hf");
        QuantizeRecipe recipe;
        recipe.format = WeightFormat::q4a;
        quantize_model_to_file(deferred, recipe, (out / "deferred.nbl").string(), "");
        quantize_model_to_file(whole, recipe, (out / "whole.nbl").string(), "");
        CHECK(test::read_text((out / "deferred.nbl").string()) ==
              test::read_text((out / "whole.nbl").string()));
    }
}

namespace {

// The tokenizer a loaded model carries.
Tokenizer model_tokenizer(const Model& m) {
    return Tokenizer::from_serialized_proto(m.tokenizer_proto, m.source_path);
}

std::string notes_of(const Model& m) {
    std::string all;
    for (const std::string& n : m.import_notes) all += n + "\n";
    return all;
}

const char* const kLlama2Template =
    R"({{ bos_token + '[INST] ' + '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' }})";

}  // namespace

TEST_CASE("generation_config.json and tokenizer_config.json choose BOS, EOS and the template") {
    // tok512.model: 1 "<s>" and 2 "</s>" are its control pieces (BOS 1, EOS 2);
    // the files below swap them, which only reading the files can explain.
    const fs::path plain = export_stories("tok_plain", {});
    const Tokenizer base = model_tokenizer(load_model(plain.string()));
    REQUIRE(base.bos_id() == 1);
    REQUIRE(base.eos_id() == 2);

    SUBCASE("generation_config.json ids, an EOS list") {
        const fs::path dir = export_stories("tok_gen", {});
        std::ofstream(dir / "generation_config.json")
            << R"({"bos_token_id": 2, "eos_token_id": [1, 2], "do_sample": true})";
        const Model m = load_model(dir.string());
        const Tokenizer t = model_tokenizer(m);
        CHECK(t.bos_id() == 2);
        CHECK(t.eos_id() == 1);
        CHECK(t.encode("Once", true).front() == 2);
        const std::string notes = notes_of(m);
        CHECK_MESSAGE(notes.find("BOS 2 \"</s>\" (generation_config.json)") != std::string::npos,
                      notes);
        CHECK_MESSAGE(notes.find("further EOS ids") != std::string::npos, notes);
        // The choice survives a nibble file (the proto is stored as it is).
        const fs::path nbl = test::temp_dir("nibble_test_hf") / "tok_gen.nbl";
        save_nibble_file(m, nbl.string());
        const Tokenizer saved = model_tokenizer(load_model(nbl.string()));
        CHECK(saved.bos_id() == 2);
        CHECK(saved.eos_id() == 1);
    }
    SUBCASE("tokenizer_config.json tokens; generation_config.json wins for EOS only") {
        const fs::path dir = export_stories("tok_config", {});
        json tc = {{"bos_token", {{"__type", "AddedToken"}, {"content", "</s>"}}},
                   {"eos_token", "<s>"},
                   {"add_bos_token", true},
                   {"chat_template", kLlama2Template}};
        std::ofstream(dir / "tokenizer_config.json") << tc.dump(2);
        std::ofstream(dir / "generation_config.json")
            << R"({"bos_token_id": 1, "eos_token_id": 2})";
        const Model m = load_model(dir.string());
        const Tokenizer t = model_tokenizer(m);
        CHECK(t.bos_id() == 2);  // tokenizer_config's bos_token
        CHECK(t.eos_id() == 2);  // generation_config's eos_token_id
        CHECK(m.chat_template == kLlama2Template);
        CHECK(detect_chat_template(m.chat_template) == ChatTemplate::llama2);
        // Nibble files keep the template and the tokens: saved as they are and
        // through `nibble quantize`.
        const fs::path nbl = test::temp_dir("nibble_test_hf") / "tok_config.nbl";
        save_nibble_file(m, nbl.string());
        CHECK(load_model(nbl.string()).chat_template == kLlama2Template);
        const fs::path q4 = test::temp_dir("nibble_test_hf") / "tok_config_q4.nbl";
        const auto out = test::run_nibble(
            "quantize " + dir.string() + " " + q4.string() + " --format q4 --group-size 32",
            test::Capture::stderr_only);
        REQUIRE_MESSAGE(out.exit_code == 0, out.text);
        const Model q = load_model(q4.string());
        CHECK(q.chat_template == kLlama2Template);
        CHECK(model_tokenizer(q).bos_id() == 2);
        CHECK(model_tokenizer(q).eos_id() == 2);

        // Without generation_config.json the tokenizer_config EOS counts.
        fs::remove(dir / "generation_config.json");
        CHECK(model_tokenizer(load_model(dir.string())).eos_id() == 1);

        // chat_template.jinja overrides tokenizer_config's template; a list of
        // named templates gives the "default" one.
        tc["chat_template"] = json::array(
            {{{"name", "tool_use"}, {"template", "x"}}, {{"name", "default"}, {"template", "y"}}});
        std::ofstream(dir / "tokenizer_config.json") << tc.dump(2);
        CHECK(load_model(dir.string()).chat_template == "y");
        std::ofstream(dir / "chat_template.jinja") << "{{ '<|im_start|>' }}";
        const Model j = load_model(dir.string());
        CHECK(j.chat_template == "{{ '<|im_start|>' }}");
        CHECK(notes_of(j).find("chat template from chat_template.jinja") != std::string::npos);
    }
    SUBCASE("a choice that is not a control piece keeps tokenizer.model's, with a note") {
        const fs::path dir = export_stories("tok_normal", {});
        std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": 100})";
        const Model m = load_model(dir.string());
        CHECK(model_tokenizer(m).eos_id() == 2);
        CHECK(notes_of(m).find("EOS id 100 (generation_config.json) is not a control piece") !=
              std::string::npos);
    }
    SUBCASE("bad files give one line naming the file") {
        const fs::path dir = export_stories("tok_bad", {});
        std::ofstream(dir / "generation_config.json") << "{\"eos_token_id\": ";
        expect_error(dir.string(), "generation_config.json: not valid JSON");
        std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": "</s>"})";
        expect_error(dir.string(), "generation_config.json: \"eos_token_id\" is not a token id");
        fs::remove(dir / "generation_config.json");
        std::ofstream(dir / "tokenizer_config.json") << R"({"chat_template": 3})";
        expect_error(dir.string(), "tokenizer_config.json: \"chat_template\" is not a string");
    }
}

namespace {

// Greedy decoding of up to n tokens after `prompt`: the generated ids and why it ended.
std::pair<std::vector<int32_t>, FinishReason> greedy(const Model& model, const Tokenizer& tokenizer,
                                                     const std::vector<int32_t>& prompt, int n) {
    InferenceState state(model, RuntimeOptions{});
    Scheduler scheduler(state, tokenizer);
    Request r;
    r.prompt = prompt;
    r.n_predict = n;
    r.sampling.temperature = 0.0f;
    std::pair<std::vector<int32_t>, FinishReason> out;
    r.on_finish = [&](const FinishEvent& e) {
        out.first.assign(e.tokens.begin() + std::ptrdiff_t(prompt.size()), e.tokens.end());
        out.second = e.reason;
    };
    scheduler.submit(std::move(r));
    scheduler.run();
    return out;
}

}  // namespace

TEST_CASE(
    "add_bos_token false: prompts without BOS; an eos_token_id list: stops at its second id") {
    const fs::path dir = export_stories("tok_generation", {});
    const Model plain = load_model(dir.string());
    CHECK(plain.generation.add_bos_token);
    CHECK(plain.generation.extra_eos_ids.empty());
    Tokenizer base = model_tokenizer(plain);
    apply_generation_settings(plain, base);
    const std::vector<int32_t> prompt = base.encode("Once upon a time", true);
    REQUIRE(prompt.front() == 1);  // BOS by default
    const auto [free_run, free_reason] = greedy(plain, base, prompt, 16);
    REQUIRE(free_run.size() == 16);
    REQUIRE(free_reason == FinishReason::length);
    // The list's second id: one that greedy decoding generates at step k > 0 and not before.
    size_t k = 1;
    while (k < free_run.size() &&
           (free_run[k] == 2 || std::find(free_run.begin(), free_run.begin() + std::ptrdiff_t(k),
                                          free_run[k]) != free_run.begin() + std::ptrdiff_t(k))) {
        ++k;
    }
    REQUIRE(k < free_run.size());
    const int32_t stop = free_run[k];

    std::ofstream(dir / "tokenizer_config.json") << R"({"add_bos_token": false})";
    std::ofstream(dir / "generation_config.json") << "{\"eos_token_id\": [2, " << stop << "]}";
    const Model m = load_model(dir.string());
    CHECK_FALSE(m.generation.add_bos_token);
    CHECK(m.generation.extra_eos_ids == std::vector<int32_t>{stop});
    const std::string notes = notes_of(m);
    CHECK_MESSAGE(notes.find("add_bos_token false (tokenizer_config.json)") != std::string::npos,
                  notes);
    CHECK_MESSAGE(notes.find("further EOS ids " + std::to_string(stop)) != std::string::npos,
                  notes);
    Tokenizer t = model_tokenizer(m);
    apply_generation_settings(m, t);
    CHECK(t.eos_id() == 2);
    CHECK(t.is_eos(stop));
    CHECK_FALSE(base.is_eos(stop));
    // No BOS in front: the same ids as before without the first.
    CHECK(t.encode("Once upon a time", true) ==
          std::vector<int32_t>(prompt.begin() + 1, prompt.end()));
    // The same prompt (BOS included, so the same logits): it stops before `stop`.
    const auto [run, reason] = greedy(m, t, prompt, 16);
    CHECK(reason == FinishReason::eos);
    CHECK(run == std::vector<int32_t>(free_run.begin(), free_run.begin() + std::ptrdiff_t(k)));

    // Both survive a nibble file, whole and through nibble quantize.
    const fs::path nbl = test::temp_dir("nibble_test_hf") / "tok_generation.nbl";
    save_nibble_file(m, nbl.string());
    const Model saved = load_model(nbl.string());
    CHECK_FALSE(saved.generation.add_bos_token);
    CHECK(saved.generation.extra_eos_ids == std::vector<int32_t>{stop});
    const fs::path q4 = test::temp_dir("nibble_test_hf") / "tok_generation_q4.nbl";
    quantize_model_to_file(m, QuantizeRecipe{}, q4.string(), m.tokenizer_proto);
    const Model quantized = load_model(q4.string());
    CHECK_FALSE(quantized.generation.add_bos_token);
    CHECK(quantized.generation.extra_eos_ids == std::vector<int32_t>{stop});

    std::ofstream(dir / "tokenizer_config.json") << R"({"add_bos_token": "no"})";
    expect_error(dir.string(), "tokenizer_config.json: \"add_bos_token\" is not true or false");
}

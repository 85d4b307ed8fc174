// stories260K written here as GGUF Q8_0, Q4_0 and Q4_1 by block writers that
// follow llama.cpp's published layouts and reference quantizers, then imported:
// every weight reads back as the writer's own dequantization (bit for bit),
// within the format's quantization bound of the F32 weight, and the model's
// logits equal those of the same dequantized weights stored as F32.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "engine/forward.h"
#include "gguf_rewrite.h"
#include "kernels/fp16.h"
#include "kernels/matmul.h"
#include "kernels/matmul_dispatch.h"
#include "models/ggml_blocks.h"
#include "models/loader.h"
#include "test_data.h"

using namespace nibble;

namespace {

const std::string kGguf = test::data_path("stories260K.gguf");

// One block of 32 weights: its bytes and the values they decode to.
struct Encoded {
    std::vector<uint8_t> bytes;
    float values[32];
    float bound[32];  // |value - source| allowed by the format
};

Encoded encode_q8_0(const float* x) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    ggml::BlockQ8_0 b{};
    b.d = fp32_to_fp16(d);
    const float dh = fp16_to_fp32(b.d);
    Encoded e;
    for (int j = 0; j < 32; ++j) {
        b.qs[j] = int8_t(std::round(x[j] * id));
        e.values[j] = dh * float(b.qs[j]);
        e.bound[j] = 0.5f * d + 127.0f * std::fabs(d - dh) + 1e-7f;
    }
    e.bytes.assign(reinterpret_cast<uint8_t*>(&b), reinterpret_cast<uint8_t*>(&b) + sizeof b);
    return e;
}

Encoded encode_q4_0(const float* x) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j) {
        if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), max = x[j];
    }
    const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    ggml::BlockQ4_0 b{};
    b.d = fp32_to_fp16(d);
    const float dh = fp16_to_fp32(b.d);
    uint8_t q[32];
    Encoded e;
    for (int j = 0; j < 32; ++j) {
        q[j] = uint8_t(std::min(15, int(int8_t(x[j] * id + 8.5f))));
        e.values[j] = dh * float(q[j] - 8);
        // +8d clamps to code 15 (7d): one full step; fp16 rounding of d times 8.
        e.bound[j] = std::fabs(d) + 8.0f * std::fabs(d - dh) + 1e-7f;
    }
    for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(q[j] | q[j + 16] << 4);
    e.bytes.assign(reinterpret_cast<uint8_t*>(&b), reinterpret_cast<uint8_t*>(&b) + sizeof b);
    return e;
}

Encoded encode_q4_1(const float* x) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < 32; ++j) lo = std::min(lo, x[j]), hi = std::max(hi, x[j]);
    const float d = (hi - lo) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    ggml::BlockQ4_1 b{};
    b.d = fp32_to_fp16(d);
    b.m = fp32_to_fp16(lo);
    const float dh = fp16_to_fp32(b.d), mh = fp16_to_fp32(b.m);
    uint8_t q[32];
    Encoded e;
    for (int j = 0; j < 32; ++j) {
        // x[j] - lo >= 0: adding 0.5 and truncating rounds half up, as ggml's
        // quantize_row_q4_1_ref does.
        // NOLINTNEXTLINE(bugprone-incorrect-roundings)
        q[j] = uint8_t(std::min(15, int(int8_t((x[j] - lo) * id + 0.5f))));
        e.values[j] = dh * float(q[j]) + mh;
        e.bound[j] = 0.5f * d + 15.0f * std::fabs(d - dh) + std::fabs(lo - mh) + 1e-7f;
    }
    for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(q[j] | q[j + 16] << 4);
    e.bytes.assign(reinterpret_cast<uint8_t*>(&b), reinterpret_cast<uint8_t*>(&b) + sizeof b);
    return e;
}

struct Written {
    std::string quantized, dequantized;  // GGUF paths
    std::map<std::string, std::vector<float>> source, values, bound;
};

// stories260K with every matrix whose rows are a multiple of 32 in `type`
// (w_down has 172 columns and stays F32, as llama.cpp would keep it), plus the
// same model with those matrices' decoded values stored as F32.
Written write_stories(int type, Encoded (*encode)(const float*)) {
    Written w;
    const auto dir = test::temp_dir("nibble_test_gguf_blocks");
    w.quantized = (dir / ("stories_" + ggml::type_name(uint32_t(type)) + ".gguf")).string();
    w.dequantized = (dir / ("stories_" + ggml::type_name(uint32_t(type)) + "_f32.gguf")).string();
    for (const bool quantized : {true, false}) {
        test::rewrite_gguf(kGguf, quantized ? w.quantized : w.dequantized,
                           [&](const GgufTensorInfo& t, const float* src) {
                               test::Rewrite r;
                               const size_t n = size_t(t.n_elements());
                               if (t.dims.size() < 2 || t.dims[0] % 32 != 0) {
                                   r.data.assign(t.data, t.data + t.n_bytes);  // F32
                                   return r;
                               }
                               auto& values = w.values[t.name];
                               auto& bound = w.bound[t.name];
                               w.source[t.name].assign(src, src + n);
                               values.clear();
                               bound.clear();
                               for (size_t b = 0; b < n / 32; ++b) {
                                   const Encoded e = encode(src + 32 * b);
                                   r.data.insert(r.data.end(), e.bytes.begin(), e.bytes.end());
                                   values.insert(values.end(), e.values, e.values + 32);
                                   bound.insert(bound.end(), e.bound, e.bound + 32);
                               }
                               if (quantized) {
                                   r.type = type;
                               } else {
                                   r.data.clear();
                                   for (float v : values) test::append<float>(r.data, v);
                               }
                               return r;
                           });
    }
    return w;
}

std::vector<float> logits(const Model& model, ActivationMode mode) {
    set_matmul_activation_mode(mode);
    const std::vector<int32_t> tokens{1, 403, 407, 261, 378, 432, 383, 286};
    RuntimeOptions ro;
    ro.max_batch = int(tokens.size());
    InferenceState state(model, ro);
    std::vector<BatchToken> batch;
    for (size_t i = 0; i < tokens.size(); ++i) batch.push_back({tokens[i], int32_t(i), 0, true});
    const float* y = state.forward(batch);
    std::vector<float> out(y, y + tokens.size() * 512);
    set_matmul_activation_mode(ActivationMode::int8);
    return out;
}

void check_type(int type, Encoded (*encode)(const float*), WeightFormat expected) {
    CAPTURE(ggml::type_name(uint32_t(type)));
    const Written w = write_stories(type, encode);
    const Model q = load_model(w.quantized);
    const Model f = load_model(w.dequantized);
    int converted = 0;
    for (const Tensor* t : q.tensors()) {
        const auto it = w.values.find(t->name);
        if (it == w.values.end()) continue;
        CAPTURE(t->name);
        CHECK(t->format() == expected);
        std::vector<float> row(size_t(t->cols()));
        size_t exact_mismatch = 0, outside_bound = 0;
        for (int64_t r = 0; r < t->rows(); ++r) {
            dequantize_row(t->view, r, row.data());
            for (int64_t c = 0; c < t->cols(); ++c) {
                const size_t i = size_t(r * t->cols() + c);
                exact_mismatch += row[size_t(c)] != it->second[i];
                outside_bound +=
                    std::fabs(row[size_t(c)] - w.source.at(t->name)[i]) > w.bound.at(t->name)[i];
            }
        }
        CHECK(exact_mismatch == 0);
        CHECK(outside_bound == 0);
        ++converted;
    }
    CHECK(converted == 2 + 5 * 6);  // token_embd, output, 6 matrices per layer (not w_down)
    const std::vector<float> yq = logits(q, ActivationMode::fp32);
    const std::vector<float> yf = logits(f, ActivationMode::fp32);
    double worst = 0.0;
    for (size_t i = 0; i < yq.size(); ++i)
        worst = std::max(worst, double(std::fabs(yq[i] - yf[i])));
    CHECK(worst < 1e-4);
}

}  // namespace

TEST_CASE("stories260K as GGUF Q8_0 reads back exactly") {
    check_type(ggml::Q8_0, encode_q8_0, WeightFormat::q8);
}

TEST_CASE("stories260K as GGUF Q4_0 reads back exactly") {
    check_type(ggml::Q4_0, encode_q4_0, WeightFormat::q4);
}

TEST_CASE("stories260K as GGUF Q4_1 reads back exactly") {
    check_type(ggml::Q4_1, encode_q4_1, WeightFormat::q4a);
}

TEST_CASE("GGUF type errors name the type") {
    const auto dir = test::temp_dir("nibble_test_gguf_blocks");
    // Not a structured binding: the rewrite lambda captures the type, which
    // clang 14 (clang-tidy) rejects for a binding.
    for (const auto& type_fragment : std::vector<std::pair<int, std::string>>{
             {9, "has type Q8_1, which nibble cannot import"},
             {16, "has type IQ2_XXS, which nibble cannot read"}}) {
        const int type = type_fragment.first;
        const std::string& fragment = type_fragment.second;
        const std::string path = (dir / ("bad_type_" + std::to_string(type) + ".gguf")).string();
        test::rewrite_gguf(kGguf, path, [&](const GgufTensorInfo& t, const float*) {
            test::Rewrite r;
            if (t.name == "blk.1.attn_q.weight") {
                r.type = type;
                r.data.assign(size_t(t.n_elements()) / 32 * 36, 0);
            } else {
                r.data.assign(t.data, t.data + t.n_bytes);
            }
            return r;
        });
        const auto out = test::run_nibble("info " + path, test::Capture::stderr_only);
        CHECK(out.exit_code == 1);
        CHECK_MESSAGE(out.text.find(path + ": ") != std::string::npos, out.text);
        CHECK_MESSAGE(out.text.find(fragment) != std::string::npos, out.text);
        CHECK(std::count(out.text.begin(), out.text.end(), '\n') == 1);
    }
}

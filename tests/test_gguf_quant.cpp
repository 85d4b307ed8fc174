// GGUF files quantized by llama.cpp itself (shared/data/gguf-quant): every
// tensor's dequantized values against the independent gguf-py decoder
// (tiny256_dequant_ref.json), within the stated bound where a type is converted;
// the logits of the exact FP32-activation path and of the int8 path against the
// FP64 reference forward pass and llama.cpp (tiny256_logits.json); Q4_0 kept bit
// for bit as q4 g32.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "engine/forward.h"
#include "kernels/fp16.h"
#include "kernels/matmul.h"
#include "kernels/matmul_dispatch.h"
#include "models/ggml_blocks.h"
#include "models/gguf_reader.h"
#include "models/loader.h"
#include "test_data.h"

using namespace nibble;
using nibble::test::data_path;
using nibble::test::read_text;

namespace {

const char* const kFiles[] = {"BF16",   "F32",  "IQ4_NL", "IQ4_XS", "Q4_0", "Q4_1",
                              "Q4_K_M", "Q5_0", "Q5_K_M", "Q6_K",   "Q8_0"};

// The model with every matrix row-major (not repacked, whatever the CPU's
// default): the checks below compare its bytes with the file's blocks.
Model load_row_major(const std::string& path) {
    LoadOptions options;
    options.repack = false;
    return load_model(path, options);
}

std::string gguf_name(const std::string& kind) {
    return "tiny256-" + kind + ".gguf";
}

const nlohmann::json& dequant_ref() {
    static const nlohmann::json ref =
        nlohmann::json::parse(read_text(data_path("gguf-quant/tiny256_dequant_ref.json")));
    return ref;
}

const nlohmann::json& logits_ref() {
    static const nlohmann::json ref =
        nlohmann::json::parse(read_text(data_path("gguf-quant/tiny256_logits.json")));
    return ref;
}

// Largest error the import may add to weight (row, col) whose GGML type is
// `type`, as gguf_import.h states it.
double conversion_bound(const std::string& type, double w) {
    // ggml's blocks held as they are (kernels/lowbit.h): the very float32
    // values of ggml's dequantization (and gguf-py's), bit for bit.
    if (type == "Q5_0" || type == "Q5_K") return 0.0;
    const double rounding = 1e-6 * std::fabs(w) + 1e-12;  // float arithmetic
    if (type == "IQ4_XS") {
        const double tiny = std::ldexp(1.0, -25);  // fp16 subnormal rounding
        return std::ldexp(std::fabs(w), -11) * 1.001 + 127 * tiny + rounding;
    }
    return rounding;  // held exactly (Q4_K too: q4k; Q6_K: q6k)
}

// Per-row dequantization of a whole tensor.
std::vector<float> values(const Tensor& t) {
    std::vector<float> out(size_t(t.rows() * t.cols()));
    for (int64_t r = 0; r < t.rows(); ++r) dequantize_row(t.view, r, out.data() + r * t.cols());
    return out;
}

// All logits of the reference tokens, one row per position.
std::vector<float> all_logits(const Model& model, ActivationMode mode) {
    set_matmul_activation_mode(mode);
    const auto tokens = logits_ref()["tokens"].get<std::vector<int32_t>>();
    RuntimeOptions ro;
    ro.max_batch = int(tokens.size());
    InferenceState state(model, ro);
    std::vector<BatchToken> batch;
    for (size_t i = 0; i < tokens.size(); ++i) batch.push_back({tokens[i], int32_t(i), 0, true});
    const float* logits = state.forward(batch);
    std::vector<float> out(logits, logits + tokens.size() * size_t(model.config.vocab_size));
    set_matmul_activation_mode(ActivationMode::int8);
    return out;
}

double rms_difference(const std::vector<float>& ours, const nlohmann::json& ref) {
    double sum = 0.0;
    size_t n = 0;
    for (const auto& row : ref) {
        for (const auto& value : row) {
            const double e = double(ours[n++]) - value.get<double>();
            sum += e * e;
        }
    }
    REQUIRE(n == ours.size());
    return std::sqrt(sum / double(n));
}

}  // namespace

TEST_CASE("every tensor of every llama.cpp file dequantizes like gguf-py, within the bound") {
    for (const char* kind : kFiles) {
        const std::string file = gguf_name(kind);
        CAPTURE(file);
        const Model model = load_row_major(data_path("gguf-quant/" + file));
        const auto& ref = dequant_ref()[file];
        std::set<std::string> seen;
        for (const Tensor* t : model.tensors()) {
            if (!seen.insert(t->name).second) continue;
            CAPTURE(t->name);
            REQUIRE(ref.contains(t->name));
            const auto& r = ref[t->name];
            const std::string type = r["type"];
            CAPTURE(type);
            CHECK(r["ne"][0].get<int64_t>() == t->cols());
            const std::vector<float> w = values(*t);
            double sum = 0.0, sumsq = 0.0, sum_bound = 0.0, sumsq_bound = 0.0;
            std::vector<double> bound(w.size());
            for (size_t i = 0; i < w.size(); ++i) {
                bound[i] = conversion_bound(type, w[i]);
                sum += w[i];
                sumsq += double(w[i]) * w[i];
                sum_bound += bound[i];
                sumsq_bound += bound[i] * (2.0 * std::fabs(w[i]) + bound[i]);
            }
            // The reference sums float32 values in float64: its own rounding is tiny.
            CHECK(std::fabs(sum - r["sum"].get<double>()) <= sum_bound + 1e-9 * double(w.size()));
            CHECK(std::fabs(sumsq - r["sumsq"].get<double>()) <=
                  sumsq_bound + 1e-9 * double(w.size()));
            int samples = 0;
            for (const auto& [index, value] : r["samples"].items()) {
                const size_t i = std::stoull(index);
                REQUIRE(i < w.size());
                CHECK(std::fabs(double(w[i]) - value.get<double>()) <= bound[i]);
                ++samples;
            }
            CHECK(samples > 0);
        }
        CHECK(seen.size() == ref.size());
    }
}

// Files whose every tensor type is held exactly (gguf_import.h).
bool held_exactly(const std::string& kind) {
    return kind == "F32" || kind == "BF16" || kind == "Q8_0" || kind == "Q6_K" ||
           kind == "Q4_K_M" || kind == "Q5_0" || kind == "Q5_K_M";
}

TEST_CASE("the exact path's logits match the FP64 reference; int8 is about as close as llama.cpp") {
    // Held exactly: within 1e-3 rms. With converted tensors (IQ4_XS scale
    // rounding): the conversion adds at most 30% of the file's own
    // quantization error (rms of its exact logits against the F32 file's), i.e.
    // at most 4.5% in variance. Measured: 2e-6 for the exact files. (Before
    // q5k held Q5_K exactly, its requantization to q8 gave 0.040 for Q5_K_M,
    // 0.15 of its 0.271.)
    const auto& exact_ref = logits_ref()["exact"];
    for (const char* kind : kFiles) {
        const std::string file = gguf_name(kind);
        CAPTURE(file);
        const Model model = load_row_major(data_path("gguf-quant/" + file));
        const double exact =
            rms_difference(all_logits(model, ActivationMode::fp32), exact_ref[file]);
        const double int8 =
            rms_difference(all_logits(model, ActivationMode::int8), exact_ref[file]);
        std::vector<float> flat;
        for (const auto& row : logits_ref()["llamacpp"][file]) {
            for (const auto& v : row) flat.push_back(v.get<float>());
        }
        const double theirs = rms_difference(flat, exact_ref[file]);
        flat.clear();
        for (const auto& row : exact_ref[file]) {
            for (const auto& v : row) flat.push_back(v.get<float>());
        }
        const double own_error = rms_difference(flat, exact_ref[gguf_name("F32")]);
        MESSAGE(file << ": exact path rms " << exact << ", int8 path rms " << int8
                     << ", llama.cpp rms " << theirs << ", file's own quantization " << own_error);
        CHECK(exact < (held_exactly(kind) ? 1e-3 : 0.3 * own_error));
        // Both quantize activations to 8 bits per block of 32 (llama.cpp: 256 for
        // the K types); ours measures 0.69-1.07x llama.cpp's distance, and
        // equally accurate activation roundings move the 32-block types by
        // up to 0.1x (docs/QUALITY.md): 1.1 is that noise margin.
        CHECK(int8 <= 1.1 * theirs);
    }
}

namespace {

// Tensors of GGML type `type` (a 32-weight block of fp16 d and 16 nibble bytes
// in Q4_0 order) imported as `format` g32 with the same bytes; returns how many.
int check_same_nibbles(const std::string& file, uint32_t type, WeightFormat format) {
    const std::string path = data_path("gguf-quant/" + file);
    const GgufFile g = GgufFile::parse(MappedFile::open(path));
    const Model model = load_row_major(path);
    static_assert(sizeof(ggml::BlockQ4_0) == sizeof(ggml::BlockIQ4_NL));
    int checked = 0;
    for (const Tensor* t : model.tensors()) {
        const GgufTensorInfo* info = g.find_tensor(t->name);
        REQUIRE(info != nullptr);
        if (info->type != type) continue;
        CAPTURE(t->name);
        const PackedLayout& l = t->view.layout;
        REQUIRE(l.format == format);
        REQUIRE(l.group_size == 32);
        REQUIRE_FALSE(l.double_quant);
        size_t mismatches = 0;
        for (int64_t b = 0; b < t->rows() * t->cols() / 32; ++b) {
            ggml::BlockQ4_0 block;
            std::memcpy(&block, info->data + size_t(b) * sizeof block, sizeof block);
            mismatches +=
                std::memcmp(t->view.data + l.codes_offset + 16 * size_t(b), block.qs, 16) != 0;
            uint16_t d;
            std::memcpy(&d, t->view.data + l.scales_offset + 2 * size_t(b), 2);
            mismatches += d != block.d;
        }
        CHECK(mismatches == 0);
        ++checked;
    }
    return checked;
}

}  // namespace

TEST_CASE("Q4_0 is imported as q4 g32 with the same codes and scales, bit for bit") {
    CHECK(check_same_nibbles("tiny256-Q4_0.gguf", ggml::Q4_0, WeightFormat::q4) == 15);
}

TEST_CASE("IQ4_NL is imported as iq4nl g32 (the same code book) bit for bit") {
    CHECK(check_same_nibbles("tiny256-IQ4_NL.gguf", ggml::IQ4_NL, WeightFormat::iq4nl) > 0);
}

TEST_CASE("Q4_K is imported as q4k with the same d, dmin, 6-bit scales and codes, bit for bit") {
    const std::string path = data_path("gguf-quant/tiny256-Q4_K_M.gguf");
    const GgufFile g = GgufFile::parse(MappedFile::open(path));
    const Model model = load_row_major(path);
    int checked = 0;
    for (const Tensor* t : model.tensors()) {
        const GgufTensorInfo* info = g.find_tensor(t->name);
        REQUIRE(info != nullptr);
        if (info->type != ggml::Q4_K) continue;
        CAPTURE(t->name);
        const PackedLayout& l = t->view.layout;
        REQUIRE(l.format == WeightFormat::q4k);
        CHECK(l.bits_per_weight() <= 4.5 + 1e-9 * double(l.rows));  // Q4_K's size (+ alignment)
        size_t mismatches = 0;
        for (int64_t b = 0; b < t->rows() * t->cols() / 256; ++b) {
            ggml::BlockQ4_K block;
            std::memcpy(&block, info->data + size_t(b) * sizeof block, sizeof block);
            const uint8_t* params = t->view.data + l.scales_offset + 16 * size_t(b);
            // memcmp's sign does not matter: any non-zero result is a mismatch.
            mismatches += size_t(std::memcmp(params, &block.d, 2) != 0) +
                          size_t(std::memcmp(params + 2, &block.dmin, 2) != 0);
            mismatches += size_t(std::memcmp(params + 4, block.scales, 12) != 0);
            // Group s of the super-block: Q4_K keeps groups 2k and 2k+1 in the low
            // and high nibbles of 32 bytes; q4a's chunk order is column j | j+16.
            const uint8_t* codes = t->view.data + l.codes_offset + 128 * size_t(b);
            for (int s = 0; s < 8; ++s) {
                for (int j = 0; j < 32; ++j) {
                    const uint8_t src = block.qs[32 * (s / 2) + j];
                    const int want = s % 2 == 0 ? src & 0x0f : src >> 4;
                    const uint8_t byte = codes[16 * s + j % 16];
                    mismatches += (j < 16 ? byte & 0x0f : byte >> 4) != want;
                }
            }
        }
        CHECK(mismatches == 0);
        ++checked;
    }
    CHECK(checked == 13);
}

TEST_CASE("Q6_K is imported as q6k with the same bytes (ql, qh | scales, d), bit for bit") {
    for (const char* kind : {"Q6_K", "Q4_K_M", "Q5_K_M"}) {
        const std::string path = data_path("gguf-quant/" + gguf_name(kind));
        CAPTURE(path);
        const GgufFile g = GgufFile::parse(MappedFile::open(path));
        const Model model = load_row_major(path);
        int checked = 0;
        for (const Tensor* t : model.tensors()) {
            const GgufTensorInfo* info = g.find_tensor(t->name);
            REQUIRE(info != nullptr);
            if (info->type != ggml::Q6_K) continue;
            CAPTURE(t->name);
            const PackedLayout& l = t->view.layout;
            REQUIRE(l.format == WeightFormat::q6k);
            CHECK(l.bits_per_weight() <= 6.5625 + 1e-9 * double(l.rows));  // Q6_K's size
            size_t mismatches = 0;
            for (int64_t b = 0; b < t->rows() * t->cols() / 256; ++b) {
                ggml::BlockQ6_K block;
                std::memcpy(&block, info->data + size_t(b) * sizeof block, sizeof block);
                const uint8_t* codes = t->view.data + l.codes_offset + 192 * size_t(b);
                const uint8_t* params = t->view.data + l.scales_offset + 18 * size_t(b);
                mismatches += std::memcmp(codes, block.ql, 128) != 0;
                mismatches += std::memcmp(codes + 128, block.qh, 64) != 0;
                mismatches += std::memcmp(params, block.scales, 16) != 0;
                mismatches += std::memcmp(params + 16, &block.d, 2) != 0;
            }
            CHECK(mismatches == 0);
            ++checked;
        }
        CHECK(checked > 0);
    }
}

TEST_CASE("Q5_0 and Q5_K are imported as q5_0 and q5k with the same blocks, bit for bit") {
    for (auto [kind, type, format, block_bytes, block_cols] :
         {std::tuple{"Q5_0", ggml::Q5_0, WeightFormat::q5_0, 22, 32},
          std::tuple{"Q5_K_M", ggml::Q5_K, WeightFormat::q5k, 176, 256}}) {
        const std::string path = data_path("gguf-quant/" + gguf_name(kind));
        CAPTURE(path);
        const GgufFile g = GgufFile::parse(MappedFile::open(path));
        const Model model = load_row_major(path);
        int checked = 0;
        for (const Tensor* t : model.tensors()) {
            const GgufTensorInfo* info = g.find_tensor(t->name);
            REQUIRE(info != nullptr);
            if (info->type != type) continue;
            CAPTURE(t->name);
            const PackedLayout& l = t->view.layout;
            REQUIRE(l.format == format);
            const size_t n = size_t(t->rows() * t->cols() / block_cols * block_bytes);
            CHECK(l.codes_bytes == n);
            CHECK(l.bits_per_weight() <= 8.0 * block_bytes / block_cols + 1e-9 * double(l.rows));
            CHECK(std::memcmp(t->view.data + l.codes_offset, info->data, n) == 0);
            ++checked;
        }
        CHECK(checked > 0);
    }
}

TEST_CASE("one line per tensor type says what the import did") {
    const Model model = load_row_major(data_path("gguf-quant/tiny256-Q4_K_M.gguf"));
    std::map<std::string, std::string> lines;
    for (const std::string& n : model.import_notes) {
        for (const char* type : {"F32", "Q4_K", "Q6_K"}) {
            if (n.find(std::string(" ") + type + " -> ") != std::string::npos) lines[type] = n;
        }
    }
    CHECK(model.import_notes.size() == 3);
    CHECK(lines["F32"].rfind("5 tensors F32 -> f32", 0) == 0);
    CHECK(lines["Q4_K"].rfind("13 tensors Q4_K -> q4k, same codes", 0) == 0);
    CHECK(lines["Q6_K"].rfind("3 tensors Q6_K -> q6k, same codes", 0) == 0);
}

TEST_CASE("a deferred load announces each tensor's layout and fetches the same bytes") {
    for (const char* kind : kFiles) {
        const std::string path = data_path("gguf-quant/" + gguf_name(kind));
        CAPTURE(path);
        const Model whole = load_row_major(path);
        const Model deferred = load_model(path, {.defer_conversion = true});
        CHECK(deferred.import_notes == whole.import_notes);
        CHECK(deferred.weight_bytes() == whole.weight_bytes());
        const auto a = whole.tensors(), b = deferred.tensors();
        REQUIRE(a.size() == b.size());
        for (size_t i = 0; i < a.size(); ++i) {
            CAPTURE(a[i]->name);
            CHECK((b[i]->deferred != nullptr) == (a[i]->rows() > 1));  // norms load at once
            const FetchedTensor f = fetch_tensor(*b[i]);               // throws on another layout
            const size_t n = a[i]->view.layout.total_bytes;
            REQUIRE(f.tensor.view.layout.total_bytes == n);
            CHECK(std::memcmp(f.tensor.view.data, a[i]->view.data, n) == 0);
            release_source(*b[i]);
        }
    }
}

// The calibrated quantization pipeline on the real small models: the runtime
// decodes GPTQ files to exactly the quantizer's own matrices (act-order with
// static groups, and with groups in the permuted order stored with a column
// order, whose logits equal a dense forward pass with those matrices), AWQ's folded
// scales keep the full-precision logits, and GPTQ/AWQ files score better than
// RTN on text the calibration never saw.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <numeric>

#include "engine/forward.h"
#include "eval/perplexity.h"
#include "kernels/matmul.h"
#include "kernels/matmul_dispatch.h"
#include "models/loader.h"
#include "models/quant_calibrated.h"
#include "test_data.h"

using namespace nibble;
using nibble::test::data_path;
using nibble::test::read_text;

namespace {

std::string temp_file(const std::string& name) {
    return (nibble::test::temp_dir("nibble_test_quant_calibrated") / name).string();
}

struct SmallModel {
    std::string bin, tokenizer;
};
const SmallModel kStories{"stories260K.bin", "tok512.model"};
const SmallModel kAidreams{"extra/aidreams260K.bin", "extra/aidreams260K_tok512.bin"};

// The excerpt's documents: the first `split` for calibration, the rest for scoring.
std::vector<std::string> excerpt_docs() {
    return split_documents(read_text(data_path("corpus/tinystories_excerpt.txt")));
}

std::string join(const std::vector<std::string>& docs, size_t begin, size_t end) {
    std::string text;
    for (size_t i = begin; i < end && i < docs.size(); ++i) text += docs[i] + "\n";
    return text;
}

CalibSequences calib_of(const Tokenizer& tok, const Model& m, int64_t tokens) {
    const auto docs = excerpt_docs();
    return calibration_sequences(join(docs, 0, docs.size() / 2), tok, tokens, m.config.max_seq_len);
}

// Logits of every position of a few prompts.
std::vector<float> logits_of(const Model& m, const Tokenizer& tok) {
    std::vector<float> out;
    for (const char* prompt : {"Once upon a time, there was a little girl named Lily.",
                               "The cat sat on the mat and looked at the big red ball"}) {
        const auto ids = tok.encode(prompt, true);
        RuntimeOptions ro;
        ro.max_batch = 64;
        ro.kv_type = KvType::f32;
        InferenceState state(m, ro);
        std::vector<BatchToken> batch;
        for (size_t i = 0; i < ids.size(); ++i) batch.push_back({ids[i], int32_t(i), 0, true});
        const float* l = state.forward(batch);
        out.insert(out.end(), l, l + batch.size() * size_t(m.config.vocab_size));
    }
    return out;
}

double second_half_perplexity(const Model& m, const Tokenizer& tok) {
    const auto docs = excerpt_docs();
    std::vector<std::vector<int32_t>> ids;
    for (size_t i = docs.size() / 2; i < docs.size(); ++i)
        ids.push_back(tok.encode(docs[i], false));
    RuntimeOptions ro;
    ro.max_batch = 128;
    InferenceState state(m, ro);
    return perplexity(state, ids, tok.bos_id()).perplexity();
}

QuantizeRecipe linear_only(WeightFormat f, int group) {
    QuantizeRecipe r;
    r.format = f;
    r.group_size = group;
    r.keep = {parse_keep_rule("token_embd.weight=f32"), parse_keep_rule("output.weight=f32")};
    return r;
}

}  // namespace

TEST_CASE("GPTQ act-order (static groups) files decode to exactly the quantizer's own matrices") {
    const Model src = load_model(data_path(kStories.bin));
    const Tokenizer tok = Tokenizer::from_file(data_path(kStories.tokenizer));
    const CalibSequences calib = calib_of(tok, src, 1024);
    for (WeightFormat f : {WeightFormat::q4, WeightFormat::q4a, WeightFormat::nf4}) {
        CalibratedOptions o;
        o.method = QuantMethod::gptq;
        o.gptq.act_order = true;
        o.gptq.static_groups = true;
        std::map<std::string, RowMatrix> own;
        o.on_matrix = [&](const std::string& name, const QuantizedMatrix& q,
                          const std::vector<int32_t>& order) {
            CHECK(order.empty());
            own[name] = q.values;
        };
        const std::string path = temp_file("gptq_act_order.nbl");
        quantize_calibrated_to_file(src, linear_only(f, 32), o, calib, path, "");
        const Model m = load_model(path);
        REQUIRE(own.size() == size_t(7 * src.config.n_layers));
        int checked = 0;
        for (const Tensor* t : m.tensors()) {
            if (!own.count(t->name)) continue;
            const RowMatrix& ref = own[t->name];
            CAPTURE(t->name);
            CHECK(t->column_order == nullptr);
            CHECK(dequantize(t->view) == ref);
            // The runtime's product with a vector equals the product with ref.
            Eigen::VectorXf x = Eigen::VectorXf::LinSpaced(t->cols(), -1.0f, 1.0f);
            Eigen::VectorXf y(t->rows());
            reference::matmul(t->view, x.data(), 1, y.data());
            const Eigen::VectorXf expect = ref * x;
            CHECK((y - expect).norm() <= 1e-5f * (1.0f + expect.norm()));
            ++checked;
        }
        CHECK(checked == 7 * src.config.n_layers);
    }
}

namespace {

// m's matrix `t` as the runtime decodes it, in the model's column order.
RowMatrix runtime_matrix(const Tensor& t) {
    RowMatrix stored = dequantize(t.view);
    if (t.column_order == nullptr) return stored;
    RowMatrix out(stored.rows(), stored.cols());
    for (int64_t j = 0; j < t.cols(); ++j) out.col(t.column_order[j]) = stored.col(j);
    return out;
}

std::vector<int32_t> order_of(const Tensor& t) {
    return t.column_order ? std::vector<int32_t>(t.column_order, t.column_order + t.cols())
                          : std::vector<int32_t>();
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b, double* max_abs) {
    double diff = 0.0;
    *max_abs = 0.0;
    for (size_t i = 0; i < a.size(); ++i) {
        diff = std::max(diff, double(std::fabs(a[i] - b[i])));
        *max_abs = std::max(*max_abs, double(std::fabs(a[i])));
    }
    return diff;
}

}  // namespace

TEST_CASE("GPTQ act-order with groups in the permuted order: stored column orders, exact") {
    const Model src = load_model(data_path(kStories.bin));
    const Tokenizer tok = Tokenizer::from_file(data_path(kStories.tokenizer));
    const CalibSequences calib = calib_of(tok, src, 1024);
    for (WeightFormat f : {WeightFormat::q4, WeightFormat::q4a, WeightFormat::nf4}) {
        const std::string fname = format_name(f);
        CAPTURE(fname);
        CalibratedOptions o;
        o.method = QuantMethod::gptq;
        o.gptq.act_order = true;
        // The quantizer's own matrices, put back in the original column order
        // with the order it reports, and those orders (empty: not permuted).
        std::map<std::string, RowMatrix> own;
        std::map<std::string, std::vector<int32_t>> orders;
        o.on_matrix = [&](const std::string& name, const QuantizedMatrix& q,
                          const std::vector<int32_t>& order) {
            RowMatrix m = q.values;
            for (size_t j = 0; j < order.size(); ++j)
                m.col(order[j]) = q.values.col(Eigen::Index(j));
            own[name] = m;
            orders[name] = order;
        };
        const std::string path = temp_file("gptq_act_order_permuted.nbl");
        quantize_calibrated_to_file(src, linear_only(f, 32), o, calib, path, "");
        const Model m = load_model(path);  // validates: q/k/v and gate/up share orders
        REQUIRE(own.size() == size_t(7 * src.config.n_layers));
        // Every layer is stored permuted except ffn_down: its 172 columns are
        // too few for a stored order's alignment, so it gets static groups.
        int checked = 0, permuted = 0;
        for (const Tensor* t : m.tensors()) {
            if (!own.count(t->name)) continue;
            CAPTURE(t->name);
            const bool storable = t->cols() % 16 == 0;
            CHECK(storable == (t->name.find("ffn_down") == std::string::npos));
            CHECK((t->column_order != nullptr) == storable);
            CHECK(order_of(*t) == orders[t->name]);
            std::vector<int32_t> identity(size_t(t->cols()));
            std::iota(identity.begin(), identity.end(), 0);
            permuted += storable && orders[t->name] != identity;
            CHECK(runtime_matrix(*t) == own[t->name]);
            ++checked;
        }
        CHECK(checked == 7 * src.config.n_layers);
        CHECK(permuted == 6 * src.config.n_layers);  // act-order moved columns in every one
        for (const LayerWeights& l : m.layers) {
            CHECK(order_of(l.wq) == order_of(l.wk));
            CHECK(order_of(l.wq) == order_of(l.wv));
            CHECK(order_of(l.w_gate) == order_of(l.w_up));
        }

        // The runtime's logits (activations gathered into each stored order)
        // equal those of the same model with the quantizer's matrices in f32,
        // with FP32 products on both sides (only the sums' order differs).
        Model dense = load_model(path);
        std::vector<RowMatrix> keep;
        keep.reserve(own.size());
        for (Tensor* t : dense.tensors()) {
            if (!own.count(t->name)) continue;
            keep.push_back(own[t->name]);
            t->view = MatrixView{make_layout(WeightFormat::f32, t->rows(), t->cols()),
                                 reinterpret_cast<const uint8_t*>(keep.back().data())};
            t->column_order = nullptr;
        }
        set_matmul_kernel(MatmulKernel::reference);
        const std::vector<float> got = logits_of(m, tok), ref = logits_of(dense, tok);
        set_matmul_kernel(MatmulKernel::automatic);
        REQUIRE(got.size() == ref.size());
        double max_abs = 0.0;
        const double diff = max_abs_diff(ref, got, &max_abs);
        MESSAGE(fname << ": max logit difference " << diff << " (max |logit| " << max_abs << ")");
        CHECK(diff <= 1e-5 * max_abs);
    }
}

TEST_CASE("AWQ scale folding leaves the full-precision logits unchanged") {
    for (const SmallModel& sm : {kStories, kAidreams}) {
        const Model src = load_model(data_path(sm.bin));
        const Tokenizer tok = Tokenizer::from_file(data_path(sm.tokenizer));
        CalibratedOptions o;
        o.method = QuantMethod::awq;
        o.fold_only = true;
        const std::string path = temp_file("awq_folded.nbl");
        quantize_calibrated_to_file(src, linear_only(WeightFormat::q4, 32), o,
                                    calib_of(tok, src, 1024), path, "");
        const Model m = load_model(path);
        // The folding did something: some norm weight and some matrix changed.
        double norm_change = 0.0, matrix_change = 0.0;
        for (int l = 0; l < src.config.n_layers; ++l) {
            const auto& a = src.layers[size_t(l)];
            const auto& b = m.layers[size_t(l)];
            for (int64_t j = 0; j < src.config.dim; ++j) {
                norm_change = std::max(
                    norm_change, double(std::fabs(a.attn_norm.f32()[j] - b.attn_norm.f32()[j])));
            }
            matrix_change = std::max(
                matrix_change, double((dense_matrix(a.w_down) - dense_matrix(b.w_down)).norm()));
        }
        CAPTURE(sm.bin);
        CHECK(norm_change > 1e-3);
        CHECK(matrix_change > 1e-3);
        const std::vector<float> ref = logits_of(src, tok), got = logits_of(m, tok);
        REQUIRE(ref.size() == got.size());
        double max_diff = 0.0, max_abs = 0.0;
        for (size_t i = 0; i < ref.size(); ++i) {
            max_diff = std::max(max_diff, double(std::fabs(ref[i] - got[i])));
            max_abs = std::max(max_abs, double(std::fabs(ref[i])));
        }
        MESSAGE(sm.bin << ": max logit change " << max_diff << " (max |logit| " << max_abs << ")");
        CHECK(max_diff <= 1e-4 * max_abs);
    }
}

TEST_CASE("GPTQ and AWQ beat RTN on held-out text (stories260K, q4 g32)") {
    const Model src = load_model(data_path(kStories.bin));
    const Tokenizer tok = Tokenizer::from_file(data_path(kStories.tokenizer));
    const CalibSequences calib = calib_of(tok, src, 4096);
    const QuantizeRecipe recipe = linear_only(WeightFormat::q4, 32);
    const std::string rtn_path = temp_file("rtn.nbl");
    quantize_model_to_file(src, recipe, rtn_path, "");
    const double fp32 = second_half_perplexity(src, tok);
    const double rtn = second_half_perplexity(load_model(rtn_path), tok) - fp32;
    for (QuantMethod method : {QuantMethod::gptq, QuantMethod::awq}) {
        CalibratedOptions o;
        o.method = method;
        o.awq_search_tokens = 2048;
        const std::string path = temp_file("calibrated.nbl");
        quantize_calibrated_to_file(src, recipe, o, calib, path, "");
        const double increase = second_half_perplexity(load_model(path), tok) - fp32;
        MESSAGE(std::string(method_name(method))
                << ": perplexity increase " << increase << " against RTN's " << rtn);
        CHECK(increase < rtn);
    }
}

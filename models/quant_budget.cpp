// Size budget: calibration weights, per-format errors and the greedy allocation
// (see quant_budget.h).
#include "models/quant_budget.h"

#include <cstdio>
#include <map>
#include <stdexcept>

#include "kernels/quantize.h"

namespace nibble {

namespace {

// Mean square of each column of x.
std::vector<double> column_mean_squares(const RowMatrix& x) {
    std::vector<double> out(size_t(x.cols()), 0.0);
    for (Eigen::Index r = 0; r < x.rows(); ++r)
        for (Eigen::Index c = 0; c < x.cols(); ++c) out[size_t(c)] += double(x(r, c)) * x(r, c);
    for (double& v : out) v /= double(std::max<Eigen::Index>(1, x.rows()));
    return out;
}

bool llama_style(const ModelConfig& c) {
    return !c.qkv_bias && !c.qk_norm && !c.post_norms && c.head_size == 0 &&
           c.activation == FfnActivation::silu && c.embedding_scale == 1.0f &&
           c.rope_factors == RopeFactors::none;
}

// E[x_c^2] of every linear layer's input, by tensor name (full-precision pass).
std::map<std::string, std::vector<double>> input_weights(const Model& m,
                                                         const CalibSequences& calib) {
    std::map<std::string, std::vector<double>> out;
    if (!llama_style(m.config) || calib.size() == 0) return out;
    const ModelConfig& c = m.config;
    RowMatrix x = embed(m, calib);
    for (int l = 0; l < c.n_layers; ++l) {
        const LayerWeights& lw = m.layers[size_t(l)];
        const DenseBlock b = load_block(m, l);
        const RowMatrix xn = rmsnorm_rows(x, b[&LayerWeights::attn_norm], c.norm_eps);
        const std::vector<double> hx = column_mean_squares(xn);
        for (const Tensor* t : {&lw.wq, &lw.wk, &lw.wv}) out[t->name] = hx;
        const RowMatrix att =
            attention(c, calib, linear(xn, b[&LayerWeights::wq]), linear(xn, b[&LayerWeights::wk]),
                      linear(xn, b[&LayerWeights::wv]));
        out[lw.wo.name] = column_mean_squares(att);
        x += linear(att, b[&LayerWeights::wo]);
        const RowMatrix xf = rmsnorm_rows(x, b[&LayerWeights::ffn_norm], c.norm_eps);
        const std::vector<double> hf = column_mean_squares(xf);
        out[lw.w_gate.name] = hf;
        out[lw.w_up.name] = hf;
        const RowMatrix hidden =
            swiglu_rows(linear(xf, b[&LayerWeights::w_gate]), linear(xf, b[&LayerWeights::w_up]));
        out[lw.w_down.name] = column_mean_squares(hidden);
        x += linear(hidden, b[&LayerWeights::w_down]);
    }
    return out;
}

bool is_linear(const Tensor& t) {
    return t.name.rfind("blk.", 0) == 0 && t.rows() > 1;
}

}  // namespace

BudgetPlan plan_budget(const Model& source, const QuantizeRecipe& recipe,
                       const CalibSequences& calib, uint64_t target_bytes,
                       uint64_t overhead_bytes) {
    const QuantizePlan qp = plan_quantization(source, recipe);
    const std::map<std::string, std::vector<double>> weights = input_weights(source, calib);
    BudgetPlan plan;
    plan.target_bytes = target_bytes;
    plan.fixed_bytes = overhead_bytes;
    const WeightFormat ladder[] = {WeightFormat::q2, WeightFormat::q3, WeightFormat::q4,
                                   WeightFormat::q8};
    for (size_t i = 0; i < qp.sources.size(); ++i) {
        const Tensor& t = *qp.sources[i];
        if (qp.shared && &t == &source.output) continue;
        if (!is_linear(t)) {
            plan.fixed_bytes += qp.layouts[i].total_bytes;
            continue;
        }
        BudgetTensor bt;
        bt.name = t.name;
        bt.n_weights = t.rows() * t.cols();
        const RowMatrix w = dense_matrix(t);
        const auto found = weights.find(t.name);
        for (WeightFormat f : ladder) {
            const bool dq = recipe.double_quant && f != WeightFormat::q8;
            const PackedLayout l = make_layout(f, t.rows(), t.cols(), recipe.group_size, dq);
            const std::vector<uint8_t> blob = quantize_matrix(w.data(), l);
            const RowMatrix d = dequantize(MatrixView{l, blob.data()});
            double err = 0.0, energy = 0.0;
            for (Eigen::Index r = 0; r < w.rows(); ++r) {
                for (Eigen::Index c = 0; c < w.cols(); ++c) {
                    const double h = found != weights.end() ? found->second[size_t(c)] : 1.0;
                    const double e = double(w(r, c)) - d(r, c);
                    err += h * e * e;
                    energy += h * double(w(r, c)) * w(r, c);
                }
            }
            bt.formats.push_back(f);
            bt.bytes.push_back(l.total_bytes);
            bt.errors.push_back(energy > 0.0 ? err / energy : 0.0);
        }
        plan.tensors.push_back(std::move(bt));
    }
    uint64_t total = plan.fixed_bytes;
    for (const BudgetTensor& bt : plan.tensors) total += bt.bytes[0];
    if (total > target_bytes) {
        throw std::invalid_argument("--target-size/--bpw: " + std::to_string(target_bytes) +
                                    " bytes is below the smallest mix (" + std::to_string(total) +
                                    " bytes, every linear layer q2)");
    }
    // Greedy: the upgrade (to any larger format) with the largest error
    // reduction per added byte that still fits, until none does.
    for (;;) {
        double best_gain = 0.0;
        BudgetTensor* best = nullptr;
        size_t best_to = 0;
        for (BudgetTensor& bt : plan.tensors) {
            for (size_t to = bt.chosen + 1; to < bt.formats.size(); ++to) {
                const uint64_t extra = bt.bytes[to] - bt.bytes[bt.chosen];
                const double gain = bt.errors[bt.chosen] - bt.errors[to];
                if (total + extra > target_bytes || !(gain > 0.0)) continue;
                const double per_byte = gain / double(std::max<uint64_t>(extra, 1));
                if (per_byte > best_gain) best_gain = per_byte, best = &bt, best_to = to;
            }
        }
        if (best == nullptr) break;
        total += best->bytes[best_to] - best->bytes[best->chosen];
        best->chosen = best_to;
    }
    plan.predicted_bytes = total;
    return plan;
}

QuantizeRecipe budget_recipe(const QuantizeRecipe& recipe, const BudgetPlan& plan) {
    QuantizeRecipe out = recipe;
    for (const BudgetTensor& bt : plan.tensors) {
        std::string escaped;
        for (char ch : bt.name) {
            if (ch == '.') escaped += '\\';
            escaped += ch;
        }
        out.keep.push_back(
            parse_keep_rule("re:" + escaped + "=" + format_name(bt.formats[bt.chosen])));
    }
    return out;
}

std::string format_budget(const BudgetPlan& plan) {
    std::string s = "size budget: tensor, format, bits per weight, weighted error / q8's\n";
    char line[256];
    std::map<std::string, int> counts;
    for (const BudgetTensor& bt : plan.tensors) {
        const size_t i = bt.chosen;
        const double q8 = bt.errors.back();
        std::snprintf(line, sizeof line, "  %-28s %-3s %6.3f %10.2f\n", bt.name.c_str(),
                      format_name(bt.formats[i]), 8.0 * double(bt.bytes[i]) / double(bt.n_weights),
                      q8 > 0 ? bt.errors[i] / q8 : 0.0);
        s += line;
        ++counts[format_name(bt.formats[i])];
    }
    s += "  formats:";
    for (const auto& [name, n] : counts) s += " " + name + " x" + std::to_string(n);
    std::snprintf(line, sizeof line, "\n  predicted %llu bytes (target %llu)\n",
                  static_cast<unsigned long long>(plan.predicted_bytes),
                  static_cast<unsigned long long>(plan.target_bytes));
    s += line;
    return s;
}

}  // namespace nibble

// Size budget: calibration weights, per-format errors and the greedy allocation
// (see quant_budget.h).
#include "models/quant_budget.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <map>
#include <stdexcept>

#include "kernels/quantize.h"

namespace nibble {

namespace {

// What a tensor may get: q2 and q3 also with groups of 128 and 64 columns when
// the recipe's are smaller (fewer parameters per weight: what the smallest
// budgets need), then q2, q3, q4 and q8 with the recipe's group size.
std::vector<BudgetRung> ladder(const QuantizeRecipe& recipe) {
    std::vector<BudgetRung> out;
    for (WeightFormat f : {WeightFormat::q2, WeightFormat::q3}) {
        for (int g : {128, 64}) {
            if (g > recipe.group_size) out.push_back({f, g});
        }
    }
    for (WeightFormat f : {WeightFormat::q2, WeightFormat::q3, WeightFormat::q4, WeightFormat::q8})
        out.push_back({f, recipe.group_size});
    return out;
}

// Models of at most this many weights get the end-to-end measure (output_kl);
// larger ones the block-local one (block_errors), which keeps one block in FP32.
constexpr int64_t kEndToEndMaxWeights = int64_t(1) << 26;
// The end-to-end passes run on the first whole calibration sequences holding at
// most this many tokens (at least one sequence).
constexpr int64_t kEndToEndTokens = 2048;

CalibSequences leading(const CalibSequences& calib, int64_t max_tokens) {
    CalibSequences out;
    for (int64_t i = 0; i < calib.count(); ++i) {
        const int64_t end = calib.starts[size_t(i) + 1];
        if (i > 0 && end > max_tokens) break;
        out.starts.push_back(end);
    }
    out.tokens.assign(calib.tokens.begin(), calib.tokens.begin() + ptrdiff_t(out.starts.back()));
    return out;
}

bool llama_style(const ModelConfig& c) {
    return !c.qkv_bias && !c.qk_norm && !c.post_norms && c.head_size == 0 &&
           c.activation == FfnActivation::silu && c.embedding_scale == 1.0f &&
           c.rope_factors == RopeFactors::none;
}

PackedLayout rung_layout(const BudgetRung& r, int64_t rows, int64_t cols,
                         const QuantizeRecipe& recipe) {
    const bool dq = recipe.double_quant && r.format != WeightFormat::q8;
    return make_layout(r.format, rows, cols, r.group_size, dq);
}

// w rounded to rung r (RTN, as the recipe would store it) and decoded.
RowMatrix rounded(const RowMatrix& w, const BudgetRung& r, const QuantizeRecipe& recipe) {
    const PackedLayout l = rung_layout(r, w.rows(), w.cols(), recipe);
    const std::vector<uint8_t> blob = quantize_matrix(w.data(), l);
    return dequantize(MatrixView{l, blob.data()});
}

double squared_norm(const RowMatrix& m) {
    return double(m.squaredNorm());
}

// For every linear layer and ladder format: the squared change of its
// sub-block's contribution to the residual stream (attention output through o,
// FFN output through down) when that layer alone is rounded, relative to the
// residual stream's squared norm at the block's input; full-precision pass.
std::map<std::string, std::vector<double>> block_errors(const Model& m, const CalibSequences& calib,
                                                        const QuantizeRecipe& recipe) {
    std::map<std::string, std::vector<double>> out;
    if (!llama_style(m.config) || calib.size() == 0) return out;
    const ModelConfig& c = m.config;
    RowMatrix x = embed(m, calib);
    for (int l = 0; l < c.n_layers; ++l) {
        const LayerWeights& lw = m.layers[size_t(l)];
        const DenseBlock b = load_block(m, l);
        const RowMatrix& wq = b[&LayerWeights::wq];
        const RowMatrix& wk = b[&LayerWeights::wk];
        const RowMatrix& wv = b[&LayerWeights::wv];
        const RowMatrix& wo = b[&LayerWeights::wo];
        const double scale = std::max(squared_norm(x), 1e-30);
        const RowMatrix xn = rmsnorm_rows(x, b[&LayerWeights::attn_norm], c.norm_eps);
        const RowMatrix q = linear(xn, wq), k = linear(xn, wk), v = linear(xn, wv);
        const RowMatrix att = attention(c, calib, q, k, v);
        const RowMatrix ref = linear(att, wo);
        for (const BudgetRung& f : ladder(recipe)) {
            const auto err = [&](const RowMatrix& a, const RowMatrix& o) {
                return squared_norm(linear(a, o) - ref) / scale;
            };
            out[lw.wq.name].push_back(
                err(attention(c, calib, linear(xn, rounded(wq, f, recipe)), k, v), wo));
            out[lw.wk.name].push_back(
                err(attention(c, calib, q, linear(xn, rounded(wk, f, recipe)), v), wo));
            out[lw.wv.name].push_back(
                err(attention(c, calib, q, k, linear(xn, rounded(wv, f, recipe))), wo));
            out[lw.wo.name].push_back(err(att, rounded(wo, f, recipe)));
        }
        x += ref;
        const RowMatrix& wg = b[&LayerWeights::w_gate];
        const RowMatrix& wu = b[&LayerWeights::w_up];
        const RowMatrix& wd = b[&LayerWeights::w_down];
        const double scale_f = std::max(squared_norm(x), 1e-30);
        const RowMatrix xf = rmsnorm_rows(x, b[&LayerWeights::ffn_norm], c.norm_eps);
        const RowMatrix g = linear(xf, wg), u = linear(xf, wu);
        const RowMatrix hidden = swiglu_rows(g, u);
        const RowMatrix ref_f = linear(hidden, wd);
        for (const BudgetRung& f : ladder(recipe)) {
            const auto err = [&](const RowMatrix& h, const RowMatrix& d) {
                return squared_norm(linear(h, d) - ref_f) / scale_f;
            };
            out[lw.w_gate.name].push_back(
                err(swiglu_rows(linear(xf, rounded(wg, f, recipe)), u), wd));
            out[lw.w_up.name].push_back(
                err(swiglu_rows(g, linear(xf, rounded(wu, f, recipe))), wd));
            out[lw.w_down.name].push_back(err(hidden, rounded(wd, f, recipe)));
        }
        x += ref_f;
    }
    return out;
}

// One transformer block (LLaMA) applied to the residual stream x.
void run_block(const ModelConfig& c, const CalibSequences& calib, const DenseBlock& b,
               RowMatrix& x) {
    const RowMatrix xn = rmsnorm_rows(x, b[&LayerWeights::attn_norm], c.norm_eps);
    x += linear(attention(c, calib, linear(xn, b[&LayerWeights::wq]),
                          linear(xn, b[&LayerWeights::wk]), linear(xn, b[&LayerWeights::wv])),
                b[&LayerWeights::wo]);
    const RowMatrix xf = rmsnorm_rows(x, b[&LayerWeights::ffn_norm], c.norm_eps);
    x += linear(
        swiglu_rows(linear(xf, b[&LayerWeights::w_gate]), linear(xf, b[&LayerWeights::w_up])),
        b[&LayerWeights::w_down]);
}

// Row-wise log-softmax of the logits of the final residual stream x.
RowMatrix log_probs(const Model& m, const RowMatrix& out_norm, const RowMatrix& out,
                    const RowMatrix& x) {
    RowMatrix logits = linear(rmsnorm_rows(x, out_norm, m.config.norm_eps), out);
    for (Eigen::Index r = 0; r < logits.rows(); ++r) {
        const float mx = logits.row(r).maxCoeff();
        const double lse = std::log((logits.row(r).array() - mx).exp().cast<double>().sum());
        logits.row(r).array() -= mx + float(lse);
    }
    return logits;
}

// Mean KL(p || q) per token of two log-probability matrices.
double mean_kl(const RowMatrix& lp, const RowMatrix& lq) {
    double kl = 0.0;
    for (Eigen::Index r = 0; r < lp.rows(); ++r)
        kl += ((lp.row(r).array() - lq.row(r).array()) * lp.row(r).array().exp())
                  .cast<double>()
                  .sum();
    return kl / double(std::max<Eigen::Index>(1, lp.rows()));
}

// For every linear layer and ladder format: the mean KL divergence of the
// model's next-token distribution over the calibration tokens when that layer
// alone is rounded (full precision elsewhere). Holds every block in FP32.
// With `ends`, also the embedding's and the classifier's.
std::map<std::string, std::vector<double>> output_kl(const Model& m, const CalibSequences& calib,
                                                     const QuantizeRecipe& recipe, bool ends) {
    std::map<std::string, std::vector<double>> out;
    if (!llama_style(m.config) || calib.size() == 0) return out;
    const ModelConfig& c = m.config;
    std::vector<DenseBlock> blocks;
    std::vector<RowMatrix> inputs;  // the residual stream entering each block
    RowMatrix x = embed(m, calib);
    for (int l = 0; l < c.n_layers; ++l) {
        blocks.push_back(load_block(m, l));
        inputs.push_back(x);
        run_block(c, calib, blocks.back(), x);
    }
    const RowMatrix out_norm = dense_matrix(m.output_norm), out_w = dense_matrix(m.output);
    const RowMatrix ref = log_probs(m, out_norm, out_w, x);
    for (int l = 0; l < c.n_layers; ++l) {
        const LayerWeights& lw = m.layers[size_t(l)];
        for (Tensor LayerWeights::*member :
             {&LayerWeights::wq, &LayerWeights::wk, &LayerWeights::wv, &LayerWeights::wo,
              &LayerWeights::w_gate, &LayerWeights::w_up, &LayerWeights::w_down}) {
            RowMatrix& w = blocks[size_t(l)][member];
            const RowMatrix saved = w;
            std::vector<double>& kl = out[(lw.*member).name];
            for (const BudgetRung& f : ladder(recipe)) {
                w = rounded(saved, f, recipe);
                RowMatrix xl = inputs[size_t(l)];
                for (int j = l; j < c.n_layers; ++j) run_block(c, calib, blocks[size_t(j)], xl);
                kl.push_back(mean_kl(ref, log_probs(m, out_norm, out_w, xl)));
            }
            w = saved;
        }
    }
    if (!ends) return out;
    const RowMatrix emb = dense_matrix(m.token_embedding);
    for (const BudgetRung& f : ladder(recipe)) {
        const RowMatrix e = rounded(emb, f, recipe);
        RowMatrix xe(calib.size(), c.dim);
        for (int64_t i = 0; i < calib.size(); ++i) xe.row(i) = e.row(calib.tokens[size_t(i)]);
        for (int l = 0; l < c.n_layers; ++l) run_block(c, calib, blocks[size_t(l)], xe);
        out[m.token_embedding.name].push_back(mean_kl(ref, log_probs(m, out_norm, out_w, xe)));
        out[m.output.name].push_back(
            mean_kl(ref, log_probs(m, out_norm, rounded(out_w, f, recipe), x)));
    }
    return out;
}

// Without a calibration pass: the relative squared weight error.
double weight_error(const RowMatrix& w, const BudgetRung& f, const QuantizeRecipe& recipe) {
    return squared_norm(w - rounded(w, f, recipe)) / std::max(squared_norm(w), 1e-30);
}

bool is_linear(const Tensor& t) {
    return t.name.rfind("blk.", 0) == 0 && t.rows() > 1;
}

// Whether a whole-file budget also chooses the embedding's and the
// classifier's formats: with the end-to-end measure, when they are stored
// apart and no --keep rule names either.
bool budget_ends(const Model& m, const QuantizeRecipe& recipe, const BudgetTarget& target,
                 int64_t n_weights) {
    if (target.file_bytes == 0 || target.linear_bpw > 0.0 || n_weights > kEndToEndMaxWeights ||
        m.output.blob_id() == m.token_embedding.blob_id()) {
        return false;
    }
    for (const KeepRule& k : recipe.keep) {
        if (k.matches(m.token_embedding.name) || k.matches(m.output.name)) return false;
    }
    return true;
}

}  // namespace

BudgetPlan plan_budget(const Model& source, const QuantizeRecipe& recipe,
                       const CalibSequences& calib, const BudgetTarget& target,
                       uint64_t overhead_bytes) {
    const QuantizePlan qp = plan_quantization(source, recipe);
    int64_t n_weights = 0;
    for (const Tensor* t : qp.sources) n_weights += t->rows() * t->cols();
    const bool ends = budget_ends(source, recipe, target, n_weights);
    const std::map<std::string, std::vector<double>> errors =
        n_weights <= kEndToEndMaxWeights
            ? output_kl(source, leading(calib, kEndToEndTokens), recipe, ends)
            : block_errors(source, calib, recipe);
    BudgetPlan plan;
    plan.fixed_bytes = overhead_bytes;
    for (size_t i = 0; i < qp.sources.size(); ++i) {
        const Tensor& t = *qp.sources[i];
        if (qp.shared && &t == &source.output) continue;
        const bool linear = is_linear(t);
        if (!linear && !(ends && (&t == &source.token_embedding || &t == &source.output))) {
            plan.fixed_bytes += qp.layouts[i].total_bytes;
            continue;
        }
        BudgetTensor bt;
        bt.name = t.name;
        bt.linear = linear;
        bt.n_weights = t.rows() * t.cols();
        const auto found = errors.find(t.name);
        const RowMatrix w = found == errors.end() ? dense_matrix(t) : RowMatrix();
        const std::vector<BudgetRung> rungs = ladder(recipe);
        // The ladder by size, smallest first (the greedy below only moves up).
        std::vector<size_t> order(rungs.size());
        for (size_t i = 0; i < order.size(); ++i) order[i] = i;
        const auto bytes_of = [&](size_t i) {
            return rung_layout(rungs[i], t.rows(), t.cols(), recipe).total_bytes;
        };
        std::stable_sort(order.begin(), order.end(),
                         [&](size_t a, size_t b) { return bytes_of(a) < bytes_of(b); });
        for (size_t i : order) {
            bt.rungs.push_back(rungs[i]);
            bt.bytes.push_back(bytes_of(i));
            bt.errors.push_back(found != errors.end() ? found->second[i]
                                                      : weight_error(w, rungs[i], recipe));
        }
        plan.tensors.push_back(std::move(bt));
    }
    uint64_t total = plan.fixed_bytes;
    for (const BudgetTensor& bt : plan.tensors) {
        total += bt.bytes[0];
        if (bt.linear) plan.linear_weights += bt.n_weights;
    }
    const uint64_t target_bytes =
        target.linear_bpw > 0.0
            ? plan.fixed_bytes + uint64_t(target.linear_bpw * double(plan.linear_weights) / 8.0)
            : target.file_bytes;
    plan.target_bytes = target_bytes;
    if (total > target_bytes) {
        throw std::invalid_argument("--target-size/--bpw: " + std::to_string(target_bytes) +
                                    " bytes is below the smallest mix (" + std::to_string(total) +
                                    " bytes, every budgeted tensor q2; at most " +
                                    std::to_string(plan.fixed_bytes) + " bytes are not budgeted)");
    }
    // Greedy: the upgrade (to any larger format) with the largest error
    // reduction per added byte that still fits, until none does.
    for (;;) {
        double best_gain = 0.0;
        BudgetTensor* best = nullptr;
        size_t best_to = 0;
        for (BudgetTensor& bt : plan.tensors) {
            for (size_t to = bt.chosen + 1; to < bt.rungs.size(); ++to) {
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
        out.keep.push_back(parse_keep_rule("re:" + escaped + "=" + rung_name(bt.rungs[bt.chosen])));
    }
    return out;
}

std::string rung_name(const BudgetRung& r) {
    return std::string(format_name(r.format)) + ":" + std::to_string(r.group_size);
}

std::string format_budget(const BudgetPlan& plan) {
    std::string s = "size budget: tensor, format:group, bits per weight, error (from the smallest";
    if (!plan.tensors.empty()) {
        s += ":";
        for (const BudgetRung& r : plan.tensors.front().rungs) {
            s += ' ';
            s += rung_name(r);
        }
    }
    s += ")\n";
    char line[256];
    std::map<std::string, int> counts;
    for (const BudgetTensor& bt : plan.tensors) {
        const size_t i = bt.chosen;
        std::snprintf(line, sizeof line, "  %-28s %-6s %6.3f ", bt.name.c_str(),
                      rung_name(bt.rungs[i]).c_str(),
                      8.0 * double(bt.bytes[i]) / double(bt.n_weights));
        s += line;
        for (double e : bt.errors) {
            std::snprintf(line, sizeof line, " %.3g", e);
            s += line;
        }
        s += "\n";
        ++counts[rung_name(bt.rungs[i])];
    }
    s += "  formats:";
    for (const auto& [name, n] : counts) s += " " + name + " x" + std::to_string(n);
    uint64_t linear_bytes = 0;
    for (const BudgetTensor& bt : plan.tensors) {
        if (bt.linear) linear_bytes += bt.bytes[bt.chosen];
    }
    std::snprintf(
        line, sizeof line,
        "\n  linear layers %.3f bits per weight; predicted %llu bytes (target %llu)\n",
        plan.linear_weights > 0 ? 8.0 * double(linear_bytes) / double(plan.linear_weights) : 0.0,
        static_cast<unsigned long long>(plan.predicted_bytes),
        static_cast<unsigned long long>(plan.target_bytes));
    s += line;
    return s;
}

}  // namespace nibble

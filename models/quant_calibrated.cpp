// Calibrated quantization of a whole model, block by block (see quant_calibrated.h).
#include "models/quant_calibrated.h"

#include <algorithm>
#include <stdexcept>

#include "kernels/quant_stats.h"
#include "models/documents.h"
#include "models/nibble_file.h"
#include "models/quant_awq.h"

namespace nibble {

std::optional<QuantMethod> parse_method(const std::string& name) {
    if (name == "rtn") return QuantMethod::rtn;
    if (name == "gptq") return QuantMethod::gptq;
    if (name == "awq") return QuantMethod::awq;
    if (name == "awq+gptq") return QuantMethod::awq_gptq;
    return std::nullopt;
}

const char* method_name(QuantMethod method) {
    switch (method) {
        case QuantMethod::rtn:
            return "rtn";
        case QuantMethod::gptq:
            return "gptq";
        case QuantMethod::awq:
            return "awq";
        case QuantMethod::awq_gptq:
            return "awq+gptq";
    }
    return "?";
}

CalibSequences calibration_sequences(const std::string& text, const Tokenizer& tokenizer,
                                     int64_t max_tokens, int context) {
    CalibSequences calib;
    for (const std::string& doc : split_documents(text)) {
        if (calib.size() >= max_tokens) break;
        std::vector<int32_t> ids = tokenizer.encode(doc, true);
        const int64_t room = std::min<int64_t>(context, max_tokens - calib.size());
        if (int64_t(ids.size()) > room) ids.resize(size_t(room));
        if (ids.size() < 2) continue;
        calib.tokens.insert(calib.tokens.end(), ids.begin(), ids.end());
        calib.starts.push_back(calib.size());
    }
    if (calib.size() == 0) throw std::runtime_error("the calibration text has no tokens");
    return calib;
}

namespace {

// The layer tensors of the calibrated LLaMA block (tensor_registry.h).
constexpr auto attn_norm = &LayerWeights::attn_norm;
constexpr auto wq = &LayerWeights::wq;
constexpr auto wk = &LayerWeights::wk;
constexpr auto wv = &LayerWeights::wv;
constexpr auto wo = &LayerWeights::wo;
constexpr auto ffn_norm = &LayerWeights::ffn_norm;
constexpr auto w_gate = &LayerWeights::w_gate;
constexpr auto w_up = &LayerWeights::w_up;
constexpr auto w_down = &LayerWeights::w_down;

double mse(const RowMatrix& a, const RowMatrix& b) {
    return double((a - b).squaredNorm()) / double(std::max<Eigen::Index>(1, a.size()));
}

// Quantizes, writes and reports the tensors of the calibrated path in order.
class CalibratedWriter {
  public:
    // plan: the stored layouts; search_layouts: the grids the AWQ losses round to;
    // orders: per tensor, the declared column order's storage (cols entries,
    // filled before the tensor is written) or empty.
    CalibratedWriter(const Model& source, const QuantizePlan& plan,
                     const std::vector<PackedLayout>& search_layouts,
                     std::vector<std::vector<int32_t>>& orders, const CalibratedOptions& o,
                     NibbleFileWriter& writer, QuantizeResult& result,
                     const QuantizeProgress& progress)
        : source_(source),
          plan_(plan),
          search_layouts_(search_layouts),
          orders_(orders),
          o_(o),
          writer_(writer),
          result_(result),
          progress_(progress),
          slots_(tensor_slots(source.config)) {
        rtn_.rule = ScaleRule::search;
    }

    const PackedLayout& layout(size_t i) const { return plan_.layouts[i]; }
    // The index in plan_ of a layer's tensor, or of one outside the layers.
    size_t slot(int layer, Tensor LayerWeights::*member) const {
        return tensor_slot_index(slots_, layer, member);
    }
    size_t slot(Tensor Model::*member) const { return tensor_slot_index(slots_, member); }
    const PackedLayout& search_layout(size_t i) const { return search_layouts_[i]; }

    // RTN (or a copy) of a tensor the calibration does not touch.
    void write_rtn(size_t i) {
        const Tensor& src = *plan_.sources[i];
        if (plan_.shared && &src == &source_.output) {
            finish(shared_report(result_, src.name));
            return;
        }
        blob_.assign(layout(i).total_bytes, 0);
        const TensorReport rep = quantize_tensor(src, layout(i), blob_.data(), rtn_);
        writer_.write_tensor(src.name, blob_.data(), blob_.size());
        finish(rep);
    }

    // A norm weight (possibly rescaled by AWQ; 1 x cols), stored f32.
    void write_vector(size_t i, const RowMatrix& v) {
        const std::string& name = plan_.sources[i]->name;
        writer_.write_tensor(name, reinterpret_cast<const uint8_t*>(v.data()),
                             size_t(v.size()) * 4);
        TensorReport rep;
        rep.name = name;
        rep.layout = layout(i);
        finish(rep);
    }

    // A linear layer given its FP32 weights and the Hessian of its inputs;
    // returns the stored matrix as the runtime decodes it, in the original
    // column order. order: GPTQ act-order's column order (empty: from h).
    RowMatrix write_linear(size_t i, const RowMatrix& w, const Eigen::MatrixXf& h, bool clip,
                           const std::vector<int32_t>& order = {}) {
        const std::string& name = plan_.sources[i]->name;
        try {
            return write_linear_unchecked(i, w, h, clip, order);
        } catch (const std::runtime_error& e) {
            throw std::runtime_error(name + ": " + e.what());
        }
    }

  private:
    RowMatrix write_linear_unchecked(size_t i, const RowMatrix& w, const Eigen::MatrixXf& h,
                                     bool clip, const std::vector<int32_t>& order) {
        const PackedLayout& l = layout(i);
        const std::string& name = plan_.sources[i]->name;
        std::vector<int32_t> stored_order;  // empty: the original column order
        if (!is_grouped(l.format)) {
            // Stored in the order of the layers sharing its input, if they are permuted.
            if (!orders_[i].empty())
                stored_order = order.empty() ? act_order_permutation(h) : order;
            blob_ = quantize_matrix(permuted_columns(w, stored_order).data(), l);
        } else {
            QuantizedMatrix q;
            switch (o_.method) {
                case QuantMethod::gptq:
                case QuantMethod::awq_gptq: {
                    GptqOptions go = o_.gptq;
                    go.order = order;
                    // A width that cannot carry a stored order: static groups.
                    if (go.act_order && orders_[i].empty()) go.static_groups = true;
                    GptqResult r = gptq_quantize(w, h, l, go);
                    q = std::move(r.matrix);
                    stored_order = std::move(r.column_order);
                    break;
                }
                case QuantMethod::awq:
                    q = clip ? awq_clip_quantize(w, h, l, ScaleRule::search)
                             : rtn_quantize(w, l, ScaleRule::search);
                    break;
                case QuantMethod::rtn:
                    q = rtn_quantize(w, l, ScaleRule::search);
                    break;
            }
            if (o_.on_matrix) o_.on_matrix(name, q, stored_order);
            blob_ = pack(q);
        }
        std::vector<int32_t>& declared = orders_[i];
        if (declared.size() != stored_order.size()) {
            throw std::logic_error("column order not declared as stored");
        }
        std::copy(stored_order.begin(), stored_order.end(), declared.begin());
        writer_.write_tensor(name, blob_.data(), blob_.size());
        const MatrixView view{l, blob_.data()};
        const QuantError err = quantization_error(permuted_columns(w, stored_order).data(), view);
        TensorReport rep;
        rep.name = name;
        rep.layout = l;
        rep.rel_rms = err.rel_rms;
        rep.mse = err.mse;
        finish(rep);
        return original_columns(dequantize(view), stored_order);
    }

    // w with stored column j = column order[j] (w itself if order is empty).
    static RowMatrix permuted_columns(const RowMatrix& w, const std::vector<int32_t>& order) {
        if (order.empty()) return w;
        RowMatrix out(w.rows(), w.cols());
        for (Eigen::Index j = 0; j < w.cols(); ++j) out.col(j) = w.col(order[size_t(j)]);
        return out;
    }
    // The inverse: stored columns back to the original order.
    static RowMatrix original_columns(const RowMatrix& stored, const std::vector<int32_t>& order) {
        if (order.empty()) return stored;
        RowMatrix out(stored.rows(), stored.cols());
        for (Eigen::Index j = 0; j < stored.cols(); ++j) out.col(order[size_t(j)]) = stored.col(j);
        return out;
    }

    void finish(const TensorReport& rep) {
        result_.tensors.push_back(rep);
        add_to_totals(result_, rep);
        ++done_;
        if (progress_) progress_(done_, int(plan_.sources.size()), rep.name);
    }

    const Model& source_;
    const QuantizePlan& plan_;
    const std::vector<PackedLayout>& search_layouts_;
    std::vector<std::vector<int32_t>>& orders_;
    const CalibratedOptions& o_;
    NibbleFileWriter& writer_;
    QuantizeResult& result_;
    const QuantizeProgress& progress_;
    // plan_.sources in canonical order (Model::tensors() walks the same list).
    std::vector<TensorSlot> slots_;
    QuantizeOptions rtn_;
    std::vector<uint8_t> blob_;
    int done_ = 0;
};

// What the AWQ losses compare: a layer with its columns scaled by s, rounded
// with RTN (or only scaled when its format is not grouped).
RowMatrix scaled_rounded(const RowMatrix& w, const std::vector<float>& s,
                         const PackedLayout& layout) {
    if (is_grouped(layout.format)) return rtn_scaled(w, s, layout, ScaleRule::search);
    RowMatrix out = w;
    scale_columns(out, s);
    return out;
}

// The loss of a single linear layer's scale search: the output error of
// Q(W s)/s over the inputs whose Hessian is h.
double linear_loss(const RowMatrix& w, const std::vector<float>& s, const PackedLayout& layout,
                   const Eigen::MatrixXf& h) {
    if (!is_grouped(layout.format)) return 0.0;
    RowMatrix d = rtn_scaled(w, s, layout, ScaleRule::search);
    for (Eigen::Index j = 0; j < d.cols(); ++j) d.col(j) /= s[size_t(j)];
    return output_error(w - d, h);
}

// The first whole sequences of calib holding at most max_tokens tokens (at
// least one sequence): the rows the block-output losses of AWQ are measured on.
CalibSequences leading_sequences(const CalibSequences& calib, int64_t max_tokens) {
    CalibSequences out;
    for (int64_t i = 0; i < calib.count(); ++i) {
        const int64_t end = calib.starts[size_t(i) + 1];
        if (i > 0 && end > max_tokens) break;
        out.starts.push_back(end);
    }
    out.tokens.assign(calib.tokens.begin(), calib.tokens.begin() + ptrdiff_t(out.starts.back()));
    return out;
}

RowMatrix divided(const RowMatrix& x, const std::vector<float>& s) {
    RowMatrix out = x;
    divide_columns(out, s);
    return out;
}

// One block, quantized and written; x (the hidden states) advanced through it.
class BlockQuantizer {
  public:
    BlockQuantizer(const Model& source, const CalibSequences& calib, CalibratedWriter& out,
                   bool awq, bool act_order, int64_t search_tokens)
        : c_(source.config),
          calib_(calib),
          search_(leading_sequences(calib, search_tokens)),
          out_(out),
          awq_(awq),
          act_order_(act_order) {}

    void run(int layer, DenseBlock& b, RowMatrix& x) {
        attention_block(layer, b, x);
        ffn_block(layer, b, x);
    }

  private:
    const PackedLayout& layout(int layer, Tensor LayerWeights::*member) const {
        return out_.search_layout(out_.slot(layer, member));
    }

    RowMatrix attention_out(const RowMatrix& xn, const RowMatrix& q, const RowMatrix& k,
                            const RowMatrix& v, const CalibSequences& seqs) const {
        return attention(c_, seqs, linear(xn, q), linear(xn, k), linear(xn, v));
    }
    RowMatrix attention_out(const RowMatrix& xn, const RowMatrix& q, const RowMatrix& k,
                            const RowMatrix& v) const {
        return attention_out(xn, q, k, v, calib_);
    }
    // GPTQ act-order's column order for the layers whose inputs have Hessian h
    // (computed once, so that layers sharing an input share it).
    std::vector<int32_t> shared_order(const Eigen::MatrixXf& h) const {
        return act_order_ ? act_order_permutation(h) : std::vector<int32_t>();
    }

    // The rows of the search sequences.
    RowMatrix search_rows(const RowMatrix& x) const { return x.topRows(search_.size()); }

    void attention_block(int layer, DenseBlock& b, RowMatrix& x) {
        RowMatrix xn = rmsnorm_rows(x, b[attn_norm], c_.norm_eps);
        if (awq_) {
            // attn_norm -> q, k, v, on the attention output (o in full precision).
            const RowMatrix xn_s = search_rows(xn);
            const RowMatrix ref = linear(attention_out(xn_s, b[wq], b[wk], b[wv], search_), b[wo]);
            const AwqSearch s = awq_search(mean_abs(xn), [&](const std::vector<float>& s) {
                const RowMatrix xs = divided(xn_s, s);
                const RowMatrix att =
                    attention_out(xs, scaled_rounded(b[wq], s, layout(layer, wq)),
                                  scaled_rounded(b[wk], s, layout(layer, wk)),
                                  scaled_rounded(b[wv], s, layout(layer, wv)), search_);
                return mse(linear(att, b[wo]), ref);
            });
            divide_columns(b[attn_norm], s.scales);
            for (RowMatrix* w : {&b[wq], &b[wk], &b[wv]}) scale_columns(*w, s.scales);
            xn = rmsnorm_rows(x, b[attn_norm], c_.norm_eps);
            if (c_.n_kv_heads == c_.n_heads) {  // v -> o: v's rows must match o's columns
                const RowMatrix att = attention_out(xn, b[wq], b[wk], b[wv]);
                const Eigen::MatrixXf h = hessian(att);
                const AwqSearch so = awq_search(mean_abs(att), [&](const std::vector<float>& s) {
                    return linear_loss(b[wo], s, layout(layer, wo), h);
                });
                divide_rows(b[wv], so.scales);
                scale_columns(b[wo], so.scales);
            }
        }
        out_.write_vector(out_.slot(layer, attn_norm), b[attn_norm]);
        const Eigen::MatrixXf h = hessian(xn);
        const std::vector<int32_t> order = shared_order(h);
        const RowMatrix q = out_.write_linear(out_.slot(layer, wq), b[wq], h, false, order);
        const RowMatrix k = out_.write_linear(out_.slot(layer, wk), b[wk], h, false, order);
        const RowMatrix v = out_.write_linear(out_.slot(layer, wv), b[wv], h, true, order);
        const RowMatrix att = attention_out(xn, q, k, v);
        const Eigen::MatrixXf h_att = hessian(att);
        const RowMatrix o =
            out_.write_linear(out_.slot(layer, wo), b[wo], h_att, true, shared_order(h_att));
        x += linear(att, o);
    }

    void ffn_block(int layer, DenseBlock& b, RowMatrix& x) {
        RowMatrix xn = rmsnorm_rows(x, b[ffn_norm], c_.norm_eps);
        if (awq_) {
            // ffn_norm -> gate, up, on the FFN output (down in full precision).
            const RowMatrix xn_s = search_rows(xn);
            const RowMatrix ref =
                linear(swiglu_rows(linear(xn_s, b[w_gate]), linear(xn_s, b[w_up])), b[w_down]);
            const AwqSearch s = awq_search(mean_abs(xn), [&](const std::vector<float>& s) {
                const RowMatrix xs = divided(xn_s, s);
                const RowMatrix hidden =
                    swiglu_rows(linear(xs, scaled_rounded(b[w_gate], s, layout(layer, w_gate))),
                                linear(xs, scaled_rounded(b[w_up], s, layout(layer, w_up))));
                return mse(linear(hidden, b[w_down]), ref);
            });
            divide_columns(b[ffn_norm], s.scales);
            for (RowMatrix* w : {&b[w_gate], &b[w_up]}) scale_columns(*w, s.scales);
            xn = rmsnorm_rows(x, b[ffn_norm], c_.norm_eps);
            // up -> down, on down's output.
            const RowMatrix hidden = swiglu_rows(linear(xn, b[w_gate]), linear(xn, b[w_up]));
            const Eigen::MatrixXf h = hessian(hidden);
            const AwqSearch sd = awq_search(mean_abs(hidden), [&](const std::vector<float>& s) {
                return linear_loss(b[w_down], s, layout(layer, w_down), h);
            });
            divide_rows(b[w_up], sd.scales);
            scale_columns(b[w_down], sd.scales);
        }
        out_.write_vector(out_.slot(layer, ffn_norm), b[ffn_norm]);
        const Eigen::MatrixXf h = hessian(xn);
        const std::vector<int32_t> order = shared_order(h);
        const RowMatrix gate =
            out_.write_linear(out_.slot(layer, w_gate), b[w_gate], h, true, order);
        const RowMatrix up = out_.write_linear(out_.slot(layer, w_up), b[w_up], h, true, order);
        const RowMatrix hidden = swiglu_rows(linear(xn, gate), linear(xn, up));
        const Eigen::MatrixXf h_hidden = hessian(hidden);
        const RowMatrix down = out_.write_linear(out_.slot(layer, w_down), b[w_down], h_hidden,
                                                 true, shared_order(h_hidden));
        x += linear(hidden, down);
    }

    const ModelConfig& c_;
    const CalibSequences& calib_;
    const CalibSequences search_;
    CalibratedWriter& out_;
    bool awq_;
    bool act_order_;
};

}  // namespace

QuantizeResult quantize_calibrated_to_file(const Model& source, const QuantizeRecipe& recipe,
                                           const CalibratedOptions& options,
                                           const CalibSequences& calib, const std::string& path,
                                           const std::string& tokenizer_proto,
                                           const QuantizeProgress& progress) {
    // The calibration forward pass (quant_block.cpp) is LLaMA's own.
    const ModelConfig& c = source.config;
    if (c.qkv_bias || c.qk_norm || c.post_norms || c.head_size != 0 ||
        c.activation != FfnActivation::silu || c.embedding_scale != 1.0f ||
        c.rope_factors != RopeFactors::none) {
        throw std::runtime_error(
            "GPTQ/AWQ calibration supports LLaMA-2-style models only (this "
            "is " +
            c.architecture + "); use round-to-nearest");
    }
    QuantizePlan plan = plan_quantization(source, recipe);
    const std::vector<PackedLayout> search_layouts = plan.layouts;
    if (options.fold_only) {
        for (size_t i = 0; i < plan.sources.size(); ++i) {
            const Tensor& t = *plan.sources[i];
            if (t.name.rfind("blk.", 0) == 0 && t.rows() > 1) {
                plan.layouts[i] = make_layout(WeightFormat::f32, t.rows(), t.cols());
            }
        }
    }
    for (int32_t t : calib.tokens) {
        if (t < 0 || t >= source.config.vocab_size) {
            throw std::runtime_error("calibration token " + std::to_string(t) +
                                     " is outside the vocabulary");
        }
    }
    const bool gptq =
        options.method == QuantMethod::gptq || options.method == QuantMethod::awq_gptq;
    const bool act_order = gptq && options.gptq.act_order;
    // GPTQ act-order with groups in the walk's order: every linear layer is
    // stored permuted, with its column order (also one not grouped, e.g. kept
    // in f16, since the layers sharing its input are), if its width allows
    // (column_order_storable; layers sharing an input have the same width);
    // otherwise it gets static groups.
    const bool stored_orders = act_order && !options.gptq.static_groups;
    std::vector<std::vector<int32_t>> orders(plan.sources.size());
    std::vector<NibbleTensorDecl> decls;
    for (size_t i = 0; i < plan.sources.size(); ++i) {
        if (plan.shared && plan.sources[i] == &source.output) continue;
        const Tensor& t = *plan.sources[i];
        const bool linear = t.name.rfind("blk.", 0) == 0 && t.rows() > 1;
        if (stored_orders && linear && column_order_storable(t.cols())) {
            orders[i].assign(size_t(t.cols()), 0);
        }
        decls.push_back({t.name, plan.layouts[i], orders[i].empty() ? nullptr : orders[i].data()});
    }
    NibbleFileWriter writer(path, source.config, std::move(decls), plan.shared,
                            tokenizer_proto.size(), source.chat_template, source.generation);
    QuantizeResult result;
    CalibratedWriter out(source, plan, search_layouts, orders, options, writer, result, progress);
    out.write_rtn(out.slot(&Model::token_embedding));
    const bool awq = options.method == QuantMethod::awq || options.method == QuantMethod::awq_gptq;
    BlockQuantizer blocks(source, calib, out, awq, act_order, options.awq_search_tokens);
    RowMatrix x = embed(source, calib);
    for (int l = 0; l < source.config.n_layers; ++l) {
        DenseBlock b = load_block(source, l);
        blocks.run(l, b, x);
    }
    out.write_rtn(out.slot(&Model::output_norm));
    out.write_rtn(out.slot(&Model::output));
    if (!tokenizer_proto.empty()) writer.write_tokenizer(tokenizer_proto);
    writer.finish();
    return result;
}

}  // namespace nibble

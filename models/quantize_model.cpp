// The quantization pipeline (see quantize_model.h).
#include "models/quantize_model.h"

#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "kernels/matmul.h"
#include "kernels/quant_stats.h"

namespace nibble {

namespace {

// A glob as an ECMAScript regex: '*' -> ".*", '?' -> ".", the rest escaped.
std::string glob_to_regex(const std::string& glob) {
    std::string re;
    for (char c : glob) {
        if (c == '*') {
            re += ".*";
        } else if (c == '?') {
            re += '.';
        } else if (std::strchr(".^$|()[]{}+\\/", c) != nullptr) {
            re += '\\';
            re += c;
        } else {
            re += c;
        }
    }
    return re;
}

bool is_norm(const Tensor& t) {
    return t.rows() == 1;
}

bool same_layout(const PackedLayout& a, const PackedLayout& b) {
    return a.format == b.format && a.rows == b.rows && a.cols == b.cols &&
           a.group_size == b.group_size && a.double_quant == b.double_quant;
}

// The source weights as FP32 [rows][cols].
std::vector<float> dequantized(const Tensor& t) {
    std::vector<float> w(size_t(t.rows() * t.cols()));
    for (int64_t r = 0; r < t.rows(); ++r) dequantize_row(t.view, r, w.data() + r * t.cols());
    return w;
}

}  // namespace

KeepRule parse_keep_rule(const std::string& spec) {
    const size_t eq = spec.rfind('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
        throw std::invalid_argument("--keep: expected TENSOR_PATTERN=FORMAT, got '" + spec + "'");
    }
    KeepRule rule;
    rule.pattern = spec.substr(0, eq);
    const std::string fname = spec.substr(eq + 1);
    const auto format = parse_format(fname);
    if (!format) {
        throw std::invalid_argument("--keep: unknown format '" + fname + "' in '" + spec +
                                    "' (f32, f16, q8, q4, q4a, nf4)");
    }
    rule.format = *format;
    const bool is_regex = rule.pattern.rfind("re:", 0) == 0;
    try {
        rule.regex = std::regex(is_regex ? rule.pattern.substr(3) : glob_to_regex(rule.pattern),
                                std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
        throw std::invalid_argument("--keep: bad pattern '" + rule.pattern + "': " + e.what());
    }
    return rule;
}

void validate_recipe(const QuantizeRecipe& recipe) {
    const int g = recipe.group_size;
    if (g != 32 && g != 64 && g != 128 && g != 256) {
        throw std::invalid_argument("--group-size: " + std::to_string(g) +
                                    " is not one of 32, 64, 128, 256");
    }
}

PackedLayout target_layout(const QuantizeRecipe& recipe, const Tensor& source) {
    if (is_norm(source)) return make_layout(WeightFormat::f32, source.rows(), source.cols());
    WeightFormat f = recipe.format;
    if (recipe.q8_embedding_and_output && is_4bit(recipe.format) &&
        (source.name == "token_embd.weight" || source.name == "output.weight")) {
        f = WeightFormat::q8;
    }
    for (const KeepRule& k : recipe.keep) {
        if (k.matches(source.name)) f = k.format;
    }
    return make_layout(f, source.rows(), source.cols(), is_grouped(f) ? recipe.group_size : 0,
                       recipe.double_quant && is_4bit(f));
}

QuantizeResult quantize_model(const Model& source, const QuantizeRecipe& recipe,
                              const QuantizeProgress& progress) {
    validate_recipe(recipe);
    source.validate();
    const auto sources = source.tensors();
    for (const KeepRule& k : recipe.keep) {
        bool any = false;
        for (const Tensor* t : sources) any = any || (!is_norm(*t) && k.matches(t->name));
        if (!any) {
            throw std::invalid_argument("--keep: pattern '" + k.pattern +
                                        "' matches no quantizable tensor");
        }
    }

    QuantizeResult result;
    Model& m = result.model;
    m.config = source.config;
    m.tokenizer_proto = source.tokenizer_proto;
    m.source_path = source.source_path;
    m.source_format = source.source_format;
    m.layers.resize(source.layers.size());
    const auto targets = m.tensors();  // same canonical order as `sources`

    const bool source_shared = source.output.view.data == source.token_embedding.view.data;
    const PackedLayout embd_layout = target_layout(recipe, source.token_embedding);
    const bool shared =
        source_shared && same_layout(embd_layout, target_layout(recipe, source.output));

    QuantizeOptions options;
    options.rule = recipe.rule;
    const int total = int(sources.size());
    for (int i = 0; i < total; ++i) {
        const Tensor& src = *sources[size_t(i)];
        Tensor& dst = *targets[size_t(i)];
        TensorReport rep;
        rep.name = src.name;
        if (shared && &src == &source.output) {
            dst = m.token_embedding;
            dst.name = src.name;
            rep = result.tensors.front();
            rep.name = src.name;
            rep.shared = true;
        } else {
            const PackedLayout layout = target_layout(recipe, src);
            dst = make_owned_tensor(m, src.name, layout);
            const std::vector<float> w = dequantized(src);
            if (same_layout(layout, src.view.layout)) {
                std::memcpy(writable(dst), src.view.data, layout.total_bytes);
            } else {
                quantize_matrix(w.data(), layout, writable(dst), options);
            }
            const QuantError err = quantization_error(w.data(), dst.view);
            rep.layout = layout;
            rep.rel_rms = err.rel_rms;
            rep.mse = err.mse;
            const int64_t n = layout.rows * layout.cols;
            result.weight_bytes += layout.total_bytes;
            result.parameters += n;
            if (src.name.rfind("blk.", 0) == 0 && !is_norm(src)) {
                result.linear_bytes += layout.total_bytes;
                result.linear_parameters += n;
            }
        }
        result.tensors.push_back(rep);
        if (progress) progress(i + 1, total, src.name);
    }
    m.validate();
    return result;
}

std::string format_report(const QuantizeResult& r) {
    std::string out;
    char line[256];
    std::snprintf(line, sizeof line, "%-28s %-6s %6s %14s %12s %7s %9s\n", "tensor", "format",
                  "group", "shape", "bytes", "bpw", "rel RMS");
    out += line;
    for (const TensorReport& t : r.tensors) {
        const PackedLayout& l = t.layout;
        const std::string group =
            l.group_size ? std::to_string(l.group_size) + (l.double_quant ? "+dq" : "") : "-";
        const std::string shape = std::to_string(l.rows) + " x " + std::to_string(l.cols);
        std::snprintf(line, sizeof line, "%-28s %-6s %6s %14s %12zu %7.3f %9.5f%s\n",
                      t.name.c_str(), format_name(l.format), group.c_str(), shape.c_str(),
                      l.total_bytes, l.bits_per_weight(), t.rel_rms,
                      t.shared ? "  (shares token_embd)" : "");
        out += line;
    }
    std::snprintf(line, sizeof line,
                  "\ntotal: %lld weights in %zu bytes, %.3f bits per weight "
                  "(linear layers %.3f bpw)\n",
                  static_cast<long long>(r.parameters), r.weight_bytes, r.bits_per_weight(),
                  r.linear_bits_per_weight());
    out += line;
    return out;
}

}  // namespace nibble

// The quantization pipeline (see quantize_model.h).
#include "models/quantize_model.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "kernels/interleave.h"
#include "kernels/matmul.h"
#include "kernels/quant_stats.h"
#include "models/nibble_file.h"

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
    std::string fname = spec.substr(eq + 1);
    if (const size_t colon = fname.find(':'); colon != std::string::npos) {
        const std::string group = fname.substr(colon + 1);
        fname.resize(colon);
        const auto f = parse_format(fname);
        const bool fixed =
            f && (!is_grouped(*f) || *f == WeightFormat::q4k || *f == WeightFormat::q6k);
        if (group != "32" && group != "64" && group != "128" && group != "256") {
            throw std::invalid_argument("--keep: group size '" + group + "' in '" + spec +
                                        "' is not one of 32, 64, 128, 256");
        }
        if (fixed) {
            throw std::invalid_argument("--keep: " + fname + " in '" + spec +
                                        "' has no group size to choose");
        }
        rule.group_size = std::stoi(group);
    }
    const auto format = parse_format(fname);
    if (!format || is_ggml_block_format(*format)) {  // those come from GGUF files only
        throw std::invalid_argument("--keep: unknown format '" + fname + "' in '" + spec +
                                    "' (f32, f16, q8, q4, q4a, nf4, iq4nl, q4k, q6k, q3, q2)");
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
    int group_size = recipe.group_size;
    const bool low_bits = is_4bit(recipe.format) || is_q2q3(recipe.format);
    if (recipe.q8_embedding_and_output && low_bits &&
        (source.name == "token_embd.weight" || source.name == "output.weight")) {
        f = WeightFormat::q8;
    }
    for (const KeepRule& k : recipe.keep) {
        if (k.matches(source.name)) {
            f = k.format;
            group_size = k.group_size > 0 ? k.group_size : recipe.group_size;
        }
    }
    // q4k and q6k have group sizes of their own (32, 256).
    const int group = f == WeightFormat::q4k   ? 32
                      : f == WeightFormat::q6k ? 256
                      : is_grouped(f)          ? group_size
                                               : 0;
    return make_layout(f, source.rows(), source.cols(), group,
                       recipe.double_quant && supports_double_quant(f));
}

QuantizePlan plan_quantization(const Model& source, const QuantizeRecipe& recipe) {
    validate_recipe(recipe);
    source.validate();
    QuantizePlan plan;
    plan.sources = source.tensors();
    for (const KeepRule& k : recipe.keep) {
        bool any = false;
        for (const Tensor* t : plan.sources) any = any || (!is_norm(*t) && k.matches(t->name));
        if (!any) {
            throw std::invalid_argument("--keep: pattern '" + k.pattern +
                                        "' matches no quantizable tensor");
        }
    }
    for (const Tensor* t : plan.sources) plan.layouts.push_back(target_layout(recipe, *t));
    const auto output = std::find(plan.sources.begin(), plan.sources.end(), &source.output);
    plan.shared =
        source.output.blob_id() == source.token_embedding.blob_id() &&
        output != plan.sources.end() &&
        same_layout(plan.layouts.front(), plan.layouts[size_t(output - plan.sources.begin())]);
    return plan;
}

namespace {

// Rows per slice of the parallel quantizer, and the smallest matrix worth
// starting threads for.
constexpr int64_t kRowSlice = 64;
constexpr int64_t kMinParallelWeights = int64_t(1) << 18;

// Without double quantization every group is quantized on its own (quantize.h),
// so slices of rows can be quantized independently, each as a matrix of its own,
// and their sections copied to the same rows of the full blob: the result is
// byte for byte that of quantize_matrix on the whole matrix. Each section is
// row-major (codes: rows x row_code_bytes; scales and mins: rows x groups_per_row
// parameters), so a slice of rows is one contiguous range of every section.
void quantize_rows_parallel(const float* w, const PackedLayout& layout, uint8_t* dst,
                            const QuantizeOptions& options) {
    const int64_t n_slices = (layout.rows + kRowSlice - 1) / kRowSlice;
    const size_t param_bytes = 2;  // fp16 per group
    std::string error;
#pragma omp parallel
    {
        std::vector<uint8_t> part;
#pragma omp for schedule(dynamic, 1)
        for (int64_t s = 0; s < n_slices; ++s) {
            const int64_t r0 = s * kRowSlice, rows = std::min(kRowSlice, layout.rows - r0);
            try {
                const PackedLayout pl =
                    make_layout(layout.format, rows, layout.cols, layout.group_size, false);
                part.assign(pl.total_bytes, 0);
                quantize_matrix(w + r0 * layout.cols, pl, part.data(), options);
                const size_t code_row = layout.row_code_bytes();
                std::memcpy(dst + layout.codes_offset + size_t(r0) * code_row,
                            part.data() + pl.codes_offset, pl.codes_bytes);
                const size_t param_row = size_t(layout.groups_per_row) * param_bytes;
                std::memcpy(dst + layout.scales_offset + size_t(r0) * param_row,
                            part.data() + pl.scales_offset, pl.scales_bytes);
                if (layout.mins_bytes > 0) {
                    std::memcpy(dst + layout.mins_offset + size_t(r0) * param_row,
                                part.data() + pl.mins_offset, pl.mins_bytes);
                }
            } catch (const std::exception& e) {
#pragma omp critical
                if (error.empty()) error = e.what();
            }
        }
    }
    if (!error.empty()) throw std::runtime_error(error);
}

TensorReport quantize_tensor_unchecked(const Tensor& src, const PackedLayout& layout, uint8_t* dst,
                                       const QuantizeOptions& options);

}  // namespace

TensorReport quantize_tensor(const Tensor& src, const PackedLayout& layout, uint8_t* dst,
                             const QuantizeOptions& options) {
    try {
        // A deferred tensor is converted now and its buffers and source pages
        // released once quantized: one tensor of the source in memory at a time.
        TensorReport rep =
            quantize_tensor_unchecked(fetch_tensor(src).tensor, layout, dst, options);
        release_source(src);
        return rep;
    } catch (const std::runtime_error& e) {
        throw std::runtime_error(src.name + ": " + e.what());
    }
}

namespace {

TensorReport quantize_tensor_unchecked(const Tensor& src, const PackedLayout& layout, uint8_t* dst,
                                       const QuantizeOptions& options) {
    std::vector<float> buffer;
    const float* w = src.f32();
    if (src.format() != WeightFormat::f32) {
        buffer = dequantized(src);
        w = buffer.data();
    }
    if (same_layout(layout, src.view.layout)) {  // kept: the codes in `layout`'s order
        convert_interleave(src.view.layout, src.view.data, layout, dst);
    } else {
        quantize_matrix_parallel(w, layout, dst, options);
    }
    const QuantError err = quantization_error(w, MatrixView{layout, dst});
    TensorReport rep;
    rep.name = src.name;
    rep.layout = layout;
    rep.rel_rms = err.rel_rms;
    rep.mse = err.mse;
    return rep;
}

}  // namespace

void add_to_totals(QuantizeResult& r, const TensorReport& t) {
    if (t.shared) return;
    const int64_t n = t.layout.rows * t.layout.cols;
    r.weight_bytes += t.layout.total_bytes;
    r.parameters += n;
    if (t.name.rfind("blk.", 0) == 0 && t.layout.rows > 1) {
        r.linear_bytes += t.layout.total_bytes;
        r.linear_parameters += n;
    }
}

TensorReport shared_report(const QuantizeResult& r, const std::string& name) {
    TensorReport rep = r.tensors.front();
    rep.name = name;
    rep.shared = true;
    return rep;
}

void quantize_matrix_parallel(const float* w, const PackedLayout& layout, uint8_t* dst,
                              const QuantizeOptions& options) {
    if (is_grouped(layout.format) && !layout.double_quant && layout.rows >= 2 * kRowSlice &&
        layout.rows * layout.cols >= kMinParallelWeights) {
        quantize_rows_parallel(w, layout, dst, options);
    } else {
        quantize_matrix(w, layout, dst, options);
    }
}

QuantizeResult quantize_model(const Model& source, const QuantizeRecipe& recipe,
                              const QuantizeProgress& progress) {
    const QuantizePlan plan = plan_quantization(source, recipe);
    QuantizeResult result;
    Model& m = result.model;
    m.config = source.config;
    m.tokenizer_proto = source.tokenizer_proto;
    m.generation = source.generation;
    m.source_path = source.source_path;
    m.source_format = source.source_format;
    m.layers.resize(source.layers.size());
    const auto targets = m.tensors();  // same canonical order as plan.sources

    QuantizeOptions options;
    options.rule = recipe.rule;
    const int total = int(plan.sources.size());
    for (int i = 0; i < total; ++i) {
        const Tensor& src = *plan.sources[size_t(i)];
        Tensor& dst = *targets[size_t(i)];
        if (plan.shared && &src == &source.output) {
            dst = m.token_embedding;
            dst.name = src.name;
            result.tensors.push_back(shared_report(result, src.name));
        } else {
            dst = make_owned_tensor(m, src.name, plan.layouts[size_t(i)]);
            if (src.column_order != nullptr) {  // act-order: the rows stay in stored order
                auto kept = std::make_shared<std::vector<int32_t>>(src.column_order,
                                                                   src.column_order + src.cols());
                dst.column_order = kept->data();
                m.storage.push_back(kept);
            }
            result.tensors.push_back(
                quantize_tensor(src, plan.layouts[size_t(i)], writable(dst), options));
        }
        add_to_totals(result, result.tensors.back());
        if (progress) progress(i + 1, total, src.name);
    }
    m.validate();
    return result;
}

QuantizeResult quantize_model_to_file(const Model& source, const QuantizeRecipe& recipe,
                                      const std::string& path, const std::string& tokenizer_proto,
                                      const QuantizeProgress& progress) {
    const QuantizePlan plan = plan_quantization(source, recipe);
    std::vector<NibbleTensorDecl> decls;
    for (size_t i = 0; i < plan.sources.size(); ++i) {
        if (plan.shared && plan.sources[i] == &source.output) continue;
        decls.push_back({plan.sources[i]->name, plan.layouts[i], plan.sources[i]->column_order});
    }
    NibbleFileWriter writer(path, source.config, std::move(decls), plan.shared,
                            tokenizer_proto.size(), source.chat_template, source.generation);
    QuantizeResult result;
    QuantizeOptions options;
    options.rule = recipe.rule;
    std::vector<uint8_t> blob;
    const int total = int(plan.sources.size());
    for (int i = 0; i < total; ++i) {
        const Tensor& src = *plan.sources[size_t(i)];
        if (plan.shared && &src == &source.output) {
            result.tensors.push_back(shared_report(result, src.name));
        } else {
            const PackedLayout& layout = plan.layouts[size_t(i)];
            blob.assign(layout.total_bytes, 0);  // bytes between sections stay zero
            result.tensors.push_back(quantize_tensor(src, layout, blob.data(), options));
            writer.write_tensor(src.name, blob.data(), blob.size());
        }
        add_to_totals(result, result.tensors.back());
        if (progress) progress(i + 1, total, src.name);
    }
    if (!tokenizer_proto.empty()) writer.write_tokenizer(tokenizer_proto);
    writer.finish();
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
            l.group_size ? std::to_string(l.group_size) +
                               (l.double_quant && l.format != WeightFormat::q4k ? "+dq" : "")
                         : "-";
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

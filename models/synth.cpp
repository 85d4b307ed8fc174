// Synthetic random-weight models, streamed into a nibble file.
#include "models/synth.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "engine/tensor_registry.h"

namespace nibble {

namespace {

ModelConfig llama_config(int dim, int hidden, int layers, int heads, int kv_heads, int ctx,
                         float rope_theta) {
    ModelConfig c;
    c.architecture = "llama";
    c.dim = dim;
    c.hidden_dim = hidden;
    c.n_layers = layers;
    c.n_heads = heads;
    c.n_kv_heads = kv_heads;
    c.vocab_size = 32000;
    c.max_seq_len = ctx;
    c.rope_theta = rope_theta;
    c.norm_eps = 1e-5f;
    c.rope_style = RopeStyle::adjacent_pairs;
    return c;
}

// The later architectures' options on top of llama_config (ModelConfig).
ModelConfig with_vocab(ModelConfig c, int vocab, float eps) {
    c.vocab_size = vocab;
    c.norm_eps = eps;
    return c;
}

ModelConfig llama3(int dim, int hidden, int layers, int heads, int kv_heads) {
    ModelConfig c = with_vocab(
        llama_config(dim, hidden, layers, heads, kv_heads, 131072, 500000.0f), 128256, 1e-5f);
    c.rope_factors = RopeFactors::single;  // rope_freqs.weight (synth: all 1)
    return c;
}

ModelConfig qwen(int dim, int hidden, int layers, int heads, int kv_heads, int vocab) {
    ModelConfig c =
        with_vocab(llama_config(dim, hidden, layers, heads, kv_heads, 32768, 1e6f), vocab, 1e-6f);
    c.architecture = "qwen2";
    c.rope_style = RopeStyle::halves;
    c.qkv_bias = true;
    return c;
}

ModelConfig qwen3_0_6b() {
    ModelConfig c = with_vocab(llama_config(1024, 3072, 28, 16, 8, 40960, 1e6f), 151936, 1e-6f);
    c.architecture = "qwen3";
    c.rope_style = RopeStyle::halves;
    c.head_size = 128;
    c.qk_norm = true;
    return c;
}

ModelConfig gemma(const char* arch, int dim, int hidden, int layers, int heads, int kv_heads,
                  int vocab, int ctx, float theta, int window) {
    ModelConfig c =
        with_vocab(llama_config(dim, hidden, layers, heads, kv_heads, ctx, theta), vocab, 1e-6f);
    c.architecture = arch;
    c.rope_style = RopeStyle::halves;
    c.head_size = 256;
    c.embedding_scale = std::sqrt(float(dim));
    c.activation = FfnActivation::gelu_tanh;
    c.post_norms = true;
    c.query_scale = 1.0f / 16.0f;  // query_pre_attn_scalar 256
    c.sliding_window = window;
    return c;
}

ModelConfig gemma2_2b() {
    ModelConfig c = gemma("gemma2", 2304, 9216, 26, 8, 4, 256000, 8192, 10000.0f, 4096);
    c.attn_logit_softcap = 50.0f;
    c.final_logit_softcap = 30.0f;
    c.sliding_window_pattern = 2;
    return c;
}

ModelConfig gemma3_1b() {
    ModelConfig c = gemma("gemma3", 1152, 6912, 26, 4, 1, 262144, 32768, 1e6f, 512);
    c.qk_norm = true;
    c.sliding_window_pattern = 6;
    c.rope_theta_local = 10000.0f;
    return c;
}

ModelConfig phi3_mini() {  // Phi-3-mini-4k-instruct
    ModelConfig c = with_vocab(llama_config(3072, 8192, 32, 32, 32, 4096, 10000.0f), 32064, 1e-5f);
    c.architecture = "phi3";
    c.rope_style = RopeStyle::halves;
    c.sliding_window = 2047;
    return c;
}

// SplitMix64 (Steele, Lea, Flood 2014): a 64-bit counter passed through a
// bijective mixer; every output is a well-distributed 64-bit value.
inline uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

}  // namespace

const std::vector<SynthShape>& synth_shapes() {
    // dim, hidden, layers, heads, kv heads, context, RoPE theta (and the
    // options of each architecture): the published configs of each model
    // (Llama-2-7b, Mistral-7B-v0.1, TinyLlama-1.1B, llama2.c stories15M,
    // Llama-3.2-1B, Llama-3.1-8B, Qwen2.5-0.5B and -7B, Qwen3-0.6B, Gemma-2-2B,
    // Gemma-3-1B, Phi-3-mini-4k; true: the classifier is the embedding).
    static const std::vector<SynthShape> shapes{
        {"llama2-7b", llama_config(4096, 11008, 32, 32, 32, 4096, 10000.0f), false},
        {"mistral-7b", llama_config(4096, 14336, 32, 32, 8, 32768, 1000000.0f), false},
        {"tinyllama-1.1b", llama_config(2048, 5632, 22, 32, 4, 2048, 10000.0f), false},
        {"stories15m", llama_config(288, 768, 6, 6, 6, 256, 10000.0f), true},
        {"llama3.2-1b", llama3(2048, 8192, 16, 32, 8), true},
        {"llama3.1-8b", llama3(4096, 14336, 32, 32, 8), false},
        {"qwen2.5-0.5b", qwen(896, 4864, 24, 14, 2, 151936), true},
        {"qwen2.5-7b", qwen(3584, 18944, 28, 28, 4, 152064), false},
        {"qwen3-0.6b", qwen3_0_6b(), true},
        {"gemma2-2b", gemma2_2b(), true},
        {"gemma3-1b", gemma3_1b(), true},
        {"phi3-mini", phi3_mini(), false},
    };
    return shapes;
}

const SynthShape& find_synth_shape(const std::string& name) {
    std::string known;
    for (const SynthShape& s : synth_shapes()) {
        if (s.name == name) return s;
        known += (known.empty() ? "" : ", ") + s.name;
    }
    throw std::invalid_argument("--shape: unknown shape '" + name + "' (known: " + known + ")");
}

void validate_synth_options(const SynthOptions& o) {
    if (is_grouped(o.format) && o.group_size != 32 && o.group_size != 64 && o.group_size != 128 &&
        o.group_size != 256) {
        throw std::invalid_argument("--group-size: " + std::to_string(o.group_size) +
                                    " is not one of 32, 64, 128, 256");
    }
    if (o.double_quant && !supports_double_quant(o.format)) {
        throw std::invalid_argument(
            std::string("--double-quant: only for the 4-, 3- and 2-bit formats, not ") +
            format_name(o.format));
    }
    if (o.chunk_weights <= 0) throw std::invalid_argument("chunk_weights must be positive");
    if (!(o.stddev > 0.0f) || !std::isfinite(o.stddev)) {
        throw std::invalid_argument("stddev must be positive");
    }
}

std::vector<NibbleTensorDecl> synth_tensor_decls(const SynthShape& shape, const SynthOptions& o) {
    validate_synth_options(o);
    const ModelConfig& c = shape.config;
    const int group = is_grouped(o.format) ? o.group_size : 0;
    auto linear = [&](int64_t rows, int64_t cols) {
        return make_layout(o.format, rows, cols, group, o.double_quant);
    };
    auto edge = [&](int64_t rows, int64_t cols) {  // embedding and classifier
        if (supports_double_quant(o.format) && o.q8_embedding_and_output) {  // 2..4 bits
            return make_layout(WeightFormat::q8, rows, cols, o.group_size);
        }
        return linear(rows, cols);
    };

    std::vector<NibbleTensorDecl> decls;
    for (const TensorSlot& slot : tensor_slots(c)) {
        const auto [rows, cols] = tensor_shape(c, slot.shape);
        if (slot.is_norm()) {  // norms, biases, RoPE factors
            decls.push_back({slot.gguf_name, make_layout(WeightFormat::f32, rows, cols)});
        } else if (slot.shape == TensorShape::embedding) {
            if (slot.model_member == &Model::output && shape.shared_output) continue;
            decls.push_back({slot.gguf_name, edge(rows, cols)});
        } else {
            decls.push_back({slot.gguf_name, linear(rows, cols)});
        }
    }
    return decls;
}

void synth_random_row(uint64_t seed, uint64_t tensor, uint64_t row, float stddev, float* out,
                      int64_t n) {
    // The row's own stream: its state is the seed mixed with the tensor and row
    // numbers (each step of the mix is a bijection, so distinct rows get
    // unrelated streams).
    uint64_t state = seed;
    state = splitmix64(state) ^ (tensor * 0xD1B54A32D192ED03ull);
    state = splitmix64(state) ^ (row * 0x8CB92BA72F3D8DD7ull);
    // Marsaglia's polar method: (u, v) uniform in the unit disc (by rejection),
    // s = u^2 + v^2; then u*f and v*f with f = sqrt(-2 ln(s) / s) are two
    // independent standard normal values. Each 64-bit draw gives two 32-bit
    // uniforms, mapped to [-1, 1) in steps of 2^-31.
    constexpr double kStep = 1.0 / 2147483648.0;
    int64_t i = 0;
    while (i < n) {
        const uint64_t bits = splitmix64(state);
        const double u = double(int32_t(uint32_t(bits))) * kStep;
        const double v = double(int32_t(uint32_t(bits >> 32))) * kStep;
        const double s = u * u + v * v;
        if (s >= 1.0 || s == 0.0) continue;
        const double f = std::sqrt(-2.0 * std::log(s) / s) * double(stddev);
        out[i++] = float(u * f);
        if (i < n) out[i++] = float(v * f);
    }
}

SynthResult write_synth_model(const SynthShape& shape, const SynthOptions& o,
                              const std::string& tokenizer_proto, const std::string& path,
                              const SynthProgress& progress) {
    const std::vector<NibbleTensorDecl> decls = synth_tensor_decls(shape, o);
    NibbleFileWriter writer(path, shape.config, decls, shape.shared_output, tokenizer_proto.size());
    SynthResult result;
    result.file_bytes = writer.file_size();
    uint64_t done = 0;
    QuantizeOptions qo;
    qo.rule = o.rule;

    std::vector<uint8_t> blob, chunk_blob;
    std::vector<float> rows;
    for (size_t t = 0; t < decls.size(); ++t) {
        const PackedLayout& l = decls[t].layout;
        result.parameters += l.rows * l.cols;
        blob.assign(l.total_bytes, 0);
        // Norm weights and RoPE factors are 1; biases are random like matrices.
        const bool is_one = l.rows == 1 && l.format == WeightFormat::f32 &&
                            (decls[t].name.find("norm") != std::string::npos ||
                             decls[t].name.find("rope_") != std::string::npos);
        if (is_one) {
            const float one = 1.0f;
            for (int64_t c = 0; c < l.cols; ++c) std::memcpy(&blob[size_t(c) * 4], &one, 4);
        } else {
            // Double quantization fits its block parameters over the whole tensor:
            // the tensor is one chunk then.
            const int64_t step =
                l.double_quant ? l.rows : std::clamp<int64_t>(o.chunk_weights / l.cols, 1, l.rows);
            const size_t code_row = l.row_code_bytes();
            const size_t param_row = size_t(l.groups_per_row) * 2;  // fp16 per group
            for (int64_t r0 = 0; r0 < l.rows; r0 += step) {
                const int64_t n = std::min(step, l.rows - r0);
                rows.resize(size_t(n * l.cols));
#pragma omp parallel for schedule(static)
                for (int64_t r = 0; r < n; ++r) {
                    synth_random_row(o.seed, t, uint64_t(r0 + r), o.stddev,
                                     &rows[size_t(r * l.cols)], l.cols);
                }
                if (n == l.rows) {  // the whole tensor: quantize in place
                    quantize_matrix(rows.data(), l, blob.data(), qo);
                    break;
                }
                // Rows [r0, r0+n) quantized on their own are exactly these rows of
                // the whole tensor (without double quantization every group is
                // independent): copy each section to its place in the blob.
                const PackedLayout cl = make_layout(l.format, n, l.cols, l.group_size, false);
                chunk_blob.resize(cl.total_bytes);
                quantize_matrix(rows.data(), cl, chunk_blob.data(), qo);
                std::memcpy(&blob[l.codes_offset + size_t(r0) * code_row],
                            &chunk_blob[cl.codes_offset], size_t(n) * code_row);
                if (is_grouped(l.format)) {
                    std::memcpy(&blob[l.scales_offset + size_t(r0) * param_row],
                                &chunk_blob[cl.scales_offset], size_t(n) * param_row);
                }
                if (l.format == WeightFormat::q4a) {
                    std::memcpy(&blob[l.mins_offset + size_t(r0) * param_row],
                                &chunk_blob[cl.mins_offset], size_t(n) * param_row);
                }
            }
        }
        writer.write_tensor(decls[t].name, blob.data(), blob.size());
        done += align_up(l.total_bytes, kSectionAlign);
        if (progress) progress(done, result.file_bytes, decls[t].name);
    }
    blob = {};
    chunk_blob = {};
    rows = {};
    if (!tokenizer_proto.empty()) writer.write_tokenizer(tokenizer_proto);
    writer.finish();
    return result;
}

}  // namespace nibble

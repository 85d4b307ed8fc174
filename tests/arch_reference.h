// Small random-weight models of each supported architecture (llama with
// Llama-3.1 RoPE factors, qwen2, qwen3, gemma2, gemma3, phi3 with LongRoPE),
// written as GGUF files and Hugging Face directories, and an FP64 forward pass
// written from the published architectures (Hugging Face transformers' modeling
// code), independent of the engine: a plain loop over positions, layers, heads.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

namespace nibble::test {

// An architecture's hyperparameters in Hugging Face terms.
struct ArchSpec {
    std::string gguf_arch, hf_type, hf_class;
    int dim = 64, hidden = 96, layers = 3, heads = 4, kv_heads = 2, head_dim = 16;
    int vocab = 256, context = 64;
    double theta = 10000.0, eps = 1e-5;
    bool tied = false;
    bool qkv_bias = false;  // qwen2
    bool qk_norm = false;   // qwen3, gemma3
    bool gemma = false;     // sqrt(dim) embeddings, GeGLU, post norms, (1 + w) norms
    bool fused = false;     // phi3: qkv_proj, gate_up_proj
    double attn_cap = 0.0, final_cap = 0.0;  // gemma2 soft-caps
    double query_pre_attn_scalar = 0.0;      // 0: head_dim
    int window = 0;                          // sliding window
    int window_pattern = 0;                  // gemma2: 2, gemma3: 6, else every layer
    double theta_local = 0.0;                // gemma3 local RoPE base
    bool llama3_scaling = false;             // rope_scaling type llama3
    bool longrope = false;                   // phi3 rope_scaling longrope
    int original_context = 0;                // longrope
};

inline std::vector<ArchSpec> all_arch_specs() {
    std::vector<ArchSpec> out;
    ArchSpec llama3{"llama", "llama", "LlamaForCausalLM"};
    llama3.theta = 500000.0;
    llama3.tied = true;
    llama3.llama3_scaling = true;
    out.push_back(llama3);

    ArchSpec qwen2{"qwen2", "qwen2", "Qwen2ForCausalLM"};
    qwen2.qkv_bias = true;
    qwen2.theta = 1e6;
    qwen2.eps = 1e-6;
    out.push_back(qwen2);

    ArchSpec qwen3{"qwen3", "qwen3", "Qwen3ForCausalLM"};
    qwen3.qk_norm = true;
    qwen3.head_dim = 24;  // != dim / heads
    qwen3.theta = 1e6;
    qwen3.eps = 1e-6;
    qwen3.tied = true;
    out.push_back(qwen3);

    ArchSpec gemma2{"gemma2", "gemma2", "Gemma2ForCausalLM"};
    gemma2.gemma = true;
    gemma2.tied = true;
    gemma2.head_dim = 24;
    gemma2.eps = 1e-6;
    gemma2.attn_cap = 2.0;
    gemma2.final_cap = 1.5;
    gemma2.query_pre_attn_scalar = 24.0;
    gemma2.window = 4;
    gemma2.window_pattern = 2;
    out.push_back(gemma2);

    ArchSpec gemma3{"gemma3", "gemma3_text", "Gemma3ForCausalLM"};
    gemma3.gemma = true;
    gemma3.tied = true;
    gemma3.qk_norm = true;
    gemma3.layers = 6;  // five local layers, one global
    gemma3.head_dim = 24;
    gemma3.eps = 1e-6;
    gemma3.theta = 1e6;
    gemma3.theta_local = 10000.0;
    gemma3.query_pre_attn_scalar = 24.0;
    gemma3.window = 4;
    gemma3.window_pattern = 6;
    out.push_back(gemma3);

    ArchSpec phi3{"phi3", "phi3", "Phi3ForCausalLM"};
    phi3.fused = true;
    phi3.window = 6;
    phi3.longrope = true;
    phi3.original_context = 32;  // < context 64: the long factors apply
    out.push_back(phi3);
    return out;
}

struct LayerParams {
    // Hugging Face's values: norms are w as applied, except Gemma's (1 + w).
    std::vector<float> attn_norm, wq, wk, wv, wo, bq, bk, bv, q_norm, k_norm, post_attn_norm;
    std::vector<float> ffn_norm, gate, up, down, post_ffw_norm;
};

struct ArchWeights {
    ArchSpec spec;
    std::vector<float> embedding, output, output_norm;
    std::vector<float> rope_long, rope_short;  // phi3
    std::vector<LayerParams> layers;
};

inline ArchWeights random_weights(const ArchSpec& s, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto matrix = [&](int rows, int cols, float scale = 1.0f) {
        std::vector<float> v(size_t(rows) * size_t(cols));
        for (float& x : v) x = normal(rng) * scale / std::sqrt(float(cols));
        return v;
    };
    auto vector = [&](int n, float mean, float stddev) {
        std::vector<float> v(static_cast<size_t>(n));
        for (float& x : v) x = mean + stddev * normal(rng);
        return v;
    };
    // Gemma stores w of (1 + w); the others w itself.
    const float norm_mean = s.gemma ? 0.0f : 1.0f;
    const int q_dim = s.heads * s.head_dim, kv_dim = s.kv_heads * s.head_dim;
    ArchWeights w;
    w.spec = s;
    w.embedding = vector(s.vocab * s.dim, 0.0f, s.gemma ? 0.15f : 1.0f);
    w.output_norm = vector(s.dim, norm_mean, 0.1f);
    if (!s.tied) w.output = matrix(s.vocab, s.dim, 2.0f);
    for (int l = 0; l < s.layers; ++l) {
        LayerParams p;
        p.attn_norm = vector(s.dim, norm_mean, 0.1f);
        p.wq = matrix(q_dim, s.dim, 2.0f);
        p.wk = matrix(kv_dim, s.dim, 2.0f);
        p.wv = matrix(kv_dim, s.dim);
        p.wo = matrix(s.dim, q_dim);
        if (s.qkv_bias) {
            p.bq = vector(q_dim, 0.0f, 0.5f);
            p.bk = vector(kv_dim, 0.0f, 0.5f);
            p.bv = vector(kv_dim, 0.0f, 0.5f);
        }
        if (s.qk_norm) {
            p.q_norm = vector(s.head_dim, norm_mean, 0.3f);
            p.k_norm = vector(s.head_dim, norm_mean, 0.3f);
        }
        p.ffn_norm = vector(s.dim, norm_mean, 0.1f);
        p.gate = matrix(s.hidden, s.dim, 2.0f);
        p.up = matrix(s.hidden, s.dim);
        p.down = matrix(s.dim, s.hidden);
        if (s.gemma) {
            p.post_attn_norm = vector(s.dim, 0.0f, 0.1f);
            p.post_ffw_norm = vector(s.dim, 0.0f, 0.1f);
        }
        w.layers.push_back(p);
    }
    if (s.longrope) {
        std::uniform_real_distribution<float> factor(1.0f, 4.0f);
        for (int i = 0; i < s.head_dim / 2; ++i) {
            w.rope_long.push_back(factor(rng));
            w.rope_short.push_back(factor(rng) * 0.5f + 0.5f);
        }
    }
    return w;
}

// Llama-3.1's rope_scaling (factor 8, low 1, high 4, original 8192) as the
// divisors of each frequency, from Meta's apply_scaling.
inline std::vector<double> llama3_factors(const ArchSpec& s) {
    const double factor = 8.0, low = 1.0, high = 4.0, old = 8192.0;
    std::vector<double> out;
    for (int i = 0; i < s.head_dim / 2; ++i) {
        const double freq = std::pow(s.theta, -2.0 * i / s.head_dim);
        const double wavelen = 2.0 * M_PI / freq;
        if (wavelen < old / high) {
            out.push_back(1.0);
        } else if (wavelen > old / low) {
            out.push_back(factor);
        } else {
            const double smooth = (old / wavelen - low) / (high - low);
            out.push_back(1.0 / ((1.0 - smooth) / factor + smooth));
        }
    }
    return out;
}

// ---- the FP64 reference ----

// y = W x (+ b), W rows x cols row-major.
inline std::vector<double> linear(const std::vector<float>& w, const std::vector<double>& x,
                                  const std::vector<float>& bias = {}) {
    const size_t cols = x.size(), rows = w.size() / cols;
    std::vector<double> y(rows);
    for (size_t r = 0; r < rows; ++r) {
        double acc = bias.empty() ? 0.0 : double(bias[r]);
        for (size_t c = 0; c < cols; ++c) acc += double(w[r * cols + c]) * x[c];
        y[r] = acc;
    }
    return y;
}

// RMSNorm of x[first, first + n) with weight w (applied as 1 + w for Gemma).
inline void rms_norm(std::vector<double>& x, size_t first, size_t n, const std::vector<float>& w,
                     double eps, bool plus_one) {
    double ss = 0.0;
    for (size_t i = 0; i < n; ++i) ss += x[first + i] * x[first + i];
    const double inv = 1.0 / std::sqrt(ss / double(n) + eps);
    for (size_t i = 0; i < n; ++i) {
        x[first + i] *= inv * (plus_one ? 1.0 + double(w[i]) : double(w[i]));
    }
}

inline bool layer_is_sliding(const ArchSpec& s, int l) {
    if (s.window == 0) return false;
    if (s.window_pattern == 2) return l % 2 == 0;                      // Gemma-2
    if (s.window_pattern > 2) return (l + 1) % s.window_pattern != 0;  // Gemma-3
    return true;
}

// Logits of every position of `tokens` (rows of vocab).
inline std::vector<std::vector<double>> reference_logits(const ArchWeights& w,
                                                         const std::vector<int32_t>& tokens) {
    const ArchSpec& s = w.spec;
    const size_t T = tokens.size(), D = size_t(s.dim), hd = size_t(s.head_dim);
    const int group = s.heads / s.kv_heads;
    const double scale =
        1.0 / std::sqrt(s.query_pre_attn_scalar > 0.0 ? s.query_pre_attn_scalar : double(hd));
    // RoPE: frequency i = base^(-2i/hd) / factor_i, cos and sin times m.
    std::vector<double> factors(hd / 2, 1.0);
    double magnitude = 1.0;
    if (s.llama3_scaling) factors = llama3_factors(s);
    if (s.longrope) {
        const bool long_ctx = s.context > s.original_context;
        for (size_t i = 0; i < hd / 2; ++i) {
            factors[i] = long_ctx ? w.rope_long[i] : w.rope_short[i];
        }
        const double ratio = double(s.context) / s.original_context;
        magnitude = std::sqrt(1.0 + std::log(ratio) / std::log(double(s.original_context)));
    }
    auto rope = [&](std::vector<double>& v, int n_heads, size_t pos, double base) {
        for (int h = 0; h < n_heads; ++h) {
            for (size_t i = 0; i < hd / 2; ++i) {
                const double angle =
                    double(pos) * std::pow(base, -2.0 * double(i) / double(hd)) / factors[i];
                const double c = magnitude * std::cos(angle), sn = magnitude * std::sin(angle);
                double& a = v[size_t(h) * hd + i];
                double& b = v[size_t(h) * hd + i + hd / 2];  // rotate_half
                const double a0 = a, b0 = b;
                a = a0 * c - b0 * sn;
                b = b0 * c + a0 * sn;
            }
        }
    };

    std::vector<std::vector<double>> x(T, std::vector<double>(D));
    for (size_t t = 0; t < T; ++t) {
        for (size_t i = 0; i < D; ++i) {
            x[t][i] = double(w.embedding[size_t(tokens[t]) * D + i]) *
                      (s.gemma ? std::sqrt(double(s.dim)) : 1.0);
        }
    }
    for (int l = 0; l < s.layers; ++l) {
        const LayerParams& p = w.layers[size_t(l)];
        const bool sliding = layer_is_sliding(s, l);
        const double base = sliding && s.theta_local > 0.0 ? s.theta_local : s.theta;
        std::vector<std::vector<double>> q(T), k(T), v(T);
        for (size_t t = 0; t < T; ++t) {
            std::vector<double> xn = x[t];
            rms_norm(xn, 0, D, p.attn_norm, s.eps, s.gemma);
            q[t] = linear(p.wq, xn, p.bq);
            k[t] = linear(p.wk, xn, p.bk);
            v[t] = linear(p.wv, xn, p.bv);
            if (s.qk_norm) {
                for (int h = 0; h < s.heads; ++h)
                    rms_norm(q[t], h * hd, hd, p.q_norm, s.eps, s.gemma);
                for (int h = 0; h < s.kv_heads; ++h) {
                    rms_norm(k[t], h * hd, hd, p.k_norm, s.eps, s.gemma);
                }
            }
            rope(q[t], s.heads, t, base);
            rope(k[t], s.kv_heads, t, base);
        }
        for (size_t t = 0; t < T; ++t) {
            std::vector<double> attn(size_t(s.heads) * hd, 0.0);
            for (int h = 0; h < s.heads; ++h) {
                const size_t kv = size_t(h / group);
                std::vector<double> scores(t + 1, -INFINITY);
                double top = -INFINITY;
                for (size_t u = 0; u <= t; ++u) {
                    if (sliding && t - u >= size_t(s.window)) continue;
                    double dot = 0.0;
                    for (size_t i = 0; i < hd; ++i) dot += q[t][h * hd + i] * k[u][kv * hd + i];
                    dot *= scale;
                    if (s.attn_cap > 0.0) dot = s.attn_cap * std::tanh(dot / s.attn_cap);
                    scores[u] = dot;
                    top = std::max(top, dot);
                }
                double total = 0.0;
                for (double& sc : scores) total += (sc = std::exp(sc - top));
                for (size_t u = 0; u <= t; ++u) {
                    for (size_t i = 0; i < hd; ++i) {
                        attn[h * hd + i] += scores[u] / total * v[u][kv * hd + i];
                    }
                }
            }
            std::vector<double> out = linear(p.wo, attn);
            if (s.gemma) rms_norm(out, 0, D, p.post_attn_norm, s.eps, true);
            for (size_t i = 0; i < D; ++i) x[t][i] += out[i];

            std::vector<double> xn = x[t];
            rms_norm(xn, 0, D, p.ffn_norm, s.eps, s.gemma);
            const std::vector<double> g = linear(p.gate, xn), u = linear(p.up, xn);
            std::vector<double> h(g.size());
            for (size_t i = 0; i < g.size(); ++i) {
                const double a = s.gemma  // gelu_pytorch_tanh, or silu
                                     ? 0.5 * g[i] *
                                           (1.0 + std::tanh(std::sqrt(2.0 / M_PI) *
                                                            (g[i] + 0.044715 * g[i] * g[i] * g[i])))
                                     : g[i] / (1.0 + std::exp(-g[i]));
                h[i] = a * u[i];
            }
            std::vector<double> down = linear(p.down, h);
            if (s.gemma) rms_norm(down, 0, D, p.post_ffw_norm, s.eps, true);
            for (size_t i = 0; i < D; ++i) x[t][i] += down[i];
        }
    }
    std::vector<std::vector<double>> logits(T);
    for (size_t t = 0; t < T; ++t) {
        std::vector<double> xn = x[t];
        rms_norm(xn, 0, D, w.output_norm, s.eps, s.gemma);
        logits[t] = linear(s.tied ? w.embedding : w.output, xn);
        if (s.final_cap > 0.0) {
            for (double& z : logits[t]) z = s.final_cap * std::tanh(z / s.final_cap);
        }
    }
    return logits;
}

// ---- files ----

template <typename T>
void put_bytes(std::string& out, T v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

// A GGUF v3 file of F32 tensors, written as llama.cpp's converter lays it out.
class GgufWriter {
  public:
    void u32(const std::string& key, uint32_t v) {
        this->key(key, 4);
        put_bytes(kv_, v);
    }
    void f32(const std::string& key, float v) {
        this->key(key, 6);
        put_bytes(kv_, v);
    }
    void str(const std::string& key, const std::string& v) {
        this->key(key, 8);
        put_bytes<uint64_t>(kv_, v.size());
        kv_ += v;
    }
    // dims innermost first: {cols} or {cols, rows}.
    void tensor(const std::string& name, const std::vector<int64_t>& dims,
                const std::vector<float>& v) {
        put_bytes<uint64_t>(infos_, name.size());
        infos_ += name;
        put_bytes<uint32_t>(infos_, uint32_t(dims.size()));
        for (int64_t d : dims) put_bytes<int64_t>(infos_, d);
        put_bytes<uint32_t>(infos_, 0);  // F32
        put_bytes<uint64_t>(infos_, data_.size());
        data_.append(reinterpret_cast<const char*>(v.data()), v.size() * 4);
        data_.resize((data_.size() + 31) / 32 * 32, '\0');
        ++n_tensors_;
    }
    void write(const std::string& path) const {
        std::string out = "GGUF";
        put_bytes<uint32_t>(out, 3);
        put_bytes<uint64_t>(out, n_tensors_);
        put_bytes<uint64_t>(out, n_kv_);
        out += kv_ + infos_;
        out.resize((out.size() + 31) / 32 * 32, '\0');
        out += data_;
        std::ofstream f(path, std::ios::binary | std::ios::trunc);
        f << out;
        REQUIRE(f.good());
    }

  private:
    void key(const std::string& k, uint32_t type) {
        put_bytes<uint64_t>(kv_, k.size());
        kv_ += k;
        put_bytes<uint32_t>(kv_, type);
        ++n_kv_;
    }
    std::string kv_, infos_, data_;
    uint64_t n_kv_ = 0, n_tensors_ = 0;
};

// llama.cpp's converter permutes llama's q/k rows to the adjacent-pair RoPE
// layout: within a head, row 2i is Hugging Face's row i and row 2i+1 its row
// i + head_dim/2.
inline std::vector<float> to_adjacent_pairs(const std::vector<float>& w, int head_dim,
                                            size_t cols) {
    std::vector<float> out(w.size());
    const size_t rows = w.size() / cols, half = size_t(head_dim) / 2;
    for (size_t r = 0; r < rows; ++r) {
        const size_t h = r / size_t(head_dim), i = r % size_t(head_dim);
        const size_t hf = h * size_t(head_dim) + (i % 2 == 0 ? i / 2 : half + i / 2);
        std::memcpy(&out[r * cols], &w[hf * cols], cols * 4);
    }
    return out;
}

inline std::vector<float> plus_one(std::vector<float> v) {
    for (float& x : v) x += 1.0f;
    return v;
}

inline std::vector<float> concat(std::vector<float> a, const std::vector<float>& b,
                                 const std::vector<float>& c = {}) {
    a.insert(a.end(), b.begin(), b.end());
    a.insert(a.end(), c.begin(), c.end());
    return a;
}

// Writes `w` as llama.cpp's converter would; `skip` names a tensor to leave out.
inline void write_arch_gguf(const ArchWeights& w, const std::string& path,
                            const std::string& skip = "", const std::string& arch_name = "") {
    const ArchSpec& s = w.spec;
    const std::string a = arch_name.empty() ? s.gguf_arch : arch_name;
    GgufWriter g;
    g.str("general.architecture", a);
    g.u32(a + ".context_length", uint32_t(s.context));
    g.u32(a + ".embedding_length", uint32_t(s.dim));
    g.u32(a + ".feed_forward_length", uint32_t(s.hidden));
    g.u32(a + ".block_count", uint32_t(s.layers));
    g.u32(a + ".attention.head_count", uint32_t(s.heads));
    g.u32(a + ".attention.head_count_kv", uint32_t(s.kv_heads));
    g.f32(a + ".rope.freq_base", float(s.theta));
    g.f32(a + ".attention.layer_norm_rms_epsilon", float(s.eps));
    if (s.head_dim != s.dim / s.heads) {
        g.u32(a + ".attention.key_length", uint32_t(s.head_dim));
        g.u32(a + ".attention.value_length", uint32_t(s.head_dim));
    }
    if (s.window > 0) g.u32(a + ".attention.sliding_window", uint32_t(s.window));
    if (s.attn_cap > 0.0) g.f32(a + ".attn_logit_softcapping", float(s.attn_cap));
    if (s.final_cap > 0.0) g.f32(a + ".final_logit_softcapping", float(s.final_cap));
    if (s.longrope) {
        g.u32(a + ".rope.scaling.original_context_length", uint32_t(s.original_context));
        const double ratio = double(s.context) / s.original_context;
        g.f32(a + ".rope.scaling.attn_factor",
              float(std::sqrt(1.0 + std::log(ratio) / std::log(double(s.original_context)))));
    }
    const int64_t D = s.dim, q_dim = s.heads * s.head_dim, kv_dim = s.kv_heads * s.head_dim;
    auto add = [&](const std::string& name, const std::vector<int64_t>& dims,
                   const std::vector<float>& v) {
        if (name != skip) g.tensor(name, dims, v);
    };
    auto norm = [&](const std::vector<float>& v) { return s.gemma ? plus_one(v) : v; };
    add("token_embd.weight", {D, s.vocab}, w.embedding);
    for (int l = 0; l < s.layers; ++l) {
        const LayerParams& p = w.layers[size_t(l)];
        const std::string b = "blk." + std::to_string(l) + ".";
        const bool permute = a == "llama";
        const std::vector<float> wq =
            permute ? to_adjacent_pairs(p.wq, s.head_dim, size_t(D)) : p.wq;
        const std::vector<float> wk =
            permute ? to_adjacent_pairs(p.wk, s.head_dim, size_t(D)) : p.wk;
        add(b + "attn_norm.weight", {D}, norm(p.attn_norm));
        if (s.fused) {
            add(b + "attn_qkv.weight", {D, q_dim + 2 * kv_dim}, concat(wq, wk, p.wv));
        } else {
            add(b + "attn_q.weight", {D, q_dim}, wq);
            add(b + "attn_k.weight", {D, kv_dim}, wk);
            add(b + "attn_v.weight", {D, kv_dim}, p.wv);
        }
        if (s.qkv_bias) {
            add(b + "attn_q.bias", {q_dim}, p.bq);
            add(b + "attn_k.bias", {kv_dim}, p.bk);
            add(b + "attn_v.bias", {kv_dim}, p.bv);
        }
        if (s.qk_norm) {
            add(b + "attn_q_norm.weight", {s.head_dim}, norm(p.q_norm));
            add(b + "attn_k_norm.weight", {s.head_dim}, norm(p.k_norm));
        }
        add(b + "attn_output.weight", {q_dim, D}, p.wo);
        if (s.gemma) add(b + "post_attention_norm.weight", {D}, plus_one(p.post_attn_norm));
        add(b + "ffn_norm.weight", {D}, norm(p.ffn_norm));
        if (s.fused) {
            add(b + "ffn_up.weight", {D, 2 * int64_t(s.hidden)}, concat(p.gate, p.up));
        } else {
            add(b + "ffn_gate.weight", {D, s.hidden}, p.gate);
            add(b + "ffn_up.weight", {D, s.hidden}, p.up);
        }
        add(b + "ffn_down.weight", {s.hidden, D}, p.down);
        if (s.gemma) add(b + "post_ffw_norm.weight", {D}, plus_one(p.post_ffw_norm));
    }
    add("output_norm.weight", {D}, norm(w.output_norm));
    if (!s.tied) add("output.weight", {D, s.vocab}, w.output);
    if (s.llama3_scaling) {
        std::vector<float> f;
        for (double x : llama3_factors(s)) f.push_back(float(x));
        add("rope_freqs.weight", {s.head_dim / 2}, f);
    }
    if (s.longrope) {
        add("rope_factors_long.weight", {s.head_dim / 2}, w.rope_long);
        add("rope_factors_short.weight", {s.head_dim / 2}, w.rope_short);
    }
    g.write(path);
}

// The same weights as a Hugging Face directory (config.json, model.safetensors, F32).
inline void write_arch_hf(const ArchWeights& w, const std::filesystem::path& dir) {
    using json = nlohmann::json;
    const ArchSpec& s = w.spec;
    std::filesystem::create_directories(dir);
    json config = {{"architectures", {s.hf_class}},
                   {"model_type", s.hf_type},
                   {"hidden_size", s.dim},
                   {"intermediate_size", s.hidden},
                   {"num_hidden_layers", s.layers},
                   {"num_attention_heads", s.heads},
                   {"num_key_value_heads", s.kv_heads},
                   {"head_dim", s.head_dim},
                   {"vocab_size", s.vocab},
                   {"max_position_embeddings", s.context},
                   {"rope_theta", s.theta},
                   {"rms_norm_eps", s.eps},
                   {"tie_word_embeddings", s.tied}};
    if (s.window > 0) config["sliding_window"] = s.window;
    if (s.gemma) {
        config["query_pre_attn_scalar"] = s.query_pre_attn_scalar;
        config["hidden_activation"] = "gelu_pytorch_tanh";
    }
    if (s.attn_cap > 0.0) config["attn_logit_softcapping"] = s.attn_cap;
    if (s.final_cap > 0.0) config["final_logit_softcapping"] = s.final_cap;
    if (s.window_pattern > 2) config["sliding_window_pattern"] = s.window_pattern;
    if (s.theta_local > 0.0) config["rope_local_base_freq"] = s.theta_local;
    if (s.llama3_scaling) {
        config["rope_scaling"] = {{"rope_type", "llama3"},
                                  {"factor", 8.0},
                                  {"low_freq_factor", 1.0},
                                  {"high_freq_factor", 4.0},
                                  {"original_max_position_embeddings", 8192}};
    }
    if (s.longrope) {
        config["original_max_position_embeddings"] = s.original_context;
        config["rope_scaling"] = {
            {"type", "longrope"}, {"long_factor", w.rope_long}, {"short_factor", w.rope_short}};
    }
    std::ofstream(dir / "config.json") << config.dump(2);

    json header = json::object();
    std::string data;
    auto add = [&](const std::string& name, std::vector<uint64_t> shape,
                   const std::vector<float>& v) {
        const size_t begin = data.size();
        data.append(reinterpret_cast<const char*>(v.data()), v.size() * 4);
        header[name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {begin, data.size()}}};
    };
    const uint64_t D = uint64_t(s.dim), H = uint64_t(s.hidden);
    const uint64_t q_dim = uint64_t(s.heads) * uint64_t(s.head_dim),
                   kv_dim = uint64_t(s.kv_heads) * uint64_t(s.head_dim);
    add("model.embed_tokens.weight", {uint64_t(s.vocab), D}, w.embedding);
    for (int l = 0; l < s.layers; ++l) {
        const LayerParams& p = w.layers[size_t(l)];
        const std::string b = "model.layers." + std::to_string(l) + ".";
        add(b + "input_layernorm.weight", {D}, p.attn_norm);
        if (s.fused) {
            add(b + "self_attn.qkv_proj.weight", {q_dim + 2 * kv_dim, D}, concat(p.wq, p.wk, p.wv));
            add(b + "mlp.gate_up_proj.weight", {2 * H, D}, concat(p.gate, p.up));
        } else {
            add(b + "self_attn.q_proj.weight", {q_dim, D}, p.wq);
            add(b + "self_attn.k_proj.weight", {kv_dim, D}, p.wk);
            add(b + "self_attn.v_proj.weight", {kv_dim, D}, p.wv);
            add(b + "mlp.gate_proj.weight", {H, D}, p.gate);
            add(b + "mlp.up_proj.weight", {H, D}, p.up);
        }
        if (s.qkv_bias) {
            add(b + "self_attn.q_proj.bias", {q_dim}, p.bq);
            add(b + "self_attn.k_proj.bias", {kv_dim}, p.bk);
            add(b + "self_attn.v_proj.bias", {kv_dim}, p.bv);
        }
        if (s.qk_norm) {
            add(b + "self_attn.q_norm.weight", {uint64_t(s.head_dim)}, p.q_norm);
            add(b + "self_attn.k_norm.weight", {uint64_t(s.head_dim)}, p.k_norm);
        }
        add(b + "self_attn.o_proj.weight", {D, q_dim}, p.wo);
        if (s.gemma) {
            add(b + "post_attention_layernorm.weight", {D}, p.post_attn_norm);
            add(b + "pre_feedforward_layernorm.weight", {D}, p.ffn_norm);
            add(b + "post_feedforward_layernorm.weight", {D}, p.post_ffw_norm);
        } else {
            add(b + "post_attention_layernorm.weight", {D}, p.ffn_norm);
        }
        add(b + "mlp.down_proj.weight", {D, H}, p.down);
    }
    add("model.norm.weight", {D}, w.output_norm);
    if (!s.tied) add("lm_head.weight", {uint64_t(s.vocab), D}, w.output);
    const std::string text = header.dump();
    std::ofstream out(dir / "model.safetensors", std::ios::binary | std::ios::trunc);
    const uint64_t n = text.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << text << data;
    REQUIRE(out.good());
}

}  // namespace nibble::test

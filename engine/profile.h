// Optional per-operation timing of the forward pass, enabled by the environment
// variable NIBBLE_PROFILE=1 (read once). When enabled, every Timed scope adds
// its wall time to a process-wide table that is printed to stderr at exit,
// separately for decoding (batches of one token) and prompt batches. When
// disabled a scope costs one predictable branch.
#pragma once
#include <chrono>

namespace nibble {

enum class ProfileOp {
    embedding,
    rmsnorm,
    matmul_qkv,
    rope_kv_store,
    attention,
    matmul_wo,
    matmul_gate_up,
    swiglu,  // SwiGLU or GeGLU
    matmul_down,
    residual,
    matmul_output,
    bias,       // q/k/v biases (Qwen2)
    qk_norm,    // per-head q/k RMSNorm (Qwen3, Gemma-3)
    post_norm,  // post-attention and post-FFN RMSNorm (Gemma)
    soft_cap,   // final logit soft-cap (Gemma-2; score caps are inside attention)
    count
};

bool profile_enabled();
// Adds `seconds` to op's total for decode (n_tokens == 1) or prompt batches.
void profile_add(ProfileOp op, int n_tokens, double seconds);
// Counts one forward call of n_tokens tokens (for per-token averages).
void profile_count_call(int n_tokens);

class Timed {
  public:
    Timed(ProfileOp op, int n_tokens) : op_(op), n_tokens_(n_tokens), on_(profile_enabled()) {
        if (on_) start_ = std::chrono::steady_clock::now();
    }
    ~Timed() {
        if (!on_) return;
        const std::chrono::duration<double> d = std::chrono::steady_clock::now() - start_;
        profile_add(op_, n_tokens_, d.count());
    }
    Timed(const Timed&) = delete;
    Timed& operator=(const Timed&) = delete;

  private:
    ProfileOp op_;
    int n_tokens_;
    bool on_;
    std::chrono::steady_clock::time_point start_;
};

}  // namespace nibble

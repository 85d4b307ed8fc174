// Activations quantized to int8 for the integer matmul path.
//
// Each token's activation row (padded with zeros to the weight matrix's
// padded_cols) is cut into blocks of 32 columns. Block b gets the scale
// d_b = amax_b / 127 and codes q_c = round(x_c / d_b) in -127..127, so
// |x_c - d_b q_c| <= d_b / 2. A weight block with codes w_c and scale s then
// contributes s * d_b * sum_c w_c q_c, an exact integer dot product.
//
// group_sums[g] = sum over the blocks b of weight group g of d_b * sum_c q_c:
// the kernels add the offset terms of q4 (-8 d) and q4a (m) per group as
// dot(row scales, group_sums) instead of inside the integer loop.
//
// Code order inside the int8 row: natural, or pair-interleaved (AVX2): blocks
// 2p and 2p+1 are stored as [b0 cols 0..15][b1 cols 0..15][b0 cols 16..31]
// [b1 cols 16..31], matching the low / high nibbles of two 16-byte code chunks
// loaded as one 32-byte register. An odd last block stays in natural order.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/formats.h"

namespace nibble {

inline constexpr int64_t kActivationBlock = 32;

struct QuantizedActivations {
    int n_tokens = 0;
    int64_t cols = 0;            // valid columns per token
    int64_t padded_cols = 0;     // multiple of 32, row stride of q
    int64_t n_blocks = 0;        // padded_cols / 32
    int64_t groups_per_row = 0;  // weight groups per row
    int64_t blocks_per_group = 0;
    bool pair_interleaved = false;
    int8_t* q = nullptr;          // [n_tokens][padded_cols]
    float* d = nullptr;           // [n_tokens][n_blocks]
    float* d4 = nullptr;          // [n_tokens][4 * n_blocks], each d repeated 4 times
    float* group_sums = nullptr;  // [n_tokens][groups_per_row]

    const int8_t* token_q(int t) const { return q + size_t(t) * size_t(padded_cols); }
    const float* token_d(int t) const { return d + size_t(t) * size_t(n_blocks); }
    const float* token_d4(int t) const { return d4 + size_t(t) * size_t(4 * n_blocks); }
    const float* token_group_sums(int t) const {
        return group_sums + size_t(t) * size_t(groups_per_row);
    }
};

// Owns the storage; grows only, so steady-state decoding allocates nothing.
class ActivationBuffer {
  public:
    // Sizes the buffers for n_tokens activation rows against weight layout l.
    QuantizedActivations prepare(const PackedLayout& l, int n_tokens, bool pair_interleaved);

  private:
    std::vector<int8_t> q_;
    std::vector<float> d_, d4_, group_sums_;
};

// Quantizes token t's activations x[0..cols) into qa (portable scalar code).
void quantize_activation_row(const float* x, int t, const QuantizedActivations& qa);

namespace kernels::avx2 {
// The same result bit for bit with AVX2 (kernels/avx2; call only when the CPU
// has AVX2).
void quantize_activation_row(const float* x, int t, const QuantizedActivations& qa);
}  // namespace kernels::avx2

}  // namespace nibble

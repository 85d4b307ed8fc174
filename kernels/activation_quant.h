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
// Code order inside the int8 row (CodeOrder), chosen by the kernel that reads it:
//   natural  columns in order (scalar, NEON);
//   pairs    (AVX2, 256-bit) blocks 2p and 2p+1 stored as [b0 cols 0..15]
//            [b1 cols 0..15][b0 cols 16..31][b1 cols 16..31], matching the low /
//            high nibbles of two 16-byte code chunks loaded as one 32-byte
//            register. An odd last block stays in natural order.
//   quads    (AVX-512) blocks 4q..4q+3 stored as [b0 0..15][b1 0..15][b2 0..15]
//            [b3 0..15][b0 16..31][b1 16..31][b2 16..31][b3 16..31]: the low /
//            high nibbles of one 64-byte load of four code chunks. The row is
//            padded with zero blocks (codes 0, d 0) to a whole number of quads.
// block_stride is the number of blocks each token's row occupies (n_blocks
// rounded up to the order's unit); q, d and d4 use it as their row stride.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/formats.h"

namespace nibble {

inline constexpr int64_t kActivationBlock = 32;

enum class CodeOrder : uint8_t { natural, pairs, quads };

struct QuantizedActivations {
    int n_tokens = 0;
    int64_t cols = 0;            // valid columns per token
    int64_t padded_cols = 0;     // multiple of 32: the weight rows' padded width
    int64_t n_blocks = 0;        // padded_cols / 32
    int64_t block_stride = 0;    // blocks per token row (n_blocks, or rounded up to 4)
    int64_t groups_per_row = 0;  // weight groups per row
    int64_t blocks_per_group = 0;
    CodeOrder order = CodeOrder::natural;
    int8_t* q = nullptr;          // [n_tokens][32 * block_stride]
    float* d = nullptr;           // [n_tokens][block_stride]
    float* d4 = nullptr;          // [n_tokens][4 * block_stride], each d repeated 4 times
    float* group_sums = nullptr;  // [n_tokens][groups_per_row]
    // Changes whenever the buffer is prepared for new activations: kernels
    // that keep a per-thread repacked copy (AMX) know when it is stale.
    uint64_t generation = 0;

    // always_inline: ISA kernels call these, and an out-of-line copy compiled
    // for AVX-512 must never be what the linker keeps for portable callers
    // (tests/check_isa_symbols.sh checks that no such copy is emitted).
    [[gnu::always_inline]] int64_t q_stride() const { return block_stride * kActivationBlock; }
    [[gnu::always_inline]] const int8_t* token_q(int t) const {
        return q + size_t(t) * size_t(block_stride * kActivationBlock);
    }
    [[gnu::always_inline]] const float* token_d(int t) const {
        return d + size_t(t) * size_t(block_stride);
    }
    [[gnu::always_inline]] const float* token_d4(int t) const {
        return d4 + size_t(t) * size_t(4 * block_stride);
    }
    [[gnu::always_inline]] const float* token_group_sums(int t) const {
        return group_sums + size_t(t) * size_t(groups_per_row);
    }
};

// Owns the storage; grows only, so steady-state decoding allocates nothing.
class ActivationBuffer {
  public:
    // Sizes the buffers for n_tokens activation rows against weight layout l.
    QuantizedActivations prepare(const PackedLayout& l, int n_tokens, CodeOrder order);

  private:
    std::vector<int8_t> q_;
    std::vector<float> d_, d4_, group_sums_;
};

// Quantizes token t's activations x[0..cols) into qa (portable scalar code).
void quantize_activation_row(const float* x, int t, const QuantizedActivations& qa);

// Writes the 32 codes of block b to their places in one token's row q (qa.order).
void store_block_codes(const int8_t* codes, int64_t b, const QuantizedActivations& qa, int8_t* q);
// Zeroes the blocks of token t's row beyond n_blocks (quads order).
void pad_quads(int t, const QuantizedActivations& qa);

namespace kernels::avx2 {
// The same result bit for bit with AVX2 (kernels/avx2; call only when the CPU
// has AVX2).
void quantize_activation_row(const float* x, int t, const QuantizedActivations& qa);
}  // namespace kernels::avx2

}  // namespace nibble

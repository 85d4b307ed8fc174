// Kernels of the ggml block formats in portable code (kernels/lowbit.h): the
// int8-activation path for CPUs without AVX2 or NEON, and the
// FP32-activation path for every CPU.
#include "kernels/lowbit.h"
#include "kernels/matmul.h"
#include "kernels/matmul_variants.h"

namespace nibble::kernels::scalar {

// Per row: the codes u and the 16-column s and m (lowbit.h); per token and
// block of 32 activations, for each 16-column half the integer sums of u q
// and of q, combined as s * sum(u q) - m * sum(q), times the block's
// activation scale.
void matmul_rows_int8_lowbit(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                             int64_t r1, float* y) {
    const PackedLayout& l = w.layout;
    const int64_t n_sub = l.cols / kLowbitSubBlock;
    const int64_t sub_per_block = l.group_size / kLowbitSubBlock;
    float* s = kernel_scratch(size_t(2 * n_sub + l.cols / 4));
    float* m = s + n_sub;
    auto* u = reinterpret_cast<uint8_t*>(m + n_sub);
    for (int64_t r = r0; r < r1; ++r) {
        for (int64_t i = 0; i < l.groups_per_row; ++i) {
            lowbit_decode_block(l.format, lowbit_block(w, r, i), u + l.group_size * i,
                                s + sub_per_block * i, m + sub_per_block * i);
        }
        for (int t = 0; t < qa.n_tokens; ++t) {
            const int8_t* xq = qa.token_q(t);
            const float* xd = qa.token_d(t);
            float acc = 0.0f;
            for (int64_t b = 0; b < qa.n_blocks; ++b) {
                float part = 0.0f;
                for (int h = 0; h < 2; ++h) {
                    const int64_t c0 = 32 * b + 16 * h;
                    int32_t dot = 0, sum = 0;
                    for (int64_t c = c0; c < c0 + 16; ++c) {
                        dot += int32_t(u[c]) * int32_t(xq[c]);
                        sum += int32_t(xq[c]);
                    }
                    part += s[2 * b + h] * float(dot) - m[2 * b + h] * float(sum);
                }
                acc += xd[b] * part;
            }
            y[size_t(t) * size_t(l.rows) + size_t(r)] = acc;
        }
    }
}

}  // namespace nibble::kernels::scalar

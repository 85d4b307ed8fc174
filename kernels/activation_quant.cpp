// Int8 quantization of activation rows (see activation_quant.h).
#include "kernels/activation_quant.h"

#include <algorithm>
#include <cmath>

namespace nibble {

QuantizedActivations ActivationBuffer::prepare(const PackedLayout& l, int n_tokens,
                                               bool pair_interleaved) {
    QuantizedActivations qa;
    qa.n_tokens = n_tokens;
    qa.cols = l.cols;
    qa.padded_cols = (l.padded_cols + kActivationBlock - 1) / kActivationBlock * kActivationBlock;
    qa.n_blocks = qa.padded_cols / kActivationBlock;
    qa.groups_per_row = l.groups_per_row;
    qa.blocks_per_group = l.group_size / kActivationBlock;
    qa.pair_interleaved = pair_interleaved;
    const size_t nt = size_t(n_tokens);
    auto grow = [](auto& v, size_t n) {
        if (v.size() < n) v.resize(n);
    };
    grow(q_, nt * size_t(qa.padded_cols));
    grow(d_, nt * size_t(qa.n_blocks));
    grow(d4_, nt * size_t(4 * qa.n_blocks));
    grow(group_sums_, nt * size_t(std::max<int64_t>(qa.groups_per_row, 1)));
    qa.q = q_.data();
    qa.d = d_.data();
    qa.d4 = d4_.data();
    qa.group_sums = group_sums_.data();
    return qa;
}

void quantize_activation_row(const float* x, int t, const QuantizedActivations& qa) {
    int8_t* q = qa.q + size_t(t) * size_t(qa.padded_cols);
    float* d = qa.d + size_t(t) * size_t(qa.n_blocks);
    float* d4 = qa.d4 + size_t(t) * size_t(4 * qa.n_blocks);
    float* group_sums = qa.group_sums + size_t(t) * size_t(qa.groups_per_row);
    x += size_t(t) * size_t(qa.cols);
    for (int64_t g = 0; g < qa.groups_per_row; ++g) group_sums[g] = 0.0f;

    int8_t block_codes[kActivationBlock];
    for (int64_t b = 0; b < qa.n_blocks; ++b) {
        const int64_t c0 = b * kActivationBlock;
        const int64_t n = std::clamp<int64_t>(qa.cols - c0, 0, kActivationBlock);
        float amax = 0.0f;
        for (int64_t j = 0; j < n; ++j) amax = std::max(amax, std::fabs(x[c0 + j]));
        const float scale = amax / 127.0f;
        const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int64_t j = 0; j < kActivationBlock; ++j) {
            int v = 0;
            if (j < n) {
                v = int(std::lrint(x[c0 + j] * inv));
                v = std::clamp(v, -127, 127);
            }
            block_codes[j] = int8_t(v);
            sum += v;
        }
        d[b] = scale;
        for (int i = 0; i < 4; ++i) d4[4 * b + i] = scale;
        if (qa.groups_per_row > 0) group_sums[b / qa.blocks_per_group] += scale * float(sum);

        int8_t* out = q + c0;
        const bool paired = qa.pair_interleaved && (b | 1) < qa.n_blocks;
        if (!paired) {
            std::copy(block_codes, block_codes + kActivationBlock, out);
            continue;
        }
        // Pair (2p, 2p+1) occupies 64 bytes starting at block 2p.
        const int64_t second = b & 1;
        int8_t* pair = q + (b - second) * kActivationBlock;
        for (int j = 0; j < 16; ++j) {
            pair[16 * second + j] = block_codes[j];
            pair[32 + 16 * second + j] = block_codes[16 + j];
        }
    }
}

}  // namespace nibble

// Int8 quantization of activation rows (see activation_quant.h).
#include "kernels/activation_quant.h"

#include <algorithm>
#include <atomic>
#include <cmath>

namespace nibble {

QuantizedActivations ActivationBuffer::prepare(const PackedLayout& l, int n_tokens,
                                               CodeOrder order) {
    QuantizedActivations qa;
    qa.n_tokens = n_tokens;
    qa.cols = l.cols;
    qa.padded_cols = (l.padded_cols + kActivationBlock - 1) / kActivationBlock * kActivationBlock;
    qa.n_blocks = qa.padded_cols / kActivationBlock;
    qa.groups_per_row = l.groups_per_row;
    qa.blocks_per_group = l.group_size / kActivationBlock;
    qa.order = order;
    qa.block_stride = order == CodeOrder::quads ? (qa.n_blocks + 3) / 4 * 4 : qa.n_blocks;
    const size_t nt = size_t(n_tokens);
    auto grow = [](auto& v, size_t n) {
        if (v.size() < n) v.resize(n);
    };
    grow(q_, nt * size_t(qa.q_stride()));
    grow(d_, nt * size_t(qa.block_stride));
    grow(d4_, nt * size_t(4 * qa.block_stride));
    grow(group_sums_, nt * size_t(std::max<int64_t>(qa.groups_per_row, 1)));
    qa.q = q_.data();
    qa.d = d_.data();
    qa.d4 = d4_.data();
    qa.group_sums = group_sums_.data();
    static std::atomic<uint64_t> next_generation{1};
    qa.generation = next_generation.fetch_add(1, std::memory_order_relaxed);
    return qa;
}

void quantize_activation_row(const float* x, int t, const QuantizedActivations& qa) {
    int8_t* q = qa.q + size_t(t) * size_t(qa.q_stride());
    float* d = qa.d + size_t(t) * size_t(qa.block_stride);
    float* d4 = qa.d4 + size_t(t) * size_t(4 * qa.block_stride);
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

        store_block_codes(block_codes, b, qa, q);
    }
    pad_quads(t, qa);
}

void store_block_codes(const int8_t* codes, int64_t b, const QuantizedActivations& qa, int8_t* q) {
    // Interleaved units: 2 blocks (pairs) or 4 (quads); an odd last block of a
    // pair row stays natural, a quad row is padded to whole quads.
    const int64_t unit = qa.order == CodeOrder::pairs ? 2 : qa.order == CodeOrder::quads ? 4 : 1;
    if (unit == 1 || (unit == 2 && (b | 1) >= qa.n_blocks)) {
        std::copy(codes, codes + kActivationBlock, q + b * kActivationBlock);
        return;
    }
    // Block k of its unit: columns 0-15 at 16k, columns 16-31 at 16 (unit + k).
    const int64_t k = b % unit;
    int8_t* base = q + (b - k) * kActivationBlock;
    std::copy(codes, codes + 16, base + 16 * k);
    std::copy(codes + 16, codes + 32, base + 16 * (unit + k));
}

void pad_quads(int t, const QuantizedActivations& qa) {
    if (qa.block_stride == qa.n_blocks) return;
    int8_t* q = qa.q + size_t(t) * size_t(qa.q_stride());
    float* d = qa.d + size_t(t) * size_t(qa.block_stride);
    float* d4 = qa.d4 + size_t(t) * size_t(4 * qa.block_stride);
    // The last quad is partly real: zero the missing blocks' codes in place.
    const int64_t first_pad = qa.n_blocks;
    const int64_t quad = first_pad / 4 * 4;
    for (int64_t b = first_pad; b < qa.block_stride; ++b) {
        const int64_t k = b - quad;
        std::fill_n(q + quad * kActivationBlock + 16 * k, 16, int8_t(0));
        std::fill_n(q + quad * kActivationBlock + 16 * (4 + k), 16, int8_t(0));
        d[b] = 0.0f;
        std::fill_n(d4 + 4 * b, 4, 0.0f);
    }
}

}  // namespace nibble

// q6k kernels in portable code (kernels/q6k.h): the int8-activation path for
// CPUs without AVX2 or NEON, and the FP32-activation path for every CPU.
#include "kernels/interleave.h"
#include "kernels/matmul.h"
#include "kernels/matmul_variants.h"
#include "kernels/q6k.h"

namespace nibble::kernels {

void q6k_row_scales(const MatrixView& w, int64_t row, float* out) {
    const PackedLayout& l = w.layout;
    for (int64_t i = 0; i < l.groups_per_row; ++i) {
        q6k_scales(q6k_params(w.data, l.scales_offset, l.groups_per_row, row, i),
                   out + (kQ6kBlock / kQ6kSubBlock) * i);
    }
}

namespace scalar {

// Per row: the codes q - 32 as int8 and the 16-column scales; per token and
// block of 32 activations, the integer dot products of its two 16-column
// halves, each times its scale, times the block's activation scale.
void matmul_rows_int8_q6k(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                          int64_t r1, float* y) {
    const PackedLayout& l = w.layout;
    const int64_t n_scales = l.cols / kQ6kSubBlock;
    float* scales = kernel_scratch(size_t(n_scales + l.cols / 4));
    int8_t* wq = reinterpret_cast<int8_t*>(scales + n_scales);
    for (int64_t r = r0; r < r1; ++r) {
        // (each super-block is one whole unit of the interleaved layout, read in place)
        const RowUnits units = row_units(w, r);
        for (int64_t i = 0; i < l.groups_per_row; ++i)
            q6k_unpack(units.first + size_t(i) * units.stride, wq + kQ6kBlock * i);
        q6k_row_scales(w, r, scales);
        for (int t = 0; t < qa.n_tokens; ++t) {
            const int8_t* xq = qa.token_q(t);
            const float* xd = qa.token_d(t);
            float acc = 0.0f;
            for (int64_t b = 0; b < qa.n_blocks; ++b) {
                const int8_t* wb = wq + 32 * b;
                const int8_t* xb = xq + 32 * b;
                int32_t lo = 0, hi = 0;
                for (int j = 0; j < 16; ++j) lo += int16_t(wb[j]) * int16_t(xb[j]);
                for (int j = 16; j < 32; ++j) hi += int16_t(wb[j]) * int16_t(xb[j]);
                acc += xd[b] * (scales[2 * b] * float(lo) + scales[2 * b + 1] * float(hi));
            }
            y[size_t(t) * size_t(l.rows) + size_t(r)] = acc;
        }
    }
}

}  // namespace scalar
}  // namespace nibble::kernels

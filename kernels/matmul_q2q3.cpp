// Portable row kernels of q3 and q2 (kernels/matmul_q2q3.h).
#include "kernels/matmul_q2q3.h"

#include "kernels/matmul_variants.h"
#include "kernels/q2q3.h"
#include "kernels/row_params.h"

namespace nibble::kernels::scalar {

namespace {

// The 32 codes of chunk k of a row, in column order.
template <bool kQ3>
inline void chunk_codes(const uint8_t* row_codes, int64_t k, int8_t* out) {
    const uint8_t* chunk = row_codes + k * (kQ3 ? kQ3ChunkBytes : kQ2ChunkBytes);
    for (int j = 0; j < 32; ++j) out[j] = int8_t(q2q3_code_at(chunk, j, kQ3));
}

template <bool kQ3>
void rows_int8(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
               float* y) {
    const PackedLayout& l = w.layout;
    const int64_t gpr = l.groups_per_row;
    const int group_shift = __builtin_ctzll(uint64_t(qa.blocks_per_group));
    const size_t row_bytes = l.row_code_bytes();
    float* scales = kernel_scratch(size_t(2 * gpr + qa.padded_cols / 4));
    float* mins = scales + gpr;
    int8_t* wq = reinterpret_cast<int8_t*>(mins + gpr);
    for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* codes = w.data + l.codes_offset + size_t(r) * row_bytes;
        decode_row_params(w, GroupStream::scales, r, scales);
        if constexpr (!kQ3) decode_row_params(w, GroupStream::mins, r, mins);
        for (int64_t b = 0; b < qa.n_blocks; ++b) chunk_codes<kQ3>(codes, b, wq + 32 * b);
        for (int t = 0; t < qa.n_tokens; ++t) {
            const int8_t* xq = qa.token_q(t);
            const float* xd = qa.token_d(t);
            float acc = 0.0f;
            for (int64_t b = 0; b < qa.n_blocks; ++b) {
                const int8_t* wb = wq + 32 * b;
                const int8_t* xb = xq + 32 * b;
                int32_t isum = 0;
                for (int j = 0; j < 32; ++j) isum += int16_t(wb[j]) * int16_t(xb[j]);
                acc += scales[size_t(b >> group_shift)] * xd[b] * float(isum);
            }
            // Offsets: q3 weights are d (q - 4), q2 weights d q + m.
            const float* gs = qa.token_group_sums(t);
            float corr = 0.0f;
            if constexpr (kQ3) {
                for (int64_t g = 0; g < gpr; ++g) corr += scales[size_t(g)] * gs[g];
                acc -= 4.0f * corr;
            } else {
                for (int64_t g = 0; g < gpr; ++g) corr += mins[size_t(g)] * gs[g];
                acc += corr;
            }
            y[size_t(t) * size_t(l.rows) + size_t(r)] = acc;
        }
    }
}

template <bool kQ3>
void rows_fp32(const MatrixView& w, const float* x, int64_t x_stride, int n_tokens, int64_t r0,
               int64_t r1, float* y) {
    const PackedLayout& l = w.layout;
    const int group_shift = __builtin_ctz(unsigned(l.group_size / 32));
    const int64_t n_chunks = l.padded_cols / 32;
    const size_t row_bytes = l.row_code_bytes();
    float* scales = kernel_scratch(size_t(2 * l.groups_per_row));
    float* mins = scales + l.groups_per_row;
    int8_t q[32];
    for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* codes = w.data + l.codes_offset + size_t(r) * row_bytes;
        decode_row_params(w, GroupStream::scales, r, scales);
        if constexpr (!kQ3) decode_row_params(w, GroupStream::mins, r, mins);
        for (int t = 0; t < n_tokens; ++t) {
            const float* xt = x + size_t(t) * size_t(x_stride);
            float acc = 0.0f;
            for (int64_t k = 0; k < n_chunks; ++k) {
                const size_t g = size_t(k >> group_shift);
                chunk_codes<kQ3>(codes, k, q);
                float part = 0.0f;
                for (int j = 0; j < 32; ++j) {
                    const float v =
                        kQ3 ? scales[g] * float(q[j] - 4) : scales[g] * float(q[j]) + mins[g];
                    part += v * xt[32 * k + j];
                }
                acc += part;
            }
            y[size_t(t) * size_t(l.rows) + size_t(r)] = acc;
        }
    }
}

}  // namespace

void matmul_rows_int8_q2q3(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                           int64_t r1, float* y) {
    if (w.layout.format == WeightFormat::q3) {
        rows_int8<true>(w, qa, r0, r1, y);
    } else {
        rows_int8<false>(w, qa, r0, r1, y);
    }
}

void matmul_rows_fp32_q2q3(const MatrixView& w, const float* x, int64_t x_stride, int n_tokens,
                           int64_t r0, int64_t r1, float* y) {
    if (w.layout.format == WeightFormat::q3) {
        rows_fp32<true>(w, x, x_stride, n_tokens, r0, r1, y);
    } else {
        rows_fp32<false>(w, x, x_stride, n_tokens, r0, r1, y);
    }
}

}  // namespace nibble::kernels::scalar

// Scalar reference kernels: row dequantization and the FP32 matmul built on it.
#include <cstring>
#include <vector>

#include "kernels/format_traits.h"
#include "kernels/fp16.h"
#include "kernels/group_params.h"
#include "kernels/interleave.h"
#include "kernels/lowbit.h"
#include "kernels/matmul.h"
#include "kernels/q6k.h"

namespace nibble {

namespace {

// 4-bit code of padded column c in a row's packed bytes (chunks of 32, see formats.h).
inline int nibble_at(const uint8_t* row_codes, int64_t c) {
    const int64_t chunk = c / kNibbleChunk;
    const int64_t j = c % kNibbleChunk;
    const uint8_t byte = row_codes[chunk * (kNibbleChunk / 2) + (j % (kNibbleChunk / 2))];
    return j < kNibbleChunk / 2 ? (byte & 0x0f) : (byte >> 4);
}

}  // namespace

namespace {

// A buffer for one row's codes of an interleaved matrix (kernels/interleave.h).
uint8_t* row_buffer(const PackedLayout& l) {
    thread_local std::vector<uint8_t> buffer;
    if (buffer.size() < l.row_code_bytes()) buffer.resize(l.row_code_bytes());
    return buffer.data();
}

// Row `row` of w in format F (w.layout.format), through its traits' value().
template <WeightFormat F>
void dequantize_row_as(const MatrixView& w, int64_t row, float* out) {
    const PackedLayout& l = w.layout;
    const int64_t cols = l.cols;
    if constexpr (F == WeightFormat::f32) {
        std::memcpy(out, w.data + size_t(row * cols) * 4, size_t(cols) * 4);
    } else if constexpr (F == WeightFormat::f16) {
        const uint8_t* src = w.data + size_t(row * cols) * 2;
        for (int64_t c = 0; c < cols; ++c) {
            uint16_t h;
            std::memcpy(&h, src + 2 * c, 2);
            out[c] = fp16_to_fp32(h);
        }
    } else if constexpr (F == WeightFormat::q6k) {  // kernels/q6k.h
        const int64_t gpr = l.groups_per_row;
        int8_t q[kQ6kBlock];
        float scales[kQ6kBlock / kQ6kSubBlock];
        const uint8_t* codes = kernels::row_codes(w, row, row_buffer(l));
        for (int64_t i = 0; i < gpr; ++i) {
            q6k_unpack(codes + size_t(i) * size_t(kQ6kCodeBytes), q);
            q6k_scales(q6k_params(w.data, l.scales_offset, gpr, row, i), scales);
            for (int64_t c = 0; c < kQ6kBlock; ++c) {
                out[kQ6kBlock * i + c] = scales[c / kQ6kSubBlock] * float(q[c]);
            }
        }
    } else if constexpr (is_ggml_block_format(F)) {  // kernels/lowbit.h
        for (int64_t i = 0; i < l.groups_per_row; ++i) {
            lowbit_dequantize_block(F, lowbit_block(w, row, i), out + l.group_size * i);
        }
    } else {
        const int64_t gpr = l.groups_per_row;
        const int64_t group = l.group_size;
        const uint8_t* codes = kernels::row_codes(w, row, row_buffer(l));
        for (int64_t c = 0; c < cols; ++c) {
            const int64_t gi = row * gpr + c / group;
            const float d = group_param(w, GroupStream::scales, gi);
            const float m =
                FormatTraits<F>::has_mins ? group_param(w, GroupStream::mins, gi) : 0.0f;
            int q = 0;
            if constexpr (FormatTraits<F>::code_bits == 8) {
                q = int{int8_t(codes[c])};                          // a signed code, -127..127
            } else if constexpr (FormatTraits<F>::code_bits < 4) {  // q3, q2 (kernels/q2q3.h)
                const uint8_t* chunk = codes + size_t(c / 32) * size_t(kChunkBytes<F>);
                q = q2q3_code_at(chunk, int(c % 32), F == WeightFormat::q3);
            } else {
                q = nibble_at(codes, c);
            }
            out[c] = FormatTraits<F>::value(q, d, m);
        }
    }
}

}  // namespace

void dequantize_row(const MatrixView& w, int64_t row, float* out) {
    visit_any_format(w.layout.format,
                     [&](auto tag) { dequantize_row_as<decltype(tag)::value>(w, row, out); });
}

namespace reference {

void matmul(const MatrixView& w, const float* x, int n_tokens, float* y) {
    const int64_t rows = w.layout.rows;
    const int64_t cols = w.layout.cols;
    if (w.layout.format == WeightFormat::f32) {  // no dequantization needed
        const float* wf = reinterpret_cast<const float*>(w.data);
#pragma omp parallel for schedule(static) if (rows * cols * n_tokens > (1 << 16))
        for (int64_t r = 0; r < rows; ++r) {
            for (int t = 0; t < n_tokens; ++t) {
                const float* xt = x + size_t(t) * size_t(cols);
                const float* wr = wf + size_t(r) * size_t(cols);
                float sum = 0.0f;
                for (int64_t c = 0; c < cols; ++c) sum += wr[c] * xt[c];
                y[size_t(t) * size_t(rows) + size_t(r)] = sum;
            }
        }
        return;
    }
#pragma omp parallel if (rows * cols * n_tokens > (1 << 16))
    {
        std::vector<float> row_values(static_cast<size_t>(cols));
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; ++r) {
            dequantize_row(w, r, row_values.data());
            for (int t = 0; t < n_tokens; ++t) {
                const float* xt = x + size_t(t) * size_t(cols);
                float sum = 0.0f;
                for (int64_t c = 0; c < cols; ++c) sum += row_values[size_t(c)] * xt[c];
                y[size_t(t) * size_t(rows) + size_t(r)] = sum;
            }
        }
    }
}

}  // namespace reference
}  // namespace nibble

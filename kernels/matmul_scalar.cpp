// Portable fast path (no intrinsics): the same integer math as the SIMD kernels,
// for CPUs without AVX2 or NEON, and a chunked FP32-activation path.
#include <vector>

#include "kernels/format_traits.h"
#include "kernels/interleave.h"
#include "kernels/matmul.h"
#include "kernels/matmul_variants.h"
#include "kernels/row_params.h"

namespace nibble::kernels {

float* kernel_scratch(size_t n) {
    thread_local std::vector<float> scratch;
    if (scratch.size() < n) scratch.resize(n);
    return scratch.data();
}

namespace scalar {

namespace {

// 32-column chunks per 128-column unit of the interleaved layout (kernels/interleave.h).
constexpr int64_t kChunksPerUnit = 4;

// Where row r's 128-column units are, in either layout: the full ones a stride
// apart, a short last one (rows not a multiple of 128 columns) on its own.
class RowUnitsInPlace {
  public:
    RowUnitsInPlace(const MatrixView& w, int64_t r)
        : w_(w), r_(r), units_(row_units(w, r)), n_full_(w.layout.padded_cols / 128) {}
    const uint8_t* operator[](int64_t u) const {
        return u < n_full_ ? units_.first + size_t(u) * units_.stride : unit_codes(w_, r_, u);
    }

  private:
    const MatrixView& w_;
    int64_t r_;
    RowUnits units_;
    int64_t n_full_;
};

// Integer weight values of 32-column chunk k of a row, in column order:
// q4/q4a the raw code 0..15 (offsets handled via group sums), nf4/iq4nl the
// int8 code book entry, q8 the int8 code.
template <WeightFormat F>
inline void chunk_ints(const uint8_t* row_codes, int64_t k, int8_t* out) {
    if constexpr (F == WeightFormat::q8) {
        const int8_t* src = reinterpret_cast<const int8_t*>(row_codes) + 32 * k;
        for (int j = 0; j < 32; ++j) out[j] = src[j];
    } else {
        const uint8_t* src = row_codes + 16 * k;
        for (int j = 0; j < 16; ++j) {
            const int lo = src[j] & 0x0f, hi = src[j] >> 4;
            if constexpr (FormatTraits<F>::code_book) {
                out[j] = kCodeBookInt8<F>[lo];
                out[j + 16] = kCodeBookInt8<F>[hi];
            } else {
                out[j] = int8_t(lo);
                out[j + 16] = int8_t(hi);
            }
        }
    }
}

template <WeightFormat F>
void rows_int8(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
               float* y) {
    const PackedLayout& l = w.layout;
    const int64_t gpr = l.groups_per_row;
    // Blocks per group is a power of two: block b is in group b >> group_shift.
    const int group_shift = __builtin_ctzll(uint64_t(qa.blocks_per_group));
    // Scratch: group scales, group mins, then the row's weights as int8.
    float* scales = kernel_scratch(size_t(2 * gpr + qa.padded_cols / 4));
    float* mins = scales + gpr;
    int8_t* wq = reinterpret_cast<int8_t*>(mins + gpr);
    for (int64_t r = r0; r < r1; ++r) {
        decode_row_params(w, GroupStream::scales, r, scales);
        if constexpr (F == WeightFormat::q4a) decode_row_params(w, GroupStream::mins, r, mins);
        // The row's 128-column units (4 chunks) in place, interleaved or not.
        const RowUnitsInPlace units(w, r);
        for (int64_t b = 0; b < qa.n_blocks; b += kChunksPerUnit) {
            const uint8_t* unit = units[b / kChunksPerUnit];
            // (a whole unit in a loop of fixed count, which compilers unroll and
            // vectorize: 1.7x the decoding of a loop bounded by both limits)
            if (b + kChunksPerUnit <= qa.n_blocks) {
                for (int64_t k = 0; k < kChunksPerUnit; ++k)
                    chunk_ints<F>(unit, k, wq + 32 * (b + k));
            } else {
                for (int64_t k = 0; b + k < qa.n_blocks; ++k)
                    chunk_ints<F>(unit, k, wq + 32 * (b + k));
            }
        }
        const float kscale = FormatTraits<F>::code_book ? kCodeBookInt8Scale<F> : 1.0f;
        for (int t = 0; t < qa.n_tokens; ++t) {
            const int8_t* xq = qa.token_q(t);
            const float* xd = qa.token_d(t);
            float acc = 0.0f;
            for (int64_t b = 0; b < qa.n_blocks; ++b) {
                // int16 products (|w x| <= 127 * 127) summed in int32: a pattern
                // compilers vectorize (pmaddwd on SSE2).
                const int8_t* wb = wq + 32 * b;
                const int8_t* xb = xq + 32 * b;
                int32_t isum = 0;
                for (int j = 0; j < 32; ++j) isum += int16_t(wb[j]) * int16_t(xb[j]);
                acc += (scales[size_t(b >> group_shift)] * kscale) * xd[b] * float(isum);
            }
            // Offsets: q4 weights are d*(q-8), q4a weights d*q + m.
            const float* gs = qa.token_group_sums(t);
            if constexpr (F == WeightFormat::q4) {
                float corr = 0.0f;
                for (int64_t g = 0; g < gpr; ++g) corr += scales[size_t(g)] * gs[g];
                acc -= 8.0f * corr;
            } else if constexpr (F == WeightFormat::q4a) {
                float corr = 0.0f;
                for (int64_t g = 0; g < gpr; ++g) corr += mins[size_t(g)] * gs[g];
                acc += corr;
            }
            y[size_t(t) * size_t(l.rows) + size_t(r)] = acc;
        }
    }
}

// FP32 weights of 32-column chunk k of a grouped row (d and m of its group).
template <WeightFormat F>
inline void chunk_floats(const uint8_t* row_codes, int64_t k, float d, float m, float* out) {
    if constexpr (F == WeightFormat::q8) {
        const int8_t* src = reinterpret_cast<const int8_t*>(row_codes) + 32 * k;
        for (int j = 0; j < 32; ++j) out[j] = d * float(src[j]);
    } else {
        const uint8_t* src = row_codes + 16 * k;
        for (int j = 0; j < 32; ++j) {
            const int q = j < 16 ? (src[j] & 0x0f) : (src[j - 16] >> 4);
            if constexpr (F == WeightFormat::q4) out[j] = d * float(q - 8);
            if constexpr (F == WeightFormat::q4a) out[j] = d * float(q) + m;
            if constexpr (FormatTraits<F>::code_book) out[j] = d * kCodeBook<F>[q];
        }
    }
}

template <WeightFormat F>
void rows_fp32_grouped(const MatrixView& w, const float* x, int64_t x_stride, int n_tokens,
                       int64_t r0, int64_t r1, float* y) {
    const PackedLayout& l = w.layout;
    // 32-column chunks per group is a power of two: chunk k is in group k >> group_shift.
    const int group_shift = __builtin_ctz(unsigned(l.group_size / 32));
    const int64_t n_chunks = l.padded_cols / 32;
    float* scales = kernel_scratch(size_t(2 * l.groups_per_row));
    float* mins = scales + l.groups_per_row;
    float wf[32];
    for (int64_t r = r0; r < r1; ++r) {
        decode_row_params(w, GroupStream::scales, r, scales);
        if constexpr (F == WeightFormat::q4a) decode_row_params(w, GroupStream::mins, r, mins);
        const RowUnitsInPlace units(w, r);
        for (int t = 0; t < n_tokens; ++t) {
            const float* xt = x + size_t(t) * size_t(x_stride);
            float acc = 0.0f;
            const uint8_t* unit = nullptr;  // (the chunk's 128-column unit, in place)
            for (int64_t k = 0; k < n_chunks; ++k) {
                if (k % kChunksPerUnit == 0) unit = units[k / kChunksPerUnit];
                const size_t g = size_t(k >> group_shift);
                chunk_floats<F>(unit, k % kChunksPerUnit, scales[g],
                                F == WeightFormat::q4a ? mins[g] : 0.0f, wf);
                float part = 0.0f;
                for (int j = 0; j < 32; ++j) part += wf[j] * xt[32 * k + j];
                acc += part;
            }
            y[size_t(t) * size_t(l.rows) + size_t(r)] = acc;
        }
    }
}

template <WeightFormat F>
void rows_fp32_dense(const MatrixView& w, const float* x, int64_t x_stride, int n_tokens,
                     int64_t r0, int64_t r1, float* y) {
    const int64_t cols = w.layout.cols;
    for (int64_t r = r0; r < r1; ++r) {
        for (int t = 0; t < n_tokens; ++t) {
            const float* xt = x + size_t(t) * size_t(x_stride);
            float acc = 0.0f;
            if constexpr (F == WeightFormat::f32) {
                const float* wr = reinterpret_cast<const float*>(w.data) + size_t(r * cols);
                for (int64_t c = 0; c < cols; ++c) acc += wr[c] * xt[c];
            } else {
                const uint8_t* wr = w.data + 2 * size_t(r * cols);
                for (int64_t c = 0; c < cols; ++c) {
                    uint16_t h;
                    std::memcpy(&h, wr + 2 * c, 2);
                    acc += fp16_to_fp32(h) * xt[c];
                }
            }
            y[size_t(t) * size_t(w.layout.rows) + size_t(r)] = acc;
        }
    }
}

}  // namespace

void matmul_rows_int8(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
                      float* y) {
    visit_grouped_format(w.layout.format, [&](auto format) {
        rows_int8<decltype(format)::value>(w, qa, r0, r1, y);
    });
}

void matmul_rows_fp32(const MatrixView& w, const float* x, int64_t x_stride, int n_tokens,
                      int64_t r0, int64_t r1, float* y) {
    visit_format(w.layout.format, [&](auto format) {
        constexpr WeightFormat F = decltype(format)::value;
        if constexpr (FormatTraits<F>::grouped) {
            rows_fp32_grouped<F>(w, x, x_stride, n_tokens, r0, r1, y);
        } else {
            rows_fp32_dense<F>(w, x, x_stride, n_tokens, r0, r1, y);
        }
    });
}

// The FP32 path of q6k and the ggml block formats: each row dequantized exactly
// as the reference does, then FP32 dot products in chunks of 32.
void matmul_rows_fp32_dequantized(const MatrixView& w, const float* x, int64_t x_stride,
                                  int n_tokens, int64_t r0, int64_t r1, float* y) {
    const PackedLayout& l = w.layout;
    float* wf = kernel_scratch(size_t(l.cols));
    for (int64_t r = r0; r < r1; ++r) {
        dequantize_row(w, r, wf);
        for (int t = 0; t < n_tokens; ++t) {
            const float* xt = x + size_t(t) * size_t(x_stride);
            float acc = 0.0f;
            for (int64_t c0 = 0; c0 < l.cols; c0 += 32) {
                float part = 0.0f;
                for (int64_t c = c0; c < c0 + 32; ++c) part += wf[c] * xt[c];
                acc += part;
            }
            y[size_t(t) * size_t(l.rows) + size_t(r)] = acc;
        }
    }
}

}  // namespace scalar

}  // namespace nibble::kernels

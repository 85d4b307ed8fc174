// NEON integer matmul body, included by matmul_neon_int8.cpp (widening
// multiplies) and matmul_neon_int8_dotprod.cpp (SDOT); the includer defines
// NIBBLE_NEON_DOTPROD to 0 or 1 first. Everything here has internal linkage.
//
// Per 32-column block: the weight codes become two int8x16 registers in column
// order (4-bit: AND 0x0f = columns 0..15, >> 4 = columns 16..31; nf4/iq4nl
// through TBL with their int8 code book (nf4: round(127 * NF4)); q8 loaded as is; q4/q4a codes stay
// 0..15 and their offsets are added per group via the activations' group sums). The integer dot
// with the block's int8 activations gives int32x4 partial sums that are
// converted and accumulated as acc += (d_w * d_x) * sum in FP32.
#include "kernels/format_traits.h"
#include "kernels/interleave.h"
#include "kernels/matmul_variants.h"
#include "kernels/neon/neon_common.h"

namespace nibble::kernels::neon {
namespace {

constexpr int kRowBlock = 4;
constexpr int kTokenBlock = 2;

struct BlockWeights {
    int8x16_t w0, w1;  // columns 0..15 and 16..31
};

template <WeightFormat F>
inline BlockWeights load_block(const uint8_t* row_codes, int64_t b) {
    BlockWeights o;
    if constexpr (F == WeightFormat::q8) {
        const int8_t* src = reinterpret_cast<const int8_t*>(row_codes) + 32 * b;
        o.w0 = vld1q_s8(src);
        o.w1 = vld1q_s8(src + 16);
    } else {
        const uint8x16_t bytes = vld1q_u8(row_codes + 16 * b);
        const uint8x16_t lo = vandq_u8(bytes, vdupq_n_u8(0x0f));
        const uint8x16_t hi = vshrq_n_u8(bytes, 4);
        if constexpr (FormatTraits<F>::code_book) {
            const int8x16_t table = vld1q_s8(kCodeBookInt8<F>);
            o.w0 = vqtbl1q_s8(table, lo);
            o.w1 = vqtbl1q_s8(table, hi);
        } else {
            o.w0 = vreinterpretq_s8_u8(lo);
            o.w1 = vreinterpretq_s8_u8(hi);
        }
    }
    return o;
}

// Integer dot product of 32 weights and 32 activations as 4 int32 lanes.
inline int32x4_t dot_block(const BlockWeights& w, int8x16_t x0, int8x16_t x1) {
#if NIBBLE_NEON_DOTPROD
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w.w0, x0), w.w1, x1);
#else
    // |w x| <= 127 * 127 fits int16; pairwise-add into int32.
    int32x4_t s = vpaddlq_s16(vmull_s8(vget_low_s8(w.w0), vget_low_s8(x0)));
    s = vpadalq_s16(s, vmull_high_s8(w.w0, x0));
    s = vpadalq_s16(s, vmull_s8(vget_low_s8(w.w1), vget_low_s8(x1)));
    return vpadalq_s16(s, vmull_high_s8(w.w1, x1));
#endif
}

// A row's codes: 128-column units (four blocks) `stride` bytes apart, their
// own size row-major, the row block's in the interleaved layout
// (kernels/interleave.h), so one loop reads both in place.
struct RowData {
    const uint8_t* codes;
    const uint8_t* prefetch;  // the row kRowBlock rows further on
    size_t stride, prefetch_stride;
    const float* scales;  // per group (times 1/127 for nf4)
    const float* mins;    // per group (q4a)
};

// Byte offset of block b in a row whose 128-column units are `stride` apart.
template <WeightFormat F>
inline size_t block_offset(int64_t b, size_t stride) {
    constexpr size_t kBlockBytes = F == WeightFormat::q8 ? 32 : 16;
    return size_t(b >> 2) * stride + size_t(b & 3) * kBlockBytes;
}

template <WeightFormat F, int R, int T>
void micro_kernel(const RowData* rows, const QuantizedActivations& qa, int t0, int64_t row0,
                  int64_t n_rows, float* y) {
    float32x4_t acc[R][T];
    for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = vdupq_n_f32(0.0f);
    const int8_t* xq[T];
    const float* xd[T];
    for (int t = 0; t < T; ++t) {
        xq[t] = qa.token_q(t0 + t);
        xd[t] = qa.token_d(t0 + t);
    }
    // Blocks per group is a power of two: block b is in group b >> group_shift.
    const int group_shift = __builtin_ctzll(uint64_t(qa.blocks_per_group));
    for (int64_t b = 0; b < qa.n_blocks; ++b) {
        BlockWeights w[R];
        for (int r = 0; r < R; ++r) {
            // Rows are only a few KB: pull in the next row block meanwhile.
            __builtin_prefetch(rows[r].prefetch + block_offset<F>(b, rows[r].prefetch_stride));
            w[r] = load_block<F>(rows[r].codes + block_offset<F>(b, rows[r].stride), 0);
        }
        for (int t = 0; t < T; ++t) {
            const int8x16_t x0 = vld1q_s8(xq[t] + 32 * b);
            const int8x16_t x1 = vld1q_s8(xq[t] + 32 * b + 16);
            for (int r = 0; r < R; ++r) {
                const float scale = rows[r].scales[b >> group_shift] * xd[t][b];
                acc[r][t] = vfmaq_n_f32(acc[r][t], vcvtq_f32_s32(dot_block(w[r], x0, x1)), scale);
            }
        }
    }
    for (int t = 0; t < T; ++t) {
        const float* gs = qa.token_group_sums(t0 + t);
        for (int r = 0; r < R; ++r) {
            float s = vaddvq_f32(acc[r][t]);
            // Offsets: q4 weights are d*(q-8), q4a weights d*q + m.
            if constexpr (F == WeightFormat::q4)
                s -= 8.0f * dot(rows[r].scales, gs, qa.groups_per_row);
            if constexpr (F == WeightFormat::q4a) s += dot(rows[r].mins, gs, qa.groups_per_row);
            y[size_t(t0 + t) * size_t(n_rows) + size_t(row0 + r)] = s;
        }
    }
}

template <WeightFormat F, int R>
void all_tokens(const RowData* rows, const QuantizedActivations& qa, int64_t row0, int64_t n_rows,
                float* y) {
    int t = 0;
    for (; t + kTokenBlock <= qa.n_tokens; t += kTokenBlock)
        micro_kernel<F, R, kTokenBlock>(rows, qa, t, row0, n_rows, y);
    for (; t < qa.n_tokens; ++t) micro_kernel<F, R, 1>(rows, qa, t, row0, n_rows, y);
}

template <WeightFormat F>
void rows_int8(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
               float* y) {
    const PackedLayout& l = w.layout;
    const int64_t gpr = l.groups_per_row;
    const size_t row_bytes = size_t(kChunkBytes<F> * (l.padded_cols / 32));
    const size_t per_row = size_t(2 * gpr);
    float* scratch = kernel_scratch(per_row * kRowBlock);
    // Interleaved rows (kernels/interleave.h) are read in place when every unit
    // of a row is whole (128 columns), else gathered one at a time.
    const size_t unit = 4 * size_t(kChunkBytes<F>);
    const bool gather = l.interleave > 1 && l.padded_cols % 128 != 0;
    uint8_t* gathered = gather ? code_scratch(0, kRowBlock * row_bytes) : nullptr;
    for (int64_t r = r0; r < r1; r += kRowBlock) {
        const int n = r1 - r < kRowBlock ? int(r1 - r) : kRowBlock;
        RowData rows[kRowBlock];
        for (int i = 0; i < n; ++i) {
            float* scales = scratch + per_row * size_t(i);
            float* mins = scales + gpr;
            decode_params(w, GroupStream::scales, r + i, scales);
            if constexpr (F == WeightFormat::q4a) decode_params(w, GroupStream::mins, r + i, mins);
            if constexpr (FormatTraits<F>::code_book && kCodeBookInt8Scale<F> != 1.0f) {
                for (int64_t g = 0; g < gpr; ++g) scales[g] *= kCodeBookInt8Scale<F>;
            }
            if (gather) {
                const uint8_t* codes = row_codes(w, r + i, gathered + size_t(i) * row_bytes);
                rows[i] = RowData{codes, codes, unit, unit, scales, mins};
            } else {
                // (no pointer past the blob: the last row block prefetches itself)
                const int64_t next = r + i + kRowBlock < l.rows ? r + i + kRowBlock : r + i;
                const RowUnits u = row_units(w, r + i), pf = row_units(w, next);
                rows[i] = RowData{u.first, pf.first, u.stride, pf.stride, scales, mins};
            }
        }
        if (n == kRowBlock) {
            all_tokens<F, kRowBlock>(rows, qa, r, l.rows, y);
        } else {
            for (int i = 0; i < n; ++i) all_tokens<F, 1>(rows + i, qa, r + i, l.rows, y);
        }
    }
}

void rows_int8_any(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
                   float* y) {
    visit_grouped_format(w.layout.format, [&](auto format) {
        rows_int8<decltype(format)::value>(w, qa, r0, r1, y);
    });
}

}  // namespace
}  // namespace nibble::kernels::neon

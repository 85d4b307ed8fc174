// Reference quantizer: parameter choice per group, storage of the parameter
// streams (fp16 or double-quantized), then codes against the decoded parameters.
#include "kernels/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/format_traits.h"
#include "kernels/fp16.h"
#include "kernels/group_params.h"
#include "kernels/kquant_params.h"
#include "kernels/q2q3.h"
#include "kernels/quantize_group.h"

namespace nibble {

namespace {

constexpr float kFp16Max = 65504.0f;

void check_finite(const float* src, const PackedLayout& l) {
    const int64_t n = l.rows * l.cols;
    for (int64_t i = 0; i < n; ++i) {
        if (!std::isfinite(src[i])) {
            throw std::runtime_error("quantize_matrix: weight at row " +
                                     std::to_string(i / l.cols) + ", column " +
                                     std::to_string(i % l.cols) + " is not finite");
        }
    }
}

// The ggml block formats are imported from GGUF files, never written by nibble.
void reject_ggml_blocks(const PackedLayout& l) {
    if (is_ggml_block_format(l.format)) {
        throw std::runtime_error(std::string("nibble does not quantize into ") +
                                 format_name(l.format) +
                                 " (ggml's blocks, imported from GGUF files as they are)");
    }
}

// q6k has no per-group parameter fit (quantize_q6k_matrix quantizes it whole).
void reject_q6k(const PackedLayout& l) {
    if (l.format == WeightFormat::q6k) {
        throw std::runtime_error(
            "q6k is quantized whole (quantize_q6k_matrix), not from given group parameters");
    }
    reject_ggml_blocks(l);
}

// Pass 1: the real-valued parameters of every group (index row*gpr + g).
void fit_groups(const float* src, const PackedLayout& l, ScaleRule rule, std::vector<float>& scales,
                std::vector<float>& mins) {
    const int64_t gpr = l.groups_per_row;
    scales.assign(size_t(l.n_groups()), 0.0f);
    mins.assign(has_mins(l.format) ? size_t(l.n_groups()) : 0, 0.0f);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < l.rows; ++r) {
        for (int64_t g = 0; g < gpr; ++g) {
            const int64_t c0 = g * l.group_size;
            const int n = int(std::min<int64_t>(l.group_size, l.cols - c0));
            const float* w = src + r * l.cols + c0;
            const GroupFit fit = fit_format_group(l.format, w, n, rule);
            scales[size_t(r * gpr + g)] = fit.scale;
            if (!mins.empty()) mins[size_t(r * gpr + g)] = fit.min;
        }
    }
}

// The fp16 super-block scale of values v[0..8) >= 0 coded as 6-bit multiples,
// and the codes round(v / scale) in 0..63.
uint16_t kquant_stream(const float* v, int* codes) {
    float hi = 0.0f;
    for (int j = 0; j < 8; ++j) hi = std::max(hi, v[j]);
    if (hi / 63.0f > kFp16Max) {
        throw std::runtime_error("quantize_matrix: q4k super-block scale " +
                                 std::to_string(hi / 63.0f) + " does not fit in fp16");
    }
    const uint16_t h = fp32_to_fp16(hi / 63.0f);
    const float d = fp16_to_fp32(h);
    for (int j = 0; j < 8; ++j) {
        const long q = d > 0.0f ? std::lround(v[j] / d) : 0;
        codes[j] = int(std::clamp(q, 0L, 63L));
    }
    return h;
}

// q4k parameters: per 256 columns fp16 d, dmin and the packed 6-bit codes of
// the eight groups' scales (>= 0) and minimums (<= 0), kernels/kquant_params.h.
void store_kquant_params(const std::vector<float>& scales, const std::vector<float>& mins,
                         uint8_t* dst) {
    for (size_t b = 0; b < scales.size() / 8; ++b) {
        float s[8], m[8];
        for (int j = 0; j < 8; ++j) {
            s[j] = std::max(0.0f, scales[8 * b + size_t(j)]);
            m[j] = std::max(0.0f, -mins[8 * b + size_t(j)]);
        }
        int sc[8], mc[8];
        const uint16_t d = kquant_stream(s, sc), dmin = kquant_stream(m, mc);
        uint8_t* sb = dst + b * size_t(kKQuantParamBytes);
        std::memcpy(sb, &d, 2);
        std::memcpy(sb + 2, &dmin, 2);
        kquant_pack(sc, mc, sb + 4);
    }
}

// Stores one stream as fp16.
void store_fp16_stream(const std::vector<float>& s, const char* what, uint8_t* dst) {
    for (size_t i = 0; i < s.size(); ++i) {
        if (std::fabs(s[i]) > kFp16Max) {
            throw std::runtime_error(std::string("quantize_matrix: group ") + std::to_string(i) +
                                     " " + what + " " + std::to_string(s[i]) +
                                     " does not fit in fp16");
        }
        const uint16_t h = fp32_to_fp16(s[i]);
        std::memcpy(dst + 2 * i, &h, 2);
    }
}

// Double quantization (QLoRA, linear int8 variant) of one stream s:
//   offset = mean(s); per block b of 256 groups
//   block_scale_b = max_{i in b} |s_i - offset| / 127,
//   code_i = round((s_i - offset) / block_scale_b) in -127..127,
// decoded as s_i ~ offset + block_scale_b * code_i, so |error| <= block_scale_b / 2.
// codes: int8 per group; params: fp32 offset then one fp32 per block.
void store_double_quant_stream(const std::vector<float>& s, uint8_t* codes, uint8_t* params) {
    const int64_t n = int64_t(s.size());
    double sum = 0.0;
    for (float v : s) sum += v;
    const float offset = float(sum / double(n));
    std::memcpy(params, &offset, 4);
    for (int64_t b0 = 0, b = 0; b0 < n; b0 += kDoubleQuantBlock, ++b) {
        const int64_t b1 = std::min(n, b0 + kDoubleQuantBlock);
        float spread = 0.0f;
        for (int64_t i = b0; i < b1; ++i)
            spread = std::max(spread, std::fabs(s[size_t(i)] - offset));
        const float block_scale = spread / 127.0f;
        std::memcpy(params + 4 * (1 + b), &block_scale, 4);
        for (int64_t i = b0; i < b1; ++i) {
            long q = 0;
            if (block_scale > 0.0f) q = std::lround((s[size_t(i)] - offset) / block_scale);
            q = std::min(127L, std::max(-127L, q));
            codes[i] = uint8_t(int8_t(q));
        }
    }
}

// Byte of padded column c in a row's nibble codes, and whether it is the high
// nibble: chunks of 32 columns, byte j holds columns j (low) and j + 16 (high).
inline void put_nibble(uint8_t* row_codes, int64_t c, int q) {
    const int64_t chunk = c / kNibbleChunk, j = c % kNibbleChunk;
    uint8_t& byte = row_codes[chunk * (kNibbleChunk / 2) + j % (kNibbleChunk / 2)];
    byte = uint8_t(byte | (j < kNibbleChunk / 2 ? q : q << 4));
}

// Pass 2: every code, nearest for the decoded parameters of its group.
template <WeightFormat F>
void write_codes(const float* src, const MatrixView& view, uint8_t* dst) {
    const PackedLayout& l = view.layout;
    const int64_t gpr = l.groups_per_row;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < l.rows; ++r) {
        const float* row = src + r * l.cols;
        for (int64_t g = 0; g < gpr; ++g) {
            const int64_t gi = r * gpr + g;
            const float d = group_param(view, GroupStream::scales, gi);
            const float m = has_mins(l.format) ? group_param(view, GroupStream::mins, gi) : 0.0f;
            for (int64_t c = g * l.group_size; c < (g + 1) * l.group_size; ++c) {
                const float w = c < l.cols ? row[c] : 0.0f;  // padding: weight 0
                const int q = FormatTraits<F>::code(w, d, m);
                if constexpr (FormatTraits<F>::code_bits == 8) {
                    int8_t* codes = reinterpret_cast<int8_t*>(dst + l.codes_offset);
                    codes[r * l.padded_cols + c] = int8_t(q);
                } else if constexpr (FormatTraits<F>::code_bits < 4) {  // q3, q2
                    q2q3_put_code(dst + l.codes_offset + size_t(r) * l.row_code_bytes(), c, q,
                                  F == WeightFormat::q3);
                } else {
                    put_nibble(dst + l.codes_offset + size_t(r * l.padded_cols / 2), c, q);
                }
            }
        }
    }
}

void write_codes(const float* src, const MatrixView& view, uint8_t* dst) {
    visit_any_format(view.layout.format, [&](auto tag) {
        constexpr WeightFormat F = decltype(tag)::value;
        if constexpr (kGroupArithmetic<F>) write_codes<F>(src, view, dst);
    });
}

}  // namespace

void quantize_matrix(const float* src, const PackedLayout& l, uint8_t* dst,
                     const QuantizeOptions& options) {
    std::memset(dst, 0, l.total_bytes);
    check_finite(src, l);
    reject_ggml_blocks(l);
    if (l.format == WeightFormat::q6k) {
        quantize_q6k_matrix(src, l, dst);
        return;
    }
    const int64_t n = l.rows * l.cols;
    if (l.format == WeightFormat::f32) {
        std::memcpy(dst, src, size_t(n) * 4);
        return;
    }
    if (l.format == WeightFormat::f16) {
        for (int64_t i = 0; i < n; ++i) {
            if (std::fabs(src[i]) > kFp16Max) {
                throw std::runtime_error("quantize_matrix: weight " + std::to_string(src[i]) +
                                         " does not fit in fp16");
            }
            const uint16_t h = fp32_to_fp16(src[i]);
            std::memcpy(dst + 2 * i, &h, 2);
        }
        return;
    }
    std::vector<float> scales, mins;
    fit_groups(src, l, options.rule, scales, mins);
    quantize_matrix_with_params(src, l, scales, mins, dst);
}

void quantize_matrix_with_params(const float* src, const PackedLayout& l,
                                 const std::vector<float>& scales, const std::vector<float>& mins,
                                 uint8_t* dst) {
    if (!is_grouped(l.format) || scales.size() != size_t(l.n_groups()) ||
        mins.size() != (has_mins(l.format) ? size_t(l.n_groups()) : 0)) {
        throw std::invalid_argument(
            "quantize_matrix_with_params: parameters do not fit the layout");
    }
    reject_q6k(l);
    std::memset(dst, 0, l.total_bytes);
    check_finite(src, l);
    if (l.format == WeightFormat::q4k) {
        store_kquant_params(scales, mins, dst + l.scales_offset);
    } else if (l.double_quant) {
        const size_t stream_bytes = (1 + size_t(l.dq_blocks())) * sizeof(float);
        store_double_quant_stream(scales, dst + l.scales_offset, dst + l.dq_offset);
        if (!mins.empty()) {
            store_double_quant_stream(mins, dst + l.mins_offset, dst + l.dq_offset + stream_bytes);
        }
    } else {
        store_fp16_stream(scales, "scale", dst + l.scales_offset);
        if (!mins.empty()) store_fp16_stream(mins, "minimum", dst + l.mins_offset);
    }
    write_codes(src, MatrixView{l, dst}, dst);
}

std::vector<uint8_t> quantize_matrix(const float* src, const PackedLayout& layout,
                                     const QuantizeOptions& options) {
    std::vector<uint8_t> blob(layout.total_bytes);
    quantize_matrix(src, layout, blob.data(), options);
    return blob;
}

double double_quant_bits_saved(const PackedLayout& layout) {
    if (!is_grouped(layout.format)) return 0.0;
    const PackedLayout plain =
        make_layout(layout.format, layout.rows, layout.cols, layout.group_size, false);
    const PackedLayout dq =
        make_layout(layout.format, layout.rows, layout.cols, layout.group_size, true);
    return plain.bits_per_weight() - dq.bits_per_weight();
}

}  // namespace nibble

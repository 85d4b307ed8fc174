// Layout arithmetic for packed weight matrices (see formats.h).
#include "kernels/formats.h"

#include <stdexcept>

#include "kernels/format_traits.h"
#include "kernels/kquant_params.h"
#include "kernels/lowbit.h"
#include "kernels/q6k.h"

namespace nibble {

const char* format_name(WeightFormat format) {
    const char* name = "?";
    visit_any_format(format, [&](auto tag) { name = FormatTraits<decltype(tag)::value>::name; });
    return name;
}

std::optional<WeightFormat> parse_format(const std::string& name) {
    for (auto f : {WeightFormat::f32, WeightFormat::f16, WeightFormat::q8, WeightFormat::q4,
                   WeightFormat::q4a, WeightFormat::nf4, WeightFormat::iq4nl, WeightFormat::q4k,
                   WeightFormat::q6k, WeightFormat::q5_0, WeightFormat::q5_1, WeightFormat::q5k,
                   WeightFormat::q3k, WeightFormat::q2k, WeightFormat::q3, WeightFormat::q2}) {
        if (name == format_name(f)) return f;
    }
    return std::nullopt;
}

namespace {

// q4k: q4a's codes, then the K-coded parameters, 16 bytes per 256 columns.
PackedLayout make_q4k_layout(int64_t rows, int64_t cols, int group_size) {
    if (group_size != 32) {
        throw std::invalid_argument("q4k has group size 32, not " + std::to_string(group_size));
    }
    if (cols % kKQuantBlock != 0) {
        throw std::invalid_argument("q4k needs rows of a multiple of 256 columns, not " +
                                    std::to_string(cols));
    }
    PackedLayout l;
    l.format = WeightFormat::q4k;
    l.rows = rows;
    l.cols = cols;
    l.group_size = 32;
    l.double_quant = true;  // parameters decoded per row (kernels/kquant_params.h)
    l.groups_per_row = cols / 32;
    l.padded_cols = cols;
    l.codes_offset = 0;
    l.codes_bytes = size_t(rows * cols) / 2;
    l.scales_offset = align_up(l.codes_bytes, kSectionAlign);
    l.scales_bytes = size_t(rows * (cols / kKQuantBlock)) * size_t(kKQuantParamBytes);
    l.total_bytes = align_up(l.scales_offset + l.scales_bytes, kSectionAlign);
    return l;
}

// q6k: Q6_K's code bytes, then its scales and d, per 256 columns (kernels/q6k.h).
PackedLayout make_q6k_layout(int64_t rows, int64_t cols, int group_size) {
    if (group_size != kQ6kBlock) {
        throw std::invalid_argument("q6k has group size 256, not " + std::to_string(group_size));
    }
    if (cols % kQ6kBlock != 0) {
        throw std::invalid_argument("q6k needs rows of a multiple of 256 columns, not " +
                                    std::to_string(cols));
    }
    PackedLayout l;
    l.format = WeightFormat::q6k;
    l.rows = rows;
    l.cols = cols;
    l.group_size = int(kQ6kBlock);
    l.groups_per_row = cols / kQ6kBlock;
    l.padded_cols = cols;
    l.codes_offset = 0;
    l.codes_bytes = size_t(rows * l.groups_per_row) * size_t(kQ6kCodeBytes);
    l.scales_offset = align_up(l.codes_bytes, kSectionAlign);
    l.scales_bytes = size_t(rows * l.groups_per_row) * size_t(kQ6kParamBytes);
    l.total_bytes = align_up(l.scales_offset + l.scales_bytes, kSectionAlign);
    return l;
}

// The ggml block formats: the blocks of every row back to back (kernels/lowbit.h).
PackedLayout make_lowbit_layout(WeightFormat format, int64_t rows, int64_t cols, int group_size) {
    const int64_t block = lowbit_block_cols(format);
    const std::string name = format_name(format);
    if (group_size != block) {
        throw std::invalid_argument(name + " has group size " + std::to_string(block) + ", not " +
                                    std::to_string(group_size));
    }
    if (cols % block != 0) {
        throw std::invalid_argument(name + " needs rows of a multiple of " + std::to_string(block) +
                                    " columns, not " + std::to_string(cols));
    }
    PackedLayout l;
    l.format = format;
    l.rows = rows;
    l.cols = cols;
    l.group_size = int(block);
    l.groups_per_row = cols / block;
    l.padded_cols = cols;
    l.codes_offset = 0;
    l.codes_bytes = size_t(rows * l.groups_per_row) * size_t(lowbit_block_bytes(format));
    l.total_bytes = l.codes_bytes;  // no padding: a GGUF tensor's bytes are the blob
    return l;
}

}  // namespace

PackedLayout make_layout(WeightFormat format, int64_t rows, int64_t cols, int group_size,
                         bool double_quant) {
    if (rows <= 0 || cols <= 0) {
        throw std::invalid_argument("matrix shape " + std::to_string(rows) + "x" +
                                    std::to_string(cols) + " is not positive");
    }
    PackedLayout l;
    l.format = format;
    l.rows = rows;
    l.cols = cols;
    if (!is_grouped(format)) {
        l.group_size = 0;
        l.double_quant = false;
        l.groups_per_row = 0;
        l.padded_cols = cols;
        l.codes_bytes = size_t(rows * cols) * (format == WeightFormat::f32 ? 4 : 2);
        l.total_bytes = l.codes_bytes;
        return l;
    }
    if (format == WeightFormat::q6k) return make_q6k_layout(rows, cols, group_size);
    if (is_ggml_block_format(format)) return make_lowbit_layout(format, rows, cols, group_size);
    if (group_size != 32 && group_size != 64 && group_size != 128 && group_size != 256) {
        throw std::invalid_argument("group size " + std::to_string(group_size) +
                                    " is not one of 32, 64, 128, 256");
    }
    if (format == WeightFormat::q4k) return make_q4k_layout(rows, cols, group_size);
    l.group_size = group_size;
    l.double_quant = double_quant;
    l.groups_per_row = (cols + group_size - 1) / group_size;
    l.padded_cols = l.groups_per_row * group_size;
    const int64_t n_groups = rows * l.groups_per_row;
    const size_t per_group_param = double_quant ? 1 : 2;  // int8 code or fp16
    const int n_streams = has_mins(format) ? 2 : 1;

    size_t at = 0;
    l.codes_offset = at;
    const size_t code_bits = format == WeightFormat::q8   ? 8
                             : format == WeightFormat::q3 ? 3
                             : format == WeightFormat::q2 ? 2
                                                          : 4;
    l.codes_bytes = size_t(rows * l.padded_cols) * code_bits / 8;
    at = align_up(at + l.codes_bytes, kSectionAlign);
    l.scales_offset = at;
    l.scales_bytes = size_t(n_groups) * per_group_param;
    at = align_up(at + l.scales_bytes, kSectionAlign);
    if (n_streams == 2) {
        l.mins_offset = at;
        l.mins_bytes = size_t(n_groups) * per_group_param;
        at = align_up(at + l.mins_bytes, kSectionAlign);
    }
    if (double_quant) {
        l.dq_offset = at;
        l.dq_bytes = size_t(n_streams) * (1 + size_t(l.dq_blocks())) * sizeof(float);
        at = align_up(at + l.dq_bytes, kSectionAlign);
    }
    l.total_bytes = at;
    return l;
}

}  // namespace nibble

// Layout arithmetic for packed weight matrices (see formats.h).
#include "kernels/formats.h"

#include <stdexcept>

namespace nibble {

const char* format_name(WeightFormat format) {
    switch (format) {
        case WeightFormat::f32:
            return "f32";
        case WeightFormat::f16:
            return "f16";
        case WeightFormat::q8:
            return "q8";
        case WeightFormat::q4:
            return "q4";
        case WeightFormat::q4a:
            return "q4a";
        case WeightFormat::nf4:
            return "nf4";
        case WeightFormat::iq4nl:
            return "iq4nl";
    }
    return "?";
}

std::optional<WeightFormat> parse_format(const std::string& name) {
    for (auto f : {WeightFormat::f32, WeightFormat::f16, WeightFormat::q8, WeightFormat::q4,
                   WeightFormat::q4a, WeightFormat::nf4, WeightFormat::iq4nl}) {
        if (name == format_name(f)) return f;
    }
    return std::nullopt;
}

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
    if (group_size != 32 && group_size != 64 && group_size != 128 && group_size != 256) {
        throw std::invalid_argument("group size " + std::to_string(group_size) +
                                    " is not one of 32, 64, 128, 256");
    }
    l.group_size = group_size;
    l.double_quant = double_quant;
    l.groups_per_row = (cols + group_size - 1) / group_size;
    l.padded_cols = l.groups_per_row * group_size;
    const int64_t n_groups = rows * l.groups_per_row;
    const size_t per_group_param = double_quant ? 1 : 2;  // int8 code or fp16
    const int n_streams = format == WeightFormat::q4a ? 2 : 1;

    size_t at = 0;
    l.codes_offset = at;
    l.codes_bytes = size_t(rows * l.padded_cols) / (format == WeightFormat::q8 ? 1 : 2);
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

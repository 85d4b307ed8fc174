// AutoGPTQ / AutoAWQ 4-bit layers -> q4 / q4a (packing and bounds in gptq_import.h).
#include "models/gptq_import.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "kernels/fp16.h"

namespace nibble {

namespace {

// AWQ: nibble k of a packed int32 holds column kAwqOrder[k] of its 8.
constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

int32_t i32_at(const SafetensorsEntry& e, size_t i) {
    int32_t v;
    std::memcpy(&v, e.data + 4 * i, 4);
    return v;
}

void check(const SafetensorsEntry& e, const std::string& dtype, const std::vector<uint64_t>& shape,
           const std::string& what, const std::string& name) {
    if (e.dtype != dtype || e.shape != shape ||
        e.end - e.begin != e.n_elements() * (dtype == "F16" ? 2 : 4)) {
        std::string want;
        for (uint64_t d : shape) want += (want.empty() ? "" : ", ") + std::to_string(d);
        throw std::runtime_error("tensor " + name + ": " + what + " must be " + dtype + " [" +
                                 want + "]");
    }
}

}  // namespace

Tensor import_packed_4bit(Model& model, const std::string& name, const PackedQuantConfig& q,
                          int64_t rows, int64_t cols, const SafetensorsEntry& qweight,
                          const SafetensorsEntry& qzeros, const SafetensorsEntry& scales,
                          const SafetensorsEntry* g_idx) {
    const bool awq = q.method == PackedQuantConfig::Method::awq;
    const int64_t group = q.group_size;
    if (group != 32 && group != 64 && group != 128 && group != 256) {
        throw std::runtime_error("tensor " + name + ": group size " + std::to_string(group) +
                                 " is not supported (32, 64, 128, 256)");
    }
    if (rows % 8 != 0 || cols % 8 != 0) {
        throw std::runtime_error("tensor " + name + ": shape " + std::to_string(rows) + "x" +
                                 std::to_string(cols) + " is not a multiple of 8");
    }
    const int64_t n_groups = (cols + group - 1) / group;
    const uint64_t r = uint64_t(rows), c = uint64_t(cols), g = uint64_t(n_groups);
    check(qweight, "I32", awq ? std::vector<uint64_t>{c, r / 8} : std::vector<uint64_t>{c / 8, r},
          "qweight", name);
    check(qzeros, "I32", {g, r / 8}, "qzeros", name);
    check(scales, "F16", {g, r}, "scales", name);

    // Group of every input column, and the stored order: columns stably sorted by group.
    std::vector<int32_t> group_of(static_cast<size_t>(cols));
    for (int64_t i = 0; i < cols; ++i) group_of[size_t(i)] = int32_t(i / group);
    if (g_idx != nullptr) {
        check(*g_idx, "I32", {c}, "g_idx", name);
        for (int64_t i = 0; i < cols; ++i) {
            const int32_t v = i32_at(*g_idx, size_t(i));
            if (v < 0 || v >= n_groups) {
                throw std::runtime_error("tensor " + name + ": g_idx[" + std::to_string(i) +
                                         "] = " + std::to_string(v) + " is not a group");
            }
            group_of[size_t(i)] = v;
        }
    }
    std::vector<int32_t> order(static_cast<size_t>(cols));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
        return group_of[size_t(a)] < group_of[size_t(b)];
    });
    bool identity = true;
    for (int64_t j = 0; j < cols; ++j) {
        identity = identity && order[size_t(j)] == j;
        if (group_of[size_t(order[size_t(j)])] != j / group) {
            throw std::runtime_error("tensor " + name + ": g_idx does not give every group " +
                                     std::to_string(group) + " columns");
        }
    }

    auto code = [&](int64_t row, int64_t col) {
        if (awq) {
            const uint32_t w = uint32_t(i32_at(qweight, size_t(col * (rows / 8) + row / 8)));
            int k = 0;
            while (kAwqOrder[k] != row % 8) ++k;
            return int((w >> (4 * k)) & 15);
        }
        const uint32_t w = uint32_t(i32_at(qweight, size_t((col / 8) * rows + row)));
        return int((w >> (4 * (col % 8))) & 15);
    };
    auto zero = [&](int64_t grp, int64_t row) {
        const uint32_t w = uint32_t(i32_at(qzeros, size_t(grp * (rows / 8) + row / 8)));
        int k = int(row % 8);
        if (awq) {
            k = 0;
            while (kAwqOrder[k] != row % 8) ++k;
        }
        return int((w >> (4 * k)) & 15) + (q.zeros_minus_one ? 1 : 0);
    };
    auto scale_bits = [&](int64_t grp, int64_t row) {
        uint16_t h;
        std::memcpy(&h, scales.data + 2 * size_t(grp * rows + row), 2);
        return h;
    };

    bool symmetric = true;
    for (int64_t grp = 0; grp < n_groups && symmetric; ++grp) {
        for (int64_t row = 0; row < rows && symmetric; ++row) symmetric = zero(grp, row) == 8;
    }
    const WeightFormat format = symmetric ? WeightFormat::q4 : WeightFormat::q4a;
    Tensor out = make_owned_tensor(model, name, make_layout(format, rows, cols, int(group)));
    const PackedLayout& l = out.view.layout;
    uint8_t* blob = writable(out);
    for (int64_t row = 0; row < rows; ++row) {
        uint8_t* codes = blob + l.codes_offset + size_t(row) * size_t(l.padded_cols / 2);
        for (int64_t j = 0; j < cols; ++j) {
            const int v = code(row, order[size_t(j)]);
            const int64_t chunk = j / 32, k = j % 32;
            codes[chunk * 16 + k % 16] |= uint8_t(k < 16 ? v : v << 4);
        }
        for (int64_t grp = 0; grp < n_groups; ++grp) {
            const uint16_t d = scale_bits(grp, row);
            std::memcpy(blob + l.scales_offset + 2 * size_t(row * n_groups + grp), &d, 2);
            if (!symmetric) {
                const uint16_t m = fp32_to_fp16(-fp16_to_fp32(d) * float(zero(grp, row)));
                std::memcpy(blob + l.mins_offset + 2 * size_t(row * n_groups + grp), &m, 2);
            }
        }
    }
    if (!identity) {
        auto kept = std::make_shared<std::vector<int32_t>>(std::move(order));
        out.column_order = kept->data();
        model.storage.push_back(kept);
    }
    return out;
}

}  // namespace nibble

// import_packed_4bit on layers built here from known codes, zeros and scales:
// AutoGPTQ (symmetric -> q4, asymmetric -> q4a, "gptq_v2" zeros) and AutoAWQ
// (its [0,2,4,6,1,3,5,7] nibble order), with and without act-order g_idx. Every
// stored weight equals scale * (code - zero) of its source column exactly, and
// the matmul of the gathered activations equals W x.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "kernels/fp16.h"
#include "kernels/matmul.h"
#include "kernels/matmul_dispatch.h"
#include "models/gptq_import.h"

using namespace nibble;

namespace {

constexpr int64_t kRows = 48, kCols = 256, kGroup = 64, kGroups = kCols / kGroup;
constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

struct Layer {
    std::vector<int> code;        // [rows][cols]
    std::vector<int> zero;        // [groups][rows]
    std::vector<uint16_t> scale;  // [groups][rows] fp16
    std::vector<int32_t> g_idx;   // [cols]
    std::vector<int32_t> qweight, qzeros, gidx_bytes;
    std::vector<uint16_t> scales;
    double w(int64_t r, int64_t c) const {
        const size_t g = size_t(g_idx[size_t(c)]);
        return double(fp16_to_fp32(scale[g * kRows + size_t(r)])) *
               double(code[size_t(r * kCols + c)] - zero[g * kRows + size_t(r)]);
    }
};

Layer make_layer(bool awq, bool act_order, bool symmetric, bool v2, std::mt19937& rng) {
    Layer l;
    std::uniform_int_distribution<int> nib(0, 15), sig(1, 31), zr(1, 15);
    l.code.resize(size_t(kRows * kCols));
    for (int& v : l.code) v = nib(rng);
    l.zero.resize(size_t(kGroups * kRows));
    for (int& v : l.zero) v = symmetric ? 8 : zr(rng);
    l.scale.resize(l.zero.size());
    // 5 significant bits: scale * zero fits fp16 exactly.
    for (uint16_t& h : l.scale) h = fp32_to_fp16(float(sig(rng)) * 0x1p-12f);
    std::vector<int32_t> perm(static_cast<size_t>(kCols));
    std::iota(perm.begin(), perm.end(), 0);
    if (act_order) std::shuffle(perm.begin(), perm.end(), rng);
    l.g_idx.resize(size_t(kCols));
    for (int64_t j = 0; j < kCols; ++j) l.g_idx[size_t(perm[size_t(j)])] = int32_t(j / kGroup);
    const int zero_offset = (awq || v2) ? 0 : 1;
    if (awq) {
        for (int64_t c = 0; c < kCols; ++c) {
            for (int64_t r8 = 0; r8 < kRows / 8; ++r8) {
                uint32_t word = 0;
                for (int k = 0; k < 8; ++k) {
                    word |= uint32_t(l.code[size_t(c + (8 * r8 + kAwqOrder[k]) * kCols)])
                            << (4 * k);
                }
                l.qweight.push_back(int32_t(word));
            }
        }
    } else {
        for (int64_t c8 = 0; c8 < kCols / 8; ++c8) {
            for (int64_t r = 0; r < kRows; ++r) {
                uint32_t word = 0;
                for (int k = 0; k < 8; ++k)
                    word |= uint32_t(l.code[size_t(r * kCols + 8 * c8 + k)]) << (4 * k);
                l.qweight.push_back(int32_t(word));
            }
        }
    }
    for (int64_t g = 0; g < kGroups; ++g) {
        for (int64_t r8 = 0; r8 < kRows / 8; ++r8) {
            uint32_t word = 0;
            for (int k = 0; k < 8; ++k) {
                const int64_t r = 8 * r8 + (awq ? kAwqOrder[k] : k);
                word |= uint32_t(l.zero[size_t(g * kRows + r)] - zero_offset) << (4 * k);
            }
            l.qzeros.push_back(int32_t(word));
        }
    }
    return l;
}

SafetensorsEntry entry(const std::string& dtype, std::vector<uint64_t> shape, const void* data,
                       size_t bytes) {
    SafetensorsEntry e;
    e.dtype = dtype;
    e.shape = std::move(shape);
    e.begin = 0;
    e.end = bytes;
    e.data = static_cast<const uint8_t*>(data);
    return e;
}

void check_import(bool awq, bool act_order, bool symmetric, bool v2) {
    CAPTURE(awq);
    CAPTURE(act_order);
    CAPTURE(symmetric);
    std::mt19937 rng(7 + awq + 2 * act_order + 4 * symmetric);
    const Layer l = make_layer(awq, act_order, symmetric, v2, rng);
    const auto qweight = entry(
        "I32",
        awq ? std::vector<uint64_t>{kCols, kRows / 8} : std::vector<uint64_t>{kCols / 8, kRows},
        l.qweight.data(), 4 * l.qweight.size());
    const auto qzeros = entry("I32", {kGroups, kRows / 8}, l.qzeros.data(), 4 * l.qzeros.size());
    const auto scales = entry("F16", {kGroups, kRows}, l.scale.data(), 2 * l.scale.size());
    const auto g_idx = entry("I32", {kCols}, l.g_idx.data(), 4 * l.g_idx.size());
    PackedQuantConfig q;
    q.method = awq ? PackedQuantConfig::Method::awq : PackedQuantConfig::Method::gptq;
    q.group_size = int(kGroup);
    q.zeros_minus_one = !awq && !v2;
    Model model;
    const Tensor t = import_packed_4bit(model, "blk.0.attn_q.weight", q, kRows, kCols, qweight,
                                        qzeros, scales, act_order ? &g_idx : nullptr);
    CHECK(t.format() == (symmetric ? WeightFormat::q4 : WeightFormat::q4a));
    CHECK(t.view.layout.group_size == kGroup);
    CHECK((t.column_order != nullptr) == act_order);
    std::vector<int32_t> order(static_cast<size_t>(kCols));
    std::iota(order.begin(), order.end(), 0);
    if (t.column_order) order.assign(t.column_order, t.column_order + kCols);
    // Stored groups are contiguous: stored column j belongs to group j / group.
    for (int64_t j = 0; j < kCols; ++j) CHECK(l.g_idx[size_t(order[size_t(j)])] == j / kGroup);
    std::vector<float> row(static_cast<size_t>(kCols));
    size_t mismatches = 0;
    for (int64_t r = 0; r < kRows; ++r) {
        dequantize_row(t.view, r, row.data());
        for (int64_t j = 0; j < kCols; ++j)
            mismatches += double(row[size_t(j)]) != l.w(r, order[size_t(j)]);
    }
    CHECK(mismatches == 0);
    // y = W x through the stored order: gather, then the exact-activation matmul.
    std::normal_distribution<float> n01;
    std::vector<float> x(static_cast<size_t>(kCols)), xg(x.size()), y(static_cast<size_t>(kRows));
    for (float& v : x) v = n01(rng);
    for (int64_t j = 0; j < kCols; ++j) xg[size_t(j)] = x[size_t(order[size_t(j)])];
    set_matmul_activation_mode(ActivationMode::fp32);
    matmul(t.view, xg.data(), 1, y.data());
    set_matmul_activation_mode(ActivationMode::int8);
    for (int64_t r = 0; r < kRows; ++r) {
        double ref = 0.0, mag = 0.0;
        for (int64_t c = 0; c < kCols; ++c) {
            ref += l.w(r, c) * double(x[size_t(c)]);
            mag +=
                std::fabs(l.w(r, c) * double(x[size_t(c)])) + 16 * 0x1p-7 * std::fabs(x[size_t(c)]);
        }
        CHECK(std::fabs(double(y[size_t(r)]) - ref) <= 1e-5 * mag);
    }
}

}  // namespace

TEST_CASE("GPTQ layers import exactly, with and without act-order") {
    for (bool act_order : {false, true}) {
        check_import(false, act_order, false, false);  // asymmetric -> q4a
        check_import(false, act_order, true, false);   // symmetric -> q4
        check_import(false, act_order, false, true);   // gptq_v2 zeros
    }
}

TEST_CASE("AWQ layers import exactly") {
    check_import(true, false, false, false);
    check_import(true, true, false, false);
}

TEST_CASE("bad GPTQ tensors are refused with the tensor's name") {
    std::mt19937 rng(1);
    const Layer l = make_layer(false, false, false, false, rng);
    const auto qweight = entry("I32", {kCols / 8, kRows}, l.qweight.data(), 4 * l.qweight.size());
    const auto qzeros = entry("I32", {kGroups, kRows / 8}, l.qzeros.data(), 4 * l.qzeros.size());
    const auto scales = entry("F16", {kGroups, kRows}, l.scale.data(), 2 * l.scale.size());
    PackedQuantConfig q;
    q.group_size = int(kGroup);
    Model model;
    const auto wrong = entry("F32", {kCols / 8, kRows}, l.qweight.data(), 4 * l.qweight.size());
    CHECK_THROWS_WITH(import_packed_4bit(model, "blk.0.attn_q.weight", q, kRows, kCols, wrong,
                                         qzeros, scales, nullptr),
                      doctest::Contains("blk.0.attn_q.weight: qweight must be I32"));
    // g_idx whose groups are not group_size columns each.
    std::vector<int32_t> uneven(static_cast<size_t>(kCols), 0);
    uneven.back() = 3;
    const auto g = entry("I32", {kCols}, uneven.data(), 4 * uneven.size());
    CHECK_THROWS_WITH(import_packed_4bit(model, "blk.0.attn_q.weight", q, kRows, kCols, qweight,
                                         qzeros, scales, &g),
                      doctest::Contains("g_idx does not give every group"));
    q.group_size = 100;
    CHECK_THROWS_WITH(import_packed_4bit(model, "blk.0.attn_q.weight", q, kRows, kCols, qweight,
                                         qzeros, scales, nullptr),
                      doctest::Contains("group size 100 is not supported"));
}

// The attention kernels (kernels/attention.h): the scalar reference against a
// direct double-precision computation over the documented layouts, and every
// SIMD table against the scalar reference bit for bit.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/attention.h"
#include "kernels/fp16.h"
#include "kernels/vec_ops.h"
#include "test_skip.h"

using namespace nibble;

namespace {

// One kv head's cache of n_pos positions, stored as part of a wider cache
// (extra elements between blocks and rows, as when several heads share it).
struct HeadCache {
    CacheElement type;
    int head_dim, n_pos;
    std::vector<float> key_f, value_f;  // the exact values, [p][d]
    std::vector<float> f32_keys, f32_values;
    std::vector<uint16_t> f16_keys, f16_values;
    std::vector<int8_t> i8_keys, i8_values;
    std::vector<float> key_scales, value_scales;
    size_t block_stride, value_stride, scale_block_stride = 0, value_scale_stride = 0;

    KeyBlocks keys() const {
        const void* data = type == CacheElement::f32   ? static_cast<const void*>(f32_keys.data())
                           : type == CacheElement::f16 ? static_cast<const void*>(f16_keys.data())
                                                       : static_cast<const void*>(i8_keys.data());
        return {data, block_stride, key_scales.data(), scale_block_stride, type};
    }
    ValueRows values() const {
        const void* data = type == CacheElement::f32   ? static_cast<const void*>(f32_values.data())
                           : type == CacheElement::f16 ? static_cast<const void*>(f16_values.data())
                                                       : static_cast<const void*>(i8_values.data());
        return {data, value_stride, value_scales.data(), value_scale_stride, type};
    }
};

HeadCache make_cache(CacheElement type, int head_dim, int n_pos, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    HeadCache c{type, head_dim, n_pos, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, 0, 0};
    const int n_blocks = (n_pos + kKeyBlock - 1) / kKeyBlock;
    c.block_stride = size_t(kKeyBlock) * size_t(head_dim + 3);  // room for "other heads"
    c.value_stride = size_t(head_dim) + 5;
    c.scale_block_stride = 2 * kKeyBlock;
    c.value_scale_stride = 3;
    const size_t key_elems = size_t(n_blocks) * c.block_stride;
    const size_t value_elems = size_t(n_pos) * c.value_stride;
    c.key_f.assign(size_t(n_pos) * size_t(head_dim), 0.0f);
    c.value_f.assign(size_t(n_pos) * size_t(head_dim), 0.0f);
    // Unused slots hold garbage (NaN for the float types): it must never be read into a result.
    c.f32_keys.assign(key_elems, NAN);
    c.f32_values.assign(value_elems, NAN);
    c.f16_keys.assign(key_elems, 0x7e00);
    c.f16_values.assign(value_elems, 0x7e00);
    c.i8_keys.assign(key_elems, 99);
    c.i8_values.assign(value_elems, 99);
    c.key_scales.assign(size_t(n_blocks) * c.scale_block_stride, NAN);
    c.value_scales.assign(size_t(n_pos) * c.value_scale_stride, NAN);
    for (int p = 0; p < n_pos; ++p) {
        const float key_scale = 0.01f + 0.001f * float(p % 7);
        const float value_scale = 0.02f + 0.001f * float(p % 5);
        c.key_scales[size_t(p / kKeyBlock) * c.scale_block_stride + size_t(p % kKeyBlock)] =
            key_scale;
        c.value_scales[size_t(p) * c.value_scale_stride] = value_scale;
        for (int d = 0; d < head_dim; ++d) {
            const size_t ka = size_t(p / kKeyBlock) * c.block_stride + size_t(d) * kKeyBlock +
                              size_t(p % kKeyBlock);
            const size_t va = size_t(p) * c.value_stride + size_t(d);
            const size_t exact = size_t(p) * size_t(head_dim) + size_t(d);
            const float k = dist(rng), v = dist(rng);
            switch (type) {
                case CacheElement::f32:
                    c.f32_keys[ka] = c.key_f[exact] = k;
                    c.f32_values[va] = c.value_f[exact] = v;
                    break;
                case CacheElement::f16:
                    c.f16_keys[ka] = fp32_to_fp16(k);
                    c.f16_values[va] = fp32_to_fp16(v);
                    c.key_f[exact] = fp16_to_fp32(c.f16_keys[ka]);
                    c.value_f[exact] = fp16_to_fp32(c.f16_values[va]);
                    break;
                case CacheElement::i8:
                    c.i8_keys[ka] = int8_t(int(rng() % 255) - 127);
                    c.i8_values[va] = int8_t(int(rng() % 255) - 127);
                    c.key_f[exact] = float(c.i8_keys[ka]) * key_scale;
                    c.value_f[exact] = float(c.i8_values[va]) * value_scale;
                    break;
            }
        }
    }
    return c;
}

struct Case {
    int head_dim, n_queries, n_pos;
};

const Case kCases[] = {{8, 2, 1},   {8, 2, 17},  {64, 8, 1},  {64, 8, 16},
                       {64, 8, 40}, {64, 1, 33}, {64, 3, 70}, {64, 4, 64},
                       {72, 5, 19}, {12, 2, 21}, {128, 1, 9}, {128, 2, 100}};

std::vector<float> random_vector(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

// Scores and outputs of `ops` for one case; score rows have a sentinel after n_pos.
struct Result {
    std::vector<float> scores, out;
};

constexpr float kSentinel = 12345.0f;

Result run(const VecOps& ops, const HeadCache& c, const Case& k, const std::vector<float>& q,
           const std::vector<float>& w) {
    const size_t stride = size_t(k.n_pos) + 7;
    Result r{std::vector<float>(size_t(k.n_queries) * stride, kSentinel),
             std::vector<float>(size_t(k.n_queries) * size_t(k.head_dim), kSentinel)};
    ops.attention_scores(c.keys(), k.head_dim, q.data(), k.n_queries, k.n_pos, 0.125f,
                         r.scores.data(), stride);
    ops.attention_values(c.values(), k.head_dim, w.data(), stride, k.n_queries, k.n_pos,
                         r.out.data());
    return r;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// check(type, case) for every element type and case, with both in the failure report.
template <typename Check>
void for_each_case(Check&& check) {
    for (CacheElement type : {CacheElement::f32, CacheElement::f16, CacheElement::i8}) {
        for (const Case& k : kCases) {
            CAPTURE(int(type));
            CAPTURE(k.head_dim);
            CAPTURE(k.n_queries);
            CAPTURE(k.n_pos);
            check(type, k);
        }
    }
}

void check_against_scalar(const VecOps* fast) {
    REQUIRE(fast != nullptr);
    for_each_case([&](CacheElement type, const Case& k) {
        const HeadCache c =
            make_cache(type, k.head_dim, k.n_pos, uint32_t(k.n_pos * 31 + k.head_dim));
        const auto q = random_vector(size_t(k.n_queries) * size_t(k.head_dim), 7);
        const auto w = random_vector(size_t(k.n_queries) * (size_t(k.n_pos) + 7), 8);
        const Result ref = run(vec_ops_scalar(), c, k, q, w);
        const Result got = run(*fast, c, k, q, w);
        CHECK(same_bits(ref.scores, got.scores));
        CHECK(same_bits(ref.out, got.out));
    });
}

}  // namespace

TEST_CASE("attention reference: the documented layouts and a direct computation") {
    for_each_case([](CacheElement type, const Case& k) {
        const HeadCache c = make_cache(type, k.head_dim, k.n_pos, uint32_t(k.n_pos + k.head_dim));
        const auto q = random_vector(size_t(k.n_queries) * size_t(k.head_dim), 1);
        const size_t stride = size_t(k.n_pos) + 7;
        const auto w = random_vector(size_t(k.n_queries) * stride, 2);
        const Result r = run(vec_ops_scalar(), c, k, q, w);
        for (int g = 0; g < k.n_queries; ++g) {
            for (int p = 0; p < k.n_pos; ++p) {
                double dot = 0, mag = 0;
                for (int d = 0; d < k.head_dim; ++d) {
                    const double t = double(q[size_t(g) * size_t(k.head_dim) + size_t(d)]) *
                                     double(c.key_f[size_t(p) * size_t(k.head_dim) + size_t(d)]);
                    dot += t;
                    mag += std::fabs(t);
                }
                CHECK(std::fabs(r.scores[size_t(g) * stride + size_t(p)] - 0.125 * dot) <=
                      1e-6 * mag + 1e-30);
            }
            // Nothing is written past n_pos.
            for (size_t p = size_t(k.n_pos); p < stride; ++p)
                CHECK(r.scores[size_t(g) * stride + p] == kSentinel);
            for (int d = 0; d < k.head_dim; ++d) {
                double sum = 0, mag = 0;
                for (int p = 0; p < k.n_pos; ++p) {
                    const double t = double(w[size_t(g) * stride + size_t(p)]) *
                                     double(c.value_f[size_t(p) * size_t(k.head_dim) + size_t(d)]);
                    sum += t;
                    mag += std::fabs(t);
                }
                CHECK(std::fabs(r.out[size_t(g * k.head_dim + d)] - sum) <= 1e-6 * mag + 1e-30);
            }
        }
    });
}

TEST_CASE("AVX2 attention kernels equal the scalar reference bit for bit" *
          nibble::test::skip_unless(vec_ops_avx2() != nullptr,
                                    "no AVX2 on this CPU (or not an x86-64 build)")) {
    check_against_scalar(vec_ops_avx2());
}

TEST_CASE("NEON attention kernels equal the scalar reference bit for bit" *
          nibble::test::skip_unless(vec_ops_neon() != nullptr, "not an aarch64 build")) {
    check_against_scalar(vec_ops_neon());
}

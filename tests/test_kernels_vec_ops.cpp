// Every SIMD variant of the small vector kernels against the scalar reference.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/fp16.h"
#include "kernels/matmul_dispatch.h"
#include "kernels/vec_ops.h"
#include "test_skip.h"

using namespace nibble;

namespace {

struct Data {
    std::vector<float> a, b, y;
    std::vector<uint16_t> h;
    std::vector<int8_t> q;
};

Data make_data(int n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    Data d;
    for (int i = 0; i < n; ++i) {
        d.a.push_back(dist(rng));
        d.b.push_back(dist(rng));
        d.y.push_back(dist(rng));
        d.h.push_back(fp32_to_fp16(dist(rng)));
        d.q.push_back(int8_t(int(rng() % 255) - 127));
    }
    return d;
}

// Sums in another order differ by a few ulps of sum |a_i b_i|.
double dot_bound(const float* a, const float* b, int n) {
    double s = 0;
    for (int i = 0; i < n; ++i) s += std::fabs(double(a[i]) * double(b[i]));
    return 1e-6 * s + 1e-30;
}

// Scores as attention produces them: wide range, some -inf (masked positions).
std::vector<float> score_row(int n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 6.0f);
    std::vector<float> x(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) x[size_t(i)] = i % 5 == 3 ? -INFINITY : dist(rng);
    x[0] = 0.5f;  // at least one finite score
    return x;
}

// softmax (same exp, other summation order: within a few ulps) and silu_mul
// (elementwise: the same bits) of `fast` against the scalar reference.
void check_exp_kernels(const VecOps& fast) {
    const VecOps& ref = vec_ops_scalar();
    for (int n : {1, 3, 8, 9, 16, 31, 64, 100, 257}) {
        CAPTURE(n);
        auto a = score_row(n, uint32_t(n)), b = a;
        fast.softmax(a.data(), n);
        ref.softmax(b.data(), n);
        for (int i = 0; i < n; ++i) {
            CHECK(a[size_t(i)] == doctest::Approx(b[size_t(i)]).epsilon(1e-6));
            if (i % 5 == 3 && i != 0) CHECK(a[size_t(i)] == 0.0f);
        }
        Data d = make_data(n, uint32_t(n + 100));
        for (float& g : d.a) g *= 8.0f;  // into the saturating ranges of silu
        auto g1 = d.a, g2 = d.a;
        fast.silu_mul(g1.data(), d.b.data(), n);
        ref.silu_mul(g2.data(), d.b.data(), n);
        CHECK(std::memcmp(g1.data(), g2.data(), sizeof(float) * size_t(n)) == 0);
    }
}

// Every function of `fast` against the portable versions.
void check_against_scalar(const VecOps* fast) {
    REQUIRE(fast != nullptr);
    const VecOps& ref = vec_ops_scalar();
    for (int n : {1, 7, 8, 9, 16, 31, 64, 100, 128, 257}) {
        CAPTURE(n);
        Data d = make_data(n, uint32_t(n));
        std::vector<float> hf(static_cast<size_t>(n)), qf(static_cast<size_t>(n));
        for (int i = 0; i < n; ++i) {
            hf[size_t(i)] = fp16_to_fp32(d.h[size_t(i)]);
            qf[size_t(i)] = float(d.q[size_t(i)]);
        }
        CHECK(std::fabs(fast->dot_f32(d.a.data(), d.b.data(), n) -
                        ref.dot_f32(d.a.data(), d.b.data(), n)) <=
              dot_bound(d.a.data(), d.b.data(), n));
        CHECK(std::fabs(fast->dot_f16(d.h.data(), d.b.data(), n) -
                        ref.dot_f16(d.h.data(), d.b.data(), n)) <=
              dot_bound(hf.data(), d.b.data(), n));
        CHECK(std::fabs(fast->dot_i8(d.q.data(), 0.01f, d.b.data(), n) -
                        ref.dot_i8(d.q.data(), 0.01f, d.b.data(), n)) <=
              0.01 * dot_bound(qf.data(), d.b.data(), n));
        auto y1 = d.y, y2 = d.y;
        fast->axpy_f32(0.7f, d.a.data(), y1.data(), n);
        ref.axpy_f32(0.7f, d.a.data(), y2.data(), n);
        for (int i = 0; i < n; ++i)
            CHECK(y1[size_t(i)] == doctest::Approx(y2[size_t(i)]).epsilon(1e-6));
        y1 = d.y, y2 = d.y;
        fast->axpy_f16(-1.3f, d.h.data(), y1.data(), n);
        ref.axpy_f16(-1.3f, d.h.data(), y2.data(), n);
        for (int i = 0; i < n; ++i)
            CHECK(y1[size_t(i)] == doctest::Approx(y2[size_t(i)]).epsilon(1e-6));
        y1 = d.y, y2 = d.y;
        fast->axpy_i8(0.02f, d.q.data(), y1.data(), n);
        ref.axpy_i8(0.02f, d.q.data(), y2.data(), n);
        for (int i = 0; i < n; ++i)
            CHECK(y1[size_t(i)] == doctest::Approx(y2[size_t(i)]).epsilon(1e-6));
        // conversions and quantization are exact: same rounding rules
        std::vector<uint16_t> h1(static_cast<size_t>(n)), h2(static_cast<size_t>(n));
        fast->convert_f32_to_f16(d.a.data(), h1.data(), n);
        ref.convert_f32_to_f16(d.a.data(), h2.data(), n);
        CHECK(h1 == h2);
        std::vector<int8_t> q1(static_cast<size_t>(n)), q2(static_cast<size_t>(n));
        CHECK(fast->quantize_i8(d.a.data(), q1.data(), n) ==
              ref.quantize_i8(d.a.data(), q2.data(), n));
        CHECK(q1 == q2);
    }
    // edge values: zeros, fp16 overflow and subnormals, exact halves
    std::vector<float> edge = {0.0f, -0.0f, 1e6f, -1e6f, 65504.0f, 65520.0f, 1e-7f, -3e-8f, 0.5f};
    std::vector<uint16_t> h1(edge.size()), h2(edge.size());
    fast->convert_f32_to_f16(edge.data(), h1.data(), int(edge.size()));
    ref.convert_f32_to_f16(edge.data(), h2.data(), int(edge.size()));
    CHECK(h1 == h2);
    std::vector<float> zeros(20, 0.0f);
    std::vector<int8_t> q(20, 5);
    CHECK(fast->quantize_i8(zeros.data(), q.data(), 20) == 0.0f);
    for (int8_t v : q) CHECK(v == 0);
    check_exp_kernels(*fast);
}

}  // namespace

TEST_CASE("softmax and silu_mul reference against exp in double precision") {
    const VecOps& ref = vec_ops_scalar();
    // silu(g) * 1 over the whole float range that matters, and the extremes.
    std::vector<float> g, up;
    for (float v = -100.0f; v <= 100.0f; v += 0.0137f) g.push_back(v);
    for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 88.0f, -88.0f, 87.4f, -87.4f, 1e30f, -1e30f})
        g.push_back(v);
    up.assign(g.size(), 1.0f);
    auto out = g;
    ref.silu_mul(out.data(), up.data(), int(out.size()));
    for (size_t i = 0; i < g.size(); ++i) {
        CAPTURE(g[i]);
        const double expected = double(g[i]) / (1.0 + std::exp(-double(g[i])));
        // (absolute 1e-36: exp(-g) above 88.376 is +inf, so silu(g < -88.376) is -0
        // where the exact value is at most 4e-37 in magnitude)
        CHECK(std::fabs(out[i] - expected) <= 1e-6 * std::fabs(expected) + 1e-36);
    }
    // softmax: against a double-precision softmax; -inf gets exactly 0.
    for (int n : {1, 2, 7, 64, 300}) {
        auto x = score_row(n, uint32_t(7 * n));
        auto y = x;
        ref.softmax(y.data(), n);
        // (std::max_element: gcc 12 for aarch64 crashes vectorizing an fmax reduction here)
        const double max_val = *std::max_element(x.begin(), x.end());
        double sum = 0;
        for (float v : x) sum += std::exp(double(v) - max_val);
        for (int i = 0; i < n; ++i) {
            const double expected = std::exp(double(x[size_t(i)]) - max_val) / sum;
            CHECK(std::fabs(y[size_t(i)] - expected) <= 2e-6 * expected + 1e-37);
            if (std::isinf(x[size_t(i)])) CHECK(y[size_t(i)] == 0.0f);
        }
    }
}

TEST_CASE("AVX2 vector kernels match the scalar reference" *
          nibble::test::skip_unless(vec_ops_avx2() != nullptr,
                                    "no AVX2 on this CPU (or not an x86-64 build)")) {
    check_against_scalar(vec_ops_avx2());
}

TEST_CASE("NEON vector kernels match the scalar reference" *
          nibble::test::skip_unless(vec_ops_neon() != nullptr, "not an aarch64 build")) {
    check_against_scalar(vec_ops_neon());
}

TEST_CASE("vector kernels follow the matmul kernel choice") {
    for (MatmulKernel k : supported_matmul_kernels()) {
        CAPTURE(matmul_kernel_name(k));
        set_matmul_kernel(k);
        const VecOps* expected = &vec_ops_scalar();
        if (k == MatmulKernel::avx2 || k == MatmulKernel::avx_vnni || k == MatmulKernel::avx512)
            expected = vec_ops_avx2();
        if (k == MatmulKernel::neon || k == MatmulKernel::neon_nodot) expected = vec_ops_neon();
        CHECK(&vec_ops() == expected);
    }
    set_matmul_kernel(MatmulKernel::automatic);
}

// Every SIMD variant of the small vector kernels against the scalar reference.
#include <doctest/doctest.h>

#include <cmath>
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
}

}  // namespace

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

// nibble's own q3 and q2 formats (kernels/q2q3.h): packing of every code at
// every position, round-trip error bounds, and every fast kernel against the
// reference (error bounds from the int8 activation rounding, a tight bound on
// int8-rounded activations), GEMM == repeated GEMV and 1 == 2 threads bitwise.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernel_test_settings.h"
#include "kernels/group_params.h"
#include "kernels/matmul.h"
#include "kernels/matmul_dispatch.h"
#include "kernels/q2q3.h"
#include "kernels/quantize.h"
#include "quant_test_util.h"
#include "test_skip.h"

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace nibble;
using nibble::test::fast_kernels;
using nibble::test::SettingsGuard;
using quant_test::dequantize_all;
using quant_test::gaussian;
using quant_test::heavy_tailed;
using quant_test::mse;

namespace {

constexpr WeightFormat kFormats[] = {WeightFormat::q3, WeightFormat::q2};

float param(const MatrixView& v, GroupStream s, int64_t row, int64_t col) {
    return group_param(v, s, row * v.layout.groups_per_row + col / v.layout.group_size);
}

// Representable interval of a group: q3 d [-4, 3], q2 [m, m + 3d].
void interval(WeightFormat f, float d, float m, float& lo, float& hi) {
    if (f == WeightFormat::q3) {
        lo = std::min(-4.0f * d, 3.0f * d), hi = std::max(-4.0f * d, 3.0f * d);
    } else {
        lo = std::min(m, m + 3.0f * d), hi = std::max(m, m + 3.0f * d);
    }
}

std::vector<float> random_activations(int n_tokens, int64_t cols, std::mt19937& rng) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(size_t(n_tokens) * size_t(cols));
    for (float& v : x) v = normal(rng);
    return x;
}

}  // namespace

TEST_CASE("q3 and q2 layouts: sizes and bits per weight") {
    // 4096 x 4096: q3 3 + 16/G, q2 2 + 32/G; double quantization 8 + 32/256 bits per parameter.
    const PackedLayout q3 = make_layout(WeightFormat::q3, 4096, 4096, 64);
    CHECK(q3.codes_bytes == 4096u * 4096u * 3u / 8u);
    CHECK(q3.bits_per_weight() == doctest::Approx(3.25));
    CHECK(make_layout(WeightFormat::q3, 4096, 4096, 64, true).bits_per_weight() ==
          doctest::Approx(3.0 + 8.125 / 64).epsilon(1e-4));
    const PackedLayout q2 = make_layout(WeightFormat::q2, 4096, 4096, 32);
    CHECK(q2.codes_bytes == 4096u * 4096u / 4u);
    CHECK(q2.mins_bytes == q2.scales_bytes);
    CHECK(q2.bits_per_weight() == doctest::Approx(3.0));
    CHECK(make_layout(WeightFormat::q2, 4096, 4096, 32, true).bits_per_weight() ==
          doctest::Approx(2.0 + 2 * 8.125 / 32).epsilon(1e-4));
    // A short final group: 172 columns pad to 192 at G = 64 (6 chunks of 32).
    CHECK(make_layout(WeightFormat::q3, 3, 172, 64).codes_bytes == 3u * 6u * 12u);
    CHECK(make_layout(WeightFormat::q2, 3, 172, 64).codes_bytes == 3u * 6u * 8u);
    CHECK(parse_format("q3") == WeightFormat::q3);
    CHECK(parse_format("q2") == WeightFormat::q2);
}

TEST_CASE("q3 and q2: every code at every column position packs and decodes exactly") {
    for (WeightFormat f : kFormats) {
        const int levels = f == WeightFormat::q3 ? 8 : 4;
        for (int64_t cols : {int64_t(172), int64_t(33), int64_t(1), int64_t(256)}) {
            const int64_t rows = 5;
            const PackedLayout l = make_layout(f, rows, cols, 32);
            // Scale 1 (min -1 for q2): weight value v is exactly code v + 4 (q3), v + 1 (q2).
            std::vector<float> w(size_t(rows * cols));
            for (int64_t i = 0; i < rows * cols; ++i) {
                const int q = int((i * 5 + i / 7) % levels);
                w[size_t(i)] = f == WeightFormat::q3 ? float(q - 4) : float(q - 1);
            }
            const std::vector<float> scales(size_t(l.n_groups()), 1.0f);
            const std::vector<float> mins(f == WeightFormat::q2 ? size_t(l.n_groups()) : 0, -1.0f);
            std::vector<uint8_t> blob(l.total_bytes, 0xff);
            quantize_matrix_with_params(w.data(), l, scales, mins, blob.data());
            CAPTURE(format_name(f));
            CAPTURE(cols);
            CHECK(dequantize_all(MatrixView{l, blob.data()}) == w);
            // The stored code of each weight, read from the planes directly.
            for (int64_t r = 0; r < rows; ++r) {
                for (int64_t c = 0; c < cols; ++c) {
                    const uint8_t* chunk = blob.data() + l.codes_offset +
                                           size_t(r) * l.row_code_bytes() +
                                           size_t(c / 32) * size_t(f == WeightFormat::q3 ? 12 : 8);
                    const int j = int(c % 32);
                    int q = (chunk[j % 8] >> (2 * (j / 8))) & 3;
                    if (f == WeightFormat::q3) q |= ((chunk[8 + j / 8] >> (j % 8)) & 1) << 2;
                    const float v = w[size_t(r * cols + c)];
                    REQUIRE(q == int(f == WeightFormat::q3 ? v + 4.0f : v + 1.0f));
                }
            }
        }
    }
}

TEST_CASE("q3 and q2 round trip: every weight within its bound") {
    for (WeightFormat f : kFormats) {
        for (int g : {32, 64, 128}) {
            for (bool heavy : {false, true}) {
                const int64_t rows = 24, cols = 200;  // short final groups
                const std::vector<float> w =
                    heavy ? heavy_tailed(rows, cols, 7) : gaussian(rows, cols, 7);
                const PackedLayout l = make_layout(f, rows, cols, g);
                const std::vector<uint8_t> blob = quantize_matrix(w.data(), l);
                const MatrixView v{l, blob.data()};
                const std::vector<float> back = dequantize_all(v);
                int bad = 0;
                for (int64_t r = 0; r < rows; ++r) {
                    for (int64_t c = 0; c < cols; ++c) {
                        const float d = param(v, GroupStream::scales, r, c);
                        const float m =
                            f == WeightFormat::q2 ? param(v, GroupStream::mins, r, c) : 0.0f;
                        float lo, hi;
                        interval(f, d, m, lo, hi);
                        const float x = w[size_t(r * cols + c)];
                        const double clip = std::max({0.0, double(lo) - x, double(x) - hi});
                        const double bound =
                            (clip > 0 ? clip : 0.5 * std::fabs(d)) +
                            1e-6 * (std::fabs(x) + 8 * std::fabs(d) + std::fabs(m));
                        const double err = std::fabs(double(back[size_t(r * cols + c)]) - x);
                        // Clipping limit: no weight more than 2|d| outside the interval.
                        if (!(err <= bound) || !(clip <= 2.0 * std::fabs(d) * (1 + 1e-3))) {
                            if (++bad > 3) continue;
                            INFO(format_name(f), " g", g, " row ", r, " col ", c, " w ", x, " got ",
                                 back[size_t(r * cols + c)], " bound ", bound);
                            CHECK(err <= bound);
                            CHECK(clip <= 2.0 * std::fabs(d) * (1 + 1e-3));
                        }
                    }
                }
                CHECK(bad == 0);
            }
        }
    }
}

TEST_CASE("q3 and q2 error: search below the simple rule, smaller groups better, DQ close") {
    const std::vector<float> w = gaussian(64, 1024, 2024);
    double prev_q3 = 0.0;
    for (int g : {128, 64, 32}) {
        for (WeightFormat f : kFormats) {
            const PackedLayout l = make_layout(f, 64, 1024, g);
            const double search = quant_test::quantized_mse(w, l, ScaleRule::search);
            const double simple = quant_test::quantized_mse(w, l, ScaleRule::simple);
            const double dq =
                quant_test::quantized_mse(w, make_layout(f, 64, 1024, g, true), ScaleRule::search);
            CAPTURE(format_name(f));
            CAPTURE(g);
            CHECK(search < simple);
            CHECK(dq <= search * 1.02);
            if (f == WeightFormat::q3) {
                // Gaussian MSE of a 3-bit grid: between q4's (0.0065 at g32) and 2-bit's.
                CHECK(search > 0.0065);
                CHECK(search < 0.04);
                if (prev_q3 > 0.0) CHECK(search < prev_q3);
                prev_q3 = search;
            } else {
                CHECK(search > 0.04);
                CHECK(search < 0.15);
            }
            MESSAGE(std::string(format_name(f)) << " g" << g << " MSE search " << search
                                                << " simple " << simple << " dq " << dq);
        }
    }
}

namespace {

// Error allowed for output (t, r) of a fast kernel (as in test_kernels_matmul.cpp):
// int8 path: sum_c |w_c| d_x/2 for the activation rounding; both paths a few
// 1e-6 relative to sum_c M_c |x_c| for FP32 rounding, M_c the largest term of
// the weight's decomposition (q3 |w| + 5|d|, q2 |w| + 4|d| + |m|).
double error_bound(const MatrixView& w, const float* xt, int64_t row, bool int8_path, double rel) {
    const PackedLayout& l = w.layout;
    std::vector<float> wr(size_t(l.cols));
    dequantize_row(w, row, wr.data());
    double bound = 1e-30;
    for (int64_t c0 = 0; c0 < l.cols; c0 += 32) {
        const int64_t c1 = std::min(l.cols, c0 + 32);
        double amax = 0.0;
        for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, double(std::fabs(xt[c])));
        const double dx = int8_path ? amax / 127.0 : 0.0;
        for (int64_t c = c0; c < c1; ++c) {
            const double d = std::fabs(param(w, GroupStream::scales, row, c));
            const double m =
                l.format == WeightFormat::q2 ? std::fabs(param(w, GroupStream::mins, row, c)) : 0.0;
            const double aw = std::fabs(double(wr[size_t(c)]));
            const double mag = aw + 5.0 * d + m;
            bound += rel * mag * (std::fabs(xt[c]) + dx) + aw * dx / 2;
        }
    }
    return bound;
}

std::vector<float> int8_rounded(const std::vector<float>& x, int n_tokens, int64_t cols) {
    std::vector<float> out(x.size());
    for (int t = 0; t < n_tokens; ++t) {
        const float* xt = x.data() + size_t(t) * size_t(cols);
        float* ot = out.data() + size_t(t) * size_t(cols);
        for (int64_t c0 = 0; c0 < cols; c0 += 32) {
            const int64_t c1 = std::min(cols, c0 + 32);
            float amax = 0.0f;
            for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(xt[c]));
            const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            for (int64_t c = c0; c < c1; ++c)
                ot[c] = float(std::lrint(xt[c] * inv)) * (amax / 127.0f);
        }
    }
    return out;
}

}  // namespace

TEST_CASE("q3 and q2: every fast kernel matches the reference; GEMM equals GEMV bitwise") {
    SettingsGuard guard;
    std::mt19937 rng(11);
    struct Shape {
        int64_t rows, cols;
    };
    for (MatmulKernel k : fast_kernels()) {
        for (WeightFormat f : kFormats) {
            for (int g : {32, 64, 128}) {
                for (bool dq : {false, true}) {
                    for (Shape s : {Shape{7, 172}, Shape{33, 200}, Shape{16, 320}}) {
                        const std::vector<float> wf = gaussian(s.rows, s.cols, rng());
                        const PackedLayout l = make_layout(f, s.rows, s.cols, g, dq);
                        const std::vector<uint8_t> blob = quantize_matrix(wf.data(), l);
                        const MatrixView w{l, blob.data()};
                        for (ActivationMode mode : {ActivationMode::int8, ActivationMode::fp32}) {
                            const bool int8_path = mode == ActivationMode::int8;
                            for (int n_tokens : {1, 2, 5, 8, 21}) {
                                const std::vector<float> x =
                                    random_activations(n_tokens, s.cols, rng);
                                std::vector<float> y_ref(size_t(n_tokens) * size_t(s.rows));
                                std::vector<float> y(y_ref.size(), -1.0f);
                                reference::matmul(w, x.data(), n_tokens, y_ref.data());
                                set_matmul_kernel(k);
                                set_matmul_activation_mode(mode);
                                matmul(w, x.data(), n_tokens, y.data());
                                // With int8 paths, also against the reference on the
                                // int8-rounded activations: FP32 rounding only.
                                std::vector<float> y_rounded(y_ref.size());
                                const std::vector<float> xr = int8_rounded(x, n_tokens, s.cols);
                                if (int8_path)
                                    reference::matmul(w, xr.data(), n_tokens, y_rounded.data());
                                int bad = 0;
                                for (int t = 0; t < n_tokens; ++t) {
                                    for (int64_t r = 0; r < s.rows; ++r) {
                                        const size_t i = size_t(t) * size_t(s.rows) + size_t(r);
                                        const float* xt = x.data() + size_t(t) * size_t(s.cols);
                                        const double b = error_bound(w, xt, r, int8_path, 3e-5);
                                        bool ok = std::fabs(double(y[i]) - y_ref[i]) <= b;
                                        if (int8_path) {
                                            const double b2 = error_bound(
                                                w, xr.data() + size_t(t) * size_t(s.cols), r, false,
                                                3e-6);
                                            ok = ok && std::fabs(double(y[i]) - y_rounded[i]) <= b2;
                                        }
                                        if (!ok && ++bad <= 3) {
                                            INFO(std::string(matmul_kernel_name(k)),
                                                 int8_path ? " int8 " : " fp32 ",
                                                 std::string(format_name(f)), " g", g,
                                                 dq ? " dq " : " ", s.rows, "x", s.cols, " tokens ",
                                                 n_tokens, " token ", t, " row ", r, " got ", y[i],
                                                 " want ", y_ref[i]);
                                            CHECK(ok);
                                        }
                                    }
                                }
                                CHECK(bad == 0);
                                if (n_tokens > 1) {
                                    std::vector<float> y1(size_t(s.rows));
                                    for (int t = 0; t < n_tokens; ++t) {
                                        matmul(w, x.data() + size_t(t) * size_t(s.cols), 1,
                                               y1.data());
                                        INFO(std::string(matmul_kernel_name(k)), " ",
                                             std::string(format_name(f)), " g", g, " token ", t);
                                        CHECK(std::memcmp(y1.data(),
                                                          y.data() + size_t(t) * size_t(s.rows),
                                                          y1.size() * sizeof(float)) == 0);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// NEON's kernels with SDOT and without it (the entries neon and neon_nodot on
// a CPU with FEAT_DotProd) differ only in how the exact integer dot products
// are formed: their results are the same, bit for bit.
TEST_CASE("q3 and q2: NEON with and without SDOT give bitwise identical results" *
          nibble::test::skip_unless(matmul_kernel_supported(MatmulKernel::neon),
                                    "this CPU has no NEON")) {
    SettingsGuard guard;
    std::mt19937 rng(79);
    set_matmul_activation_mode(ActivationMode::int8);
    for (WeightFormat f : kFormats) {
        for (bool dq : {false, true}) {
            const std::vector<float> wf = gaussian(13, 320, rng());
            const PackedLayout l = make_layout(f, 13, 320, 64, dq);
            const std::vector<uint8_t> blob = quantize_matrix(wf.data(), l);
            const MatrixView w{l, blob.data()};
            for (int n_tokens : {1, 6}) {
                const std::vector<float> x = random_activations(n_tokens, 320, rng);
                std::vector<float> dot(size_t(13 * n_tokens)), nodot(dot.size());
                set_matmul_kernel(MatmulKernel::neon);
                matmul(w, x.data(), n_tokens, dot.data());
                set_matmul_kernel(MatmulKernel::neon_nodot);
                matmul(w, x.data(), n_tokens, nodot.data());
                INFO(std::string(format_name(f)), dq ? " dq" : "", " tokens ", n_tokens);
                CHECK(std::memcmp(dot.data(), nodot.data(), dot.size() * sizeof(float)) == 0);
            }
        }
    }
}

#ifdef _OPENMP
TEST_CASE("q3 and q2: 1 and 2 threads give bitwise identical results") {
    SettingsGuard guard;
    std::mt19937 rng(5);
    const int saved = omp_get_max_threads();
    for (MatmulKernel k : fast_kernels()) {
        for (WeightFormat f : kFormats) {
            const std::vector<float> wf = gaussian(301, 1000, 3);
            const PackedLayout l = make_layout(f, 301, 1000, 64);
            const std::vector<uint8_t> blob = quantize_matrix(wf.data(), l);
            const MatrixView w{l, blob.data()};
            for (ActivationMode mode : {ActivationMode::int8, ActivationMode::fp32}) {
                for (int n_tokens : {1, 3, 40}) {
                    const std::vector<float> x = random_activations(n_tokens, 1000, rng);
                    std::vector<float> y1(size_t(301 * n_tokens)), y2(y1.size());
                    set_matmul_kernel(k);
                    set_matmul_activation_mode(mode);
                    omp_set_num_threads(1);
                    matmul(w, x.data(), n_tokens, y1.data());
                    omp_set_num_threads(2);
                    matmul(w, x.data(), n_tokens, y2.data());
                    INFO(std::string(matmul_kernel_name(k)), " ", std::string(format_name(f)),
                         " tokens ", n_tokens);
                    CHECK(std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float)) == 0);
                }
            }
        }
    }
    omp_set_num_threads(saved);
}
#endif

// q6k (llama.cpp's Q6_K held as a nibble format, kernels/q6k.h): the layout's
// size, the reference dequantization against ggml's dequantize_row_q6_K
// written out here from the published block layout (bit for bit), and every
// fast kernel (both activation paths) against the reference on random and
// adversarial data, with GEMM equal to repeated GEMV and 1 thread equal to 2.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernel_test_settings.h"
#include "kernels/fp16.h"
#include "kernels/matmul.h"
#include "kernels/matmul_dispatch.h"
#include "kernels/matmul_variants.h"
#include "kernels/quantize.h"
#include "test_skip.h"

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace nibble;
using nibble::test::fast_kernels;
using nibble::test::SettingsGuard;

namespace {

// ggml's block_q6_K: ql[128], qh[64], int8 scales[16], fp16 d (210 bytes).
struct BlockQ6K {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
};
static_assert(sizeof(BlockQ6K) == 210);

// ggml-quants.c dequantize_row_q6_K for one block.
void ggml_dequantize_q6_k(const BlockQ6K& b, float* y) {
    const float d = fp16_to_fp32(b.d);
    const uint8_t* ql = b.ql;
    const uint8_t* qh = b.qh;
    const int8_t* sc = b.scales;
    for (int n = 0; n < 256; n += 128) {
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int8_t q1 = int8_t((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int8_t q2 = int8_t((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int8_t q3 = int8_t((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int8_t q4 = int8_t((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l + 0] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

enum class Pattern { random, codes_min, codes_max, zero_scales, tiny_d, huge_d };

const char* pattern_name(Pattern p) {
    switch (p) {
        case Pattern::random:
            return "random";
        case Pattern::codes_min:
            return "codes_min";
        case Pattern::codes_max:
            return "codes_max";
        case Pattern::zero_scales:
            return "zero_scales";
        case Pattern::tiny_d:
            return "tiny_d";
        case Pattern::huge_d:
            return "huge_d";
    }
    return "?";
}

// A q6k test matrix: its ggml blocks, and the nibble blob made from them by
// the layout formats.h states (codes: ql, qh per block; parameters: scales, d).
struct TestMatrix {
    PackedLayout layout;
    std::vector<BlockQ6K> blocks;  // row-major, cols / 256 per row
    std::vector<uint8_t> blob;
    MatrixView view() const { return MatrixView{layout, blob.data()}; }
};

TestMatrix make_matrix(int64_t rows, int64_t cols, Pattern p, std::mt19937& rng) {
    TestMatrix m;
    m.layout = make_layout(WeightFormat::q6k, rows, cols, 256);
    m.blocks.resize(size_t(rows * cols / 256));
    std::uniform_int_distribution<int> byte(0, 255), scale(-128, 127);
    std::uniform_real_distribution<float> u(0.2f, 1.0f);
    const float mag = p == Pattern::tiny_d ? 1e-7f : p == Pattern::huge_d ? 30.0f : 1e-3f;
    for (size_t i = 0; i < m.blocks.size(); ++i) {
        BlockQ6K& b = m.blocks[i];
        for (uint8_t& v : b.ql)
            v = uint8_t(p == Pattern::codes_min   ? 0x00
                        : p == Pattern::codes_max ? 0xff
                                                  : byte(rng));
        for (uint8_t& v : b.qh)
            v = uint8_t(p == Pattern::codes_min   ? 0x00
                        : p == Pattern::codes_max ? 0xff
                                                  : byte(rng));
        for (int j = 0; j < 16; ++j) {
            b.scales[j] =
                int8_t(p == Pattern::zero_scales && (16 * i + size_t(j)) % 3 == 1 ? 0 : scale(rng));
        }
        b.d = fp32_to_fp16(mag * u(rng) * (i % 2 == 0 ? 1.0f : -1.0f));
    }
    m.blob.assign(m.layout.total_bytes, 0);
    for (size_t i = 0; i < m.blocks.size(); ++i) {
        const BlockQ6K& b = m.blocks[i];
        uint8_t* codes = m.blob.data() + m.layout.codes_offset + 192 * i;
        std::memcpy(codes, b.ql, 128);
        std::memcpy(codes + 128, b.qh, 64);
        uint8_t* params = m.blob.data() + m.layout.scales_offset + 18 * i;
        std::memcpy(params, b.scales, 16);
        std::memcpy(params + 16, &b.d, 2);
    }
    return m;
}

// |d * sc| of column c of row r, from the ggml block.
double sub_scale(const TestMatrix& m, int64_t r, int64_t c) {
    const BlockQ6K& b = m.blocks[size_t(r * (m.layout.cols / 256) + c / 256)];
    // (c % 256) / 16 is the index of the 16-column group, not a value.
    return std::fabs(double(fp16_to_fp32(b.d)) *
                     double(b.scales[(c % 256) / 16]));  // NOLINT(bugprone-integer-division)
}

std::vector<float> random_activations(int n_tokens, int64_t cols, std::mt19937& rng) {
    std::normal_distribution<float> n(0.0f, 1.0f);
    std::vector<float> x(size_t(n_tokens) * size_t(cols));
    for (float& v : x) v = n(rng);
    for (int t = 0; t < n_tokens; ++t) {  // an outlier and an all-zero block per token
        float* xt = x.data() + size_t(t) * size_t(cols);
        xt[(7 * t + 3) % cols] = 40.0f;
        for (int64_t c = 32; c < 64; ++c) xt[c] = 0.0f;
    }
    return x;
}

// Error allowed for output (t, r): the int8 path replaces x_c by d_b q_c with
// |x_c - d_b q_c| <= d_b / 2 (d_b = amax / 127 of its block of 32), adding at
// most |w_c| d_b / 2; FP32 rounding a few 1e-7 of sum_c (|w_c| + 32 s_c) |x_c|
// (s_c = |d sc|: the kernels multiply q - 32 or subtract 32 x).
double error_bound(const TestMatrix& m, const float* w, const float* xt, int64_t r, bool int8) {
    double bound = 1e-30;
    for (int64_t c0 = 0; c0 < m.layout.cols; c0 += 32) {
        double amax = 0.0;
        for (int64_t c = c0; c < c0 + 32; ++c) amax = std::max(amax, double(std::fabs(xt[c])));
        const double dx = amax / 127.0;
        for (int64_t c = c0; c < c0 + 32; ++c) {
            const double aw = std::fabs(double(w[c]));
            const double mag = aw + 33.0 * sub_scale(m, r, c);
            bound += 3e-5 * mag * (std::fabs(double(xt[c])) + dx);
            if (int8) bound += aw * dx / 2;
        }
    }
    return bound;
}

void check_against_reference(const TestMatrix& m, MatmulKernel k, ActivationMode mode, int n_tokens,
                             Pattern p, std::mt19937& rng) {
    const PackedLayout& l = m.layout;
    const std::vector<float> x = random_activations(n_tokens, l.cols, rng);
    std::vector<float> y_ref(size_t(n_tokens) * size_t(l.rows)), y(y_ref.size(), -1.0f);
    reference::matmul(m.view(), x.data(), n_tokens, y_ref.data());
    set_matmul_kernel(k);
    set_matmul_activation_mode(mode);
    matmul(m.view(), x.data(), n_tokens, y.data());
    std::vector<float> w(size_t(l.cols));
    int bad = 0;
    for (int64_t r = 0; r < l.rows && bad < 3; ++r) {
        dequantize_row(m.view(), r, w.data());
        for (int t = 0; t < n_tokens && bad < 3; ++t) {
            const size_t i = size_t(t) * size_t(l.rows) + size_t(r);
            const double bound = error_bound(m, w.data(), x.data() + size_t(t) * size_t(l.cols), r,
                                             mode == ActivationMode::int8);
            const double err = std::fabs(double(y[i]) - double(y_ref[i]));
            if (!(err <= bound)) {
                ++bad;
                INFO(std::string(matmul_kernel_name(k)),
                     mode == ActivationMode::int8 ? " int8 " : " fp32 ", l.rows, "x", l.cols, " ",
                     std::string(pattern_name(p)), " tokens ", n_tokens, " token ", t, " row ", r,
                     " got ", y[i], " want ", y_ref[i], " bound ", bound);
                CHECK(err <= bound);
            }
        }
    }
    if (n_tokens > 1) {  // GEMM == token-by-token GEMV, bitwise
        std::vector<float> y1(size_t(l.rows));
        for (int t = 0; t < n_tokens; ++t) {
            matmul(m.view(), x.data() + size_t(t) * size_t(l.cols), 1, y1.data());
            INFO(std::string(matmul_kernel_name(k)), " token ", t, " of ", n_tokens);
            CHECK(std::memcmp(y1.data(), y.data() + size_t(t) * size_t(l.rows),
                              y1.size() * sizeof(float)) == 0);
        }
    }
}

}  // namespace

TEST_CASE("q6k layout: Q6_K's 210 bytes per 256 weights, multiples of 256 columns only") {
    const PackedLayout l = make_layout(WeightFormat::q6k, 4096, 11008, 256);
    CHECK(l.codes_bytes == size_t(4096) * 43 * 192);
    CHECK(l.scales_bytes == size_t(4096) * 43 * 18);
    CHECK(l.total_bytes <= size_t(4096) * 43 * 210 + 128);  // + section alignment
    CHECK(l.bits_per_weight() < 6.5626);
    CHECK(l.bits_per_weight() < make_layout(WeightFormat::q8, 4096, 11008, 32).bits_per_weight());
    CHECK_THROWS_AS(make_layout(WeightFormat::q6k, 4, 1000, 256), std::invalid_argument);
    CHECK_THROWS_AS(make_layout(WeightFormat::q6k, 4, 1024, 32), std::invalid_argument);
    CHECK(parse_format("q6k") == WeightFormat::q6k);
    CHECK(std::string(format_name(WeightFormat::q6k)) == "q6k");
}

TEST_CASE("q6k rows dequantize as ggml's dequantize_row_q6_K, bit for bit") {
    std::mt19937 rng(66);
    for (Pattern p : {Pattern::random, Pattern::codes_min, Pattern::codes_max, Pattern::zero_scales,
                      Pattern::tiny_d, Pattern::huge_d}) {
        const TestMatrix m = make_matrix(5, 768, p, rng);
        std::vector<float> ours(768), theirs(768);
        size_t mismatches = 0, nonzero = 0;
        for (int64_t r = 0; r < 5; ++r) {
            dequantize_row(m.view(), r, ours.data());
            for (int i = 0; i < 3; ++i)
                ggml_dequantize_q6_k(m.blocks[size_t(3 * r + i)], &theirs[256 * size_t(i)]);
            for (size_t c = 0; c < ours.size(); ++c) {
                // Bit for bit on purpose (-0.0 and NaN payloads included).
                // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison)
                mismatches += std::memcmp(&ours[c], &theirs[c], 4) != 0;
                nonzero += ours[c] != 0.0f;
            }
        }
        CAPTURE(pattern_name(p));
        CHECK(mismatches == 0);
        CHECK(nonzero > 0);
    }
}

TEST_CASE("q6k: every fast kernel matches the reference") {
    SettingsGuard guard;
    std::mt19937 rng(606);
    const auto kernels = fast_kernels();
    REQUIRE(!kernels.empty());
    for (MatmulKernel k : kernels) {
        for (Pattern p : {Pattern::random, Pattern::codes_min, Pattern::codes_max,
                          Pattern::zero_scales, Pattern::tiny_d, Pattern::huge_d}) {
            for (auto [rows, cols] : {std::pair<int64_t, int64_t>{7, 256}, {33, 512}, {16, 1024}}) {
                const TestMatrix m = make_matrix(rows, cols, p, rng);
                for (int n_tokens : {1, 2, 3, 5, 8, 21}) {
                    for (ActivationMode mode : {ActivationMode::int8, ActivationMode::fp32}) {
                        check_against_reference(m, k, mode, n_tokens, p, rng);
                    }
                }
            }
        }
    }
}

// NEON's kernels with SDOT and without it (the entries neon and neon_nodot on
// a CPU with FEAT_DotProd) differ only in how the exact integer dot products
// are formed: their results are the same, bit for bit.
TEST_CASE("q6k: NEON with and without SDOT give bitwise identical results" *
          nibble::test::skip_unless(matmul_kernel_supported(MatmulKernel::neon),
                                    "this CPU has no NEON")) {
    SettingsGuard guard;
    std::mt19937 rng(78);
    set_matmul_activation_mode(ActivationMode::int8);
    for (Pattern p : {Pattern::random, Pattern::codes_min, Pattern::codes_max, Pattern::huge_d}) {
        const TestMatrix m = make_matrix(13, 512, p, rng);
        for (int n_tokens : {1, 6}) {
            const std::vector<float> x = random_activations(n_tokens, 512, rng);
            std::vector<float> dot(size_t(13 * n_tokens)), nodot(dot.size());
            set_matmul_kernel(MatmulKernel::neon);
            matmul(m.view(), x.data(), n_tokens, dot.data());
            set_matmul_kernel(MatmulKernel::neon_nodot);
            matmul(m.view(), x.data(), n_tokens, nodot.data());
            INFO(std::string(pattern_name(p)), " tokens ", n_tokens);
            CHECK(std::memcmp(dot.data(), nodot.data(), dot.size() * sizeof(float)) == 0);
        }
    }
}

#ifdef _OPENMP
TEST_CASE("q6k: 1 and 2 threads give bitwise identical results") {
    SettingsGuard guard;
    std::mt19937 rng(7);
    const int saved = omp_get_max_threads();
    const TestMatrix m = make_matrix(301, 1024, Pattern::random, rng);
    for (MatmulKernel k : fast_kernels()) {
        for (ActivationMode mode : {ActivationMode::int8, ActivationMode::fp32}) {
            for (int n_tokens : {1, 3, 40}) {
                const std::vector<float> x = random_activations(n_tokens, 1024, rng);
                std::vector<float> y1(size_t(301 * n_tokens)), y2(y1.size());
                set_matmul_kernel(k);
                set_matmul_activation_mode(mode);
                omp_set_num_threads(1);
                matmul(m.view(), x.data(), n_tokens, y1.data());
                omp_set_num_threads(2);
                matmul(m.view(), x.data(), n_tokens, y2.data());
                INFO(std::string(matmul_kernel_name(k)), " tokens ", n_tokens);
                CHECK(std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float)) == 0);
            }
        }
    }
    omp_set_num_threads(saved);
}
#endif

// nibble's own q6k quantizer (kernels/quantize_q6k.cpp): every weight that
// did not round past the 6-bit range is within half a step (d sc_j / 2) of its
// dequantized value, codes that did (w / step beyond -32.5 or 31.5) are
// clamped to -32 / 31, and Gaussian weights come back with a relative RMS
// error of about 2% (step ~ 2.5 sigma / 32, error rms ~ step / sqrt(12)).
TEST_CASE("q6k quantizer: round to nearest against the coded scales") {
    std::mt19937 rng(66);
    std::normal_distribution<float> n(0.0f, 1.0f);
    const PackedLayout l = make_layout(WeightFormat::q6k, 9, 768, 256);
    std::vector<float> w(size_t(l.rows * l.cols));
    for (float& v : w) v = n(rng);
    // A super-block of small weights: d (its largest scale / -128) is a
    // subnormal fp16, as for most LLM weights (largest |w| below ~0.25).
    for (int64_t c = 256; c < 512; ++c) w[size_t(c)] *= 0.05f;
    for (int64_t c = 0; c < 16; ++c) w[size_t(l.cols + c)] = 0.0f;  // an all-zero sub-block
    const std::vector<uint8_t> blob = quantize_matrix(w.data(), l);
    std::vector<float> back(size_t(l.cols)), scales(size_t(l.cols / 16));
    double err2 = 0.0, sum2 = 0.0;
    int clamped = 0;
    for (int64_t r = 0; r < l.rows; ++r) {
        dequantize_row(MatrixView{l, blob.data()}, r, back.data());
        kernels::q6k_row_scales(MatrixView{l, blob.data()}, r, scales.data());
        for (int64_t c = 0; c < l.cols; ++c) {
            const float x = w[size_t(r * l.cols + c)], s = std::fabs(scales[size_t(c / 16)]);
            const double q = s > 0.0f ? double(x) / double(scales[size_t(c / 16)]) : 0.0;
            const double e = std::fabs(double(x) - double(back[size_t(c)]));
            err2 += e * e;
            sum2 += double(x) * double(x);
            if (s > 0.0f && (q > 31.5 || q < -32.5)) {
                ++clamped;
                CHECK(std::fabs(back[size_t(c)]) >= 31.0f * s);
            } else {
                CHECK(e <= 0.5 * s * (1.0 + 1e-5) + 1e-30);
            }
        }
    }
    CHECK(std::sqrt(err2 / sum2) < 0.025);
    CHECK(clamped < l.rows * l.cols / 100);
}

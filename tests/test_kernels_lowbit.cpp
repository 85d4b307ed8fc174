// The ggml block formats (q5_0, q5_1, q5k, q3k, q2k: llama.cpp's Q5_0, Q5_1,
// Q5_K, Q3_K and Q2_K blocks held as they are, kernels/lowbit.h): the layout's
// size, the reference dequantization against ggml's dequantize_row_* written
// out here in ggml's own loop structure from the published block layouts (bit
// for bit, on random and extreme blocks), and every fast kernel (both
// activation paths) against the reference, GEMM equal to repeated GEMV, 1
// thread equal to 2, odd row counts.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernel_test_settings.h"
#include "kernels/fp16.h"
#include "kernels/matmul.h"
#include "kernels/matmul_dispatch.h"
#include "kernels/quantize.h"
#include "test_skip.h"

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace nibble;
using nibble::test::fast_kernels;
using nibble::test::SettingsGuard;

namespace {

// ggml's blocks (ggml-common.h).
struct BlockQ5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[16];
};
struct BlockQ5_1 {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[16];
};
struct BlockQ5K {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
};
struct BlockQ3K {
    uint8_t hmask[32];
    uint8_t qs[64];
    uint8_t scales[12];
    uint16_t d;
};
struct BlockQ2K {
    uint8_t scales[16];
    uint8_t qs[64];
    uint16_t d, dmin;
};
static_assert(sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24 && sizeof(BlockQ5K) == 176 &&
              sizeof(BlockQ3K) == 110 && sizeof(BlockQ2K) == 84);

float h2f(uint16_t h) {
    return fp16_to_fp32(h);
}

// ggml's dequantize_row_q5_0 / _q5_1 for one block.
void ggml_q5_0(const BlockQ5_0& x, float* y) {
    const float d = h2f(x.d);
    uint32_t qh;
    std::memcpy(&qh, x.qh, 4);
    for (int j = 0; j < 16; ++j) {
        const uint8_t xh_0 = uint8_t(((qh >> (j + 0)) << 4) & 0x10);
        const uint8_t xh_1 = uint8_t((qh >> (j + 12)) & 0x10);
        const int32_t x0 = ((x.qs[j] & 0x0F) | xh_0) - 16;
        const int32_t x1 = ((x.qs[j] >> 4) | xh_1) - 16;
        y[j] = float(x0) * d;
        y[j + 16] = float(x1) * d;
    }
}
void ggml_q5_1(const BlockQ5_1& x, float* y) {
    const float d = h2f(x.d), m = h2f(x.m);
    uint32_t qh;
    std::memcpy(&qh, x.qh, 4);
    for (int j = 0; j < 16; ++j) {
        const uint8_t xh_0 = uint8_t(((qh >> (j + 0)) << 4) & 0x10);
        const uint8_t xh_1 = uint8_t((qh >> (j + 12)) & 0x10);
        const int x0 = (x.qs[j] & 0x0F) | xh_0;
        const int x1 = (x.qs[j] >> 4) | xh_1;
        y[j] = float(x0) * d + m;
        y[j + 16] = float(x1) * d + m;
    }
}
// ggml's get_scale_min_k4.
void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = uint8_t((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}
void ggml_q5_k(const BlockQ5K& x, float* y) {
    const uint8_t* ql = x.qs;
    const uint8_t* qh = x.qh;
    const float d = h2f(x.d), min = h2f(x.dmin);
    int is = 0;
    uint8_t sc, m;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < 256; j += 64) {
        get_scale_min_k4(is + 0, x.scales, &sc, &m);
        const float d1 = d * float(sc), m1 = min * float(m);
        get_scale_min_k4(is + 1, x.scales, &sc, &m);
        const float d2 = d * float(sc), m2 = min * float(m);
        for (int l = 0; l < 32; ++l) *y++ = d1 * float((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * float((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        ql += 32;
        is += 2;
        u1 = uint8_t(u1 << 2);
        u2 = uint8_t(u2 << 2);
    }
}
void ggml_q3_k(const BlockQ3K& x, float* y) {
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    uint32_t aux[4];
    std::memcpy(aux, x.scales, 12);
    const uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    int8_t scales[16];
    std::memcpy(scales, aux, 16);
    const float d_all = h2f(x.d);
    const uint8_t* q = x.qs;
    const uint8_t* hm = x.hmask;
    uint8_t m = 1;
    int is = 0;
    for (int n = 0; n < 256; n += 128) {
        int shift = 0;
        for (int j = 0; j < 4; ++j) {
            float dl = d_all * float(scales[is++] - 32);
            for (int l = 0; l < 16; ++l)
                *y++ = dl * float(int8_t((q[l + 0] >> shift) & 3) - ((hm[l + 0] & m) ? 0 : 4));
            dl = d_all * float(scales[is++] - 32);
            for (int l = 0; l < 16; ++l)
                *y++ = dl * float(int8_t((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
            shift += 2;
            m = uint8_t(m << 1);
        }
        q += 32;
    }
}
void ggml_q2_k(const BlockQ2K& x, float* y) {
    const float d = h2f(x.d), min = h2f(x.dmin);
    const uint8_t* q = x.qs;
    int is = 0;
    for (int n = 0; n < 256; n += 128) {
        int shift = 0;
        for (int j = 0; j < 4; ++j) {
            uint8_t sc = x.scales[is++];
            float dl = d * float(sc & 0xF), ml = min * float(sc >> 4);
            for (int l = 0; l < 16; ++l) *y++ = dl * float(int8_t((q[l] >> shift) & 3)) - ml;
            sc = x.scales[is++];
            dl = d * float(sc & 0xF);
            ml = min * float(sc >> 4);
            for (int l = 0; l < 16; ++l) *y++ = dl * float(int8_t((q[l + 16] >> shift) & 3)) - ml;
            shift += 2;
        }
        q += 32;
    }
}

constexpr WeightFormat kFormats[] = {WeightFormat::q5_0, WeightFormat::q5_1, WeightFormat::q5k,
                                     WeightFormat::q3k, WeightFormat::q2k};

int block_cols(WeightFormat f) {
    return f == WeightFormat::q5_0 || f == WeightFormat::q5_1 ? 32 : 256;
}
size_t block_bytes(WeightFormat f) {
    switch (f) {
        case WeightFormat::q5_0:
            return sizeof(BlockQ5_0);
        case WeightFormat::q5_1:
            return sizeof(BlockQ5_1);
        case WeightFormat::q5k:
            return sizeof(BlockQ5K);
        case WeightFormat::q3k:
            return sizeof(BlockQ3K);
        default:
            return sizeof(BlockQ2K);
    }
}

// ggml's dequantization of one block of format f.
void ggml_dequantize(WeightFormat f, const uint8_t* b, float* y) {
    switch (f) {
        case WeightFormat::q5_0: {
            BlockQ5_0 x;
            std::memcpy(&x, b, sizeof x);
            ggml_q5_0(x, y);
            return;
        }
        case WeightFormat::q5_1: {
            BlockQ5_1 x;
            std::memcpy(&x, b, sizeof x);
            ggml_q5_1(x, y);
            return;
        }
        case WeightFormat::q5k: {
            BlockQ5K x;
            std::memcpy(&x, b, sizeof x);
            ggml_q5_k(x, y);
            return;
        }
        case WeightFormat::q3k: {
            BlockQ3K x;
            std::memcpy(&x, b, sizeof x);
            ggml_q3_k(x, y);
            return;
        }
        default: {
            BlockQ2K x;
            std::memcpy(&x, b, sizeof x);
            ggml_q2_k(x, y);
            return;
        }
    }
}

enum class Pattern { random, codes_min, codes_max, tiny_d, huge_d };

const char* pattern_name(Pattern p) {
    switch (p) {
        case Pattern::random:
            return "random";
        case Pattern::codes_min:
            return "codes_min";
        case Pattern::codes_max:
            return "codes_max";
        case Pattern::tiny_d:
            return "tiny_d";
        case Pattern::huge_d:
            return "huge_d";
    }
    return "?";
}

// Where a block keeps its fp16 parameters (d, and dmin or m).
std::vector<size_t> half_offsets(WeightFormat f) {
    switch (f) {
        case WeightFormat::q5_0:
            return {0};
        case WeightFormat::q5_1:
        case WeightFormat::q5k:
            return {0, 2};
        case WeightFormat::q3k:
            return {108};
        default:
            return {80, 82};
    }
}

// A test matrix: random blocks (codes and 6/4-bit scales as random bytes,
// or all codes 0 / all bits set), fp16 parameters of a chosen magnitude.
struct TestMatrix {
    PackedLayout layout;
    std::vector<uint8_t> blob;
    MatrixView view() const { return MatrixView{layout, blob.data()}; }
};

TestMatrix make_matrix(WeightFormat f, int64_t rows, int64_t cols, Pattern p, std::mt19937& rng) {
    TestMatrix m;
    m.layout = make_layout(f, rows, cols, block_cols(f));
    m.blob.assign(m.layout.total_bytes, 0);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> u(0.2f, 1.0f);
    const float mag = p == Pattern::tiny_d ? 1e-7f : p == Pattern::huge_d ? 30.0f : 1e-3f;
    const size_t bb = block_bytes(f);
    const size_t n_blocks = size_t(rows * cols / block_cols(f));
    for (size_t i = 0; i < n_blocks; ++i) {
        uint8_t* b = m.blob.data() + i * bb;
        for (size_t k = 0; k < bb; ++k)
            b[k] = uint8_t(p == Pattern::codes_min   ? 0
                           : p == Pattern::codes_max ? 0xff
                                                     : byte(rng));
        for (size_t o : half_offsets(f)) {
            const uint16_t h = fp32_to_fp16(mag * u(rng) * (byte(rng) % 2 == 0 ? 1.0f : -1.0f));
            std::memcpy(b + o, &h, 2);
        }
    }
    return m;
}

std::vector<float> random_activations(int n_tokens, int64_t cols, std::mt19937& rng) {
    std::normal_distribution<float> n(0.0f, 1.0f);
    std::vector<float> x(size_t(n_tokens) * size_t(cols));
    for (float& v : x) v = n(rng);
    for (int t = 0; t < n_tokens; ++t) {  // an outlier and an all-zero block per token
        float* xt = x.data() + size_t(t) * size_t(cols);
        xt[(7 * t + 3) % cols] = 40.0f;
        for (int64_t c = 32; c < std::min<int64_t>(64, cols); ++c) xt[c] = 0.0f;
    }
    return x;
}

// Error allowed for an output: the int8 path replaces x_c by d_b q_c
// (|x_c - d_b q_c| <= d_b / 2, d_b = amax / 127 of its block of 32), adding
// at most |w_c| d_b / 2; the kernels compute s * sum(u x) - m * sum(x): FP32
// rounding a few 1e-7 of sum_c (|w_c| + mag_c) |x_c| with mag_c >= |s| u + |m|,
// which is at most 3 times the largest |w| of the block (w spans -m .. 31 s - m,
// or s (u - 4) for q3k), taken here as 4 times.
double error_bound(const std::vector<float>& w, const float* xt, int64_t cols, int bc, bool int8) {
    double bound = 1e-30;
    for (int64_t c0 = 0; c0 < cols; c0 += 32) {
        double amax = 0.0;
        for (int64_t c = c0; c < c0 + 32; ++c) amax = std::max(amax, double(std::fabs(xt[c])));
        const double dx = amax / 127.0;
        const int64_t b0 = c0 / bc * bc;
        double wmax = 0.0;
        for (int64_t c = b0; c < b0 + bc; ++c)
            wmax = std::max(wmax, double(std::fabs(w[size_t(c)])));
        for (int64_t c = c0; c < c0 + 32; ++c) {
            const double aw = std::fabs(double(w[size_t(c)]));
            bound += 3e-5 * (aw + 4.0 * wmax) * (std::fabs(double(xt[c])) + dx);
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
            const double bound = error_bound(w, x.data() + size_t(t) * size_t(l.cols), l.cols,
                                             l.group_size, mode == ActivationMode::int8);
            const double err = std::fabs(double(y[i]) - double(y_ref[i]));
            if (!(err <= bound)) {
                ++bad;
                INFO(std::string(format_name(l.format)), " ", std::string(matmul_kernel_name(k)),
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
            INFO(std::string(format_name(l.format)), " ", std::string(matmul_kernel_name(k)),
                 " token ", t, " of ", n_tokens);
            CHECK(std::memcmp(y1.data(), y.data() + size_t(t) * size_t(l.rows),
                              y1.size() * sizeof(float)) == 0);
        }
    }
}

}  // namespace

TEST_CASE("ggml block formats: ggml's block sizes, whole blocks only, named") {
    const std::pair<WeightFormat, double> bpw[] = {{WeightFormat::q5_0, 5.5},
                                                   {WeightFormat::q5_1, 6.0},
                                                   {WeightFormat::q5k, 5.5},
                                                   {WeightFormat::q3k, 3.4375},
                                                   {WeightFormat::q2k, 2.625}};
    for (const auto& format_bits : bpw) {
        const WeightFormat f = format_bits.first;
        const double bits = format_bits.second;
        CAPTURE(format_name(f));
        const int bc = block_cols(f);
        const PackedLayout l = make_layout(f, 4096, 11008 / 256 * 256, bc);
        CHECK(l.codes_bytes == size_t(4096) * size_t(11008 / 256 * 256 / bc) * block_bytes(f));
        CHECK(l.total_bytes <= l.codes_bytes + 64);
        CHECK(std::fabs(l.bits_per_weight() - bits) < 1e-4);
        CHECK_THROWS_AS(make_layout(f, 4, bc * 3 + 16, bc), std::invalid_argument);
        CHECK_THROWS_AS(make_layout(f, 4, 1024, bc == 32 ? 256 : 32), std::invalid_argument);
        CHECK(parse_format(format_name(f)) == f);
        // nibble does not write them: they come from GGUF files as they are.
        std::vector<float> src(size_t(4 * bc), 0.5f);
        std::vector<uint8_t> dst(make_layout(f, 4, bc, bc).total_bytes);
        CHECK_THROWS_AS(quantize_matrix(src.data(), make_layout(f, 4, bc, bc), dst.data()),
                        std::runtime_error);
    }
}

TEST_CASE("ggml block formats dequantize as ggml's dequantize_row_*, bit for bit") {
    std::mt19937 rng(55);
    for (WeightFormat f : kFormats) {
        for (Pattern p : {Pattern::random, Pattern::codes_min, Pattern::codes_max, Pattern::tiny_d,
                          Pattern::huge_d}) {
            const int64_t cols = 768;
            const TestMatrix m = make_matrix(f, 5, cols, p, rng);
            std::vector<float> ours(768), theirs(768);
            const int bc = block_cols(f);
            size_t mismatches = 0, nonzero = 0;
            for (int64_t r = 0; r < 5; ++r) {
                dequantize_row(m.view(), r, ours.data());
                for (int64_t i = 0; i < cols / bc; ++i) {
                    ggml_dequantize(f, m.blob.data() + size_t(r * cols / bc + i) * block_bytes(f),
                                    &theirs[size_t(bc * i)]);
                }
                for (size_t c = 0; c < ours.size(); ++c) {
                    // Bit for bit on purpose (-0.0 included).
                    // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison)
                    mismatches += std::memcmp(&ours[c], &theirs[c], 4) != 0;
                    nonzero += ours[c] != 0.0f;
                }
            }
            CAPTURE(format_name(f));
            CAPTURE(pattern_name(p));
            CHECK(mismatches == 0);
            if (p != Pattern::codes_min || f == WeightFormat::q5_0 || f == WeightFormat::q3k)
                CHECK(nonzero > 0);
        }
    }
}

TEST_CASE("ggml block formats: every fast kernel matches the reference") {
    SettingsGuard guard;
    std::mt19937 rng(505);
    const auto kernels = fast_kernels();
    REQUIRE(!kernels.empty());
    for (WeightFormat f : kFormats) {
        for (MatmulKernel k : kernels) {
            for (Pattern p : {Pattern::random, Pattern::codes_min, Pattern::codes_max,
                              Pattern::tiny_d, Pattern::huge_d}) {
                for (auto [rows, cols] :
                     {std::pair<int64_t, int64_t>{7, 256}, {33, 512}, {16, 1024}}) {
                    const TestMatrix m = make_matrix(f, rows, cols, p, rng);
                    for (int n_tokens : {1, 2, 4, 5, 21}) {
                        for (ActivationMode mode : {ActivationMode::int8, ActivationMode::fp32}) {
                            check_against_reference(m, k, mode, n_tokens, p, rng);
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
TEST_CASE("ggml block formats: NEON with and without SDOT give bitwise identical results" *
          nibble::test::skip_unless(matmul_kernel_supported(MatmulKernel::neon),
                                    "this CPU has no NEON")) {
    SettingsGuard guard;
    std::mt19937 rng(77);
    set_matmul_activation_mode(ActivationMode::int8);
    for (WeightFormat f : kFormats) {
        for (Pattern p : {Pattern::random, Pattern::codes_max, Pattern::huge_d}) {
            const TestMatrix m = make_matrix(f, 13, 512, p, rng);
            for (int n_tokens : {1, 6}) {
                const std::vector<float> x = random_activations(n_tokens, 512, rng);
                std::vector<float> dot(size_t(13 * n_tokens)), nodot(dot.size());
                set_matmul_kernel(MatmulKernel::neon);
                matmul(m.view(), x.data(), n_tokens, dot.data());
                set_matmul_kernel(MatmulKernel::neon_nodot);
                matmul(m.view(), x.data(), n_tokens, nodot.data());
                INFO(std::string(format_name(f)), " ", std::string(pattern_name(p)), " tokens ",
                     n_tokens);
                CHECK(std::memcmp(dot.data(), nodot.data(), dot.size() * sizeof(float)) == 0);
            }
        }
    }
}

#ifdef _OPENMP
TEST_CASE("ggml block formats: 1 and 2 threads give bitwise identical results") {
    SettingsGuard guard;
    std::mt19937 rng(9);
    const int saved = omp_get_max_threads();
    for (WeightFormat f : kFormats) {
        const TestMatrix m = make_matrix(f, 301, 1024, Pattern::random, rng);
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
                    INFO(std::string(format_name(f)), " ", std::string(matmul_kernel_name(k)),
                         " tokens ", n_tokens);
                    CHECK(std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float)) == 0);
                }
            }
        }
    }
    omp_set_num_threads(saved);
}
#endif

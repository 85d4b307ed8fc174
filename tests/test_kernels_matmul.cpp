// Fast matmul kernels (every variant this CPU runs) against reference::matmul:
// all grouped formats x group sizes x double quantization x token counts x odd
// shapes, random and adversarial data, with error bounds derived from the int8
// activation rounding; GEMM == repeated GEMV bitwise; 1 vs 2 threads bitwise.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernel_test_settings.h"
#include "kernels/codebooks.h"
#include "kernels/cpu_features.h"
#include "kernels/fp16.h"
#include "kernels/group_params.h"
#include "kernels/kquant_params.h"
#include "kernels/matmul.h"
#include "kernels/matmul_dispatch.h"
#include "kernels/matmul_variants.h"
#include "test_skip.h"

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace nibble;
using nibble::test::fast_kernels;
using nibble::test::SettingsGuard;

namespace {

// How the test blob's codes and parameters are chosen.
enum class Pattern {
    random,
    codes_min,    // every code 0 (q8: -127)
    codes_max,    // every code 15 (q8: 127)
    zero_groups,  // every third group has scale (and min) 0
    tiny_scales,  // |scale| ~ 1e-6 (fp16 subnormals)
    huge_scales,  // |scale| ~ 1e4
};

const char* pattern_name(Pattern p) {
    switch (p) {
        case Pattern::random:
            return "random";
        case Pattern::codes_min:
            return "codes_min";
        case Pattern::codes_max:
            return "codes_max";
        case Pattern::zero_groups:
            return "zero_groups";
        case Pattern::tiny_scales:
            return "tiny_scales";
        case Pattern::huge_scales:
            return "huge_scales";
    }
    return "?";
}

struct TestMatrix {
    PackedLayout layout;
    std::vector<uint8_t> blob;
    MatrixView view() const { return MatrixView{layout, blob.data()}; }
};

// Typical magnitude of a group parameter under a pattern.
float param_magnitude(Pattern p) {
    if (p == Pattern::tiny_scales) return 1e-6f;
    if (p == Pattern::huge_scales) return 1e4f;
    return 0.05f;
}

// Writes one stream of per-group parameters (fp16, or int8 codes + fp32 offset
// and block scales when double-quantized), following kernels/formats.h.
void fill_stream(TestMatrix& m, int stream, Pattern p, std::mt19937& rng) {
    const PackedLayout& l = m.layout;
    const size_t offset = stream == 0 ? l.scales_offset : l.mins_offset;
    const float mag = param_magnitude(p);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    const int64_t n = l.n_groups();
    auto zeroed = [&](int64_t i) { return p == Pattern::zero_groups && i % 3 == 1; };
    if (!l.double_quant) {
        for (int64_t i = 0; i < n; ++i) {
            const float v =
                zeroed(i) ? 0.0f
                          : mag * (0.2f + 0.8f * std::fabs(u(rng))) * (u(rng) < 0 ? -1.0f : 1.0f);
            const uint16_t h = fp32_to_fp16(v);
            std::memcpy(m.blob.data() + offset + 2 * size_t(i), &h, 2);
        }
        return;
    }
    std::uniform_int_distribution<int> code(-127, 127);
    for (int64_t i = 0; i < n; ++i) {
        m.blob[offset + size_t(i)] = uint8_t(int8_t(zeroed(i) ? 0 : code(rng)));
    }
    const size_t stream_floats = 1 + size_t(l.dq_blocks());
    uint8_t* dq = m.blob.data() + l.dq_offset + size_t(stream) * stream_floats * 4;
    const float mean = p == Pattern::zero_groups ? 0.0f : mag * 0.3f * u(rng);
    std::memcpy(dq, &mean, 4);
    for (int64_t b = 0; b < l.dq_blocks(); ++b) {
        const float s = mag / 127.0f * (0.5f + 0.5f * std::fabs(u(rng)));
        std::memcpy(dq + 4 * (1 + size_t(b)), &s, 4);
    }
}

// q4k's parameters (kernels/kquant_params.h): per 256 columns fp16 d and dmin
// of the pattern's magnitude / 32 and random 6-bit scale and minimum codes
// (zero_groups: every third group's codes 0).
void fill_kquant(TestMatrix& m, Pattern p, std::mt19937& rng) {
    const PackedLayout& l = m.layout;
    std::uniform_real_distribution<float> u(0.2f, 1.0f);
    std::uniform_int_distribution<int> code(0, 63);
    const float mag = param_magnitude(p) / 32.0f;
    for (int64_t b = 0; b < l.n_groups() / 8; ++b) {
        uint8_t* sb = m.blob.data() + l.scales_offset + 16 * size_t(b);
        const uint16_t d = fp32_to_fp16(mag * u(rng)), dmin = fp32_to_fp16(mag * u(rng));
        std::memcpy(sb, &d, 2);
        std::memcpy(sb + 2, &dmin, 2);
        int sc[8], mc[8];
        for (int j = 0; j < 8; ++j) {
            const bool zero = p == Pattern::zero_groups && (8 * b + j) % 3 == 1;
            sc[j] = zero ? 0 : code(rng);
            mc[j] = zero ? 0 : code(rng);
        }
        kquant_pack(sc, mc, sb + 4);
    }
}

TestMatrix make_matrix(WeightFormat f, int64_t rows, int64_t cols, int group, bool dq, Pattern p,
                       std::mt19937& rng) {
    TestMatrix m;
    m.layout = make_layout(f, rows, cols, group, dq);
    m.blob.assign(m.layout.total_bytes, 0);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    if (f == WeightFormat::f32 || f == WeightFormat::f16) {
        for (int64_t i = 0; i < rows * cols; ++i) {
            const float v = u(rng);
            if (f == WeightFormat::f32) {
                std::memcpy(m.blob.data() + 4 * i, &v, 4);
            } else {
                const uint16_t h = fp32_to_fp16(v);
                std::memcpy(m.blob.data() + 2 * i, &h, 2);
            }
        }
        return m;
    }
    // Codes, padding columns included: the kernels must ignore whatever is there.
    uint8_t fill = 0;
    if (p == Pattern::codes_min) fill = f == WeightFormat::q8 ? uint8_t(int8_t(-127)) : 0x00;
    if (p == Pattern::codes_max) fill = f == WeightFormat::q8 ? 127 : 0xff;
    for (size_t i = 0; i < m.layout.codes_bytes; ++i) {
        uint8_t v = uint8_t(byte(rng));
        if (f == WeightFormat::q8 && v == 0x80) v = 0x81;  // -128 is not a q8 code
        if (p == Pattern::codes_min || p == Pattern::codes_max) v = fill;
        m.blob[m.layout.codes_offset + i] = v;
    }
    if (f == WeightFormat::q4k) {
        fill_kquant(m, p, rng);
        return m;
    }
    fill_stream(m, 0, p, rng);
    if (f == WeightFormat::q4a) fill_stream(m, 1, p, rng);
    return m;
}

std::vector<float> random_activations(int n_tokens, int64_t cols, std::mt19937& rng) {
    std::normal_distribution<float> n(0.0f, 1.0f);
    std::vector<float> x(size_t(n_tokens) * size_t(cols));
    for (float& v : x) v = n(rng);
    // An outlier and an all-zero block per token, as real activations have.
    for (int t = 0; t < n_tokens; ++t) {
        float* xt = x.data() + size_t(t) * size_t(cols);
        xt[(7 * t + 3) % cols] = 40.0f;
        for (int64_t c = 32; c < std::min<int64_t>(cols, 64); ++c) xt[c] = 0.0f;
    }
    return x;
}

// Error allowed for output (t, r) of a fast kernel.
//  int8 path: x_c is replaced by d_b q_c with |x_c - d_b q_c| <= d_b/2, d_b = amax/127
//    of its block of 32, so |err| <= sum_c |w_c| d_b/2; nf4 also rounds its code book
//    to k/127, |w_c - w'_c| <= |d|/254, adding sum_c |d| (|x_c| + d_b/2) / 254.
//  Both paths: FP32 rounding, a few 1e-7 relative to sum_c M_c |x_c| with M_c the
//    largest magnitude in the weight's decomposition (q4: 8|d| offset, q4a: 15|d|+|m|).
double error_bound(const MatrixView& w, const float* xt, int64_t row, bool int8_path) {
    const PackedLayout& l = w.layout;
    std::vector<float> wr(size_t(l.cols));
    dequantize_row(w, row, wr.data());
    double bound = 1e-30;
    for (int64_t c0 = 0; c0 < l.cols; c0 += 32) {
        const int64_t c1 = std::min(l.cols, c0 + 32);
        double amax = 0.0;
        for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, double(std::fabs(xt[c])));
        const double dx = amax / 127.0;
        for (int64_t c = c0; c < c1; ++c) {
            double d = 0.0, m = 0.0;
            if (is_grouped(l.format)) {
                // |d| and |m| recovered from the dequantized values is not possible in
                // general, so read them from the blob through the reference decoder.
                const int64_t gi = row * l.groups_per_row + c / l.group_size;
                d = std::fabs(double(group_param(w, GroupStream::scales, gi)));
                if (has_mins(l.format))
                    m = std::fabs(double(group_param(w, GroupStream::mins, gi)));
            }
            const double aw = std::fabs(double(wr[size_t(c)]));
            const double ax = std::fabs(double(xt[c]));
            double mag = aw + d;
            if (l.format == WeightFormat::q4) mag += 8.0 * d;
            if (has_mins(l.format)) mag += 15.0 * d + m;
            if (l.format == WeightFormat::q8 || l.format == WeightFormat::iq4nl) mag += 127.0 * d;
            bound += 3e-5 * mag * (ax + dx);
            if (int8_path) {
                double wq = aw;
                if (l.format == WeightFormat::nf4) {
                    wq += d / 254.0;
                    bound += d / 254.0 * (ax + dx / 2);
                }
                bound += wq * dx / 2;
            }
        }
    }
    return bound;
}

// The activations the int8 path really multiplies: each block of 32 rounded to
// d_b * round(x * 127 / amax_b) as kernels/activation_quant.h specifies.
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

// Tight bound against the reference fed with int8_rounded activations x': only
// FP32 rounding (and, for nf4, the int8 code book: |d|/254 per weight).
double rounded_bound(const MatrixView& w, const float* xt, int64_t row) {
    const PackedLayout& l = w.layout;
    std::vector<float> wr(size_t(l.cols));
    dequantize_row(w, row, wr.data());
    double bound = 1e-30;
    for (int64_t c = 0; c < l.cols; ++c) {
        const int64_t gi = row * l.groups_per_row + c / l.group_size;
        const double d = std::fabs(double(group_param(w, GroupStream::scales, gi)));
        double mag = std::fabs(double(wr[size_t(c)])) + d;
        if (l.format == WeightFormat::q4) mag += 8.0 * d;
        if (has_mins(l.format))
            mag += 15.0 * d + std::fabs(double(group_param(w, GroupStream::mins, gi)));
        if (l.format == WeightFormat::q8 || l.format == WeightFormat::iq4nl) mag += 127.0 * d;
        const double ax = std::fabs(double(xt[c]));
        bound += 3e-6 * mag * ax;
        if (l.format == WeightFormat::nf4) bound += d / 254.0 * ax;
    }
    return bound;
}

struct Shape {
    int64_t rows, cols;
};

constexpr WeightFormat kGrouped[] = {WeightFormat::q4, WeightFormat::q4a, WeightFormat::nf4,
                                     WeightFormat::iq4nl, WeightFormat::q8};
constexpr int kGroupSizes[] = {32, 64, 128, 256};
constexpr int kTokenCounts[] = {1, 2, 3, 5, 8, 21};
constexpr Shape kShapes[] = {{7, 172}, {33, 200}, {16, 320}};

std::string describe(MatmulKernel k, ActivationMode mode, const PackedLayout& l, int n_tokens,
                     Pattern p) {
    return std::string(matmul_kernel_name(k)) +
           (mode == ActivationMode::int8 ? " int8 " : " fp32 ") + format_name(l.format) + " g" +
           std::to_string(l.group_size) + (l.double_quant ? " dq " : " ") + std::to_string(l.rows) +
           "x" + std::to_string(l.cols) + " tokens " + std::to_string(n_tokens) + " " +
           pattern_name(p);
}

// Runs the selected kernel on m and checks every output against the reference;
// also checks GEMM against token-by-token GEMV, bitwise.
void check_against_reference(const TestMatrix& m, MatmulKernel k, ActivationMode mode, int n_tokens,
                             Pattern p, std::mt19937& rng) {
    const MatrixView w = m.view();
    const PackedLayout& l = m.layout;
    const std::vector<float> x = random_activations(n_tokens, l.cols, rng);
    std::vector<float> y_ref(size_t(n_tokens) * size_t(l.rows));
    std::vector<float> y(y_ref.size(), -1.0f);
    reference::matmul(w, x.data(), n_tokens, y_ref.data());
    set_matmul_kernel(k);
    set_matmul_activation_mode(mode);
    matmul(w, x.data(), n_tokens, y.data());
    const bool int8_path = mode == ActivationMode::int8 && is_grouped(l.format);
    int bad = 0;
    for (int t = 0; t < n_tokens && bad < 3; ++t) {
        const float* xt = x.data() + size_t(t) * size_t(l.cols);
        for (int64_t r = 0; r < l.rows && bad < 3; ++r) {
            const size_t i = size_t(t) * size_t(l.rows) + size_t(r);
            const double bound = error_bound(w, xt, r, int8_path);
            const double err = std::fabs(double(y[i]) - double(y_ref[i]));
            if (!(err <= bound)) {
                ++bad;
                INFO(describe(k, mode, l, n_tokens, p), " token ", t, " row ", r, " got ", y[i],
                     " want ", y_ref[i], " bound ", bound);
                CHECK(err <= bound);
            }
        }
    }
    if (int8_path) {
        // Same products on the rounded activations: only FP32 rounding may differ.
        const std::vector<float> xr = int8_rounded(x, n_tokens, l.cols);
        reference::matmul(w, xr.data(), n_tokens, y_ref.data());
        for (int t = 0; t < n_tokens && bad < 3; ++t) {
            const float* xt = xr.data() + size_t(t) * size_t(l.cols);
            for (int64_t r = 0; r < l.rows && bad < 3; ++r) {
                const size_t i = size_t(t) * size_t(l.rows) + size_t(r);
                const double bound = rounded_bound(w, xt, r);
                const double err = std::fabs(double(y[i]) - double(y_ref[i]));
                if (!(err <= bound)) {
                    ++bad;
                    INFO(describe(k, mode, l, n_tokens, p), " (int8-rounded x) token ", t, " row ",
                         r, " got ", y[i], " want ", y_ref[i], " bound ", bound);
                    CHECK(err <= bound);
                }
            }
        }
    }
    if (n_tokens > 1) {
        std::vector<float> y1(size_t(l.rows));
        for (int t = 0; t < n_tokens; ++t) {
            matmul(w, x.data() + size_t(t) * size_t(l.cols), 1, y1.data());
            INFO(describe(k, mode, l, n_tokens, p), " token ", t);
            CHECK(std::memcmp(y1.data(), y.data() + size_t(t) * size_t(l.rows),
                              y1.size() * sizeof(float)) == 0);
        }
    }
}

}  // namespace

TEST_CASE("int8 NF4 code book is round(127 * NF4)") {
    for (int q = 0; q < 16; ++q) {
        CHECK(int(kernels::kNf4Int8[q]) == int(std::lround(127.0f * kNf4Codebook[q])));
    }
}

TEST_CASE("int8 IQ4_NL code book is llama.cpp's integer table, the float one exactly") {
    const int kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                   1,    13,   25,  38,  53,  69,  89,  113};
    for (int q = 0; q < 16; ++q) {
        CHECK(int(kernels::kIq4nlInt8[q]) == kvalues_iq4nl[q]);
        CHECK(kIq4nlCodebook[q] == float(kvalues_iq4nl[q]));
    }
    CHECK(kernels::kCodeBookInt8Scale<WeightFormat::iq4nl> == 1.0f);
}

TEST_CASE("every fast kernel matches the reference on random data") {
    SettingsGuard guard;
    std::mt19937 rng(1234);
    const auto kernels = fast_kernels();
    REQUIRE(!kernels.empty());
    for (MatmulKernel k : kernels) {
        for (WeightFormat f : kGrouped) {
            for (int g : kGroupSizes) {
                for (bool dq : {false, true}) {
                    for (const Shape& s : kShapes) {
                        const TestMatrix m =
                            make_matrix(f, s.rows, s.cols, g, dq, Pattern::random, rng);
                        for (int n_tokens : kTokenCounts) {
                            for (ActivationMode mode :
                                 {ActivationMode::int8, ActivationMode::fp32}) {
                                check_against_reference(m, k, mode, n_tokens, Pattern::random, rng);
                            }
                        }
                    }
                }
            }
        }
    }
}

TEST_CASE("every fast kernel matches the reference on adversarial data") {
    SettingsGuard guard;
    std::mt19937 rng(99);
    const Pattern patterns[] = {Pattern::codes_min, Pattern::codes_max, Pattern::zero_groups,
                                Pattern::tiny_scales, Pattern::huge_scales};
    for (MatmulKernel k : fast_kernels()) {
        for (WeightFormat f : kGrouped) {
            for (int g : kGroupSizes) {
                for (bool dq : {false, true}) {
                    for (Pattern p : patterns) {
                        // 200 columns: a short tail group for every group size.
                        const TestMatrix m = make_matrix(f, 9, 200, g, dq, p, rng);
                        for (ActivationMode mode : {ActivationMode::int8, ActivationMode::fp32}) {
                            check_against_reference(m, k, mode, 3, p, rng);
                            check_against_reference(m, k, mode, 1, p, rng);
                        }
                    }
                }
            }
        }
    }
}

// Double-quantized parameters have one block scale per 256 groups counted over
// the whole matrix, so a block can end inside a row: 45 x 200 at g32 (7 groups
// per row, the first boundary at row 36 group 4) and 12 x 2976 (93 groups per
// row: boundaries at group 70 of row 2, 47 of row 5, ...; rows not a multiple
// of the SIMD decoders' 8 or 16 groups). Every fast kernel, GEMV and GEMM
// (and, from 16 tokens, the AMX tiles where the CPU has them).
TEST_CASE("double-quantized parameters: block scales that change inside a row") {
    SettingsGuard guard;
    std::mt19937 rng(256);
    for (MatmulKernel k : fast_kernels()) {
        for (WeightFormat f : {WeightFormat::q4, WeightFormat::q4a, WeightFormat::nf4}) {
            for (const Shape& s : {Shape{45, 200}, Shape{12, 2976}}) {
                const TestMatrix m = make_matrix(f, s.rows, s.cols, 32, true, Pattern::random, rng);
                for (int n_tokens : {1, 3, 16}) {
                    check_against_reference(m, k, ActivationMode::int8, n_tokens, Pattern::random,
                                            rng);
                }
                check_against_reference(m, k, ActivationMode::fp32, 1, Pattern::random, rng);
            }
        }
    }
}

// q4k (q4a's codes, K-coded parameters decoded per row): random and adversarial
// data, shapes of 1-4 super-blocks per row, both activation paths.
TEST_CASE("q4k: every fast kernel matches the reference") {
    SettingsGuard guard;
    std::mt19937 rng(4242);
    const Pattern patterns[] = {Pattern::random,      Pattern::codes_min,   Pattern::codes_max,
                                Pattern::zero_groups, Pattern::tiny_scales, Pattern::huge_scales};
    for (MatmulKernel k : fast_kernels()) {
        for (Pattern p : patterns) {
            for (Shape s : {Shape{7, 256}, Shape{33, 512}, Shape{16, 1024}}) {
                const TestMatrix m =
                    make_matrix(WeightFormat::q4k, s.rows, s.cols, 32, true, p, rng);
                for (int n_tokens : kTokenCounts) {
                    for (ActivationMode mode : {ActivationMode::int8, ActivationMode::fp32}) {
                        check_against_reference(m, k, mode, n_tokens, p, rng);
                    }
                }
            }
        }
    }
}

TEST_CASE("q4k parameters decode as Q4_K's (ggml get_scale_min_k4) and pack back") {
    std::mt19937 rng(3);
    std::uniform_int_distribution<int> byte(0, 255);
    for (int trial = 0; trial < 200; ++trial) {
        uint8_t packed[12];
        for (uint8_t& b : packed) b = uint8_t(byte(rng));
        int sc[8], mc[8];
        for (int j = 0; j < 8; ++j) {
            kquant_codes(packed, j, sc[j], mc[j]);
            // ggml-quants.c get_scale_min_k4, written out
            const int want_sc =
                j < 4 ? packed[j] & 63 : (packed[j + 4] & 0xF) | ((packed[j - 4] >> 6) << 4);
            const int want_m =
                j < 4 ? packed[j + 4] & 63 : (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
            CHECK(sc[j] == want_sc);
            CHECK(mc[j] == want_m);
        }
        uint8_t again[12];
        kquant_pack(sc, mc, again);
        CHECK(std::memcmp(again, packed, 12) == 0);  // every bit of the 12 bytes is used
    }
    // kquant_row (a whole row, d and dmin converted once per super-block, the
    // codes by word operations) gives kquant_group's values exactly, for random
    // bytes in d and dmin too (subnormal, negative, inf and nan halves).
    std::vector<uint8_t> row(16 * 64);
    for (uint8_t& b : row) b = uint8_t(byte(rng));
    std::vector<float> scales(8 * 64), mins(8 * 64), only(8 * 64);
    kquant_row(row.data(), 64, scales.data(), mins.data());
    kquant_row(row.data(), 64, nullptr, only.data());
    for (int64_t g = 0; g < 8 * 64; ++g) {
        float scale, min;
        kquant_group(row.data() + 16 * (g / 8), int(g % 8), scale, min);
        // Bit patterns, so that NaNs compare too.
        CHECK(std::bit_cast<uint32_t>(scales[size_t(g)]) == std::bit_cast<uint32_t>(scale));
        CHECK(std::bit_cast<uint32_t>(mins[size_t(g)]) == std::bit_cast<uint32_t>(min));
        CHECK(std::bit_cast<uint32_t>(only[size_t(g)]) == std::bit_cast<uint32_t>(min));
    }
}

TEST_CASE("f32 and f16 weights: every fast kernel matches the reference") {
    SettingsGuard guard;
    std::mt19937 rng(7);
    for (MatmulKernel k : fast_kernels()) {
        for (WeightFormat f : {WeightFormat::f32, WeightFormat::f16}) {
            for (Shape s : {Shape{7, 172}, Shape{33, 200}, Shape{5, 31}}) {
                const TestMatrix m = make_matrix(f, s.rows, s.cols, 0, false, Pattern::random, rng);
                for (int n_tokens : kTokenCounts) {
                    check_against_reference(m, k, ActivationMode::int8, n_tokens, Pattern::random,
                                            rng);
                }
            }
        }
    }
}

#if defined(__x86_64__)
// The AVX-512 kernel hands products of >= kAmxMinTokens tokens to the AMX tile
// kernel, whose results must equal its own GEMV bit for bit: several panels
// of 16 rows with a partial one, token tiles of 16 with a partial one, and
// partial block quads, in every grouped format, group size and scale coding.
TEST_CASE("AMX tiles: GEMM equals the AVX-512 GEMV bitwise" *
          nibble::test::skip_unless(kernels::amx_usable() && cpu_features().avx512,
                                    "CPU lacks AMX-INT8 (or NIBBLE_AMX=0)")) {
    SettingsGuard guard;
    std::mt19937 rng(77);
    const TestMatrix q4k = make_matrix(WeightFormat::q4k, 53, 1024, 32, true, Pattern::random, rng);
    for (int n_tokens : {kernels::kAmxMinTokens, 40}) {
        check_against_reference(q4k, MatmulKernel::avx512, ActivationMode::int8, n_tokens,
                                Pattern::random, rng);
    }
    // Fewer blocks than the four passes, and passes of unequal length.
    for (int64_t cols : {32, 96, 160, 224}) {
        const TestMatrix m =
            make_matrix(WeightFormat::q4, 37, cols, 32, false, Pattern::random, rng);
        check_against_reference(m, MatmulKernel::avx512, ActivationMode::int8, 40, Pattern::random,
                                rng);
    }
    for (WeightFormat f : kGrouped) {
        for (int g : kGroupSizes) {
            for (bool dq : {false, true}) {
                const TestMatrix m = make_matrix(f, 53, 1000, g, dq, Pattern::random, rng);
                for (int n_tokens : {kernels::kAmxMinTokens, 40}) {
                    check_against_reference(m, MatmulKernel::avx512, ActivationMode::int8, n_tokens,
                                            Pattern::random, rng);
                }
            }
        }
    }
}
#endif

#ifdef _OPENMP
TEST_CASE("1 and 2 threads give bitwise identical results") {
    SettingsGuard guard;
    std::mt19937 rng(5);
    const int saved = omp_get_max_threads();
    for (MatmulKernel k : fast_kernels()) {
        for (WeightFormat f :
             {WeightFormat::q4, WeightFormat::q4a, WeightFormat::nf4, WeightFormat::iq4nl,
              WeightFormat::q4k, WeightFormat::q8, WeightFormat::f16}) {
            const bool grouped = is_grouped(f);
            const bool q4k = f == WeightFormat::q4k;
            const int64_t cols = q4k ? 1024 : 1000;
            const TestMatrix m = make_matrix(f, 301, cols,
                                             q4k       ? 32
                                             : grouped ? 64
                                                       : 0,
                                             q4k, Pattern::random, rng);
            for (ActivationMode mode : {ActivationMode::int8, ActivationMode::fp32}) {
                for (int n_tokens : {1, 3, 40}) {  // 40 x 1000: parallel quantization
                    const std::vector<float> x = random_activations(n_tokens, cols, rng);
                    std::vector<float> y1(size_t(301 * n_tokens)), y2(y1.size());
                    set_matmul_kernel(k);
                    set_matmul_activation_mode(mode);
                    omp_set_num_threads(1);
                    matmul(m.view(), x.data(), n_tokens, y1.data());
                    omp_set_num_threads(2);
                    matmul(m.view(), x.data(), n_tokens, y2.data());
                    INFO(describe(k, mode, m.layout, n_tokens, Pattern::random));
                    CHECK(std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float)) == 0);
                }
            }
        }
    }
    omp_set_num_threads(saved);
}
#else
TEST_CASE("1 and 2 threads give bitwise identical results" *
          nibble::test::skip_unless(false, "built without OpenMP: single-threaded only")) {}
#endif

TEST_CASE("kernel selection") {
    SettingsGuard guard;
    CHECK(matmul_kernel_supported(MatmulKernel::scalar));
    CHECK(matmul_kernel_supported(MatmulKernel::reference));
    for (MatmulKernel k : {MatmulKernel::scalar, MatmulKernel::avx2, MatmulKernel::avx_vnni,
                           MatmulKernel::avx512, MatmulKernel::neon, MatmulKernel::neon_nodot}) {
        if (matmul_kernel_supported(k)) {
            set_matmul_kernel(k);
            CHECK(matmul_kernel() == k);
        } else {
            CHECK_THROWS_AS(set_matmul_kernel(k), std::runtime_error);
        }
    }
    set_matmul_kernel(MatmulKernel::automatic);
    CHECK(matmul_kernel() != MatmulKernel::automatic);
#if defined(__x86_64__)
    CHECK(!matmul_kernel_supported(MatmulKernel::neon));
#endif
#if defined(__aarch64__)
    CHECK(matmul_kernel_supported(MatmulKernel::neon));
    CHECK(!matmul_kernel_supported(MatmulKernel::avx2));
#endif
}

TEST_CASE("int8 activation path: relative RMS error per format") {
    // Measures how far the int8 path is from the exact product on random data
    // (and the extra error of nf4's int8 code book); the fp32 path must be exact
    // to float rounding.
    SettingsGuard guard;
    std::mt19937 rng(11);
    const int64_t rows = 64, cols = 1024;
    const int n_tokens = 4;
    for (MatmulKernel k : fast_kernels()) {
        for (WeightFormat f : kGrouped) {
            const TestMatrix m = make_matrix(f, rows, cols, 64, false, Pattern::random, rng);
            std::normal_distribution<float> nd(0.0f, 1.0f);
            std::vector<float> x(size_t(n_tokens * cols));
            for (float& v : x) v = nd(rng);
            std::vector<float> y_ref(size_t(n_tokens * rows)), y(y_ref.size());
            reference::matmul(m.view(), x.data(), n_tokens, y_ref.data());
            // Reference on the int8-rounded activations: what remains is FP32
            // rounding plus, for nf4, the int8 code book.
            const std::vector<float> xr = int8_rounded(x, n_tokens, cols);
            std::vector<float> y_ref_rounded(y_ref.size());
            reference::matmul(m.view(), xr.data(), n_tokens, y_ref_rounded.data());
            const auto rel_rms = [](const std::vector<float>& a, const std::vector<float>& b) {
                double num = 0.0, den = 0.0;
                for (size_t i = 0; i < a.size(); ++i) {
                    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
                    den += double(b[i]) * b[i];
                }
                return std::sqrt(num / den);
            };
            set_matmul_kernel(k);
            set_matmul_activation_mode(ActivationMode::int8);
            matmul(m.view(), x.data(), n_tokens, y.data());
            const double int8_total = rel_rms(y, y_ref);
            const double int8_weights = rel_rms(y, y_ref_rounded);
            set_matmul_activation_mode(ActivationMode::fp32);
            matmul(m.view(), x.data(), n_tokens, y.data());
            const double fp32_total = rel_rms(y, y_ref);
            MESSAGE(std::string(matmul_kernel_name(k)), " ", std::string(format_name(f)),
                    " g64 relative RMS error: int8 path ", int8_total,
                    " (with exact int8 activations ", int8_weights, "), fp32 path ", fp32_total);
            CHECK(int8_total < 1e-2);
            CHECK(int8_weights < (f == WeightFormat::nf4 ? 1e-2 : 1e-5));
            CHECK(fp32_total < 1e-5);
        }
    }
}

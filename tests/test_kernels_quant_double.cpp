// Double quantization: blob sizes predicted from the layout arithmetic, and the
// bound on how much it changes the dequantized weights.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "tests/quant_test_util.h"

using namespace nibble;
using namespace quant_test;

namespace {

const WeightFormat kGrouped[] = {WeightFormat::q8, WeightFormat::q4, WeightFormat::q4a,
                                 WeightFormat::nf4};
const int kGroups[] = {32, 64, 128, 256};

size_t align64(size_t n) {
    return (n + 63) / 64 * 64;
}

// Blob size computed independently of make_layout: codes, one fp16 (or one int8
// with double quantization) per group and stream, and with double quantization
// per stream one fp32 offset plus one fp32 block scale per 256 groups; every
// section padded to 64 bytes.
size_t predicted_bytes(WeightFormat f, int64_t rows, int64_t cols, int g, bool dq) {
    const int64_t groups_per_row = (cols + g - 1) / g;
    const size_t groups = size_t(rows * groups_per_row);
    const size_t blocks = (groups + 255) / 256;
    const size_t streams = f == WeightFormat::q4a ? 2 : 1;
    const size_t padded = size_t(groups_per_row * g);
    const size_t codes = f == WeightFormat::q8 ? size_t(rows) * padded : size_t(rows) * padded / 2;
    size_t total = align64(codes) + streams * align64(groups * (dq ? 1 : 2));
    if (dq) total += align64(streams * (1 + blocks) * 4);
    return total;
}

// Largest |code value| a weight can take: |w| = |d * value| (+ m for q4a).
float max_code_value(WeightFormat f) {
    switch (f) {
        case WeightFormat::q8:
            return 127.0f;
        case WeightFormat::q4:
            return 8.0f;
        case WeightFormat::q4a:
            return 15.0f;
        default:
            return 1.0f;  // nf4
    }
}

float read_f32(const uint8_t* p) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
}

// Block scale of group gi's block in stream s (0 scales, 1 mins) of a DQ blob.
float block_scale(const MatrixView& v, int stream, int64_t gi) {
    const PackedLayout& l = v.layout;
    const size_t stream_bytes = (1 + size_t(l.dq_blocks())) * 4;
    return read_f32(v.data + l.dq_offset + size_t(stream) * stream_bytes +
                    4 * (1 + size_t(gi / kDoubleQuantBlock)));
}

}  // namespace

TEST_CASE("double quantization saves exactly the predicted bytes") {
    const int64_t shapes[][2] = {{300, 1000},   {7, 33},      {1, 1},    {4096, 4096},
                                 {11008, 4096}, {32000, 288}, {257, 256}};
    for (const auto& s : shapes) {
        for (WeightFormat f : kGrouped) {
            for (int g : kGroups) {
                CAPTURE(std::string(format_name(f)));
                CAPTURE(g);
                CAPTURE(s[0]);
                CAPTURE(s[1]);
                const PackedLayout plain = make_layout(f, s[0], s[1], g, false);
                const PackedLayout dq = make_layout(f, s[0], s[1], g, true);
                CHECK(plain.total_bytes == predicted_bytes(f, s[0], s[1], g, false));
                CHECK(dq.total_bytes == predicted_bytes(f, s[0], s[1], g, true));
                const double saved_bits =
                    8.0 * (double(plain.total_bytes) - double(dq.total_bytes));
                CHECK(double_quant_bits_saved(dq) ==
                      doctest::Approx(saved_bits / double(s[0] * s[1])).epsilon(1e-12));
            }
        }
    }
    // Large matrix, group 64, q4/nf4: 16 -> 8 + 32/256 bits per group, i.e.
    // (8 - 0.125) / 64 = 0.123 bits per weight saved (QLoRA's 0.373 is for an fp32
    // absmax); q4a saves twice that.
    CHECK(double_quant_bits_saved(make_layout(WeightFormat::nf4, 4096, 4096, 64, true)) ==
          doctest::Approx(7.875 / 64).epsilon(1e-4));
    CHECK(double_quant_bits_saved(make_layout(WeightFormat::q4a, 4096, 4096, 64, true)) ==
          doctest::Approx(2 * 7.875 / 64).epsilon(1e-4));
}

// Bound on what double quantization changes. Let d0 be the chosen (real) scale
// of a group, d1 = fp16(d0) what is stored without double quantization and d2 =
// offset + block_scale * code the decoded double-quantized scale:
//   |d2 - d0| <= block_scale / 2          (rounding to the nearest int8 code)
//   |d1 - d0| <= 2^-11 |d0|               (fp16 rounding, normal range)
// so |d2 - d1| <= block_scale / 2 + 2^-10 |d1| (the same holds for q4a's mins).
// Codes are chosen against d2, so for every weight, with v1 the code value the
// plain blob uses (|v1| <= K: q4 8, q4a 15, nf4 1, q8 127):
//   |w - w2| <= |w - (d2 v1 + m2)| <= |w - w1| + K |d2 - d1| + |m2 - m1|.
TEST_CASE("double quantization changes weights within the derived bound") {
    const std::vector<float> data[] = {gaussian(160, 1000, 11), heavy_tailed(160, 1000, 12)};
    for (size_t k = 0; k < 2; ++k) {
        const std::vector<float>& w = data[k];
        for (WeightFormat f : kGrouped) {
            for (int g : kGroups) {
                CAPTURE(k);
                CAPTURE(std::string(format_name(f)));
                CAPTURE(g);
                const PackedLayout l1 = make_layout(f, 160, 1000, g, false);
                const PackedLayout l2 = make_layout(f, 160, 1000, g, true);
                const std::vector<uint8_t> b1 = quantize_matrix(w.data(), l1);
                const std::vector<uint8_t> b2 = quantize_matrix(w.data(), l2);
                const MatrixView v1{l1, b1.data()}, v2{l2, b2.data()};
                const std::vector<float> o1 = dequantize_all(v1), o2 = dequantize_all(v2);
                const float K = max_code_value(f);
                int64_t bad_param = 0, bad_weight = 0;
                for (int64_t r = 0; r < 160; ++r) {
                    for (int64_t c = 0; c < 1000; ++c) {
                        const int64_t gi = r * l1.groups_per_row + c / g;
                        const Params p1 = params_at(v1, r, c), p2 = params_at(v2, r, c);
                        const float bs_d = block_scale(v2, 0, gi);
                        const float bs_m = f == WeightFormat::q4a ? block_scale(v2, 1, gi) : 0.0f;
                        const float off_d = read_f32(b2.data() + l2.dq_offset);
                        const double slack = 1e-6 * (std::fabs(off_d) + 128.0 * bs_d) + 1e-30;
                        const double dd = std::fabs(double(p2.d) - p1.d);
                        const double dm = std::fabs(double(p2.m) - p1.m);
                        if (c % g == 0) {  // once per group
                            if (dd > bs_d / 2 + std::ldexp(std::fabs(p1.d), -10) + slack) {
                                ++bad_param;
                            }
                            if (dm > bs_m / 2 + std::ldexp(std::fabs(p1.m), -10) + 1e-5 * bs_m) {
                                ++bad_param;
                            }
                        }
                        const size_t i = size_t(r * 1000 + c);
                        const double e1 = std::fabs(double(w[i]) - o1[i]);
                        const double e2 = std::fabs(double(w[i]) - o2[i]);
                        const double rounding =
                            1e-6 * (std::fabs(w[i]) + K * std::fabs(p1.d) + std::fabs(p1.m));
                        if (e2 > e1 + K * dd + dm + rounding) ++bad_weight;
                    }
                }
                CHECK(bad_param == 0);
                CHECK(bad_weight == 0);
                const double m1 = mse(w, o1), m2 = mse(w, o2);
                if (k == 0) {
                    std::printf("%-3s group %3d: MSE %.6f, with double quant %.6f (+%.2f%%)\n",
                                format_name(f), g, m1, m2, 100.0 * (m2 / m1 - 1.0));
                }
            }
        }
    }
}

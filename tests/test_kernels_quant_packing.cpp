// Quantizer packing: every 4-bit code at every nibble position (full and short
// groups), extreme codes, padding, zero groups, zero bytes between sections.
#include <doctest/doctest.h>

#include <cstring>
#include <string>

#include "tests/quant_test_util.h"

using namespace nibble;
using namespace quant_test;

namespace {

const WeightFormat k4bit[] = {WeightFormat::q4, WeightFormat::q4a, WeightFormat::nf4};
const int kGroups[] = {32, 64, 128, 256};

// Raw 4-bit code of (row, padded column c), read straight from the blob: chunk
// c/32 of the row is 16 bytes; byte j holds column j (low nibble) and j+16 (high).
int raw_nibble(const std::vector<uint8_t>& blob, const PackedLayout& l, int64_t r, int64_t c) {
    const size_t byte =
        l.codes_offset + size_t(r * l.padded_cols / 2) + size_t(c / 32) * 16 + size_t(c % 32 % 16);
    return c % 32 < 16 ? blob[byte] & 0xf : blob[byte] >> 4;
}

// The weight whose exact code is e when the group's parameters are canonical
// (q4: d = 1; q4a: d = 1, m = 0; nf4: d = 1).
float weight_of_code(WeightFormat f, int e) {
    if (f == WeightFormat::q4) return float(e - 8);
    if (f == WeightFormat::q4a) return float(e);
    return kNf4Codebook[e];
}

// Canonical parameters: d = 1 and an integer m (q4a), under which the weight of
// code e is stored exactly as code e - m.
bool canonical(Params p) {
    return p.d == 1.0f && p.m == std::round(p.m);
}

}  // namespace

TEST_CASE("every code at every nibble position, in full and short final groups") {
    // Rows in 9 blocks of 16; in block b, code e = (r + mult_b * c) mod 16 with an
    // odd multiplier, so each (position, code) pair occurs once per block and the
    // groups come in several compositions. Groups holding an extreme code (q4:
    // -8; q4a: codes 15 apart; nf4: -1 or 1) plus an odd step are only represented
    // exactly by the canonical parameters, which the quantizer then finds (zero
    // error); the others may take any parameters and are only bound-checked.
    const int mult[] = {1, 3, 5, 7, 9, 11, 13, 15, 1};
    for (WeightFormat f : k4bit) {
        for (int g : kGroups) {
            for (int64_t cols : {172, 33, 1, 512}) {
                CAPTURE(std::string(format_name(f)));
                CAPTURE(g);
                CAPTURE(cols);
                const int64_t rows = 144;
                const int64_t last_start = (cols - 1) / g * g;
                std::vector<float> w(size_t(rows * cols));
                std::vector<int> code(w.size());
                for (int64_t r = 0; r < rows; ++r) {
                    for (int64_t c = 0; c < cols; ++c) {
                        int e = int((r + mult[r / 16] * c) % 16);
                        // Block 8 anchors its short final group with codes 0 and 15
                        // at both ends, making the middle canonical for q4a too.
                        if (r >= 128 && cols - last_start >= 3 && cols % g != 0) {
                            if (c == last_start) e = 0;
                            if (c == cols - 1) e = 15;
                        }
                        code[size_t(r * cols + c)] = e;
                        w[size_t(r * cols + c)] = weight_of_code(f, e);
                    }
                }
                const PackedLayout l = make_layout(f, rows, cols, g);
                const std::vector<uint8_t> blob = quantize_matrix(w.data(), l);
                const MatrixView view{l, blob.data()};
                const std::vector<float> out = dequantize_all(view);
                // covered[tail][position in chunk][code]
                bool covered[2][32][16] = {};
                const int64_t tail_start = (cols - 1) / g * g;
                int64_t bad = 0;
                for (int64_t r = 0; r < rows; ++r) {
                    for (int64_t c = 0; c < l.padded_cols; ++c) {
                        const Params p = params_at(view, r, std::min(c, cols - 1));
                        if (c >= cols) {  // padding holds the code of weight 0
                            const int q = raw_nibble(blob, l, r, c);
                            if (f == WeightFormat::q4) bad += q != 8;
                            if (f == WeightFormat::nf4) bad += q != 7;
                            double clip;
                            const double v = double(p.d) * q + p.m;
                            if (f == WeightFormat::q4a &&
                                std::fabs(v) > error_bound(f, p, 0, clip)) {
                                ++bad;
                            }
                            continue;
                        }
                        const size_t i = size_t(r * cols + c);
                        double clip;
                        bad += !(std::fabs(w[i] - out[i]) <= error_bound(f, p, w[i], clip));
                        if (!canonical(p)) continue;
                        bad += raw_nibble(blob, l, r, c) != code[i] - int(p.m);
                        bad += out[i] != w[i];
                        covered[c >= tail_start && cols % g != 0][c % 32][code[i] - int(p.m)] =
                            true;
                    }
                }
                CHECK(bad == 0);
                // Every position of a full chunk, and every position of the short
                // final group of 172 columns (160 + 12), holds every code.
                const int64_t full_groups = cols / g;
                const int64_t tail_cols = cols % g;
                for (int j = 0; j < 32; ++j) {
                    for (int e = 0; e < 16; ++e) {
                        if (full_groups > 0 && g <= cols) CHECK(covered[0][j][e]);
                        if (cols == 172 && j < tail_cols % 32) {
                            CAPTURE(j);
                            CAPTURE(e);
                            CHECK(covered[1][j][e]);
                        }
                    }
                }
                // Exact reproduction of one-column groups, whose only value is
                // exactly representable in q4 (d = v / -8) and q4a (d = 0, m = v).
                if (f != WeightFormat::nf4 && cols % g == 1) {
                    for (int64_t r = 0; r < rows; ++r) {
                        CHECK(out[size_t(r * cols + cols - 1)] == w[size_t(r * cols + cols - 1)]);
                    }
                }
            }
        }
    }
}

TEST_CASE("extreme codes: groups of -8 and 7 (q4), 0 and 15 (q4a), -1 and 1 (nf4)") {
    for (WeightFormat f : k4bit) {
        for (int g : kGroups) {
            CAPTURE(std::string(format_name(f)));
            CAPTURE(g);
            const int64_t rows = 3, cols = 300;
            std::vector<float> w(size_t(rows * cols));
            for (size_t i = 0; i < w.size(); ++i) {
                const int e = (i * 7919 / 13) % 2 ? 15 : 0;  // irregular mix of the two
                w[i] = weight_of_code(f, e);
            }
            w[0] = weight_of_code(f, 0);  // both extremes in every group
            w[1] = weight_of_code(f, 15);
            for (int64_t r = 0; r < rows; ++r) {
                for (int64_t c = 0; c < cols; c += g) {
                    w[size_t(r * cols + c)] = weight_of_code(f, 0);
                    if (c + 1 < cols) w[size_t(r * cols + c + 1)] = weight_of_code(f, 15);
                }
            }
            const PackedLayout l = make_layout(f, rows, cols, g);
            const std::vector<uint8_t> blob = quantize_matrix(w.data(), l);
            const std::vector<float> out = dequantize_all(MatrixView{l, blob.data()});
            CHECK(out == w);
            int64_t bad = 0;
            for (int64_t r = 0; r < rows; ++r) {
                for (int64_t c = 0; c < cols; ++c) {
                    const int q = raw_nibble(blob, l, r, c);
                    bad += w[size_t(r * cols + c)] != weight_of_code(f, q) || (q != 0 && q != 15);
                }
            }
            CHECK(bad == 0);
        }
    }
    // A q4 group of only -8 (and one of only 7) is exact too.
    std::vector<float> w(64, -8.0f);
    for (int i = 32; i < 64; ++i) w[size_t(i)] = 7.0f;
    const PackedLayout l = make_layout(WeightFormat::q4, 1, 64, 32);
    const std::vector<uint8_t> blob = quantize_matrix(w.data(), l);
    CHECK(dequantize_all(MatrixView{l, blob.data()}) == w);
}

TEST_CASE("zero groups dequantize to exact zeros, with and without double quantization") {
    const int64_t rows = 8, cols = 300;
    std::vector<float> w = gaussian(rows, cols, 21);
    for (int64_t c = 64; c < 128; ++c) w[size_t(3 * cols + c)] = 0.0f;  // a zero group at g<=64
    for (int64_t c = 0; c < cols; ++c) w[size_t(5 * cols + c)] = 0.0f;  // a zero row
    const std::vector<float> zeros(size_t(rows * cols), 0.0f);
    for (WeightFormat f :
         {WeightFormat::q8, WeightFormat::q4, WeightFormat::q4a, WeightFormat::nf4}) {
        for (int g : kGroups) {
            for (bool dq : {false, true}) {
                CAPTURE(std::string(format_name(f)));
                CAPTURE(g);
                CAPTURE(dq);
                const PackedLayout l = make_layout(f, rows, cols, g, dq);
                // An all-zero matrix is exact in every format: with double
                // quantization the offset and block scales are 0 too.
                const std::vector<uint8_t> zblob = quantize_matrix(zeros.data(), l);
                CHECK(dequantize_all(MatrixView{l, zblob.data()}) == zeros);

                const std::vector<uint8_t> blob = quantize_matrix(w.data(), l);
                const MatrixView view{l, blob.data()};
                const std::vector<float> out = dequantize_all(view);
                int64_t bad = 0;
                for (int64_t r = 0; r < rows; ++r) {
                    for (int64_t c = 0; c < cols; ++c) {
                        const bool zero_group = r == 5 || (r == 3 && g <= 64 && c / g == 64 / g);
                        const float v = out[size_t(r * cols + c)];
                        bad += !std::isfinite(v);
                        if (!zero_group) continue;
                        if (f == WeightFormat::q4a && dq) {
                            // The decoded min m2 need not be 0: |m2 - 0| <= its
                            // block scale / 2, and the nearest code gives |w'| <= |m2|.
                            const Params p = params_at(view, r, c);
                            bad += !(std::fabs(v) <= std::fabs(p.m));
                            const int64_t gi = r * l.groups_per_row + c / g;
                            const size_t stream_bytes = (1 + size_t(l.dq_blocks())) * 4;
                            float bs;
                            std::memcpy(
                                &bs, blob.data() + l.dq_offset + stream_bytes + 4 * (1 + gi / 256),
                                4);
                            bad += !(std::fabs(p.m) <= bs / 2 * (1 + 1e-5f));
                        } else {
                            bad += v != 0.0f;
                        }
                    }
                }
                CHECK(bad == 0);
            }
        }
    }
}

TEST_CASE("bytes between sections are zero") {
    const std::vector<float> w = heavy_tailed(5, 77, 31);
    for (WeightFormat f :
         {WeightFormat::q8, WeightFormat::q4, WeightFormat::q4a, WeightFormat::nf4}) {
        for (bool dq : {false, true}) {
            const PackedLayout l = make_layout(f, 5, 77, 32, dq);
            // Fill the destination with garbage first: quantize_matrix must clear it.
            std::vector<uint8_t> blob(l.total_bytes, 0xAB);
            quantize_matrix(w.data(), l, blob.data());
            const size_t ends[][2] = {
                {l.codes_offset + l.codes_bytes, l.scales_offset},
                {l.scales_offset + l.scales_bytes,
                 l.mins_bytes ? l.mins_offset : (dq ? l.dq_offset : l.total_bytes)},
                {l.mins_bytes ? l.mins_offset + l.mins_bytes : 0,
                 l.mins_bytes ? (dq ? l.dq_offset : l.total_bytes) : 0},
                {dq ? l.dq_offset + l.dq_bytes : 0, dq ? l.total_bytes : 0}};
            int64_t nonzero = 0;
            for (const auto& e : ends) {
                for (size_t i = e[0]; i < e[1]; ++i) nonzero += blob[i] != 0;
            }
            CHECK(nonzero == 0);
        }
    }
}

// The interleaved row-block layout (kernels/interleave.h): the documented byte
// positions, a lossless conversion both ways, and every kernel this CPU runs
// giving bitwise the results of the row-major layout -- every grouped format
// (double-quantized scales included), row counts that are not a multiple of
// the block (a short last block), a short last group and a short last
// 128-column unit, 1 and 2 threads, int8 and FP32 activations, GEMV == GEMM,
// and row ranges that start inside a row block.
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernel_test_settings.h"
#include "kernels/interleave.h"
#include "kernels/kernel_table.h"
#include "kernels/matmul.h"
#include "kernels/matmul_dispatch.h"
#include "kernels/quantize.h"

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace nibble;

namespace {

struct Case {
    WeightFormat format;
    int group;
    bool dq;
};

// Every grouped format, with and without double-quantized scales.
const Case kCases[] = {
    {WeightFormat::q8, 32, false},    {WeightFormat::q4, 32, false},
    {WeightFormat::q4, 32, true},     {WeightFormat::q4, 128, false},
    {WeightFormat::q4a, 32, false},   {WeightFormat::q4a, 64, true},
    {WeightFormat::nf4, 32, false},   {WeightFormat::nf4, 256, true},
    {WeightFormat::iq4nl, 32, false}, {WeightFormat::q8, 128, false},
};

struct Pair {
    PackedLayout rows_layout, ilv_layout;
    std::vector<uint8_t> rows_blob, ilv_blob;
    MatrixView row_major() const { return {rows_layout, rows_blob.data()}; }
    MatrixView interleaved() const { return {ilv_layout, ilv_blob.data()}; }
};

// A random matrix quantized row-major, and its interleaved copy.
Pair make_pair(const PackedLayout& layout, std::mt19937& rng) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> w(size_t(layout.rows * layout.cols));
    for (float& v : w) v = normal(rng);
    Pair p;
    p.rows_layout = layout;
    p.rows_blob = quantize_matrix(w.data(), layout);
    p.ilv_layout = with_interleave(layout, kInterleaveRows);
    p.ilv_blob.assign(layout.total_bytes, 0);
    convert_interleave(p.rows_layout, p.rows_blob.data(), p.ilv_layout, p.ilv_blob.data());
    return p;
}

void set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// matmul() of both layouts with the active kernel: bitwise equal for 1 and 2
// threads and several token counts, and GEMM's columns equal to GEMV.
void check_same_results(const Pair& p, std::mt19937& rng) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const PackedLayout& l = p.rows_layout;
    constexpr int kMaxTokens = 17;  // >= 16: the AMX entry takes over on its CPUs
    std::vector<float> x(size_t(kMaxTokens * l.cols));
    for (float& v : x) v = normal(rng);
    for (int n_tokens : {1, 3, kMaxTokens}) {
        CAPTURE(n_tokens);
        std::vector<float> expected(size_t(n_tokens * l.rows), -1.0f);
        set_threads(1);
        matmul(p.row_major(), x.data(), n_tokens, expected.data());
        for (int threads : {1, 2}) {
            CAPTURE(threads);
            set_threads(threads);
            std::vector<float> got(expected.size(), -2.0f);
            matmul(p.interleaved(), x.data(), n_tokens, got.data());
            CHECK(same_bits(got, expected));
        }
        // GEMV == GEMM on the interleaved layout.
        set_threads(2);
        for (int t = 0; t < n_tokens; ++t) {
            std::vector<float> one(size_t(l.rows), -3.0f);
            matmul(p.interleaved(), x.data() + size_t(t * l.cols), 1, one.data());
            const std::vector<float> column(expected.begin() + t * l.rows,
                                            expected.begin() + (t + 1) * l.rows);
            CHECK(same_bits(one, column));
        }
    }
    set_threads(1);
}

// The matrices of a case: short last blocks (rows % 4 != 0), a short last
// group (cols not a multiple of the group), a short last unit (padded columns
// not a multiple of 128) and whole ones.
std::vector<PackedLayout> case_layouts(const Case& c) {
    std::vector<PackedLayout> out;
    const int64_t shapes[][2] = {{5, 256}, {18, 1000}, {33, 96}, {7, 160}, {2, 32}, {35, 512}};
    for (const auto& s : shapes) {
        if (s[1] < c.group) continue;
        out.push_back(make_layout(c.format, s[0], s[1], c.group, c.dq));
    }
    return out;
}

}  // namespace

TEST_CASE("the interleaved layout puts each unit where docs/FORMAT.md says") {
    // q4, 7 rows x 160 columns: units of 128 columns (64 bytes) and a last
    // unit of 32 columns (16 bytes); blocks of rows 0-3 and 4-6.
    const PackedLayout l = with_interleave(make_layout(WeightFormat::q4, 7, 160, 32), 4);
    REQUIRE(l.row_code_bytes() == 80);
    CHECK(interleave_unit_bytes(l) == 64);
    CHECK(interleaved_unit_offset(l, 0, 0) == 0);
    CHECK(interleaved_unit_offset(l, 1, 0) == 64);
    CHECK(interleaved_unit_offset(l, 3, 0) == 192);
    CHECK(interleaved_unit_offset(l, 0, 1) == 256);  // after unit 0 of the 4 rows
    CHECK(interleaved_unit_offset(l, 2, 1) == 256 + 2 * 16);
    CHECK(interleaved_unit_offset(l, 4, 0) == 320);  // the short block of 3 rows
    CHECK(interleaved_unit_offset(l, 6, 0) == 320 + 2 * 64);
    CHECK(interleaved_unit_offset(l, 5, 1) == 320 + 3 * 64 + 16);
    // From one full unit of a row to the next: the block's rows times U.
    CHECK(interleaved_unit_stride(l, 2) == 4 * 64);
    CHECK(interleaved_unit_stride(l, 5) == 3 * 64);
    CHECK(interleaved_unit_stride(make_layout(WeightFormat::q4, 7, 160, 32), 5) == 64);
    // q8 units are 128 bytes, q6k's one Q6_K block's codes (192 bytes).
    CHECK(interleave_unit_bytes(make_layout(WeightFormat::q8, 4, 256, 32)) == 128);
    CHECK(interleave_unit_bytes(make_layout(WeightFormat::q6k, 4, 512, 256)) == 192);
    // Sizes do not change; f32/f16 and single rows are not interleaved.
    CHECK(l.total_bytes == make_layout(WeightFormat::q4, 7, 160, 32).total_bytes);
    CHECK_FALSE(can_interleave(make_layout(WeightFormat::f16, 8, 64)));
    CHECK_FALSE(can_interleave(make_layout(WeightFormat::q4, 1, 64, 32)));
    CHECK_THROWS_AS(with_interleave(make_layout(WeightFormat::f32, 8, 64), 4),
                    std::invalid_argument);
    CHECK_THROWS_AS(with_interleave(make_layout(WeightFormat::q4, 8, 64, 32), 8),
                    std::invalid_argument);
}

TEST_CASE("interleaving is lossless and keeps every row's dequantized values") {
    std::mt19937 rng(7);
    for (const Case& c : kCases) {
        for (const PackedLayout& layout : case_layouts(c)) {
            const std::string format = format_name(c.format);
            CAPTURE(format);
            CAPTURE(layout.rows);
            CAPTURE(layout.cols);
            const Pair p = make_pair(layout, rng);
            // Parameters untouched, codes moved (unless one row block of one unit).
            CHECK(std::memcmp(p.rows_blob.data() + layout.scales_offset,
                              p.ilv_blob.data() + layout.scales_offset,
                              layout.total_bytes - layout.scales_offset) == 0);
            std::vector<uint8_t> back(layout.total_bytes);
            convert_interleave(p.ilv_layout, p.ilv_blob.data(), p.rows_layout, back.data());
            CHECK(back == p.rows_blob);
            std::vector<float> a(size_t(layout.cols)), b(size_t(layout.cols));
            for (int64_t r = 0; r < layout.rows; ++r) {
                dequantize_row(p.row_major(), r, a.data());
                dequantize_row(p.interleaved(), r, b.data());
                REQUIRE(same_bits(a, b));
            }
        }
    }
}

TEST_CASE("every kernel gives bitwise the row-major results on interleaved matrices") {
    nibble::test::SettingsGuard guard;
    std::mt19937 rng(11);
    std::vector<Case> cases(std::begin(kCases), std::end(kCases));
    cases.push_back({WeightFormat::q4k, 32, true});
    cases.push_back({WeightFormat::q6k, 256, false});
    for (MatmulKernel k : supported_matmul_kernels()) {
        set_matmul_kernel(k);
        for (ActivationMode mode : {ActivationMode::int8, ActivationMode::fp32}) {
            set_matmul_activation_mode(mode);
            for (const Case& c : cases) {
                std::vector<PackedLayout> layouts;
                if (c.format == WeightFormat::q4k || c.format == WeightFormat::q6k) {
                    for (int64_t rows : {5, 18, 35})
                        layouts.push_back(make_layout(c.format, rows, 512, c.group, c.dq));
                } else {
                    layouts = case_layouts(c);
                }
                for (const PackedLayout& layout : layouts) {
                    const std::string kernel = matmul_kernel_name(k);
                    const std::string activations = mode == ActivationMode::int8 ? "int8" : "fp32";
                    const std::string format = format_name(c.format);
                    CAPTURE(kernel);
                    CAPTURE(activations);
                    CAPTURE(format);
                    CAPTURE(c.group);
                    CAPTURE(c.dq);
                    CAPTURE(layout.rows);
                    CAPTURE(layout.cols);
                    check_same_results(make_pair(layout, rng), rng);
                }
            }
        }
    }
}

TEST_CASE("row kernels called on ranges inside a row block match the row-major layout") {
    std::mt19937 rng(13);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (const kernels::KernelEntry& e : kernels::kernel_table()) {
        if (!e.supported() || e.whole_matmul != nullptr) continue;
        for (const Case& c : kCases) {
            const PackedLayout layout = make_layout(c.format, 23, 512, c.group, c.dq);
            const Pair p = make_pair(layout, rng);
            for (int n_tokens : {1, 2}) {
                std::vector<float> x(size_t(n_tokens * layout.cols));
                for (float& v : x) v = normal(rng);
                ActivationBuffer buffer;
                const kernels::RowKernels& rows = e.rows[int(row_family(c.format))];
                const QuantizedActivations qa = buffer.prepare(layout, n_tokens, rows.order);
                for (int t = 0; t < n_tokens; ++t) e.quantize_row(x.data(), t, qa);
                for (const auto& range : {std::pair<int64_t, int64_t>{1, 22}, {6, 23}, {3, 5}}) {
                    const std::string kernel = e.name, format = format_name(c.format);
                    CAPTURE(kernel);
                    CAPTURE(format);
                    CAPTURE(range.first);
                    CAPTURE(range.second);
                    std::vector<float> a(size_t(n_tokens * layout.rows), 0.0f), b = a;
                    rows.int8_rows(p.row_major(), qa, range.first, range.second, a.data());
                    rows.int8_rows(p.interleaved(), qa, range.first, range.second, b.data());
                    CHECK(same_bits(a, b));
                }
            }
        }
    }
}

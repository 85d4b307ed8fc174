// matmul() over several weight matrices sharing one input (Wq/Wk/Wv, gate/up):
// bitwise the same as one matmul() per matrix, for every kernel variant, token
// counts of 1 (decoding) and several, 1, 2, 3 and 5 threads (each owns a range
// of rows, finished threads steal from the others), row counts that are not
// multiples of the 16-row work item, and mixed formats (run one after another).
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/fp16.h"
#include "kernels/matmul.h"
#include "kernels/matmul_dispatch.h"

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace nibble;

namespace {

struct Matrix {
    PackedLayout layout;
    std::vector<uint8_t> blob;
    MatrixView view;
};

// Random codes and fp16 group scales in +-[0.01, 0.05].
Matrix random_matrix(WeightFormat f, int64_t rows, int64_t cols, std::mt19937& rng) {
    Matrix m;
    m.layout = make_layout(f, rows, cols, 32, false);
    m.blob.assign(m.layout.total_bytes, 0);
    std::uniform_int_distribution<int> byte(0, 255);
    for (size_t i = 0; i < m.layout.codes_bytes; ++i) {
        uint8_t v = uint8_t(byte(rng));
        if (f == WeightFormat::q8 && v == 0x80) v = 0x81;  // -128 is not a q8 code
        m.blob[m.layout.codes_offset + i] = v;
    }
    std::uniform_real_distribution<float> u(0.01f, 0.05f);
    for (int64_t g = 0; g < m.layout.n_groups(); ++g) {
        const uint16_t h = fp32_to_fp16(byte(rng) & 1 ? u(rng) : -u(rng));
        std::memcpy(m.blob.data() + m.layout.scales_offset + 2 * size_t(g), &h, 2);
    }
    m.view = MatrixView{m.layout, m.blob.data()};
    return m;
}

void set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

// Runs the three-product matmul and the three separate ones; every output must
// match bitwise, and also the separate ones on 1 thread.
void check_same_as_separate(const Matrix& a, const Matrix& b, const Matrix& c, int n_tokens,
                            std::mt19937& rng) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(size_t(n_tokens) * size_t(a.layout.cols));
    for (float& v : x) v = normal(rng);
    const Matrix* ms[3] = {&a, &b, &c};
    std::vector<float> single[3], fused[3];
    set_threads(1);
    for (int i = 0; i < 3; ++i) {
        single[i].assign(size_t(n_tokens) * size_t(ms[i]->layout.rows), 0.0f);
        matmul(ms[i]->view, x.data(), n_tokens, single[i].data());
    }
    for (int threads : {1, 2, 3, 5}) {
        CAPTURE(threads);
        set_threads(threads);
        for (int i = 0; i < 3; ++i) fused[i].assign(single[i].size(), -1.0f);
        matmul({{&a.view, fused[0].data()}, {&b.view, fused[1].data()}, {&c.view, fused[2].data()}},
               x.data(), n_tokens);
        for (int i = 0; i < 3; ++i) {
            CAPTURE(i);
            REQUIRE(fused[i].size() == single[i].size());
            CHECK(std::memcmp(fused[i].data(), single[i].data(), fused[i].size() * 4) == 0);
        }
    }
}

}  // namespace

TEST_CASE("matmul over several matrices equals one matmul per matrix") {
#ifdef _OPENMP
    const int saved = omp_get_max_threads();
#endif
    std::mt19937 rng(7);
    const MatmulKernel saved_kernel = matmul_kernel();
    for (MatmulKernel k : supported_matmul_kernels()) {
        CAPTURE(matmul_kernel_name(k));
        set_matmul_kernel(k);
        for (ActivationMode mode : {ActivationMode::int8, ActivationMode::fp32}) {
            CAPTURE(int(mode));
            set_matmul_activation_mode(mode);
            for (int n_tokens : {1, 3, 9}) {
                CAPTURE(n_tokens);
                // Same format and width: one shared input, rows split across matrices.
                const Matrix q = random_matrix(WeightFormat::q4, 520, 576, rng);
                const Matrix kk = random_matrix(WeightFormat::q4, 72, 576, rng);
                const Matrix v = random_matrix(WeightFormat::q4, 77, 576, rng);
                check_same_as_separate(q, kk, v, n_tokens, rng);
                // Mixed formats: grouped into runs that share the input.
                const Matrix m8 = random_matrix(WeightFormat::q8, 200, 576, rng);
                check_same_as_separate(q, m8, v, n_tokens, rng);
            }
        }
    }
    set_matmul_activation_mode(ActivationMode::int8);
    set_matmul_kernel(saved_kernel);
#ifdef _OPENMP
    set_threads(saved);
#endif
}

TEST_CASE("matmul over several matrices: rows of zero and no tokens are no-ops") {
    std::mt19937 rng(3);
    const Matrix a = random_matrix(WeightFormat::q4, 40, 64, rng);
    std::vector<float> x(64, 1.0f), y(40, -1.0f);
    matmul({{&a.view, y.data()}}, x.data(), 0);
    for (float v : y) CHECK(v == -1.0f);
    std::vector<float> ref(40);
    matmul(a.view, x.data(), 1, ref.data());
    matmul({{&a.view, y.data()}}, x.data(), 1);
    CHECK(std::memcmp(y.data(), ref.data(), y.size() * 4) == 0);
}

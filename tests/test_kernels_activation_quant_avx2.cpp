// The AVX2 activation quantizer gives bit for bit the portable quantizer's
// codes, block scales and group sums: random rows, rows with zero and huge
// blocks, exact .5 ties, several tokens, natural, pair- and quad-interleaved order,
// group sizes 32/64/128, and widths that are not whole blocks (portable path).
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/activation_quant.h"
#include "kernels/cpu_features.h"
#include "test_skip.h"

using namespace nibble;

#if defined(__x86_64__)
namespace {

template <typename T>
bool same_bytes(const T* a, const T* b, size_t n) {
    return std::memcmp(a, b, n * sizeof(T)) == 0;
}

}  // namespace

TEST_CASE("AVX2 activation quantization equals the portable one bitwise" *
          nibble::test::skip_unless(cpu_features().avx2, "this CPU has no AVX2+FMA+F16C")) {
    std::mt19937 rng(11);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (int64_t cols : {32, 64, 96, 2048, 5632, 100}) {
        for (int group : {32, 64, 128}) {
            if (cols % group != 0 && cols != 100) continue;
            for (CodeOrder order : {CodeOrder::natural, CodeOrder::pairs, CodeOrder::quads}) {
                CAPTURE(cols);
                CAPTURE(group);
                CAPTURE(int(order));
                const int n_tokens = 3;
                const PackedLayout l = make_layout(WeightFormat::q4, 8, cols, group, false);
                std::vector<float> x(size_t(n_tokens) * size_t(cols));
                for (float& v : x) v = normal(rng) * 3.0f;
                // A zero block, a huge block and exact ties x * 127 / amax = k + 0.5.
                for (int64_t c = 0; c < 32 && c < cols; ++c) x[size_t(c)] = 0.0f;
                if (cols >= 64) {
                    for (int64_t c = 32; c < 64; ++c) x[size_t(c)] = 1e30f * normal(rng);
                    for (int64_t c = 32; c < 64; ++c) x[size_t(cols + c)] = float(c - 48) + 0.5f;
                    x[size_t(cols + 32)] = 127.0f;  // amax = 127: codes are x rounded
                }
                ActivationBuffer ba, bb;
                const QuantizedActivations a = ba.prepare(l, n_tokens, order);
                const QuantizedActivations b = bb.prepare(l, n_tokens, order);
                std::memset(a.q, 0x55, size_t(n_tokens) * size_t(a.q_stride()));
                std::memset(b.q, 0x66, size_t(n_tokens) * size_t(b.q_stride()));
                for (int t = 0; t < n_tokens; ++t) {
                    quantize_activation_row(x.data(), t, a);
                    kernels::avx2::quantize_activation_row(x.data(), t, b);
                }
                const size_t nt = size_t(n_tokens);
                CHECK(same_bytes(a.q, b.q, nt * size_t(a.q_stride())));
                CHECK(same_bytes(a.d, b.d, nt * size_t(a.block_stride)));
                CHECK(same_bytes(a.d4, b.d4, nt * size_t(4 * a.block_stride)));
                CHECK(same_bytes(a.group_sums, b.group_sums, nt * size_t(a.groups_per_row)));
            }
        }
    }
}
#else
TEST_CASE("AVX2 activation quantization equals the portable one bitwise" *
          nibble::test::skip_unless(false, "not an x86-64 build")) {}
#endif

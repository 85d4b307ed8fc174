// NIBBLE_KERNEL: the environment variable that forces a matmul kernel variant.
// Its own executable, because the variable is read once per process.
#include <doctest/doctest.h>

#include <cstdlib>
#include <stdexcept>

#include "kernels/matmul_dispatch.h"

using namespace nibble;

TEST_CASE("NIBBLE_KERNEL forces a variant; bad values throw") {
    // An unknown value is rejected (and not cached: the next call reads again).
    REQUIRE(setenv("NIBBLE_KERNEL", "avx1024", 1) == 0);
    CHECK_THROWS_AS(matmul_kernel(), std::runtime_error);
#if defined(__x86_64__)
    REQUIRE(setenv("NIBBLE_KERNEL", "neon", 1) == 0);  // known, but not on this CPU
    CHECK_THROWS_AS(matmul_kernel(), std::runtime_error);
#endif
    REQUIRE(setenv("NIBBLE_KERNEL", "scalar", 1) == 0);
    CHECK(matmul_kernel() == MatmulKernel::scalar);
    // The C++ API takes precedence over the environment.
    set_matmul_kernel(MatmulKernel::reference);
    CHECK(matmul_kernel() == MatmulKernel::reference);
    set_matmul_kernel(MatmulKernel::automatic);
    CHECK(matmul_kernel() == MatmulKernel::scalar);
}

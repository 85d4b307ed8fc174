// A doctest decorator for tests that need something this machine may lack (an
// instruction set): the test case is reported as skipped, with the reason on
// stderr, instead of returning early and counting as passed.
#pragma once
#include <doctest/doctest.h>

#include <cstdio>

namespace nibble::test {

// TEST_CASE("..." * skip_unless(cpu_features().avx2, "this CPU has no AVX2"))
inline doctest::skip skip_unless(bool available, const char* reason) {
    if (!available) std::fprintf(stderr, "[nibble] skipping a test case: %s\n", reason);
    return doctest::skip(!available);
}

}  // namespace nibble::test

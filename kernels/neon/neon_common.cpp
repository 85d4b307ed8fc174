// Scratch storage for the NEON kernels (kept out of the dotprod translation unit
// so no std:: code is compiled for the dotprod target).
#include "kernels/neon/neon_common.h"

#include <vector>

namespace nibble::kernels::neon {

float* row_scratch(size_t n) {
    thread_local std::vector<float> scratch;
    if (scratch.size() < n) scratch.resize(n);
    return scratch.data();
}

}  // namespace nibble::kernels::neon

// CPU feature detection: cpuid via __builtin_cpu_supports on x86 (F16C and
// AVX-VNNI read from cpuid directly: clang 14 does not know those names), the
// auxiliary vector (AT_HWCAP) on aarch64 Linux.
#include "kernels/cpu_features.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace nibble {

namespace {

#if defined(__x86_64__) || defined(__i386__)
// True when cpuid leaf `leaf`, sub-leaf `sub` exists and sets `bit` of the
// register `reg` (0 eax, 1 ebx, 2 ecx, 3 edx).
bool cpuid_bit(unsigned leaf, unsigned sub, int reg, unsigned bit) {
    unsigned r[4] = {0, 0, 0, 0};
    if (__get_cpuid_count(leaf, sub, &r[0], &r[1], &r[2], &r[3]) == 0) return false;
    return ((r[reg] >> bit) & 1u) != 0;
}
#endif

CpuFeatures detect() {
    CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    // __builtin_cpu_supports also checks that the OS saves the wider registers;
    // F16C (leaf 1, ecx bit 29) and AVX-VNNI (leaf 7.1, eax bit 4) are only
    // taken together with AVX2, which already required that.
    f.avx2 =
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpuid_bit(1, 0, 2, 29);
    f.avx_vnni = f.avx2 && cpuid_bit(7, 1, 0, 4);
    f.avx512 = f.avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#elif defined(__aarch64__)
    f.neon = true;
#if defined(__linux__)
    constexpr unsigned long kHwcapAsimdDp = 1ul << 20;  // HWCAP_ASIMDDP
    f.dotprod = (getauxval(AT_HWCAP) & kHwcapAsimdDp) != 0;
#endif
#endif
    return f;
}

}  // namespace

const CpuFeatures& cpu_features() {
    static const CpuFeatures features = detect();
    return features;
}

}  // namespace nibble

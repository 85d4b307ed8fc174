// Run-time CPU feature detection for kernel dispatch (one binary, any x86-64 or
// aarch64 CPU, never an illegal instruction).
#pragma once

namespace nibble {

struct CpuFeatures {
    bool avx2 = false;      // x86: AVX2 + FMA + F16C all present (what kernels/avx2 needs)
    bool avx_vnni = false;  // x86: avx2 plus AVX-VNNI (VEX vpdpbusd on 256 bits)
    bool avx512 = false;    // x86: avx2 plus AVX-512 F, BW, VL and VNNI (kernels/avx512)
    bool neon = false;      // aarch64: Advanced SIMD (always present)
    bool dotprod = false;   // aarch64: SDOT/UDOT (FEAT_DotProd, HWCAP_ASIMDDP)
};

// Detected once, then cached.
const CpuFeatures& cpu_features();

// x86: AMX-TILE and AMX-INT8 present, enabled by the OS for this process, and
// not turned off with NIBBLE_AMX=0: the kernel table's AMX entry then takes over
// the AVX-512 entry's products of 16 or more tokens (kernels/amx/). False elsewhere.
bool amx_tiles_usable();

}  // namespace nibble

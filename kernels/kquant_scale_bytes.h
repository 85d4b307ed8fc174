// The 6-bit scales of ggml's K-quant blocks unpacked to one byte each, as
// ggml unpacks them, for the ISA kernels that decode Q5_K and Q3_K blocks
// (kernels/avx2/lowbit_decode_256.h, kernels/neon/matmul_lowbit_neon_impl.h).
// Each includer defines NIBBLE_ISA_NAMESPACE: the helpers are always inlined
// and live in that instruction set's namespace, so no copy compiled for one
// instruction set can stand in for another's at link time.
#pragma once
#include <cstdint>
#include <cstring>

#ifndef NIBBLE_ISA_NAMESPACE
#error "define NIBBLE_ISA_NAMESPACE before including kquant_scale_bytes.h"
#endif

namespace nibble::kernels::NIBBLE_ISA_NAMESPACE {

// Q5_K (and Q4_K) scales[12] -> out[0..7] the eight 6-bit scales, out[8..15]
// the eight 6-bit mins: scales j < 4 are the low 6 bits of bytes 0-3 (mins:
// 4-7); j >= 4 take their low 4 bits from bytes 8-11 (mins: the high nibble)
// and their top 2 bits from the top of bytes 0-3 (mins: 4-7).
[[gnu::always_inline]] inline void q5k_scale_min_bytes(const uint8_t* scales12, uint8_t* out) {
    uint32_t aux[4];
    std::memcpy(aux, scales12, 12);
    const uint32_t k1 = 0x3f3f3f3f, k2 = 0x0f0f0f0f, k3 = 0x03030303;
    aux[3] = ((aux[2] >> 4) & k2) | (((aux[1] >> 6) & k3) << 4);
    const uint32_t mins_low = aux[1] & k1;
    aux[1] = (aux[2] & k2) | (((aux[0] >> 6) & k3) << 4);
    aux[2] = mins_low;
    aux[0] &= k1;
    std::memcpy(out, aux, 16);
}

// Q3_K scales[12] -> out[0..15] the sixteen 6-bit scales (unsigned, 32 above
// the signed scale): low 4 bits from the nibbles of bytes 0-7, high 2 bits
// from bytes 8-11.
[[gnu::always_inline]] inline void q3k_scale_bytes(const uint8_t* scales12, uint8_t* out) {
    uint32_t aux[4];
    std::memcpy(aux, scales12, 12);
    const uint32_t tmp = aux[2], k1 = 0x03030303, k2 = 0x0f0f0f0f;
    aux[2] = ((aux[0] >> 4) & k2) | (((tmp >> 4) & k1) << 4);
    aux[3] = ((aux[1] >> 4) & k2) | (((tmp >> 6) & k1) << 4);
    aux[0] = (aux[0] & k2) | ((tmp & k1) << 4);
    aux[1] = (aux[1] & k2) | (((tmp >> 2) & k1) << 4);
    std::memcpy(out, aux, 16);
}

}  // namespace nibble::kernels::NIBBLE_ISA_NAMESPACE

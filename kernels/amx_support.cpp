// Generic (portable) support for the AMX kernel: whether the CPU and the
// operating system let this process use AMX tiles, and the kernel's per-thread
// scratch. Compiled without AMX flags.
#include <cstdlib>
#include <cstring>
#include <memory>

#include "kernels/cpu_features.h"
#include "kernels/matmul_variants.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace nibble::kernels {

namespace {

// XCR0: the register state the OS saves (bits 17 and 18: AMX tile config and data).
uint64_t read_xcr0() {
    uint32_t eax = 0, edx = 0;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (uint64_t(edx) << 32) | eax;
}

bool detect_amx() {
    const char* env = std::getenv("NIBBLE_AMX");
    if (env != nullptr && std::strcmp(env, "0") == 0) return false;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid_count(1, 0, &a, &b, &c, &d) == 0 || (c & (1u << 27)) == 0) return false;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
    // EDX bit 24: AMX-TILE, bit 25: AMX-INT8. EBX bit 16: AVX-512F, 30: BW,
    // 31: VL; ECX bit 11: AVX-512 VNNI (the kernel's epilogue is AVX-512).
    const bool cpu = (d & (1u << 24)) != 0 && (d & (1u << 25)) != 0 && (b & (1u << 16)) != 0 &&
                     (b & (1u << 30)) != 0 && (b & (1u << 31)) != 0 && (c & (1u << 11)) != 0;
    if (!cpu) return false;
    const uint64_t needed = (1u << 1) | (1u << 2) | (7u << 5) | (3u << 17);  // SSE AVX ZMM AMX
    if ((read_xcr0() & needed) != needed) return false;
    // Linux hands out the (8 KiB) tile data state only on request, once per process.
    constexpr long kArchReqXcompPerm = 0x1023;
    constexpr long kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

}  // namespace

bool amx_usable() {
    static const bool usable = detect_amx();
    return usable;
}

namespace amx {

uint8_t* scratch(int slot, size_t bytes) {
    struct Buffer {
        std::unique_ptr<uint8_t[]> storage;
        size_t size = 0;
        uint8_t* aligned = nullptr;
    };
    thread_local Buffer buffers[5];
    Buffer& b = buffers[slot];
    if (b.size < bytes) {
        b.storage = std::make_unique<uint8_t[]>(bytes + 64);
        b.size = bytes;
        // The first 64-byte aligned address in the buffer (pointer arithmetic,
        // not an integer-to-pointer cast).
        const auto p = reinterpret_cast<uintptr_t>(b.storage.get());
        b.aligned = b.storage.get() + ((64 - p % 64) % 64);
    }
    return b.aligned;
}

uint64_t& packed_generation(int copy) {
    thread_local uint64_t generation[2] = {0, 0};
    return generation[copy];
}

}  // namespace amx
}  // namespace nibble::kernels

namespace nibble {
bool amx_tiles_usable() {
    return kernels::amx_usable();
}
}  // namespace nibble
#else
namespace nibble {
bool amx_tiles_usable() {
    return false;
}
}  // namespace nibble
#endif

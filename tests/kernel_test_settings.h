// Helpers shared by the matmul kernel tests: the kernels to compare with the
// reference, and a guard that restores the global kernel settings.
#pragma once
#include <vector>

#include "kernels/matmul_dispatch.h"

namespace nibble::test {

// Every kernel this CPU supports except the reference itself.
inline std::vector<MatmulKernel> fast_kernels() {
    std::vector<MatmulKernel> out;
    for (MatmulKernel k : supported_matmul_kernels()) {
        if (k != MatmulKernel::reference) out.push_back(k);
    }
    return out;
}

// Restores the global kernel settings when a test case ends.
struct SettingsGuard {
    SettingsGuard() = default;
    SettingsGuard(const SettingsGuard&) = delete;
    SettingsGuard& operator=(const SettingsGuard&) = delete;
    ~SettingsGuard() {
        set_matmul_kernel(MatmulKernel::automatic);
        set_matmul_activation_mode(ActivationMode::int8);
    }
};

}  // namespace nibble::test

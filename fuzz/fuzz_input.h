// Shared by the libFuzzer harnesses: fuzz input as a file the loaders can map
// (a memfd, so no disk is touched), the exceptions that count as a clean
// refusal, and a tiny forward pass through a model that loaded.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>

#include "engine/forward.h"
#include "engine/model.h"

namespace nibble::fuzz {

// A path whose content is exactly `data`: memfd number `slot` (0..3), rewritten
// each call; harnesses that need several files use several slots.
inline std::string as_file(const uint8_t* data, size_t size, int slot = 0) {
    static int fds[4] = {-1, -1, -1, -1};
    if (slot < 0 || slot >= 4) __builtin_trap();
    if (fds[slot] < 0) fds[slot] = memfd_create("nibble_fuzz", MFD_CLOEXEC);
    const int fd = fds[slot];
    if (fd < 0 || ftruncate(fd, 0) != 0) __builtin_trap();
    size_t at = 0;
    while (at < size) {
        const ssize_t n = pwrite(fd, data + at, size - at, off_t(at));
        if (n <= 0) __builtin_trap();
        at += size_t(n);
    }
    return "/proc/self/fd/" + std::to_string(fd);
}

// One token through a model that loaded: shapes the loader accepted must be
// safe to run (context 4, so a huge max_seq_len costs nothing).
inline void run_one_token(const Model& model) {
    RuntimeOptions ro;
    ro.context = 4;
    ro.max_batch = 1;
    InferenceState state(model, ro);
    const BatchToken token{0, 0, 0, true};
    state.forward(std::span<const BatchToken>(&token, 1));
}

// Runs `body`; std::runtime_error and std::invalid_argument are the clean
// refusals every parser promises. Anything else escapes and is a finding.
template <typename Body>
int clean(Body&& body) {
    try {
        body();
    } catch (const std::runtime_error&) {
    } catch (const std::invalid_argument&) {
    }
    return 0;
}

}  // namespace nibble::fuzz

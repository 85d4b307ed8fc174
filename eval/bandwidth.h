// The memory roofline of decoding: how many bytes of weights one decoded token
// reads, and how fast this machine can read memory.
//
// Decoding one token multiplies every linear layer and the classifier by one
// activation vector, so each of those blobs is read once per token; the token's
// embedding row and the norm vectors are read too. When weights do not fit in
// the caches, tokens/s can then be at most bandwidth / bytes_per_token.
#pragma once
#include <cstddef>
#include <cstdint>

#include "engine/model.h"

namespace nibble {

// Bytes read from the weights per decoded token: every layer's seven matrices
// and two norms, the output norm, the classifier, and one embedding row.
uint64_t decode_weight_bytes(const Model& model);

// Bytes of one row of a packed matrix: its codes plus its groups' parameters.
uint64_t packed_row_bytes(const PackedLayout& layout);

struct BandwidthResult {
    double best_gbs = 0.0;  // the fastest pass, 1e9 bytes per second
    double mean_gbs = 0.0;  // over all timed passes
    int threads = 0;
    uint64_t bytes = 0;  // buffer size
    int passes = 0;      // timed passes (after one untimed pass)
};

// Sums a buffer of `bytes` (rounded down to whole 64-byte lines) with `threads`
// OpenMP threads, each reading its own contiguous slice, `passes` times after
// one warm-up pass. The buffer is first touched by the thread that reads it.
// Throws std::invalid_argument for bytes < 1 MiB, passes < 1 or threads < 1,
// std::bad_alloc if the buffer cannot be allocated.
BandwidthResult measure_read_bandwidth(uint64_t bytes, int passes, int threads);

}  // namespace nibble

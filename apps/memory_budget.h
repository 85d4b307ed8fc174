// Memory a run needs, computed before anything large is allocated, and the
// memory this machine has available, so that an impossible request is refused
// with a line naming the option to change instead of ending in std::bad_alloc.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "engine/forward.h"
#include "engine/model.h"

namespace nibble {

struct MemoryNeed {
    uint64_t weights = 0;   // weight blobs (mapped or owned)
    uint64_t kv_cache = 0;  // keys and values of every slot, layer and position
    uint64_t buffers = 0;   // activation rows, logits, attention scores, slack
    uint64_t total() const { return weights + kv_cache + buffers; }
};

// Bytes of the KV cache KvCache(config, n_sequences, context, type) allocates.
uint64_t kv_cache_bytes(const ModelConfig& config, int n_sequences, int context, KvType type);

// What InferenceState(model, options) with `threads` OpenMP threads needs on top
// of nothing: weights, KV cache and buffers (with a fixed slack for the
// kernels' scratch space). options.context 0 means the model's max_seq_len.
MemoryNeed memory_need(const Model& model, const RuntimeOptions& options, int threads);

// MemAvailable from /proc/meminfo plus this process's own resident anonymous
// memory (owned weights already loaded are part of the need), capped by what an
// address-space limit (RLIMIT_AS, ulimit -v) leaves, or nullopt when
// /proc/meminfo cannot be read.
std::optional<uint64_t> available_memory_bytes();

// Throws std::runtime_error when `need` exceeds `available`: one line giving
// both and naming the option that would have to change: `context_option` when
// the KV cache is the largest part, `batch_option` when the buffers are, else
// a smaller (quantized) model.
void check_memory(const MemoryNeed& need, uint64_t available, const std::string& context_option,
                  const std::string& batch_option);

}  // namespace nibble

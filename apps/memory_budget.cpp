// Up-front memory accounting for an inference state (see forward.cpp and
// kv_cache.cpp for the allocations this mirrors; test_memory_budget.cpp checks
// the two agree).
#include "apps/memory_budget.h"

#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "kernels/attention.h"
#include "models/input_file.h"

namespace nibble {

namespace {

// "MemAvailable:   22963992 kB" -> bytes, from a /proc file's "Key:" line.
std::optional<uint64_t> proc_kib_field(const char* file, const std::string& key) {
    std::ifstream in(file);
    for (std::string line; std::getline(in, line);) {
        if (line.rfind(key + ":", 0) != 0) continue;
        std::istringstream fields(line.substr(key.size() + 1));
        uint64_t kib = 0;
        if (fields >> kib) return kib * 1024;
    }
    return std::nullopt;
}

// Kernels' per-call scratch (activation quantization, row ranges) and the
// allocator's overhead: small next to the rest, counted generously.
constexpr uint64_t kSlackBytes = uint64_t(64) << 20;

}  // namespace

uint64_t kv_cache_bytes(const ModelConfig& config, int n_sequences, int context, KvType type) {
    // Values for every position; keys in whole blocks of kKeyBlock positions
    // (engine/kv_cache.h); INT8 adds one float scale per position and kv head to each.
    const uint64_t pairs = uint64_t(n_sequences) * uint64_t(config.n_layers);
    const uint64_t key_positions =
        (uint64_t(context) + kKeyBlock - 1) / kKeyBlock * uint64_t(kKeyBlock);
    const uint64_t positions = pairs * (uint64_t(context) + key_positions);
    const uint64_t elements = positions * uint64_t(config.kv_dim());
    switch (type) {
        case KvType::f32:
            return elements * 4;
        case KvType::f16:
            return elements * 2;
        case KvType::int8:
            return elements + positions * uint64_t(config.n_kv_heads) * 4;
    }
    return 0;
}

MemoryNeed memory_need(const Model& model, const RuntimeOptions& options, int threads) {
    const ModelConfig& c = model.config;
    const int context = options.context > 0 ? options.context : c.max_seq_len;
    const uint64_t b = uint64_t(std::max(options.max_batch, 1));
    MemoryNeed need;
    need.weights = model.weight_bytes();
    need.kv_cache = kv_cache_bytes(c, std::max(options.n_sequences, 1), context, options.kv_type);
    // Per batch row x, xb, q, att_out: dim; k, v: kv_dim; gate, up: hidden;
    // gathered (act-order models only): counted as hidden. Per logit row
    // final_rows: dim; logits: vocab.
    const uint64_t floats_per_row =
        4 * uint64_t(c.dim) + 2 * uint64_t(c.kv_dim()) + 3 * uint64_t(c.hidden_dim);
    const uint64_t logit_rows = options.max_logit_rows > 0
                                    ? uint64_t(std::min(options.max_logit_rows, options.max_batch))
                                    : b;
    const uint64_t floats_per_logit_row = uint64_t(c.dim) + uint64_t(c.vocab_size);
    const uint64_t scores = uint64_t(std::max(threads, 1)) *
                            uint64_t(c.n_heads / std::max(c.n_kv_heads, 1)) * uint64_t(context);
    // Activations quantized to int8 for the kernels: about one byte per input value.
    const uint64_t quantized = b * uint64_t(std::max(c.dim, c.hidden_dim)) * 2;
    need.buffers = 4 * (b * floats_per_row + logit_rows * floats_per_logit_row + scores) +
                   quantized + kSlackBytes;
    return need;
}

std::optional<uint64_t> available_memory_bytes() {
    const auto available = proc_kib_field("/proc/meminfo", "MemAvailable");
    if (!available) return std::nullopt;
    const uint64_t own = proc_kib_field("/proc/self/status", "RssAnon").value_or(0);
    uint64_t bytes = *available + own;
    // An address-space limit (ulimit -v) caps it too: what is left of it, plus
    // the owned memory already counted in the need.
    struct rlimit limit {};
    if (getrlimit(RLIMIT_AS, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
        const uint64_t mapped = proc_kib_field("/proc/self/status", "VmSize").value_or(0);
        const uint64_t cap = uint64_t(limit.rlim_cur);
        bytes = std::min(bytes, (cap > mapped ? cap - mapped : 0) + own);
    }
    return bytes;
}

void check_memory(const MemoryNeed& need, uint64_t available, const std::string& context_option,
                  const std::string& batch_option) {
    if (need.total() <= available) return;
    std::string advice;
    if (need.kv_cache >= need.buffers && need.kv_cache >= need.weights) {
        advice = "lower " + context_option + " (or use --kv int8)";
    } else if (need.buffers >= need.weights) {
        advice = "lower " + batch_option;
    } else {
        advice = "use a smaller or more strongly quantized model";
    }
    throw std::runtime_error("needs " + byte_size_text(need.total()) + " of memory (weights " +
                             byte_size_text(need.weights) + ", KV cache " +
                             byte_size_text(need.kv_cache) + ", buffers " +
                             byte_size_text(need.buffers) + ") but " + byte_size_text(available) +
                             " is available: " + advice);
}

}  // namespace nibble

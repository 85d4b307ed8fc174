// The process-wide table behind NIBBLE_PROFILE=1 and its report at exit.
#include "engine/profile.h"

#include <array>
#include <cstdio>
#include <cstdlib>

namespace nibble {

namespace {

constexpr const char* kOpNames[] = {
    "embedding",     "rmsnorm",        "matmul q,k,v", "rope + kv store", "attention",
    "matmul wo",     "matmul gate,up", "swiglu/geglu", "matmul down",     "residual add",
    "matmul output", "bias q,k,v",     "q,k norm",     "post norms",      "logit soft-cap"};
static_assert(sizeof(kOpNames) / sizeof(kOpNames[0]) == size_t(ProfileOp::count));

// Index 0: decoding (one-token batches), 1: prompt batches. The forward pass
// runs these scopes on its calling thread only, so plain doubles suffice.
struct Table {
    std::array<std::array<double, size_t(ProfileOp::count)>, 2> seconds{};
    std::array<long long, 2> calls{}, tokens{};

    ~Table() {
        if (!profile_enabled()) return;
        for (int k = 0; k < 2; ++k) {
            if (calls[size_t(k)] == 0) continue;
            double total = 0.0;
            for (double s : seconds[size_t(k)]) total += s;
            const double per_token_ms = 1e3 / double(tokens[size_t(k)]);
            std::fprintf(stderr, "\nNIBBLE_PROFILE %s: %lld forward calls, %lld tokens\n",
                         k == 0 ? "decode" : "prompt", calls[size_t(k)], tokens[size_t(k)]);
            std::fprintf(stderr, "  %-16s %10s %12s %7s\n", "op", "total s", "ms/token", "share");
            for (size_t op = 0; op < size_t(ProfileOp::count); ++op) {
                const double s = seconds[size_t(k)][op];
                std::fprintf(stderr, "  %-16s %10.4f %12.4f %6.1f%%\n", kOpNames[op], s,
                             s * per_token_ms, total > 0 ? 100.0 * s / total : 0.0);
            }
            std::fprintf(stderr, "  %-16s %10.4f %12.4f\n", "sum", total, total * per_token_ms);
        }
    }
};

Table& table() {
    static Table t;
    return t;
}

}  // namespace

bool profile_enabled() {
    static const bool on = [] {
        const char* v = std::getenv("NIBBLE_PROFILE");
        return v != nullptr && *v != '\0' && *v != '0';
    }();
    return on;
}

void profile_add(ProfileOp op, int n_tokens, double seconds) {
    table().seconds[n_tokens == 1 ? 0 : 1][size_t(op)] += seconds;
}

void profile_count_call(int n_tokens) {
    if (!profile_enabled()) return;
    Table& t = table();
    t.calls[n_tokens == 1 ? 0 : 1] += 1;
    t.tokens[n_tokens == 1 ? 0 : 1] += n_tokens;
}

}  // namespace nibble

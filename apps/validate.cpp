// Up-front checks of options and inputs (see validate.h).
#include "apps/validate.h"

#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <thread>

#include "apps/commands.h"
#include "apps/memory_budget.h"
#include "models/input_file.h"

namespace nibble::app {

int available_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    int n = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
    if (n <= 0) n = int(std::thread::hardware_concurrency());
    return std::max(n, 1);
}

int checked_thread_count(int requested, int default_threads) {
    if (requested < 0) {
        throw UsageError("--threads " + std::to_string(requested) +
                         ": must be >= 0 (0: the physical cores)");
    }
    if (requested == 0) return std::max(default_threads, 1);
    const int cpus = available_cpus();
    if (requested > cpus) {
        static bool said = false;
        if (!said) {
            std::fprintf(stderr,
                         "nibble: --threads %d is more than the %d CPUs available; using %d\n",
                         requested, cpus, cpus);
            said = true;
        }
        return cpus;
    }
    return requested;
}

void reject_extra_arguments(const cxxopts::ParseResult& args) {
    const auto& extra = args.unmatched();
    if (!extra.empty()) {
        throw UsageError("unexpected argument '" + escape_for_terminal(extra.front(), 80) + "'" +
                         (extra.size() > 1 ? " (and " + std::to_string(extra.size() - 1) + " more)"
                                           : std::string()));
    }
}

void check_state_memory(const Model& model, const RuntimeOptions& options,
                        const std::string& context_option, const std::string& batch_option) {
    if (const auto available = available_memory_bytes()) {
        const MemoryNeed need = memory_need(model, options, omp_get_max_threads());
        check_memory(need, *available, context_option, batch_option);
    }
    // It fits; say once when it is longer than the model ever saw.
    if (options.context > model.config.max_seq_len) {
        std::fprintf(stderr,
                     "nibble: a context of %d is beyond the %d positions the model was trained "
                     "on; text past them may be poor\n",
                     options.context, model.config.max_seq_len);
    }
}

int clip_n_predict(int n_predict, int prompt_tokens, int context) {
    const int room = std::max(context - prompt_tokens, 0);
    if (n_predict <= room) return n_predict;
    std::fprintf(stderr,
                 "nibble: --n-predict %d does not fit in the context of %d after %d prompt "
                 "tokens; generating at most %d\n",
                 n_predict, context, prompt_tokens, room);
    return room;
}

std::string read_text_input(const std::string& path) {
    return read_input_file(path, "text", kMaxTextFileBytes, true);
}

std::string escape_for_terminal(const std::string& text, size_t max_bytes) {
    std::string out;
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    const size_t n = text.size();
    auto hex = [&](unsigned char c) {
        static const char digits[] = "0123456789abcdef";
        out += "\\x";
        out += digits[c >> 4];
        out += digits[c & 15];
    };
    for (size_t i = 0; i < n;) {
        if (out.size() >= max_bytes) {
            out += "...";
            break;
        }
        const unsigned char c = s[i];
        if (c == '\n') {
            out += "\\n";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c < 0x20 || c == 0x7f) {
            hex(c);
        } else if (c < 0x80) {
            out += char(c);
        } else {
            // A well-formed UTF-8 sequence (no overlongs, surrogates or > U+10FFFF) is kept.
            size_t len = 0;
            if (c >= 0xC2 && c <= 0xDF) len = 2;
            if (c >= 0xE0 && c <= 0xEF) len = 3;
            if (c >= 0xF0 && c <= 0xF4) len = 4;
            bool ok = len > 0 && i + len <= n;
            for (size_t k = 1; ok && k < len; ++k) ok = (s[i + k] & 0xC0) == 0x80;
            if (ok && len == 3) {
                ok = !(c == 0xE0 && s[i + 1] < 0xA0) && !(c == 0xED && s[i + 1] >= 0xA0);
            }
            if (ok && len == 4) {
                ok = !(c == 0xF0 && s[i + 1] < 0x90) && !(c == 0xF4 && s[i + 1] >= 0x90);
            }
            // C1 controls (U+0080..U+009F) move terminals around too.
            if (ok && len == 2 && c == 0xC2 && s[i + 1] < 0xA0) ok = false;
            if (!ok) {
                hex(c);
            } else {
                out.append(text, i, len);
                i += len;
                continue;
            }
        }
        ++i;
    }
    return out;
}

}  // namespace nibble::app

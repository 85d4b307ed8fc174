// The interleaved row-block layout of the codes section (kernels/interleave.h).
#include "kernels/interleave.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "kernels/cpu_features.h"
#include "kernels/format_traits.h"

namespace nibble {

namespace {

int64_t unit_cols(const PackedLayout& l) {
    return l.format == WeightFormat::q6k ? 256 : 128;
}

}  // namespace

bool can_interleave(const PackedLayout& l) {
    // The formats whose kernels read the layout: the shared row kernels' (q8,
    // q4, q4a, nf4, iq4nl, q4k) and q6k's (a new family joins once its kernels
    // do: row_codes() is enough for a start).
    const RowFamily family = row_family(l.format);
    const bool kernels_read_it =
        (family == RowFamily::grouped && is_grouped(l.format)) || family == RowFamily::q6k;
    return kernels_read_it && l.rows >= 2;
}

PackedLayout with_interleave(PackedLayout l, int rows_per_block) {
    if (rows_per_block != 1 && rows_per_block != kInterleaveRows) {
        throw std::invalid_argument("interleave " + std::to_string(rows_per_block) +
                                    " is not 1 or " + std::to_string(kInterleaveRows));
    }
    if (rows_per_block != 1 && !can_interleave(l)) {
        throw std::invalid_argument(std::string("a ") + format_name(l.format) + " matrix of " +
                                    std::to_string(l.rows) + " rows cannot be interleaved");
    }
    l.interleave = rows_per_block;
    return l;
}

bool cpu_prefers_interleaved() {
    const CpuFeatures& cpu = cpu_features();
    // Measured on an Intel Xeon with AVX-512 and AMX (docs/BENCHMARKS.md),
    // repacked against row-major GGUF files, 1 and 2 threads:
    // - AVX-512 kernels: Q4_0 and Q4_K_M decode 2-16% faster, prompts as fast
    //   (AMX reads the layout in place).
    // - The AVX2 kernels (NIBBLE_KERNEL=avx2, the code an AVX2-only CPU runs):
    //   TinyLlama Q4_0 decodes 16-19% (1 thread) and 5-10% (2) faster, Q4_K_M
    //   7-20%, Llama-3.2-1B Q4_K_M 5-12%; prompts within +-2%. Peers' repacked
    //   layouts decode 1.2-1.9x faster than their row-major ones on an AMD EPYC
    //   (Zen 4) without AVX-512, so that family is expected to gain as much;
    //   not yet measured there with nibble.
    // The NEON and portable kernels read the layout in place too, but NEON was
    // never measured on ARM hardware: both keep row-major for GGUF files.
    return cpu.avx2;  // (every AVX-512 CPU has it too)
}

size_t interleave_unit_bytes(const PackedLayout& l) {
    return l.row_code_bytes() * size_t(unit_cols(l)) / size_t(l.padded_cols);
}

size_t interleaved_unit_offset(const PackedLayout& l, int64_t r, int64_t u) {
    const size_t row_bytes = l.row_code_bytes();
    if (l.interleave <= 1) return size_t(r) * row_bytes + size_t(u) * interleave_unit_bytes(l);
    const size_t unit = interleave_unit_bytes(l);
    const size_t n_units = (row_bytes + unit - 1) / unit;
    const int64_t block = r / l.interleave, i = r % l.interleave;
    const size_t n = size_t(std::min<int64_t>(l.interleave, l.rows - block * l.interleave));
    const size_t len = size_t(u) + 1 == n_units ? row_bytes - (n_units - 1) * unit : unit;
    return size_t(block * l.interleave) * row_bytes + size_t(u) * n * unit + size_t(i) * len;
}

size_t interleaved_unit_stride(const PackedLayout& l, int64_t r) {
    const size_t unit = interleave_unit_bytes(l);
    if (l.interleave <= 1) return unit;
    const int64_t block = r / l.interleave;
    return size_t(std::min<int64_t>(l.interleave, l.rows - block * l.interleave)) * unit;
}

void convert_interleave(const PackedLayout& from, const uint8_t* src, const PackedLayout& to,
                        uint8_t* dst) {
    if (from.format != to.format || from.rows != to.rows || from.cols != to.cols ||
        from.total_bytes != to.total_bytes || from.codes_bytes != to.codes_bytes) {
        throw std::invalid_argument("convert_interleave: layouts of different matrices");
    }
    std::memcpy(dst, src, from.total_bytes);
    if (from.interleave == to.interleave || !is_grouped(from.format)) return;
    const size_t row_bytes = from.row_code_bytes(), unit = interleave_unit_bytes(from);
    const size_t n_units = (row_bytes + unit - 1) / unit;
    for (int64_t r = 0; r < from.rows; ++r) {
        for (size_t u = 0; u < n_units; ++u) {
            const size_t len = u + 1 == n_units ? row_bytes - u * unit : unit;
            std::memcpy(dst + to.codes_offset + interleaved_unit_offset(to, r, int64_t(u)),
                        src + from.codes_offset + interleaved_unit_offset(from, r, int64_t(u)),
                        len);
        }
    }
}

namespace kernels {

const uint8_t* row_codes(const MatrixView& w, int64_t r, uint8_t* buf) {
    const PackedLayout& l = w.layout;
    const size_t row_bytes = l.row_code_bytes();
    if (l.interleave <= 1) return w.data + l.codes_offset + size_t(r) * row_bytes;
    const size_t unit = interleave_unit_bytes(l);
    const size_t n_units = (row_bytes + unit - 1) / unit;
    const int64_t block = r / l.interleave, i = r % l.interleave;
    const size_t n = size_t(std::min<int64_t>(l.interleave, l.rows - block * l.interleave));
    const uint8_t* base = w.data + l.codes_offset + size_t(block * l.interleave) * row_bytes;
    const size_t full = row_bytes / unit;  // units of U bytes
    const uint8_t* p = base + size_t(i) * unit;
    for (size_t u = 0; u < full; ++u, p += n * unit) std::memcpy(buf + u * unit, p, unit);
    if (full < n_units) {
        const size_t len = row_bytes - full * unit;
        std::memcpy(buf + full * unit, base + full * n * unit + size_t(i) * len, len);
    }
    return buf;
}

RowUnits row_units(const MatrixView& w, int64_t r) {
    return {w.data + w.layout.codes_offset + interleaved_unit_offset(w.layout, r, 0),
            interleaved_unit_stride(w.layout, r)};
}

const uint8_t* unit_codes(const MatrixView& w, int64_t r, int64_t u) {
    return w.data + w.layout.codes_offset + interleaved_unit_offset(w.layout, r, u);
}

uint8_t* code_scratch(int slot, size_t bytes) {
    struct Buffer {
        std::unique_ptr<uint8_t, decltype(&std::free)> data{nullptr, &std::free};
        size_t size = 0;
    };
    thread_local Buffer buffers[2];
    Buffer& b = buffers[slot];
    if (b.size < bytes) {
        const size_t size = align_up(bytes, 64);
        b.data.reset(static_cast<uint8_t*>(std::aligned_alloc(64, size)));
        if (!b.data) throw std::bad_alloc();
        b.size = size;
    }
    return b.data.get();
}

}  // namespace kernels

}  // namespace nibble

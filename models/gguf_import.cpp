// GGML tensor types -> nibble formats (conversions and bounds in gguf_import.h;
// block layouts in ggml_blocks.h).
#include "models/gguf_import.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "kernels/fp16.h"
#include "kernels/interleave.h"
#include "kernels/kquant_params.h"
#include "kernels/lowbit.h"
#include "kernels/q6k.h"
#include "models/ggml_blocks.h"

namespace nibble {

namespace {

using namespace ggml;

// Target format, elements per GGML block and bytes per block of each convertible
// quantized type (F32, F16 and BF16 are handled apart).
struct Conversion {
    WeightFormat format;
    int block;
    size_t block_bytes;
    const char* note;
};

const Conversion* conversion(uint32_t type) {
    static const Conversion q4_0{WeightFormat::q4, kQK, sizeof(BlockQ4_0),
                                 "q4 g32, same codes and scales (exact)"};
    static const Conversion q4_1{WeightFormat::q4a, kQK, sizeof(BlockQ4_1),
                                 "q4a g32, same codes, scales and mins (exact)"};
    static const Conversion q8_0{WeightFormat::q8, kQK, sizeof(BlockQ8_0),
                                 "q8 g32, same codes and scales (exact)"};
    static const Conversion q5_0{WeightFormat::q5_0, kQK, sizeof(BlockQ5_0),
                                 "q5_0, the same blocks (used in place)"};
    static const Conversion q4_k{WeightFormat::q4k, kQKK, sizeof(BlockQ4_K),
                                 "q4k, same codes, d, dmin and 6-bit scales and mins (exact)"};
    static const Conversion q5_1{WeightFormat::q5_1, kQK, sizeof(BlockQ5_1),
                                 "q5_1, the same blocks (used in place)"};
    static const Conversion q5_k{WeightFormat::q5k, kQKK, sizeof(BlockQ5_K),
                                 "q5k, the same blocks (used in place)"};
    static const Conversion q3_k{WeightFormat::q3k, kQKK, 110,
                                 "q3k, the same blocks (used in place)"};
    static const Conversion q2_k{WeightFormat::q2k, kQKK, 84,
                                 "q2k, the same blocks (used in place)"};
    static const Conversion q6_k{WeightFormat::q6k, kQKK, sizeof(BlockQ6_K),
                                 "q6k, same codes, scales and d (exact)"};
    static const Conversion iq4_nl{WeightFormat::iq4nl, kQK, sizeof(BlockIQ4_NL),
                                   "iq4nl g32, same codes and scales (exact)"};
    static const Conversion iq4_xs{WeightFormat::iq4nl, kQKK, sizeof(BlockIQ4_XS),
                                   "iq4nl g32, same codes, scales d*(ls-32) rounded to fp16 "
                                   "(|error| <= 2^-11 |w|)"};
    switch (type) {
        case Q4_0:
            return &q4_0;
        case Q4_1:
            return &q4_1;
        case Q8_0:
            return &q8_0;
        case Q5_0:
            return &q5_0;
        case Q5_1:
            return &q5_1;
        case IQ4_NL:
            return &iq4_nl;
        case IQ4_XS:
            return &iq4_xs;
        case Q4_K:
            return &q4_k;
        case Q5_K:
            return &q5_k;
        case Q3_K:
            return &q3_k;
        case Q2_K:
            return &q2_k;
        case Q6_K:
            return &q6_k;
        default:
            return nullptr;
    }
}

// Group size of an import's target format: q6k's super-block, a ggml block
// format's block, else 32.
int group_size(WeightFormat f) {
    return f == WeightFormat::q6k    ? int(kQ6kBlock)
           : is_ggml_block_format(f) ? int(lowbit_block_cols(f))
                                     : kQK;
}

template <class B>
B block_at(const uint8_t* row, int64_t i) {
    B b;
    std::memcpy(&b, row + size_t(i) * sizeof(B), sizeof(B));
    return b;
}

// Writes codes and per-group parameters into a nibble blob (group size 32, so
// group g of a row is code chunk g). The codes go where the layout's
// interleave puts them: a chunk never straddles one of its 128-column units.
class Target {
  public:
    Target(const PackedLayout& l, uint8_t* blob)
        : l_(l), blob_(blob), row_bytes_(l.row_code_bytes()), unit_(interleave_unit_bytes(l)) {}

    uint8_t* nibbles(int64_t r, int64_t g) const { return code(r, 16 * size_t(g)); }
    int8_t* bytes(int64_t r, int64_t g) const {
        return reinterpret_cast<int8_t*>(code(r, 32 * size_t(g)));
    }
    // q4k: the 16 parameter bytes of super-block i of row r.
    uint8_t* kparams(int64_t r, int64_t i) const {
        return blob_ + l_.scales_offset +
               size_t(r * (l_.cols / kQKK) + i) * size_t(kKQuantParamBytes);
    }
    // q6k: the code bytes and the parameter bytes of super-block i of row r.
    uint8_t* q6k_code_bytes(int64_t r, int64_t i) const {
        return code(r, size_t(i) * size_t(kQ6kCodeBytes));
    }
    uint8_t* q6k_param_bytes(int64_t r, int64_t i) const {
        return blob_ + l_.scales_offset + size_t(r * (l_.cols / kQKK) + i) * size_t(kQ6kParamBytes);
    }
    void scale(int64_t r, int64_t g, uint16_t h) const { put(l_.scales_offset, r, g, h); }
    void min(int64_t r, int64_t g, uint16_t h) const { put(l_.mins_offset, r, g, h); }
    // Rounds v to fp16; records an overflow (checked after the parallel loop).
    uint16_t half(float v) const {
        const uint16_t h = fp32_to_fp16(v);
        if ((h & 0x7c00) == 0x7c00) overflow_ = true;
        return h;
    }
    bool overflowed() const { return overflow_; }

  private:
    // Byte `byte` of row r's codes (in row-major order).
    uint8_t* code(int64_t r, size_t byte) const {
        if (l_.interleave <= 1) return blob_ + l_.codes_offset + size_t(r) * row_bytes_ + byte;
        return blob_ + l_.codes_offset + interleaved_unit_offset(l_, r, int64_t(byte / unit_)) +
               byte % unit_;
    }
    void put(size_t offset, int64_t r, int64_t g, uint16_t h) const {
        std::memcpy(blob_ + offset + 2 * size_t(r * l_.groups_per_row + g), &h, 2);
    }
    const PackedLayout& l_;
    uint8_t* blob_;
    size_t row_bytes_, unit_;
    mutable std::atomic<bool> overflow_{false};
};

// Nibble chunk from 32 codes 0..15 in element order.
void pack_chunk(const uint8_t* codes, uint8_t* out) {
    for (int j = 0; j < 16; ++j) out[j] = uint8_t(codes[j] | codes[j + 16] << 4);
}

// Converts GGML row r (`src`: its blocks) into the nibble blob.
void convert_row(uint32_t type, const uint8_t* src, int64_t r, int64_t cols, const Target& t) {
    switch (type) {
        case Q4_0:
            for (int64_t i = 0; i < cols / kQK; ++i) {
                const auto b = block_at<BlockQ4_0>(src, i);
                std::memcpy(t.nibbles(r, i), b.qs, 16);
                t.scale(r, i, b.d);
            }
            return;
        case Q4_1:
            for (int64_t i = 0; i < cols / kQK; ++i) {
                const auto b = block_at<BlockQ4_1>(src, i);
                std::memcpy(t.nibbles(r, i), b.qs, 16);
                t.scale(r, i, b.d);
                t.min(r, i, b.m);
            }
            return;
        case Q8_0:
            for (int64_t i = 0; i < cols / kQK; ++i) {
                const auto b = block_at<BlockQ8_0>(src, i);
                std::memcpy(t.bytes(r, i), b.qs, 32);
                t.scale(r, i, b.d);
            }
            return;
        case Q4_K:
            for (int64_t i = 0; i < cols / kQKK; ++i) {
                const auto b = block_at<BlockQ4_K>(src, i);
                uint8_t* params = t.kparams(r, i);  // the same d, dmin and 12 bytes
                std::memcpy(params, &b.d, 2);
                std::memcpy(params + 2, &b.dmin, 2);
                std::memcpy(params + 4, b.scales, 12);
                for (int s = 0; s < 8; ++s) {
                    uint8_t codes[32];
                    const uint8_t* q = b.qs + 32 * (s / 2);
                    for (int l = 0; l < 32; ++l) codes[l] = s % 2 == 0 ? q[l] & 0x0f : q[l] >> 4;
                    pack_chunk(codes, t.nibbles(r, 8 * i + s));
                }
            }
            return;
        case IQ4_NL:
            for (int64_t i = 0; i < cols / kQK; ++i) {
                const auto b = block_at<BlockIQ4_NL>(src, i);
                std::memcpy(t.nibbles(r, i), b.qs, 16);
                t.scale(r, i, b.d);
            }
            return;
        case IQ4_XS:
            for (int64_t i = 0; i < cols / kQKK; ++i) {
                const auto b = block_at<BlockIQ4_XS>(src, i);
                const float d = fp16_to_fp32(b.d);
                for (int s = 0; s < 8; ++s) {
                    std::memcpy(t.nibbles(r, 8 * i + s), b.qs + 16 * s, 16);
                    t.scale(r, 8 * i + s, t.half(d * float(iq4_xs_scale(b, s) - 32)));
                }
            }
            return;
        case Q6_K:  // the block's bytes in two sections: ql, qh | scales, d
            static_assert(sizeof(BlockQ6_K) == kQ6kCodeBytes + kQ6kParamBytes);
            for (int64_t i = 0; i < cols / kQKK; ++i) {
                const uint8_t* b = src + size_t(i) * sizeof(BlockQ6_K);
                std::memcpy(t.q6k_code_bytes(r, i), b, kQ6kCodeBytes);
                std::memcpy(t.q6k_param_bytes(r, i), b + kQ6kCodeBytes, kQ6kParamBytes);
            }
            return;
        default:
            return;
    }
}

}  // namespace

std::string ggml_conversion_note(uint32_t type) {
    switch (type) {
        case F32:
            return "F32 -> f32 (used in place; norm vectors copied)";
        case F16:
            return "F16 -> f16 (used in place)";
        case BF16:
            return "BF16 -> f16 where every value fits exactly, else f32 (exact)";
        default:
            break;
    }
    const Conversion* c = conversion(type);
    return c ? type_name(type) + " -> " + c->note : "";
}

namespace {

// The conversion of a quantized type, checked against the tensor's shape.
const Conversion& checked_conversion(const std::string& name, uint32_t type, int64_t cols) {
    const Conversion* c = conversion(type);
    if (c == nullptr) {
        throw std::runtime_error(
            "tensor " + name + " has type " + type_name(type) +
            ", which nibble cannot import (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, "
            "Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS)");
    }
    if (cols % c->block != 0) {
        throw std::runtime_error("tensor " + name + " has " + std::to_string(cols) +
                                 " columns, not a multiple of the " + type_name(type) +
                                 " block of " + std::to_string(c->block));
    }
    return *c;
}

}  // namespace

PackedLayout ggml_blocks_layout(const std::string& name, uint32_t type, int64_t rows,
                                int64_t cols) {
    const WeightFormat f = checked_conversion(name, type, cols).format;
    return make_layout(f, rows, cols, group_size(f));
}

Tensor import_ggml_blocks(Model& model, const std::string& name, uint32_t type, int64_t rows,
                          int64_t cols, const uint8_t* data, bool repack,
                          const MappedFile* source) {
    const Conversion& c = checked_conversion(name, type, cols);
    PackedLayout layout = make_layout(c.format, rows, cols, group_size(c.format));
    if (repack && can_interleave(layout)) layout = with_interleave(layout, kInterleaveRows);
    if (is_ggml_block_format(c.format)) {  // the file's blocks are the blob: used in place
        Tensor out;
        out.name = name;
        out.view.layout = layout;
        out.view.data = data;
        return out;
    }
    Tensor out = make_owned_tensor(model, name, layout);
    const Target target(out.view.layout, writable(out));
    const size_t row_bytes = size_t(cols / c.block) * c.block_bytes;
    // Slices of about 8 MiB of source rows, each one's pages released once
    // converted when `source` is given: a large tensor's source and its copy
    // are not both resident.
    const int64_t slice = std::max<int64_t>(1, int64_t((size_t(8) << 20) / row_bytes));
    for (int64_t first = 0; first < rows; first += slice) {
        const int64_t end = std::min(rows, first + slice);
#pragma omp parallel for schedule(static) if ((end - first) * cols >= (int64_t(1) << 18))
        for (int64_t r = first; r < end; ++r) {
            convert_row(type, data + size_t(r) * row_bytes, r, cols, target);
        }
        if (source != nullptr) {
            source->release(data + size_t(first) * row_bytes, size_t(end - first) * row_bytes);
        }
    }
    if (target.overflowed()) {
        throw std::runtime_error("tensor " + name + ": a " + type_name(type) +
                                 " scale does not fit in fp16");
    }
    return out;
}

SourceTensor ggml_source_tensor(const std::string& name, uint32_t type, int64_t rows, int64_t cols,
                                const uint8_t* data, size_t n_bytes) {
    SourceTensor s;
    s.name = name;
    s.encoding = type == F32    ? SourceEncoding::f32
                 : type == F16  ? SourceEncoding::f16
                 : type == BF16 ? SourceEncoding::bf16
                                : SourceEncoding::ggml_blocks;
    s.ggml_type = type;
    s.rows = rows;
    s.cols = cols;
    s.data = data;
    s.n_bytes = n_bytes;
    return s;
}

}  // namespace nibble

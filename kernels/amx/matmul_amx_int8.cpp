// AMX integer matmul for prompts and batches (at least kAmxMinTokens tokens):
// 16 weight rows x 16 tokens x one 32-column block per tile instruction (one
// 16-column sub-block for q6k, whose scales change every 16 columns).
//
// Tiles (palette 1), for the grouped formats:
//   A  16 rows x 32 bytes: one block of 16 weight rows, one byte per weight:
//      signed (q4: code - 8, nf4/iq4nl: the int8 code book, q8: the code) for
//      TDPBSSD, or the unsigned q4a code for TDPBUSD;
//   B  8 rows x 64 bytes: the same block of 16 tokens' int8 activations, in
//      the tile's pair-of-dwords order: row i holds, for token n, the four
//      bytes of columns 4i..4i+3 at bytes 4n..4n+3;
//   C  16 x 16 int32: D(m, n) = sum_c w(m, c) x(n, c), the whole-block dot
//      product, exactly the integer the AVX-512 kernel forms.
// The AVX-512 epilogue then does, per row m and for 16 tokens at once,
//   a_k(m) = fma(float(D), d_x(b) * d_w(m, b), a_k(m))   with k = b mod 4,
// and the output is (a_0 + a_2) + (a_1 + a_3): the same float operations in
// the same order as kernels/avx512/matmul_avx512_int8.cpp, so the results are
// bitwise equal to it (checked by tests/test_kernels_matmul.cpp).
//
// q6k (kernels/q6k.h) runs the same pipeline with 16-column blocks: A 16 rows
// x 16 bytes of q - 32, B 4 rows x 64 bytes of natural-order activations, D the
// sub-block's exact dot product, and the epilogue
//   a_k(m) = fma(float(D), (d sc_j(m)) * d_x(b), a_k(m))   with k = j mod 4
// for sub-block j of activation block b = j / 2: the AVX-512 q6k kernel's
// operations in its order (tests/test_kernels_q6k.cpp: GEMM == GEMV bitwise).
// The ggml block formats (kernels/lowbit.h: Q5_0, Q5_1, Q5_K, Q3_K, Q2_K) run
// it too, with A the unsigned codes u (0..31, read as signed) of 16-column
// block j and two accumulators per row, as their AVX-512 kernel
// (kernels/avx2/matmul_lowbit_256.inc) has two halves per 32 columns:
//   a_h(m) = fma(s_j(m) float(D) - m_j(m) sum_x(j), d_x(b), a_h(m)),  h = j mod 2,
// output a_0 + a_1 (tests/test_kernels_lowbit.cpp: GEMM == GEMV bitwise).
// nibble's q3 and q2 (kernels/q2q3.h) are grouped formats here: A holds q3's
// q - 4 or q2's q, and q2's minimums are added per group as q4a's are, as in
// their AVX-512 kernel (tests/test_kernels_q2q3.cpp).
//
// Per call, the rows [r0, r1) are taken in panels of 16 (r0 is a multiple of
// 16 because the dispatcher's tasks are 16 rows; a last partial panel is
// padded with zero rows). A panel's blocks are unpacked once into A tiles and
// used for every token tile. The activations are repacked into B tiles once
// per thread and activation generation and reused by every later call.
#include <immintrin.h>

#include <cstring>

// GCC 12's avx512fintrin.h builds _mm512_undefined_* from a self-initialised
// variable, which -W(maybe-)uninitialized reports wherever an intrinsic using
// it is inlined: a false positive in the header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#define NIBBLE_ISA_NAMESPACE amx
#include "kernels/avx2/lowbit_decode_256.h"
#include "kernels/avx2/q2q3_unpack_256.h"
#include "kernels/avx512/avx512_common.h"
#include "kernels/avx512/kquant_params_avx512.h"
#include "kernels/avx512/q6k_unpack_avx512.h"
#include "kernels/format_traits.h"
#include "kernels/interleave.h"
#include "kernels/lowbit.h"
#include "kernels/matmul_variants.h"
#include "kernels/q6k.h"

namespace nibble::kernels::amx {

namespace {

constexpr int kPanelRows = 16;
constexpr int kTileTokens = 16;
// q6k and the ggml block formats (kernels/lowbit.h): scales per 16 columns,
// natural-order activations.
template <WeightFormat F>
constexpr bool kSubBlocks = F == WeightFormat::q6k || is_ggml_block_format(F);
// Columns (bytes) of one block of one row or token: a tile instruction's depth.
template <WeightFormat F>
constexpr int kBlockBytes = kSubBlocks<F> ? 16 : 32;
// Accumulators a_k per row (block b adds into k = b mod kPasses): the AVX-512
// kernels' lanes, 4 for the grouped formats and q6k, 2 halves for the ggml
// block formats.
template <WeightFormat F>
constexpr int kPasses = is_ggml_block_format(F) ? 2 : 4;
// An A tile (16 rows of one block) and a B tile (16 tokens) have the same size.
template <WeightFormat F>
constexpr int kTileBytes = kPanelRows* kBlockBytes<F>;

// Tile registers. A step multiplies one block of the panel (A) by the same
// block of a token tile (B) into a C tile. Consecutive steps use disjoint
// registers (even blocks: C 0, A 2, B 4; odd: C 1, A 3, B 5): there is no
// renaming of tile registers, so a step's loads would otherwise wait until
// the previous step's multiplication has finished reading its tiles. A
// step's multiplication is in flight while the previous step's results are
// read back and scaled. (Literal numbers: GCC's tile intrinsics paste the
// register number into the assembly text.)

// LDTILECFG's 64-byte operand.
struct alignas(64) TileConfig {
    uint8_t palette = 1;
    uint8_t start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
};

TileConfig tile_config(int block_bytes) {
    TileConfig c;
    for (int t = 0; t < 2; ++t) {  // C
        c.colsb[t] = kTileTokens * 4;
        c.rows[t] = kPanelRows;
    }
    for (int t = 2; t < 4; ++t) {  // A
        c.colsb[t] = uint16_t(block_bytes);
        c.rows[t] = kPanelRows;
    }
    for (int t = 4; t < 6; ++t) {  // B
        c.colsb[t] = kTileTokens * 4;
        c.rows[t] = uint8_t(block_bytes / 4);
    }
    return c;
}

// Scratch slots (amx::scratch): the activations of the grouped formats and of
// the 16-column formats (q6k, ggml blocks) have their own, each with its own
// generation (amx::packed_generation).
enum Slot {
    kSlotPanel = 0,
    kSlotPanelScales = 1,
    kSlotActivations = 2,
    kSlotAccumulators = 3,
    kSlotActivationsQ6k = 4
};

// Repacked activations of all token tiles: B tiles [tile][block], then the
// block scales [tile][block][16 tokens] (0 for padding tokens; 16-column
// blocks: the scale of the 32-column activation block holding the block), then
// (16-column blocks) the sums of each block's activation codes, as floats,
// [tile][block][16 tokens].
// For the grouped formats, the tokens' group sums (activation_quant.h) as
// [tile][group][16 tokens] (0 for padding tokens), for q4a's and q2's minimums.
struct PackedActivations {
    const int8_t* tiles;
    const float* scales;
    const float* code_sums;
    const float* group_sums;
    int64_t n_token_tiles;
};

// Offset of the 4 bytes of columns 4i..4i+3 of block b in a quad-ordered row
// (kernels/activation_quant.h: [b0 0..15][b1 0..15][b2 0..15][b3 0..15][b0 16..31]...).
inline int64_t quad_offset(int64_t b, int i) {
    const int64_t q = b >> 2, k = b & 3;
    return 128 * q + 16 * k + (i < 4 ? 4 * i : 64 + 4 * (i - 4));
}

template <WeightFormat F>
PackedActivations pack_activations(const QuantizedActivations& qa, int64_t n_blocks) {
    constexpr bool sub = kSubBlocks<F>;
    constexpr int block_bytes = kBlockBytes<F>;
    const int64_t n_tiles = (qa.n_tokens + kTileTokens - 1) / kTileTokens;
    const size_t tile_bytes = size_t(n_tiles * n_blocks) * kTileBytes<F>;
    const size_t scale_bytes = size_t(n_tiles * n_blocks) * kTileTokens * sizeof(float);
    const size_t gpr = sub ? 0 : size_t(qa.groups_per_row);
    const size_t sums_floats = size_t(n_tiles) * gpr * kTileTokens;
    uint8_t* base = scratch(sub ? kSlotActivationsQ6k : kSlotActivations,
                            tile_bytes + (sub ? 2 : 1) * scale_bytes + sums_floats * sizeof(float));
    auto* tiles = reinterpret_cast<int8_t*>(base);
    auto* scales = reinterpret_cast<float*>(base + tile_bytes);
    float* code_sums = sub ? scales + scale_bytes / sizeof(float) : nullptr;
    float* group_sums = sub ? nullptr : scales + scale_bytes / sizeof(float);
    const PackedActivations p{tiles, scales, code_sums, group_sums, n_tiles};
    uint64_t& generation = packed_generation(sub ? 1 : 0);
    if (generation == qa.generation) return p;
    for (int64_t tt = 0; tt < n_tiles; ++tt) {
        for (int n = 0; n < kTileTokens; ++n) {
            const int t = int(tt * kTileTokens) + n;
            const bool valid = t < qa.n_tokens;
            const int8_t* xq = valid ? qa.token_q(t) : nullptr;
            const float* xd = valid ? qa.token_d(t) : nullptr;
            if constexpr (!sub) {
                const float* gs = valid ? qa.token_group_sums(t) : nullptr;
                for (size_t g = 0; g < gpr; ++g)
                    group_sums[(size_t(tt) * gpr + g) * kTileTokens + size_t(n)] =
                        valid ? gs[g] : 0.0f;
            }
            for (int64_t b = 0; b < n_blocks; ++b) {
                int8_t* tile = tiles + (tt * n_blocks + b) * kTileBytes<F>;
                for (int i = 0; i < block_bytes / 4; ++i) {
                    int8_t* dst = tile + i * (4 * kTileTokens) + 4 * n;
                    if (valid) {
                        std::memcpy(dst, xq + (sub ? block_bytes * b + 4 * i : quad_offset(b, i)),
                                    4);
                    } else {
                        std::memset(dst, 0, 4);
                    }
                }
                const int64_t at = (tt * n_blocks + b) * kTileTokens + n;
                scales[at] = valid ? xd[sub ? b / 2 : b] : 0.0f;
                if constexpr (sub) {
                    int32_t sum = 0;
                    for (int c = 0; valid && c < block_bytes; ++c) sum += xq[block_bytes * b + c];
                    code_sums[at] = float(sum);
                }
            }
        }
    }
    generation = qa.generation;
    return p;
}

// The signed int8 code book of a code-book format (nf4, iq4nl) for vpshufb in
// every 128-bit lane.
template <WeightFormat F>
inline __m512i codebook_signed_table() {
    return _mm512_broadcast_i32x4(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(kCodeBookInt8<F>)));
}

// Code bytes of 4 blocks of a row (16 each for 4-bit formats, 32 for q8).
template <WeightFormat F>
constexpr int kQuadBytes = 4 * kChunkBytes<F>;

// Writes blocks 4q..4q+n-1 of one row as tile bytes: block b's 32 weights go
// to panel + b * kTileBytes<F> + m * 32.
template <WeightFormat F>
inline void unpack_quad(const uint8_t* p, int64_t q, int n, uint8_t* panel, int m) {
    if constexpr (F == WeightFormat::q8) {
        // Blocks are 32 natural-order signed bytes: copy them.
        for (int k = 0; k < n; ++k) {
            std::memcpy(panel + (4 * q + k) * kTileBytes<F> + m * kBlockBytes<F>, p + 32 * k, 32);
        }
        return;
    } else {
        const __mmask64 mask = n == 4 ? ~__mmask64(0) : (__mmask64(1) << (16 * n)) - 1;
        const __m512i c = _mm512_maskz_loadu_epi8(mask, p);
        const __m512i nibble = _mm512_set1_epi8(0x0f);
        __m512i l = _mm512_and_si512(c, nibble);                        // columns 0..15
        __m512i h = _mm512_and_si512(_mm512_srli_epi16(c, 4), nibble);  // columns 16..31
        if constexpr (F == WeightFormat::q4) {
            l = _mm512_sub_epi8(l, _mm512_set1_epi8(8));
            h = _mm512_sub_epi8(h, _mm512_set1_epi8(8));
        } else if constexpr (FormatTraits<F>::code_book) {
            const __m512i table = codebook_signed_table<F>();
            l = _mm512_shuffle_epi8(table, l);
            h = _mm512_shuffle_epi8(table, h);
        }
        // [l0 h0 l1 h1] and [l2 h2 l3 h3] in 128-bit lanes: block k's 32 bytes
        // are 256-bit half k of these.
        const __m512i b01 =
            _mm512_permutex2var_epi64(l, _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), h);
        const __m512i b23 =
            _mm512_permutex2var_epi64(l, _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15), h);
        uint8_t* dst = panel + 4 * q * kTileBytes<F> + m * kBlockBytes<F>;
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm512_castsi512_si256(b01));
        if (n > 1) {
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + kTileBytes<F>),
                                _mm512_extracti64x4_epi64(b01, 1));
        }
        if (n > 2) {
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 2 * kTileBytes<F>),
                                _mm512_castsi512_si256(b23));
        }
        if (n > 3) {
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 3 * kTileBytes<F>),
                                _mm512_extracti64x4_epi64(b23, 1));
        }
    }
}

// One row's group scales or minimums (stream) as floats: decoded from the
// double-quantized codes, or converted from fp16. Not for q4k.
void decode_group_params(const MatrixView& w, GroupStream stream, int64_t row, float* out) {
    const PackedLayout& l = w.layout;
    if (l.double_quant) {
        decode_dq_rows(w, stream, row, 1, out);
        return;
    }
    const int64_t gpr = l.groups_per_row;
    const size_t offset = stream == GroupStream::scales ? l.scales_offset : l.mins_offset;
    const auto* p16 = reinterpret_cast<const uint16_t*>(w.data + offset) + row * gpr;
    for (int64_t g = 0; g < gpr; g += 16) {
        const int64_t left = gpr - g;
        const __mmask16 k = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
        _mm512_mask_storeu_ps(out + g, k, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p16 + g)));
    }
}

// One panel: A tiles for every block (zero rows past n_valid) and the weight
// scales of every group of every row, d_w(m, g) at scales[m * groups_per_row + g]
// (0 for rows past n_valid); block b belongs to group b >> group_shift.
// q4a (q4k) and q2: the minimums too, m(m, g) at mins[m * groups_per_row + g].
template <WeightFormat F>
void unpack_panel(const MatrixView& w, int64_t row0, int n_valid, int64_t n_blocks, uint8_t* panel,
                  float* scales, float* mins) {
    constexpr bool has_mins = F == WeightFormat::q4a || F == WeightFormat::q2;
    const PackedLayout& l = w.layout;
    const int64_t gpr = l.groups_per_row;
    const size_t row_bytes = size_t(kChunkBytes<F> * (l.padded_cols / 32));
    if (n_valid < kPanelRows) std::memset(panel, 0, size_t(n_blocks) * kTileBytes<F>);
    for (int m = 0; m < kPanelRows; ++m) {
        const int64_t row = row0 + m;
        float* row_scales = scales + m * gpr;
        float* row_mins = mins + m * gpr;
        if (m >= n_valid) {
            std::memset(row_scales, 0, size_t(gpr) * sizeof(float));
            if (has_mins) std::memset(row_mins, 0, size_t(gpr) * sizeof(float));
            continue;
        }
        if constexpr (is_q2q3(F)) {  // block b's 32 codes (q3: q - 4) in column order
            const uint8_t* codes = w.data + l.codes_offset + size_t(row) * row_bytes;
            constexpr bool q3 = F == WeightFormat::q3;
            for (int64_t b = 0; b < n_blocks; ++b) {
                __m256i v = unpack_chunk<q3>(codes + kChunkBytes<F> * b);
                if constexpr (q3) v = _mm256_sub_epi8(v, _mm256_set1_epi8(4));
                _mm256_storeu_si256(
                    reinterpret_cast<__m256i*>(panel + b * kTileBytes<F> + m * kBlockBytes<F>), v);
            }
        } else {
            // Quad q of the row in place. Row-major: at q * Q from the row's
            // start (Q = kQuadBytes). Interleaved (kernels/interleave.h), a
            // unit is one quad: row i of a block of n rows has its quad q at
            // q n Q + i Q from the block's start, the row's last (short) quad
            // at (n_quads - 1) n Q + i L, L the short quad's bytes.
            constexpr size_t Q = kQuadBytes<F>;
            const int64_t n_quads = (n_blocks + 3) / 4;
            const uint8_t* first = w.data + l.codes_offset + size_t(row) * row_bytes;
            size_t stride = Q;
            const uint8_t* last = first + size_t(n_quads - 1) * Q;
            if (l.interleave > 1) {
                const int64_t block = row / l.interleave, i = row % l.interleave;
                const int64_t n = l.rows - block * l.interleave < l.interleave
                                      ? l.rows - block * l.interleave
                                      : l.interleave;
                const uint8_t* start =
                    w.data + l.codes_offset + size_t(block * l.interleave) * row_bytes;
                first = start + size_t(i) * Q;
                stride = size_t(n) * Q;
                last = start + size_t(n_quads - 1) * stride +
                       size_t(i) * (row_bytes - size_t(n_quads - 1) * Q);
            }
            for (int64_t q = 0; q < n_quads; ++q) {
                const int64_t left = n_blocks - 4 * q;
                unpack_quad<F>(q + 1 < n_quads ? first + size_t(q) * stride : last, q,
                               left < 4 ? int(left) : 4, panel, m);
            }
        }
        if (l.format == WeightFormat::q4k) {  // K-coded (q4a's kernel)
            decode_q4k_row_avx512(w.data + l.scales_offset + size_t(row * gpr / 8) * 16, gpr / 8,
                                  row_scales, row_mins);
        } else {
            decode_group_params(w, GroupStream::scales, row, row_scales);
            if constexpr (has_mins) decode_group_params(w, GroupStream::mins, row, row_mins);
        }
    }
}

// One q6k panel: A tiles of every 16-column block j (the signed codes q - 32;
// zero rows past n_valid) and each row's sub-block scales d sc_j at
// scales[m * n_blocks + j] (0 for rows past n_valid). Half h of super-block i
// unpacks into two registers of 64 columns, whose 128-bit lanes are the blocks
// 16i + 8h + 0..3 and 16i + 8h + 4..7.
void unpack_panel_q6k(const MatrixView& w, int64_t row0, int n_valid, int64_t n_blocks,
                      uint8_t* panel, float* scales) {
    constexpr WeightFormat F = WeightFormat::q6k;
    constexpr int tile = kTileBytes<F>;
    const PackedLayout& l = w.layout;
    const int64_t n_super = l.groups_per_row;
    if (n_valid < kPanelRows) std::memset(panel, 0, size_t(n_blocks) * tile);
    const __m512i c32 = _mm512_set1_epi8(32);
    for (int m = 0; m < kPanelRows; ++m) {
        const int64_t row = row0 + m;
        float* row_scales = scales + m * n_blocks;
        if (m >= n_valid) {
            std::memset(row_scales, 0, size_t(n_blocks) * sizeof(float));
            continue;
        }
        // (super-block i is unit i of either layout: read in place, kernels/interleave.h)
        const RowUnits codes = row_units(w, row);
        const uint8_t* params =
            w.data + l.scales_offset + size_t(row * n_super) * size_t(kQ6kParamBytes);
        for (int64_t i = 0; i < n_super; ++i) {
            for (int h = 0; h < 2; ++h) {
                __m512i lo, hi;
                q6k_unpack_half(codes.first + size_t(i) * codes.stride, h, lo, hi);
                lo = _mm512_sub_epi8(lo, c32);
                hi = _mm512_sub_epi8(hi, c32);
                uint8_t* dst = panel + (16 * i + 8 * h) * tile + m * kBlockBytes<F>;
                const auto put = [](uint8_t* p, __m128i v) {
                    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v);
                };
                put(dst, _mm512_castsi512_si128(lo));
                put(dst + tile, _mm512_extracti32x4_epi32(lo, 1));
                put(dst + 2 * tile, _mm512_extracti32x4_epi32(lo, 2));
                put(dst + 3 * tile, _mm512_extracti32x4_epi32(lo, 3));
                put(dst + 4 * tile, _mm512_castsi512_si128(hi));
                put(dst + 5 * tile, _mm512_extracti32x4_epi32(hi, 1));
                put(dst + 6 * tile, _mm512_extracti32x4_epi32(hi, 2));
                put(dst + 7 * tile, _mm512_extracti32x4_epi32(hi, 3));
            }
            _mm512_storeu_ps(row_scales + 16 * i, q6k_sub_scales(params + i * kQ6kParamBytes));
        }
    }
}

// One panel of a ggml block format: A tiles of every 16-column block j (the
// unsigned codes u, 0..31, which TDPBSSD reads as signed; zero rows past
// n_valid) and each row's s and m of block j at scales[m * n_blocks + j] and
// mins[m * n_blocks + j] (0 past n_valid). row: room for one row's codes.
template <WeightFormat F>
void unpack_panel_lowbit(const MatrixView& w, int64_t row0, int n_valid, int64_t n_blocks,
                         uint8_t* panel, float* scales, float* mins, uint8_t* row) {
    constexpr int tile = kTileBytes<F>;
    constexpr int64_t block_cols = lowbit_block_cols(F);
    constexpr int64_t block_bytes = lowbit_block_bytes(F);
    const PackedLayout& l = w.layout;
    const int64_t n_super = l.groups_per_row;
    const size_t row_bytes = size_t(n_super * block_bytes);
    if (n_valid < kPanelRows) std::memset(panel, 0, size_t(n_blocks) * tile);
    for (int m = 0; m < kPanelRows; ++m) {
        float* row_s = scales + m * n_blocks;
        float* row_m = mins + m * n_blocks;
        if (m >= n_valid) {
            std::memset(row_s, 0, size_t(n_blocks) * sizeof(float));
            std::memset(row_m, 0, size_t(n_blocks) * sizeof(float));
            continue;
        }
        const uint8_t* blocks = w.data + l.codes_offset + size_t(row0 + m) * row_bytes;
        for (int64_t i = 0; i < n_super; ++i) {
            decode_block<F>(blocks + i * block_bytes, row + i * block_cols,
                            row_s + i * (block_cols / 16), row_m + i * (block_cols / 16));
        }
        for (int64_t j = 0; j < n_blocks; ++j) {
            _mm_storeu_si128(reinterpret_cast<__m128i*>(panel + j * tile + m * kBlockBytes<F>),
                             _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * j)));
        }
    }
}

// C tile c = A tile a x B tile b, signed or (q4a) unsigned weights.
#define NIBBLE_TILE_PRODUCT(F, c, a, b)           \
    do {                                          \
        _tile_zero(c);                            \
        if constexpr ((F) == WeightFormat::q4a) { \
            _tile_dpbusd(c, a, b);                \
        } else {                                  \
            _tile_dpbssd(c, a, b);                \
        }                                         \
    } while (0)

constexpr int kCInts = kPanelRows * kTileTokens;  // int32 per C tile
constexpr int kAccFloats = 4 * kCInts;            // a_0..a_3 of one token tile

// Block b of the panel (into A tile a) times block b of one token tile (into
// B tile bt), into C tile c.
#define NIBBLE_TILE_MULTIPLY(F, a, bt, c, panel, b_tiles, b)             \
    do {                                                                 \
        _tile_loadd(a, (panel) + (b)*kTileBytes<F>, kBlockBytes<F>);     \
        _tile_loadd(bt, (b_tiles) + (b)*kTileBytes<F>, 4 * kTileTokens); \
        NIBBLE_TILE_PRODUCT(F, c, a, bt);                                \
    } while (0)

// The next panel's code bytes, fetched into L2 a few lines per block step
// while this panel is multiplied (its rows are contiguous). Not into L1: the
// first token tile's pass streams the whole panel and its B tiles through L1
// before the next panel is unpacked.
struct PanelPrefetch {
    const uint8_t* next = nullptr;
    int64_t bytes = 0;
};

// Blocks of a panel in the order in which they are multiplied: pass k takes
// blocks k, k + P, k + 2P, ... (those that a_k sums; P = kPasses), so that
// each pass keeps its 16 rows' a_k in registers and adds the blocks in
// increasing order, the order of the AVX-512 kernel. An iterator over that order.
template <int P>
struct BlockCursor {
    int64_t n_blocks;
    int64_t block = 0;  // the block of the current step; n_blocks after the last
    void next() {
        block += P;
        if (block >= n_blocks) {
            const int64_t k = block % P + 1;
            block = k < P && k < n_blocks ? k : n_blocks;
        }
    }
    bool done() const { return block >= n_blocks; }
};

// Steps between a block's multiplication and the scaling of its result: a
// result is stored (tilestored) in the step after its multiplication was
// issued and read back two steps after that, when the store has long reached
// the cache. (Measured on a Xeon with AMX: reading the result one step after
// its store costs about 10% more per tile product than two steps after.)
constexpr int kLag = 3;
constexpr int kResultSlots = 4;  // results stored and not yet scaled: at most 3

// a_k(m) += float(D(m, .)) * (d_w(m, b) * d_x(b, .)) for the 16 rows m of
// the panel and the 16 tokens of the tile (D: the stored C tile of block b);
// for the ggml block formats, as their AVX-512 kernel does,
// a_k(m) += (s(m, b) float(D(m, .)) - m(m, b) sum_x(b, .)) * d_x(b, .).
template <WeightFormat F>
[[gnu::always_inline]] inline void scale_block(const int32_t* d, const float* ws, const float* wm,
                                               int64_t groups_per_row, __m512 dx, __m512 sum_x,
                                               __m512 (&a)[16]) {
#pragma GCC unroll 16
    for (int m = 0; m < kPanelRows; ++m) {
        const __m512 dot = _mm512_cvtepi32_ps(_mm512_load_si512(d + m * kTileTokens));
        if constexpr (is_ggml_block_format(F)) {
            const __m512 v =
                _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(ws[m * groups_per_row]), dot),
                              _mm512_mul_ps(_mm512_set1_ps(wm[m * groups_per_row]), sum_x));
            a[m] = _mm512_fmadd_ps(v, dx, a[m]);
        } else {
            const __m512 dw = _mm512_mul_ps(_mm512_set1_ps(ws[m * groups_per_row]), dx);
            a[m] = _mm512_fmadd_ps(dot, dw, a[m]);
        }
    }
}

// The outputs of one panel for token tile tt, as a_k in acc[k][m][16 tokens].
// Software pipeline over the steps (blocks in pass order): in step s, step
// s + kLag's multiplication is issued, step s + kLag - 1's result is stored
// (the tile unit works in order: the store waits for that step's
// multiplication, not the one issued just before it) and step s's result,
// stored two steps earlier, is read back and scaled:
// a_k(m) = fma(float(D(m, .)), d_w(m, b) * d_x(b, .), a_k(m)). Consecutive
// steps use disjoint tile registers (even: C 0, A 2, B 4; odd: C 1, A 3, B 5).
template <WeightFormat F>
void panel_times_tile(const uint8_t* panel, const float* w_scales, const float* w_mins,
                      int64_t groups_per_row, int group_shift, const PackedActivations& x,
                      int64_t tt, int64_t n_blocks, PanelPrefetch prefetch, float* acc) {
    constexpr int P = kPasses<F>;
    // Lines per block step that cover the next panel in one pass.
    const int64_t lines_per_step = (prefetch.bytes / 64 + n_blocks - 1) / n_blocks;
    alignas(64) int32_t c[kResultSlots][kCInts];
    const int8_t* b_tiles = x.tiles + tt * n_blocks * kTileBytes<F>;
    const float* x_scales = x.scales + tt * n_blocks * kTileTokens;
    // (the activation code sums exist for the 16-column formats only)
    const float* x_sums =
        x.code_sums != nullptr ? x.code_sums + tt * n_blocks * kTileTokens : nullptr;
    // The issue side of the pipeline: step `issued` multiplies block issue.block.
    BlockCursor<P> issue{n_blocks};
    int64_t issued = 0;
    const auto multiply_next = [&] {
        if (issue.done()) return;
        if (issued & 1) {
            NIBBLE_TILE_MULTIPLY(F, 3, 5, 1, panel, b_tiles, issue.block);
        } else {
            NIBBLE_TILE_MULTIPLY(F, 2, 4, 0, panel, b_tiles, issue.block);
        }
        ++issued;
        issue.next();
    };
    const auto store = [&](int64_t s) {
        if (s >= n_blocks) return;
        if (s & 1) {
            _tile_stored(1, c[s & (kResultSlots - 1)], 4 * kTileTokens);
        } else {
            _tile_stored(0, c[s & (kResultSlots - 1)], 4 * kTileTokens);
        }
    };
    // Prologue: steps 0 .. kLag - 1 issued, 0 .. kLag - 2 stored.
    for (int i = 0; i < kLag; ++i) {
        multiply_next();
        if (i > 0) store(i - 1);
    }
    int64_t s = 0;
    for (int k = 0; k < P && k < n_blocks; ++k) {
        __m512 a[kPanelRows];
        for (__m512& v : a) v = _mm512_setzero_ps();
        for (int64_t b = k; b < n_blocks; b += P, ++s) {
            for (int64_t i = s * lines_per_step; i < (s + 1) * lines_per_step; ++i) {
                if (64 * i < prefetch.bytes) {
                    _mm_prefetch(reinterpret_cast<const char*>(prefetch.next + 64 * i),
                                 _MM_HINT_T1);
                }
            }
            multiply_next();
            store(s + kLag - 1);
            scale_block<F>(c[s & (kResultSlots - 1)], w_scales + (b >> group_shift),
                           w_mins + (b >> group_shift), groups_per_row,
                           _mm512_loadu_ps(x_scales + b * kTileTokens),
                           is_ggml_block_format(F) ? _mm512_loadu_ps(x_sums + b * kTileTokens)
                                                   : _mm512_setzero_ps(),
                           a);
        }
        for (int m = 0; m < kPanelRows; ++m)
            _mm512_store_ps(acc + k * kCInts + m * kTileTokens, a[m]);
    }
    for (int k = int(n_blocks); k < P; ++k) {  // fewer blocks than passes: empty passes
        for (int i = 0; i < kCInts; i += 16) {
            _mm512_store_ps(acc + k * kCInts + i, _mm512_setzero_ps());
        }
    }
}

#undef NIBBLE_TILE_MULTIPLY
#undef NIBBLE_TILE_PRODUCT

// sum_g m(g) * group_sums(g, .) of one row for the 16 tokens of a tile
// (gs: [group][16 tokens]), in param_dot's order (avx512_common.h): sixteen
// partial sums, partial j over the groups j, j + 16, ... (a short last step
// adds 0 * 0), then _mm512_reduce_add_ps's tree (lanes j + 8 and j, then
// j + 4 and j, then j + 2 and j, then 1 and 0), token by token in the lanes.
[[gnu::always_inline]] inline __m512 minimums_dot(const float* mins, const float* gs, int64_t n) {
    __m512 p[16];
    for (__m512& v : p) v = _mm512_setzero_ps();
    for (int64_t g0 = 0; g0 < n; g0 += 16) {
#pragma GCC unroll 16
        for (int j = 0; j < 16; ++j) {
            const int64_t g = g0 + j;
            p[j] = g < n
                       ? _mm512_fmadd_ps(_mm512_set1_ps(mins[g]), _mm512_load_ps(gs + 16 * g), p[j])
                       : _mm512_fmadd_ps(_mm512_setzero_ps(), _mm512_setzero_ps(), p[j]);
        }
    }
    for (int j = 0; j < 8; ++j) p[j] = _mm512_add_ps(p[j + 8], p[j]);
    for (int j = 0; j < 4; ++j) p[j] = _mm512_add_ps(p[j + 4], p[j]);
    for (int j = 0; j < 2; ++j) p[j] = _mm512_add_ps(p[j], p[j + 2]);
    return _mm512_add_ps(p[0], p[1]);
}

// Writes one panel's outputs for token tile tt (a_k in acc[k][m][16]); q4a
// and q2 add their minimums' terms (mins: the panel's, as unpack_panel wrote
// them). The sums are transposed so that each token's 16 rows, 64 contiguous
// bytes of y, are one store.
template <WeightFormat F>
void write_outputs(const MatrixView& w, const QuantizedActivations& qa, const PackedActivations& x,
                   int64_t tt, const float* acc, int64_t row0, int n_valid, const float* mins,
                   float* y) {
    const PackedLayout& l = w.layout;
    const int t0 = int(tt * kTileTokens);
    const int n_tokens = qa.n_tokens - t0 < kTileTokens ? qa.n_tokens - t0 : kTileTokens;
    alignas(64) float by_row[kPanelRows][kTileTokens];
    alignas(64) float by_token[kTileTokens][kPanelRows] = {};
    for (int m = 0; m < kPanelRows; ++m) {
        // (a_0 + a_2) + (a_1 + a_3), or a_0 + a_1, as the AVX-512 kernel adds its lanes.
        const float* a = acc + m * kTileTokens;
        __m512 sum;
        if constexpr (kPasses<F> == 2) {
            sum = _mm512_add_ps(_mm512_load_ps(a), _mm512_load_ps(a + kCInts));
        } else {
            sum = _mm512_add_ps(
                _mm512_add_ps(_mm512_load_ps(a), _mm512_load_ps(a + 2 * kCInts)),
                _mm512_add_ps(_mm512_load_ps(a + kCInts), _mm512_load_ps(a + 3 * kCInts)));
        }
        if constexpr (F == WeightFormat::q4a || F == WeightFormat::q2) {
            // finish_output's s = dot + param_dot(...), 16 tokens at once
            const int64_t gpr = qa.groups_per_row;
            sum = _mm512_add_ps(sum, minimums_dot(mins + m * l.groups_per_row,
                                                  x.group_sums + tt * gpr * kTileTokens, gpr));
        }
        _mm512_store_ps(by_row[m], sum);
    }
    for (int m = 0; m < kPanelRows; ++m) {
        for (int n = 0; n < n_tokens; ++n) {
            by_token[n][m] = F == WeightFormat::q4a || F == WeightFormat::q2
                                 ? by_row[m][n]
                                 : finish_output<F>(by_row[m][n], nullptr, nullptr, nullptr, 0);
        }
    }
    const __mmask16 rows =
        n_valid == kPanelRows ? __mmask16(0xffff) : __mmask16((1u << n_valid) - 1);
    for (int n = 0; n < n_tokens; ++n) {
        _mm512_mask_storeu_ps(y + size_t(t0 + n) * size_t(l.rows) + size_t(row0), rows,
                              _mm512_load_ps(by_token[n]));
    }
}

template <WeightFormat F>
void rows_int8(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
               float* y) {
    constexpr bool sub = kSubBlocks<F>;
    const PackedLayout& l = w.layout;
    const int64_t n_blocks = sub ? l.cols / kBlockBytes<F> : qa.n_blocks;
    const PackedActivations x = pack_activations<F>(qa, n_blocks);
    auto* panel = scratch(kSlotPanel, size_t(n_blocks) * kTileBytes<F>);
    // Weight scales (and ggml blocks' minimums) per row in the panel: one per
    // group, or one per 16-column block.
    const int64_t gpr = sub ? n_blocks : l.groups_per_row;
    const int group_shift = sub ? 0 : __builtin_ctzll(uint64_t(l.group_size / 32));
    auto* panel_scales = reinterpret_cast<float*>(
        scratch(kSlotPanelScales, (size_t(gpr) * 2 * kPanelRows + size_t(2 * gpr)) * 4));
    float* panel_mins = panel_scales + gpr * kPanelRows;
    auto* acc = reinterpret_cast<float*>(scratch(kSlotAccumulators, kAccFloats * 4));
    const TileConfig config = tile_config(kBlockBytes<F>);
    _tile_loadconfig(&config);
    size_t row_bytes = 0;
    if constexpr (F == WeightFormat::q6k) {
        row_bytes = size_t(l.groups_per_row * kQ6kCodeBytes);
    } else if constexpr (is_ggml_block_format(F)) {
        constexpr int64_t block_bytes = lowbit_block_bytes(F);
        row_bytes = size_t(l.groups_per_row * block_bytes);
    } else {
        row_bytes = size_t(kChunkBytes<F> * (l.padded_cols / 32));
    }
    for (int64_t row0 = r0; row0 < r1; row0 += kPanelRows) {
        const int n_valid = r1 - row0 < kPanelRows ? int(r1 - row0) : kPanelRows;
        if constexpr (F == WeightFormat::q6k) {
            unpack_panel_q6k(w, row0, n_valid, n_blocks, panel, panel_scales);
        } else if constexpr (is_ggml_block_format(F)) {
            unpack_panel_lowbit<F>(w, row0, n_valid, n_blocks, panel, panel_scales, panel_mins,
                                   code_scratch(0, size_t(l.cols)));
        } else {
            unpack_panel<F>(w, row0, n_valid, n_blocks, panel, panel_scales, panel_mins);
        }
        // The next panel's codes (within the matrix), fetched during the first pass.
        PanelPrefetch prefetch;
        if (const int64_t next = row0 + kPanelRows; next < l.rows) {
            const int64_t rows = l.rows - next < kPanelRows ? l.rows - next : kPanelRows;
            prefetch = {w.data + l.codes_offset + size_t(next) * row_bytes,
                        rows * int64_t(row_bytes)};
        }
        for (int64_t tt = 0; tt < x.n_token_tiles; ++tt) {
            panel_times_tile<F>(panel, panel_scales, panel_mins, gpr, group_shift, x, tt, n_blocks,
                                prefetch, acc);
            prefetch = {};
            write_outputs<F>(w, qa, x, tt, acc, row0, n_valid, panel_mins, y);
        }
    }
    _tile_release();
}

}  // namespace

void matmul_rows_int8(const MatrixView& w, const QuantizedActivations& qa, int64_t r0, int64_t r1,
                      float* y) {
    visit_grouped_format(w.layout.format, [&](auto format) {
        rows_int8<decltype(format)::value>(w, qa, r0, r1, y);
    });
}

void matmul_rows_int8_q6k(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                          int64_t r1, float* y) {
    rows_int8<WeightFormat::q6k>(w, qa, r0, r1, y);
}

void matmul_rows_int8_q2q3(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                           int64_t r1, float* y) {
    if (w.layout.format == WeightFormat::q3) {
        rows_int8<WeightFormat::q3>(w, qa, r0, r1, y);
    } else {
        rows_int8<WeightFormat::q2>(w, qa, r0, r1, y);
    }
}

void matmul_rows_int8_lowbit(const MatrixView& w, const QuantizedActivations& qa, int64_t r0,
                             int64_t r1, float* y) {
    visit_any_format(w.layout.format, [&](auto tag) {
        constexpr WeightFormat F = decltype(tag)::value;
        if constexpr (is_ggml_block_format(F)) rows_int8<F>(w, qa, r0, r1, y);
    });
}

}  // namespace nibble::kernels::amx

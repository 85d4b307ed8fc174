// 16-entry code books of the 4-bit code-book formats (w = d * table[q]).
//
// A code-book format is the q4 layout (nibble codes in 32-column chunks, one
// fp16 scale per group) whose 16 code values come from a table instead of
// q - 8; its format name ("nf4", "iq4nl") names the table in nibble files.
// Adding a table: a WeightFormat with FormatTraits::code_book, its float values
// here, its int8 version in kernels/matmul_variants.h.
#pragma once

#include "kernels/formats.h"

namespace nibble {

// NormalFloat-4 (QLoRA, bitsandbytes): quantiles of N(0,1) scaled to [-1, 1];
// 7 negative values, an exact zero, 8 positive values.
inline constexpr float kNf4Codebook[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

// llama.cpp's IQ4_NL non-linear table (kvalues_iq4nl): integers, so a GGUF
// IQ4_NL block (fp16 d, w = d * table[q]) is an iq4nl group bit for bit.
inline constexpr float kIq4nlCodebook[16] = {-127.0f, -104.0f, -83.0f, -65.0f, -49.0f, -35.0f,
                                             -22.0f,  -10.0f,  1.0f,   13.0f,  25.0f,  38.0f,
                                             53.0f,   69.0f,   89.0f,  113.0f};

// The float table of code-book format F.
template <WeightFormat F>
inline constexpr const float* kCodeBook = F == WeightFormat::iq4nl ? kIq4nlCodebook : kNf4Codebook;

}  // namespace nibble

// Key/value cache: for every sequence slot, layer and position, the rotated key
// and the value of each kv head. Stored in FP32 (exact), FP16 (default) or INT8
// with one FP32 scale per head vector.
//
// Layout per (sequence slot, layer), as the attention kernels read it
// (kernels/attention.h):
//   keys   [block of 16 positions][kv_dim][16]: element i of position p at
//          (p / 16) * 16 kv_dim + 16 i + p % 16 (head h's elements are
//          i = h head_dim ... (h + 1) head_dim - 1); INT8 scales [block][kv head][16].
//   values [position][kv_dim]; INT8 scales [position][kv head].
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/model.h"
#include "kernels/attention.h"

namespace nibble {

enum class KvType : uint8_t { f32, f16, int8 };
const char* kv_type_name(KvType t);
std::optional<KvType> parse_kv_type(const std::string& name);

class KvCache {
  public:
    KvCache(const ModelConfig& config, int n_sequences, int context, KvType type);

    int context() const { return context_; }
    int n_sequences() const { return n_sequences_; }
    KvType type() const { return type_; }
    size_t bytes() const;

    // Copies positions 0..n-1 of every layer from one sequence slot to another
    // (a shared prompt prefix computed once). Slots are otherwise just
    // overwritten: a freed slot needs no clearing before it is reused.
    void copy_prefix(int from_seq, int to_seq, int n);
    // Stores key and value (kv_dim floats each) of one token.
    void store(int seq, int layer, int pos, const float* key, const float* value);
    // Where the keys and values of one kv head are, for the attention kernels.
    KeyBlocks keys(int seq, int layer, int kv_head) const;
    ValueRows values(int seq, int layer, int kv_head) const;

  private:
    // (sequence slot, layer) pairs are stored one after the other.
    size_t slot_pair(int seq, int layer) const {
        return size_t(seq) * size_t(n_layers_) + size_t(layer);
    }
    size_t slot(int seq, int layer, int pos) const {
        return slot_pair(seq, layer) * size_t(context_) + size_t(pos);
    }
    // Key elements (and INT8 key scales) per (slot, layer): whole blocks.
    size_t key_elements_per_pair() const {
        return size_t(key_blocks_) * kKeyBlock * size_t(kv_dim_);
    }
    size_t key_scales_per_pair() const {
        return size_t(key_blocks_) * kKeyBlock * size_t(n_kv_heads_);
    }
    int n_layers_, kv_dim_, head_dim_, n_kv_heads_, context_, n_sequences_, key_blocks_;
    KvType type_;
    // Element storage for keys and values; for int8 one scale per (slot, head).
    std::vector<float> keys_f32_, values_f32_;
    std::vector<uint16_t> keys_f16_, values_f16_;
    std::vector<int8_t> keys_i8_, values_i8_;
    std::vector<float> key_scales_, value_scales_;
    std::vector<int8_t> key_scratch_;        // one INT8 head vector before it is spread into blocks
    std::vector<uint16_t> key_f16_scratch_;  // one FP16 key vector, likewise
};

}  // namespace nibble

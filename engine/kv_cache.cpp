// KV cache storage in FP32, FP16 or INT8 (one scale per head vector).
#include "engine/kv_cache.h"

#include <algorithm>
#include <stdexcept>

#include "kernels/vec_ops.h"

namespace nibble {

const char* kv_type_name(KvType t) {
    switch (t) {
        case KvType::f32:
            return "f32";
        case KvType::f16:
            return "f16";
        case KvType::int8:
            return "int8";
    }
    return "?";
}

std::optional<KvType> parse_kv_type(const std::string& name) {
    for (auto t : {KvType::f32, KvType::f16, KvType::int8}) {
        if (name == kv_type_name(t)) return t;
    }
    return std::nullopt;
}

KvCache::KvCache(const ModelConfig& config, int n_sequences, int context, KvType type)
    : n_layers_(config.n_layers),
      kv_dim_(config.kv_dim()),
      head_dim_(config.head_dim()),
      n_kv_heads_(config.n_kv_heads),
      context_(context),
      n_sequences_(n_sequences),
      key_blocks_((context + kKeyBlock - 1) / kKeyBlock),
      type_(type) {
    if (context <= 0 || n_sequences <= 0) {
        throw std::invalid_argument("KV cache needs a positive context and sequence count");
    }
    const size_t n_pairs = size_t(n_sequences) * size_t(n_layers_);
    const size_t n_slots = n_pairs * size_t(context);
    const size_t n_values = n_slots * size_t(kv_dim_);
    const size_t n_keys = n_pairs * key_elements_per_pair();
    switch (type) {
        case KvType::f32:
            keys_f32_.resize(n_keys);
            values_f32_.resize(n_values);
            break;
        case KvType::f16:
            keys_f16_.resize(n_keys);
            values_f16_.resize(n_values);
            key_f16_scratch_.resize(size_t(kv_dim_));
            break;
        case KvType::int8:
            keys_i8_.resize(n_keys);
            values_i8_.resize(n_values);
            key_scales_.resize(n_pairs * key_scales_per_pair());
            value_scales_.resize(n_slots * size_t(n_kv_heads_));
            key_scratch_.resize(size_t(head_dim_));
            break;
    }
}

size_t KvCache::bytes() const {
    return (keys_f32_.size() + values_f32_.size()) * 4 +
           (keys_f16_.size() + values_f16_.size()) * 2 + keys_i8_.size() + values_i8_.size() +
           (key_scales_.size() + value_scales_.size()) * 4;
}

namespace {
// Copies `count` elements per layer of one sequence's block to another's.
template <typename T>
void copy_rows(std::vector<T>& v, size_t from, size_t to, size_t count) {
    if (v.empty()) return;
    std::copy(v.begin() + long(from), v.begin() + long(from + count), v.begin() + long(to));
}
}  // namespace

void KvCache::copy_prefix(int from_seq, int to_seq, int n) {
    if (from_seq < 0 || from_seq >= n_sequences_ || to_seq < 0 || to_seq >= n_sequences_ || n < 0 ||
        n > context_) {
        throw std::out_of_range("KV prefix copy of " + std::to_string(n) + " positions from slot " +
                                std::to_string(from_seq) + " to slot " + std::to_string(to_seq));
    }
    if (from_seq == to_seq || n == 0) return;
    // Keys in whole blocks: the positions n.. of the last block are copied
    // too and are overwritten before the destination attends to them.
    const size_t blocks = size_t((n + kKeyBlock - 1) / kKeyBlock);
    for (int layer = 0; layer < n_layers_; ++layer) {
        const size_t from_pair = slot_pair(from_seq, layer), to_pair = slot_pair(to_seq, layer);
        const size_t key_elems = blocks * kKeyBlock * size_t(kv_dim_);
        const size_t key_src = from_pair * key_elements_per_pair();
        const size_t key_dst = to_pair * key_elements_per_pair();
        copy_rows(keys_f32_, key_src, key_dst, key_elems);
        copy_rows(keys_f16_, key_src, key_dst, key_elems);
        copy_rows(keys_i8_, key_src, key_dst, key_elems);
        copy_rows(key_scales_, from_pair * key_scales_per_pair(), to_pair * key_scales_per_pair(),
                  blocks * kKeyBlock * size_t(n_kv_heads_));

        const size_t from = slot(from_seq, layer, 0), to = slot(to_seq, layer, 0);
        const size_t elems = size_t(n) * size_t(kv_dim_);
        const size_t dst = to * size_t(kv_dim_), src = from * size_t(kv_dim_);
        copy_rows(values_f32_, src, dst, elems);
        copy_rows(values_f16_, src, dst, elems);
        copy_rows(values_i8_, src, dst, elems);
        const size_t heads = size_t(n) * size_t(n_kv_heads_);
        copy_rows(value_scales_, from * size_t(n_kv_heads_), to * size_t(n_kv_heads_), heads);
    }
}

void KvCache::store(int seq, int layer, int pos, const float* key, const float* value) {
    const size_t s = slot(seq, layer, pos);
    const size_t at = s * size_t(kv_dim_);
    // Element i of the key goes to row i of its position's block (kernels/attention.h).
    const size_t key_at = slot_pair(seq, layer) * key_elements_per_pair() +
                          size_t(pos / kKeyBlock) * kKeyBlock * size_t(kv_dim_) +
                          size_t(pos % kKeyBlock);
    switch (type_) {
        case KvType::f32:
            for (int i = 0; i < kv_dim_; ++i) {
                keys_f32_[key_at + size_t(i) * kKeyBlock] = key[i];
                values_f32_[at + size_t(i)] = value[i];
            }
            break;
        case KvType::f16:
            // Converted as a row (vector kernel), then spread into the blocks.
            convert_f32_to_f16(key, key_f16_scratch_.data(), kv_dim_);
            for (int i = 0; i < kv_dim_; ++i)
                keys_f16_[key_at + size_t(i) * kKeyBlock] = key_f16_scratch_[size_t(i)];
            convert_f32_to_f16(value, &values_f16_[at], kv_dim_);
            break;
        case KvType::int8: {
            const size_t key_scale_at = slot_pair(seq, layer) * key_scales_per_pair() +
                                        size_t(pos / kKeyBlock) * kKeyBlock * size_t(n_kv_heads_) +
                                        size_t(pos % kKeyBlock);
            for (int h = 0; h < n_kv_heads_; ++h) {
                const size_t off = size_t(h) * size_t(head_dim_);
                key_scales_[key_scale_at + size_t(h) * kKeyBlock] =
                    quantize_i8(key + off, key_scratch_.data(), head_dim_);
                for (int i = 0; i < head_dim_; ++i)
                    keys_i8_[key_at + (off + size_t(i)) * kKeyBlock] = key_scratch_[size_t(i)];
                value_scales_[s * size_t(n_kv_heads_) + size_t(h)] =
                    quantize_i8(value + off, &values_i8_[at + off], head_dim_);
            }
            break;
        }
    }
}

KeyBlocks KvCache::keys(int seq, int layer, int kv_head) const {
    const size_t at = slot_pair(seq, layer) * key_elements_per_pair() +
                      size_t(kv_head) * size_t(head_dim_) * kKeyBlock;
    KeyBlocks k{nullptr, kKeyBlock * size_t(kv_dim_), nullptr, 0, CacheElement::f32};
    switch (type_) {
        case KvType::f32:
            k.data = &keys_f32_[at];
            break;
        case KvType::f16:
            k.data = &keys_f16_[at];
            k.type = CacheElement::f16;
            break;
        case KvType::int8:
            k.data = &keys_i8_[at];
            k.type = CacheElement::i8;
            k.scales = &key_scales_[slot_pair(seq, layer) * key_scales_per_pair() +
                                    size_t(kv_head) * kKeyBlock];
            k.scale_block_stride = kKeyBlock * size_t(n_kv_heads_);
            break;
    }
    return k;
}

ValueRows KvCache::values(int seq, int layer, int kv_head) const {
    const size_t s = slot(seq, layer, 0);
    const size_t at = s * size_t(kv_dim_) + size_t(kv_head) * size_t(head_dim_);
    ValueRows v{nullptr, size_t(kv_dim_), nullptr, 0, CacheElement::f32};
    switch (type_) {
        case KvType::f32:
            v.data = &values_f32_[at];
            break;
        case KvType::f16:
            v.data = &values_f16_[at];
            v.type = CacheElement::f16;
            break;
        case KvType::int8:
            v.data = &values_i8_[at];
            v.type = CacheElement::i8;
            v.scales = &value_scales_[s * size_t(n_kv_heads_) + size_t(kv_head)];
            v.scale_stride = size_t(n_kv_heads_);
            break;
    }
    return v;
}

}  // namespace nibble

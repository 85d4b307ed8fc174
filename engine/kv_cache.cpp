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
      type_(type) {
    if (context <= 0 || n_sequences <= 0) {
        throw std::invalid_argument("KV cache needs a positive context and sequence count");
    }
    const size_t n_slots = size_t(n_sequences) * size_t(n_layers_) * size_t(context);
    const size_t n = n_slots * size_t(kv_dim_);
    switch (type) {
        case KvType::f32:
            keys_f32_.resize(n);
            values_f32_.resize(n);
            break;
        case KvType::f16:
            keys_f16_.resize(n);
            values_f16_.resize(n);
            break;
        case KvType::int8:
            keys_i8_.resize(n);
            values_i8_.resize(n);
            key_scales_.resize(n_slots * size_t(n_kv_heads_));
            value_scales_.resize(n_slots * size_t(n_kv_heads_));
            break;
    }
}

size_t KvCache::bytes() const {
    return keys_f32_.size() * 8 + keys_f16_.size() * 4 + keys_i8_.size() * 2 +
           key_scales_.size() * 8;
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
    for (int layer = 0; layer < n_layers_; ++layer) {
        const size_t from = slot(from_seq, layer, 0), to = slot(to_seq, layer, 0);
        const size_t elems = size_t(n) * size_t(kv_dim_);
        const size_t dst = to * size_t(kv_dim_), src = from * size_t(kv_dim_);
        copy_rows(keys_f32_, src, dst, elems);
        copy_rows(values_f32_, src, dst, elems);
        copy_rows(keys_f16_, src, dst, elems);
        copy_rows(values_f16_, src, dst, elems);
        copy_rows(keys_i8_, src, dst, elems);
        copy_rows(values_i8_, src, dst, elems);
        const size_t heads = size_t(n) * size_t(n_kv_heads_);
        copy_rows(key_scales_, from * size_t(n_kv_heads_), to * size_t(n_kv_heads_), heads);
        copy_rows(value_scales_, from * size_t(n_kv_heads_), to * size_t(n_kv_heads_), heads);
    }
}

void KvCache::store(int seq, int layer, int pos, const float* key, const float* value) {
    const size_t s = slot(seq, layer, pos);
    const size_t at = s * size_t(kv_dim_);
    switch (type_) {
        case KvType::f32:
            for (int i = 0; i < kv_dim_; ++i) {
                keys_f32_[at + size_t(i)] = key[i];
                values_f32_[at + size_t(i)] = value[i];
            }
            break;
        case KvType::f16:
            convert_f32_to_f16(key, &keys_f16_[at], kv_dim_);
            convert_f32_to_f16(value, &values_f16_[at], kv_dim_);
            break;
        case KvType::int8:
            for (int h = 0; h < n_kv_heads_; ++h) {
                const size_t off = size_t(h) * size_t(head_dim_);
                const size_t scale_at = s * size_t(n_kv_heads_) + size_t(h);
                key_scales_[scale_at] = quantize_i8(key + off, &keys_i8_[at + off], head_dim_);
                value_scales_[scale_at] =
                    quantize_i8(value + off, &values_i8_[at + off], head_dim_);
            }
            break;
    }
}

void KvCache::key_scores(int seq, int layer, int kv_head, const float* q, int n, float scale,
                         float* scores) const {
    const VecOps& ops = vec_ops();
    const size_t first = slot(seq, layer, 0);
    const size_t head_offset = size_t(kv_head) * size_t(head_dim_);
    for (int t = 0; t < n; ++t) {
        const size_t s = first + size_t(t);
        const size_t at = s * size_t(kv_dim_) + head_offset;
        float dot = 0.0f;
        switch (type_) {
            case KvType::f32:
                dot = ops.dot_f32(&keys_f32_[at], q, head_dim_);
                break;
            case KvType::f16:
                dot = ops.dot_f16(&keys_f16_[at], q, head_dim_);
                break;
            case KvType::int8:
                dot = ops.dot_i8(&keys_i8_[at],
                                 key_scales_[s * size_t(n_kv_heads_) + size_t(kv_head)], q,
                                 head_dim_);
                break;
        }
        scores[t] = dot * scale;
    }
}

void KvCache::weighted_values(int seq, int layer, int kv_head, const float* weights, int n,
                              float* out) const {
    const VecOps& ops = vec_ops();
    const size_t first = slot(seq, layer, 0);
    const size_t head_offset = size_t(kv_head) * size_t(head_dim_);
    for (int i = 0; i < head_dim_; ++i) out[i] = 0.0f;
    for (int t = 0; t < n; ++t) {
        const size_t s = first + size_t(t);
        const size_t at = s * size_t(kv_dim_) + head_offset;
        switch (type_) {
            case KvType::f32:
                ops.axpy_f32(weights[t], &values_f32_[at], out, head_dim_);
                break;
            case KvType::f16:
                ops.axpy_f16(weights[t], &values_f16_[at], out, head_dim_);
                break;
            case KvType::int8:
                ops.axpy_i8(weights[t] * value_scales_[s * size_t(n_kv_heads_) + size_t(kv_head)],
                            &values_i8_[at], out, head_dim_);
                break;
        }
    }
}

}  // namespace nibble

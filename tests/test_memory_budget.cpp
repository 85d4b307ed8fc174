// The up-front memory accounting matches what the KV cache and inference state
// really allocate, and check_memory names the option to change.
#include <doctest/doctest.h>

#include <stdexcept>
#include <string>

#include "apps/memory_budget.h"
#include "engine/kv_cache.h"
#include "models/loader.h"
#include "test_data.h"

using namespace nibble;

TEST_CASE("kv_cache_bytes equals what KvCache allocates") {
    ModelConfig c;
    c.dim = 64;
    c.hidden_dim = 172;
    c.n_layers = 5;
    c.n_heads = 8;
    c.n_kv_heads = 4;
    c.vocab_size = 512;
    c.max_seq_len = 512;
    for (KvType t : {KvType::f32, KvType::f16, KvType::int8}) {
        for (int seqs : {1, 3}) {
            for (int context : {1, 17, 512}) {
                CAPTURE(kv_type_name(t));
                CAPTURE(seqs);
                CAPTURE(context);
                const KvCache kv(c, seqs, context, t);
                CHECK(kv_cache_bytes(c, seqs, context, t) == kv.bytes());
            }
        }
    }
}

TEST_CASE("memory_need covers the weights, the KV cache and the state's buffers") {
    const Model model = load_model(nibble::test::data_path("stories260K.bin"));
    RuntimeOptions ro;
    ro.context = 256;
    ro.max_batch = 32;
    ro.kv_type = KvType::f16;
    const MemoryNeed need = memory_need(model, ro, 2);
    CHECK(need.weights == model.weight_bytes());
    CHECK(need.kv_cache == kv_cache_bytes(model.config, 1, 256, KvType::f16));
    const ModelConfig& c = model.config;
    const uint64_t logits = 4ull * 32 * uint64_t(c.vocab_size);
    CHECK(need.buffers > logits);
    CHECK(need.total() == need.weights + need.kv_cache + need.buffers);
    // One row of logits instead of 32: 31 rows of logits and final norms less.
    RuntimeOptions one_row = ro;
    one_row.max_logit_rows = 1;
    CHECK(need.buffers - memory_need(model, one_row, 2).buffers ==
          4ull * 31 * uint64_t(c.vocab_size + c.dim));
    // context 0 means the model's own
    ro.context = 0;
    CHECK(memory_need(model, ro, 2).kv_cache == kv_cache_bytes(c, 1, c.max_seq_len, KvType::f16));
    // no overflow for absurd requests: 2^31 positions of 5 layers
    ro.context = 2147483647;
    CHECK(memory_need(model, ro, 1).kv_cache > (uint64_t(1) << 40));
}

TEST_CASE("check_memory refuses what does not fit, naming the largest part's option") {
    MemoryNeed need;
    need.weights = 100;
    need.kv_cache = 1000;
    need.buffers = 10;
    CHECK_NOTHROW(check_memory(need, 1110, "--ctx-size", "--batch-size"));
    auto message = [&](uint64_t available) {
        try {
            check_memory(need, available, "--ctx-size", "--batch-size");
        } catch (const std::runtime_error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    CHECK(message(1109).find("lower --ctx-size") != std::string::npos);
    need.buffers = 5000;
    CHECK(message(1000).find("lower --batch-size") != std::string::npos);
    need.weights = 9000;
    CHECK(message(1000).find("smaller or more strongly quantized model") != std::string::npos);
    CHECK(message(1000).find("needs 14.6 KiB") != std::string::npos);
}

TEST_CASE("available memory is read from /proc/meminfo") {
    const auto available = available_memory_bytes();
    REQUIRE(available.has_value());
    CHECK(*available > (uint64_t(16) << 20));
}

// The continuous-batching scheduler on stories260K (f32 and a q4 file made by
// the quantization pipeline): outputs do not depend on how many sequences share
// a batch, cancellation and stop strings, prefix reuse, KV slot copies.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "engine/generate.h"
#include "engine/scheduler.h"
#include "kernels/attention.h"
#include "models/loader.h"
#include "models/quantize_model.h"
#include "test_data.h"
#include "test_models.h"

using namespace nibble;
using nibble::test::stories260k;
using nibble::test::tok512;

namespace {

// stories260K quantized to the default q4 recipe, written to a nibble file and loaded back.
const Model& stories_q4() {
    static const Model m = [] {
        const std::string path =
            (nibble::test::temp_dir("nibble_test_scheduler") / "stories260K-q4.nbl").string();
        quantize_model_to_file(stories260k(), QuantizeRecipe{}, path, tok512().serialized_proto());
        return load_model(path);
    }();
    return m;
}

// 24 prompts of different lengths, each with its own n_predict, so that
// sequences finish at different steps.
std::vector<Request> prompts(float temperature) {
    const std::vector<std::string> starts = {
        "Once upon a time",
        "The cat",
        "Lily and Tom went to the park to play with a big red ball. They",
        "One day",
        "Tim had a dog",
        "The sun was shining and the birds were singing. A little girl named Sue",
        "Mom said",
        "There was a tree",
    };
    std::vector<Request> out;
    for (int i = 0; i < 24; ++i) {
        Request r;
        std::string text = starts[size_t(i) % starts.size()];
        if (i >= 8) text += i % 2 ? " and a bird" : " in the garden";
        if (i >= 16) text += ". He was happy";
        r.prompt = tok512().encode(text, true);
        r.n_predict = 5 + (i * 7) % 40;
        r.sampling.temperature = temperature;
        r.sampling.seed = 1000 + uint64_t(i);
        out.push_back(r);
    }
    return out;
}

struct Outcome {
    std::vector<int32_t> tokens;
    std::string streamed, completion;
    FinishReason reason = FinishReason::length;
};

// Runs `requests` with `parallel` KV slots; results by submission index.
// on_event may cancel requests (it gets the scheduler, the index and the event).
std::vector<Outcome> run_all(
    const Model& model, std::vector<Request> requests, int parallel, int max_batch = 64,
    const std::function<void(Scheduler&, int, const TokenEvent&)>& on_event = nullptr,
    bool reuse_prefix = true, SchedulerStats* stats = nullptr, int context = 0) {
    RuntimeOptions ro;
    ro.n_sequences = parallel;
    ro.max_batch = max_batch;
    ro.max_logit_rows = parallel;  // as the commands set it: forward() refuses more
    ro.context = context;
    ro.kv_type = KvType::f16;
    InferenceState state(model, ro);
    SchedulerOptions so;
    so.reuse_prefix = reuse_prefix;
    Scheduler scheduler(state, tok512(), so);
    std::vector<Outcome> out(requests.size());
    std::map<RequestId, int> index;
    for (size_t i = 0; i < requests.size(); ++i) {
        Request& r = requests[i];
        r.on_token = [&, i](const TokenEvent& e) {
            out[i].streamed += e.text;
            if (on_event) on_event(scheduler, int(i), e);
        };
        r.on_finish = [&, i](const FinishEvent& e) {
            out[i].tokens.assign(e.tokens.begin(), e.tokens.end());
            out[i].completion = e.completion;
            out[i].reason = e.reason;
        };
        index[scheduler.submit(std::move(r))] = int(i);
    }
    scheduler.run();
    CHECK(scheduler.idle());
    CHECK(scheduler.n_active() == 0);
    if (stats) *stats = scheduler.stats();
    return out;
}

void check_parallel_equals_serial(const Model& model, float temperature) {
    const auto serial = run_all(model, prompts(temperature), 1);
    const auto parallel8 = run_all(model, prompts(temperature), 8);
    // A small batch: prompts are split into chunks mixed with decoding.
    const auto chunked = run_all(model, prompts(temperature), 8, 11);
    int lengths_differ = 0;
    for (size_t i = 0; i < serial.size(); ++i) {
        CAPTURE(i);
        CHECK(serial[i].tokens.size() > prompts(temperature)[i].prompt.size());
        CHECK(parallel8[i].tokens == serial[i].tokens);
        CHECK(chunked[i].tokens == serial[i].tokens);
        CHECK(parallel8[i].completion == serial[i].completion);
        CHECK(serial[i].streamed == serial[i].completion);
        if (i > 0 && serial[i].tokens.size() != serial[i - 1].tokens.size()) ++lengths_differ;
    }
    CHECK(lengths_differ > 10);  // sequences really do finish at different steps
}

}  // namespace

TEST_CASE("greedy outputs at parallel 8 equal parallel 1 (f32)") {
    check_parallel_equals_serial(stories260k(), 0.0f);
}

TEST_CASE("greedy outputs at parallel 8 equal parallel 1 (q4 file)") {
    check_parallel_equals_serial(stories_q4(), 0.0f);
}

TEST_CASE("seeded sampling does not depend on the batch companions") {
    check_parallel_equals_serial(stories260k(), 0.9f);
}

TEST_CASE("the scheduler's sequence equals generate() and the prompt comes first") {
    const Request r = prompts(0.0f)[2];
    RuntimeOptions ro;
    ro.kv_type = KvType::f16;
    InferenceState state(stories260k(), ro);
    std::string text;
    const GenerationResult g = generate(state, tok512(), r.prompt, r.n_predict, r.sampling,
                                        [&](const std::string& piece) { text += piece; });
    const auto out = run_all(stories260k(), {r}, 1);
    CHECK(g.tokens == out[0].tokens);
    CHECK(text == tok512().decode(g.tokens));
    CHECK(g.n_generated == int(g.tokens.size()) - int(r.prompt.size()));
}

TEST_CASE("cancelling one sequence leaves the others unchanged") {
    const auto reference = run_all(stories260k(), prompts(0.0f), 8);
    const int victim = 3;
    int cancels = 0;
    const auto out =
        run_all(stories260k(), prompts(0.0f), 8, 64, [&](Scheduler& s, int i, const TokenEvent& e) {
            if (i == victim && e.n_generated == 3) {
                s.cancel(e.id);
                ++cancels;
            }
        });
    CHECK(cancels == 1);
    for (size_t i = 0; i < out.size(); ++i) {
        CAPTURE(i);
        if (int(i) == victim) {
            CHECK(out[i].reason == FinishReason::cancelled);
            CHECK(out[i].tokens.size() < reference[i].tokens.size());
            // What it produced before the cancel is a prefix of the full output.
            CHECK(std::equal(out[i].tokens.begin(), out[i].tokens.end(),
                             reference[i].tokens.begin()));
        } else {
            CHECK(out[i].tokens == reference[i].tokens);
            CHECK(out[i].reason == reference[i].reason);
        }
    }
}

TEST_CASE("cancelling a request that is still waiting") {
    RuntimeOptions ro;
    InferenceState state(stories260k(), ro);
    Scheduler s(state, tok512());
    std::vector<FinishReason> reasons;
    std::vector<int> generated;
    for (int i = 0; i < 3; ++i) {
        Request r = prompts(0.0f)[size_t(i)];
        r.on_finish = [&](const FinishEvent& e) {
            reasons.push_back(e.reason);
            generated.push_back(e.n_generated);
        };
        const RequestId id = s.submit(std::move(r));
        if (i == 2) s.cancel(id);
    }
    CHECK(s.n_waiting() == 3);  // submitted, not yet taken in
    REQUIRE(s.step());
    CHECK(s.n_active() == 1);
    CHECK(s.n_waiting() == 1);  // one cancelled, one in the only slot
    s.run();
    CHECK(s.n_waiting() == 0);
    REQUIRE(reasons.size() == 3);
    CHECK(reasons[0] == FinishReason::cancelled);  // taken in before the first step
    CHECK(generated[0] == 0);
    CHECK(reasons[1] != FinishReason::cancelled);
    CHECK(reasons[2] != FinishReason::cancelled);
}

TEST_CASE("a stop string ends the completion before it; the streamed text matches") {
    Request base = prompts(0.0f)[0];
    base.n_predict = 60;
    const auto full = run_all(stories260k(), {base}, 1);
    const std::string text = full[0].completion;
    REQUIRE(text.size() > 30);
    // A stop string taken from the middle of the greedy completion.
    const std::string stop = text.substr(20, 6);
    const size_t first = text.find(stop);
    Request r = base;
    r.stop = {"zzzz-never", stop};
    const auto out = run_all(stories260k(), {r}, 1);
    CHECK(out[0].reason == FinishReason::stop);
    CHECK(out[0].completion == text.substr(0, first));
    CHECK(out[0].streamed == out[0].completion);
}

TEST_CASE("finish reasons: length, end of context, eos") {
    Request r = prompts(0.0f)[0];
    r.n_predict = 7;
    auto out = run_all(stories260k(), {r}, 1);
    CHECK(out[0].reason == FinishReason::length);
    CHECK(out[0].tokens.size() == r.prompt.size() + 7);

    r.n_predict = -1;  // until the context (24 positions) is full
    out = run_all(stories260k(), {r}, 2, 64, nullptr, true, nullptr, 24);
    CHECK(out[0].reason == FinishReason::length);
    CHECK(out[0].tokens.size() == 24);

    r.n_predict = 0;
    out = run_all(stories260k(), {r}, 1);
    CHECK(out[0].tokens.size() == r.prompt.size());

    // stories260K ends its stories with EOS well within 400 tokens.
    r.n_predict = 400;
    out = run_all(stories260k(), {r}, 1);
    CHECK(out[0].reason == FinishReason::eos);
    CHECK(out[0].tokens.size() < r.prompt.size() + 400);
}

TEST_CASE("a shared prefix is reused from another slot's KV cache with the same outputs") {
    std::vector<Request> requests;
    const std::string system = "Once upon a time, there was a little girl named Lily. She";
    for (const char* tail : {" liked", " saw a", " went to the", " had", " wanted"}) {
        Request r;
        r.prompt = tok512().encode(system + tail, true);
        r.n_predict = 20;
        r.sampling.temperature = 0.0f;
        requests.push_back(r);
    }
    SchedulerStats with, without;
    // Two slots: later requests copy the prefix from a running or a free slot.
    const auto reused = run_all(stories260k(), requests, 2, 64, nullptr, true, &with);
    const auto computed = run_all(stories260k(), requests, 2, 64, nullptr, false, &without);
    for (size_t i = 0; i < requests.size(); ++i) CHECK(reused[i].tokens == computed[i].tokens);
    CHECK(without.prompt_tokens_reused == 0);
    CHECK(with.prompt_tokens_reused >= 4 * 12);
    CHECK(with.tokens_evaluated + with.prompt_tokens_reused == without.tokens_evaluated);
}

TEST_CASE("KvCache::copy_prefix copies keys and values of every layer") {
    for (KvType type : {KvType::f32, KvType::f16, KvType::int8}) {
        const ModelConfig& c = stories260k().config;
        KvCache kv(c, 3, 8, type);
        std::vector<float> key(size_t(c.kv_dim())), value(key.size());
        for (int layer = 0; layer < c.n_layers; ++layer) {
            for (int pos = 0; pos < 8; ++pos) {
                for (size_t i = 0; i < key.size(); ++i) {
                    key[i] = float(layer * 100 + pos) + 0.01f * float(i);
                    value[i] = -key[i];
                }
                kv.store(0, layer, pos, key.data(), value.data());
            }
        }
        kv.copy_prefix(0, 2, 5);
        std::vector<float> q(size_t(c.head_dim()), 1.0f), s0(8), s2(8);
        std::vector<float> w(8, 0.125f), v0(q.size()), v2(q.size());
        for (int layer = 0; layer < c.n_layers; ++layer) {
            // Attention of one query over the first 5 positions of kv head 0,
            // read through the same kernels the forward pass uses.
            const int hd = c.head_dim();
            attention_scores(kv.keys(0, layer, 0), hd, q.data(), 1, 5, 1.0f, s0.data(), 8);
            attention_scores(kv.keys(2, layer, 0), hd, q.data(), 1, 5, 1.0f, s2.data(), 8);
            attention_values(kv.values(0, layer, 0), hd, w.data(), 8, 1, 5, v0.data());
            attention_values(kv.values(2, layer, 0), hd, w.data(), 8, 1, 5, v2.data());
            CHECK(s0 == s2);
            CHECK(v0 == v2);
            CHECK(s0[4] != 0.0f);
        }
        CHECK_THROWS_AS(kv.copy_prefix(0, 3, 1), std::out_of_range);
        CHECK_THROWS_AS(kv.copy_prefix(0, 1, 9), std::out_of_range);
    }
}

TEST_CASE("a state with fewer logit rows than its batch: same logits, more refused") {
    RuntimeOptions ro;
    ro.n_sequences = 3;
    ro.max_batch = 16;
    ro.context = 64;
    RuntimeOptions limited = ro;
    limited.max_logit_rows = 2;
    InferenceState full_state(stories260k(), ro);
    InferenceState limited_state(stories260k(), limited);
    CHECK(full_state.logit_rows() == 16);
    CHECK(limited_state.logit_rows() == 2);
    // Two sequences' prompts in one batch, the last token of each wanting logits.
    const std::vector<int32_t> a = tok512().encode("Once upon a time", true);
    const std::vector<int32_t> b = tok512().encode("The cat sat", true);
    std::vector<BatchToken> batch;
    for (size_t i = 0; i < a.size(); ++i) batch.push_back({a[i], int(i), 0, i + 1 == a.size()});
    for (size_t i = 0; i < b.size(); ++i) batch.push_back({b[i], int(i), 1, i + 1 == b.size()});
    const int vocab = stories260k().config.vocab_size;
    const float* full = full_state.forward(batch);
    const std::vector<float> expected(full, full + 2 * vocab);
    const float* got = limited_state.forward(batch);
    CHECK(std::vector<float>(got, got + 2 * vocab) == expected);
    // A third row is refused before anything is computed.
    std::vector<BatchToken> three = {{a[0], 0, 2, true}, {a[1], 1, 2, true}, {a[2], 2, 2, true}};
    CHECK_THROWS_WITH_AS(limited_state.forward(three), "batch wants the logits of 3 tokens (max 2)",
                         std::invalid_argument);
    // A scheduler needs one row per slot.
    CHECK_THROWS_AS(Scheduler(limited_state, tok512()), std::invalid_argument);
}

TEST_CASE("submit rejects prompts that cannot run") {
    RuntimeOptions ro;
    ro.context = 16;
    InferenceState state(stories260k(), ro);
    Scheduler s(state, tok512());
    Request r;
    CHECK_THROWS_AS(s.submit(r), std::invalid_argument);
    r.prompt.assign(17, 1);
    CHECK_THROWS_AS(s.submit(r), std::invalid_argument);
    r.prompt.assign(3, 9999);
    CHECK_THROWS_AS(s.submit(r), std::invalid_argument);
    CHECK(s.idle());
    CHECK_FALSE(s.step());
}

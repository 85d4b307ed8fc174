// Continuous batching: many generation requests advanced together, one batched
// forward pass per step over every active sequence's next token plus prompt
// chunks of newly admitted ones. Each sequence has its own KV cache slot,
// sampler (own seed) and stop conditions; a finished sequence frees its slot
// for the next waiting request. No terminal or file I/O: callers (nibble run,
// generate, chat, a server) get per-token and per-request events.
#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/forward.h"
#include "engine/sampler.h"
#include "tokenizer/tokenizer.h"

namespace nibble {

using RequestId = uint64_t;

enum class FinishReason : uint8_t {
    length,     // n_predict tokens, or the context is full
    eos,        // the model produced end-of-sequence (or BOS)
    stop,       // a stop string appeared in the completion (it is cut off)
    cancelled,  // cancel(id)
};
const char* finish_reason_name(FinishReason r);

// A piece of one request's completion: the token just sampled and the text it
// completes. The text can be empty (part of a UTF-8 character, or held back
// because it might be the start of a stop string) and can cover several tokens.
// Text still held back when the request finishes comes in a last event with
// token -1, just before the FinishEvent.
struct TokenLogprob {
    int32_t token = 0;
    float logprob = 0.0f;
};
struct TokenEvent {
    RequestId id = 0;
    int32_t token = 0;
    std::string_view text;
    int n_generated = 0;
    // When the request asks for them (Request::n_logprobs >= 0): log p(token)
    // under the model's distribution (softmax of the logits, before the
    // sampler's penalty, filters and temperature) and the n_logprobs most
    // likely tokens, best first.
    float logprob = 0.0f;
    std::span<const TokenLogprob> top_logprobs;
};

struct FinishEvent {
    RequestId id = 0;
    FinishReason reason = FinishReason::length;
    bool context_full = false;        // reason length because no position was left
    std::string_view completion;      // the whole completion text (stop string cut off)
    std::span<const int32_t> tokens;  // prompt followed by the generated tokens
    int n_prompt = 0;
    int n_prompt_reused = 0;  // prompt tokens whose KV was reused or copied, not computed
    int n_generated = 0;
    int n_decode_evals = 0;           // generated tokens fed back through the model
    double queue_seconds = 0.0;       // submit -> admission to a slot
    double prompt_seconds = 0.0;      // admission -> first token sampled
    double generation_seconds = 0.0;  // first token sampled -> finish
};

struct Request {
    std::vector<int32_t> prompt;  // should start with BOS; at least one token
    SamplerParams sampling;
    int n_predict = 256;            // < 0: until EOS, a stop string or the end of the context
    std::vector<std::string> stop;  // stop strings, matched in the completion text
    bool ignore_eos = false;        // keep going after EOS (benchmarks)
    int n_logprobs = -1;            // >= 0: TokenEvent carries logprobs (and this many top tokens)
    // Called on the thread that runs step().
    std::function<void(const TokenEvent&)> on_token;
    std::function<void(const FinishEvent&)> on_finish;
};

struct SchedulerOptions {
    // Tokens per forward pass (0: the state's max_batch); at least the slot count.
    int max_batch_tokens = 0;
    // Admit a prompt on top of the longest matching prefix already in some
    // slot's KV cache (copied when it is another slot's) instead of recomputing it.
    bool reuse_prefix = true;
};

struct SchedulerStats {
    int64_t steps = 0;
    int64_t tokens_evaluated = 0;  // batch rows run through the model
    int64_t prompt_tokens_reused = 0;
};

class Scheduler {
  public:
    // Uses every KV slot of `state` (RuntimeOptions::n_sequences); the state and
    // tokenizer must outlive the scheduler.
    Scheduler(InferenceState& state, const Tokenizer& tokenizer,
              const SchedulerOptions& options = {});
    Scheduler(const Scheduler&) = delete;
    Scheduler& operator=(const Scheduler&) = delete;

    // Queues a request; safe to call from any thread, also while step() runs.
    // Throws std::invalid_argument for an empty prompt or one that does not fit
    // in the context.
    RequestId submit(Request request);
    // Ends a waiting or running request with FinishReason::cancelled at the
    // start of the next step (any thread). Unknown or finished ids are ignored.
    void cancel(RequestId id);

    // One batched forward pass over the active sequences (after taking in new
    // requests and cancellations, and admitting waiting requests to free
    // slots), then sampling. Returns false when there is nothing left to do.
    bool step();
    // Steps until every submitted request has finished.
    void run();
    // No request waiting or running (submissions not yet taken in count as
    // waiting). Call it from the thread that runs step().
    bool idle() const;

    int n_slots() const { return int(slots_.size()); }
    int n_active() const;
    // Requests submitted and not yet in a slot (submissions not yet taken in
    // included). Call it from the thread that runs step().
    int n_waiting() const;
    const SchedulerStats& stats() const { return stats_; }
    const InferenceState& state() const { return *state_; }

  private:
    using Clock = std::chrono::steady_clock;
    enum class Phase : uint8_t { free, prompt, decode };
    struct Slot {
        Phase phase = Phase::free;
        RequestId id = 0;
        Request request;
        std::vector<int32_t> tokens;  // prompt + generated; reserved to the context
        int n_cached = 0;             // tokens[0..n_cached) are in the KV cache (kept when free)
        int n_prompt = 0, n_reused = 0, n_generated = 0;
        std::optional<Sampler> sampler;
        std::optional<StreamDecoder> decoder;
        std::string text;    // completion so far
        size_t emitted = 0;  // bytes of text passed to on_token
        int logits_row = -1;
        uint64_t admitted_order = 0;
        Clock::time_point submitted, admitted, first_token;
    };
    struct Pending {
        RequestId id;
        Request request;
        Clock::time_point submitted;
    };

    void take_in();
    void admit(Pending&& pending);
    int choose_slot(const std::vector<int32_t>& prompt, int* source, int* reuse) const;
    int fill_batch();
    void on_logits(Slot& slot, const float* logits);
    void compute_logprobs(const float* logits, int32_t token, int n_top);
    void emit(Slot& slot, int32_t token, size_t upto);
    void finish(Slot& slot, FinishReason reason, bool context_full = false);
    void finish_pending(Pending& pending);

    InferenceState* state_;
    const Tokenizer* tokenizer_;
    SchedulerOptions options_;
    int max_batch_ = 0;
    int vocab_ = 0;
    std::vector<Slot> slots_;
    std::vector<int> order_;  // active slots in admission order
    std::deque<Pending> waiting_;
    std::vector<BatchToken> batch_;
    std::vector<float> logits_copy_;
    std::vector<TokenLogprob> logprob_order_;  // vocab-sized scratch for the top tokens
    float token_logprob_ = 0.0f;               // of the token being emitted
    std::span<const TokenLogprob> top_logprobs_;
    SchedulerStats stats_;
    uint64_t admissions_ = 0;

    mutable std::mutex mutex_;  // guards the fields below
    std::vector<Pending> incoming_;
    std::vector<RequestId> cancels_;
    RequestId next_id_ = 1;
};

}  // namespace nibble

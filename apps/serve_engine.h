// The model side of nibble serve: one thread owns the Scheduler and steps it
// while there is work; HTTP handler threads submit requests and read their
// tokens from a per-request channel. A bounded number of requests may be in
// the server at once (running in a KV slot or waiting for one).
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "apps/serve_metrics.h"
#include "engine/scheduler.h"

namespace nibble::app {

// What the scheduler thread tells one request's handler, in order: tokens,
// then exactly one finish.
struct StreamEvent {
    bool finished = false;
    int32_t token = -1;  // -1: text only (held-back text released at the end)
    std::string text;
    float logprob = 0.0f;
    std::vector<TokenLogprob> top_logprobs;
    // Set on the finish event.
    FinishReason reason = FinishReason::length;
    int n_prompt = 0, n_prompt_reused = 0, n_generated = 0;
};

// A single-consumer queue of events for one request.
class EventChannel {
  public:
    void push(StreamEvent event);
    // Moves every queued event into *out (after clearing it); waits up to
    // `timeout` for the first. Returns false when nothing arrived in time.
    bool pop_all(std::vector<StreamEvent>* out, std::chrono::milliseconds timeout);

  private:
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<StreamEvent> events_;
};

class ServeEngine {
  public:
    // `max_requests`: requests running or waiting at once (the slots plus the
    // queue); further submissions are refused. The forward passes use
    // `threads` OpenMP threads (an OpenMP setting does not pass between threads).
    ServeEngine(InferenceState& state, const Tokenizer& tokenizer, int max_requests, int threads,
                ServeMetrics& metrics);
    ~ServeEngine();
    ServeEngine(const ServeEngine&) = delete;
    ServeEngine& operator=(const ServeEngine&) = delete;

    struct Submitted {
        RequestId id = 0;
        std::shared_ptr<EventChannel> channel;  // null: the server is full
    };
    // Queues `request` (its callbacks are replaced) unless max_requests are
    // already in; throws std::invalid_argument as Scheduler::submit does.
    Submitted submit(Request request, bool want_logprobs);
    // Ends a request early; its channel still gets the finish event.
    void cancel(RequestId id);

    int in_flight() const { return in_flight_.load(); }
    int n_slots() const { return n_slots_; }
    // Requests running in a KV slot (as last seen by the scheduler thread).
    int slots_in_use() const { return slots_in_use_.load(); }
    // Requests waiting for a slot (as last seen by the scheduler thread).
    int waiting() const { return waiting_.load(); }
    // Stops the scheduler thread after the requests in flight finish.
    void stop();

  private:
    void loop();

    Scheduler scheduler_;
    ServeMetrics* metrics_;
    const int max_requests_;
    const int n_slots_;
    const int threads_;
    std::atomic<int> in_flight_{0};
    std::atomic<int> slots_in_use_{0};
    std::atomic<int> waiting_{0};
    std::mutex mutex_;
    std::condition_variable wake_;
    int64_t wake_count_ = 0;  // submissions and cancels the scheduler thread has not seen
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace nibble::app

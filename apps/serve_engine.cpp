// The scheduler thread of nibble serve and the channels that carry each
// request's tokens to its HTTP handler.
#include "apps/serve_engine.h"

#include <omp.h>

namespace nibble::app {

void EventChannel::push(StreamEvent event) {
    {
        std::lock_guard lock(mutex_);
        events_.push_back(std::move(event));
    }
    ready_.notify_one();
}

bool EventChannel::pop_all(std::vector<StreamEvent>* out, std::chrono::milliseconds timeout) {
    out->clear();
    std::unique_lock lock(mutex_);
    if (!ready_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return false;
    for (StreamEvent& e : events_) out->push_back(std::move(e));
    events_.clear();
    return true;
}

ServeEngine::ServeEngine(InferenceState& state, const Tokenizer& tokenizer, int max_requests,
                         int threads, ServeMetrics& metrics)
    : scheduler_(state, tokenizer),
      metrics_(&metrics),
      max_requests_(max_requests),
      n_slots_(scheduler_.n_slots()),
      threads_(threads),
      thread_([this] { loop(); }) {}

ServeEngine::~ServeEngine() {
    stop();
}

ServeEngine::Submitted ServeEngine::submit(Request request, bool want_logprobs) {
    // Reserve a place first, so that concurrent submissions cannot overshoot.
    if (in_flight_.fetch_add(1) >= max_requests_) {
        in_flight_.fetch_sub(1);
        return {};
    }
    auto channel = std::make_shared<EventChannel>();
    if (!want_logprobs) request.n_logprobs = -1;
    request.on_token = [this, channel](const TokenEvent& e) {
        StreamEvent event;
        event.token = e.token;
        event.text = std::string(e.text);
        event.logprob = e.logprob;
        event.top_logprobs.assign(e.top_logprobs.begin(), e.top_logprobs.end());
        if (e.token >= 0) metrics_->add_generated_token();
        channel->push(std::move(event));
    };
    request.on_finish = [this, channel](const FinishEvent& e) {
        StreamEvent event;
        event.finished = true;
        event.reason = e.reason;
        event.n_prompt = e.n_prompt;
        event.n_prompt_reused = e.n_prompt_reused;
        event.n_generated = e.n_generated;
        metrics_->add_prompt_tokens(e.n_prompt - e.n_prompt_reused, e.n_prompt_reused);
        in_flight_.fetch_sub(1);
        channel->push(std::move(event));
    };
    RequestId id = 0;
    try {
        id = scheduler_.submit(std::move(request));
    } catch (...) {
        in_flight_.fetch_sub(1);
        throw;
    }
    {
        std::lock_guard lock(mutex_);
        ++wake_count_;
    }
    wake_.notify_one();
    return {id, std::move(channel)};
}

void ServeEngine::cancel(RequestId id) {
    scheduler_.cancel(id);
    {
        std::lock_guard lock(mutex_);
        ++wake_count_;
    }
    wake_.notify_one();
}

void ServeEngine::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_one();
    if (thread_.joinable()) thread_.join();
}

// Steps while there is work; sleeps until a submission or cancellation when
// idle. Leaves once stopping and idle.
void ServeEngine::loop() {
    omp_set_num_threads(threads_);
    while (true) {
        {
            std::unique_lock lock(mutex_);
            wake_count_ = 0;
        }
        const bool busy = scheduler_.step();
        slots_in_use_.store(scheduler_.n_active());
        waiting_.store(scheduler_.n_waiting());
        if (busy) continue;
        std::unique_lock lock(mutex_);
        if (stopping_) break;
        wake_.wait(lock, [&] { return wake_count_ > 0 || stopping_; });
    }
}

}  // namespace nibble::app

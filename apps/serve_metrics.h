// nibble serve's counters, and their Prometheus text exposition (GET /metrics).
#pragma once
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace nibble::app {

class ServeMetrics {
  public:
    // One finished HTTP request to `endpoint` (a path) with `status`.
    void count_request(const std::string& endpoint, int status);
    void add_prompt_tokens(int evaluated, int reused);
    // Called from the scheduler thread for every generated token.
    void add_generated_token();
    void observe_time_to_first_token(double seconds);

    struct Gauges {
        int queue_length = 0;  // requests waiting for a KV slot
        int slots_in_use = 0;
        int slots = 0;
        int in_flight = 0;
        bool ready = false;
    };
    // The Prometheus text format, version 0.0.4.
    std::string render(const Gauges& gauges);

    // Upper bounds of the time-to-first-token histogram's buckets, seconds.
    static constexpr std::array<double, 11> kTtftBuckets = {0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                                                            2.5,   5.0,  10., 30.,  60.};

  private:
    using Clock = std::chrono::steady_clock;
    std::mutex mutex_;
    std::map<std::pair<std::string, int>, int64_t> requests_;
    std::array<int64_t, kTtftBuckets.size() + 1> ttft_counts_{};  // last: +Inf
    double ttft_sum_ = 0.0;
    int64_t ttft_count_ = 0;
    int64_t prompt_tokens_ = 0, prompt_tokens_reused_ = 0, generated_tokens_ = 0;
    // Generation rate over a window of about 10 s.
    Clock::time_point window_start_ = Clock::now();
    int64_t window_tokens_ = 0;
    double tokens_per_second_ = 0.0;
};

}  // namespace nibble::app

// Counters of nibble serve and their Prometheus text exposition.
#include "apps/serve_metrics.h"

#include <cstdio>

namespace nibble::app {

namespace {

constexpr double kRateWindowSeconds = 10.0;

void append(std::string* out, const char* format, auto... values) {
    char line[256];
    const int n = std::snprintf(line, sizeof line, format, values...);
    if (n > 0) out->append(line, size_t(std::min(n, int(sizeof line) - 1)));
}

}  // namespace

void ServeMetrics::count_request(const std::string& endpoint, int status) {
    std::lock_guard lock(mutex_);
    ++requests_[{endpoint, status}];
}

void ServeMetrics::add_prompt_tokens(int evaluated, int reused) {
    std::lock_guard lock(mutex_);
    prompt_tokens_ += evaluated;
    prompt_tokens_reused_ += reused;
}

void ServeMetrics::add_generated_token() {
    std::lock_guard lock(mutex_);
    ++generated_tokens_;
    ++window_tokens_;
    const auto now = Clock::now();
    const double elapsed = std::chrono::duration<double>(now - window_start_).count();
    if (elapsed >= kRateWindowSeconds) {
        tokens_per_second_ = double(window_tokens_) / elapsed;
        window_tokens_ = 0;
        window_start_ = now;
    }
}

void ServeMetrics::observe_time_to_first_token(double seconds) {
    std::lock_guard lock(mutex_);
    size_t bucket = 0;
    while (bucket < kTtftBuckets.size() && seconds > kTtftBuckets[bucket]) ++bucket;
    ++ttft_counts_[bucket];
    ttft_sum_ += seconds;
    ++ttft_count_;
}

std::string ServeMetrics::render(const Gauges& g) {
    std::lock_guard lock(mutex_);
    // A window with no token for longer than itself means nothing is generated now.
    const double idle = std::chrono::duration<double>(Clock::now() - window_start_).count();
    const double rate = idle > 2 * kRateWindowSeconds ? 0.0 : tokens_per_second_;
    std::string out;
    out += "# HELP nibble_requests_total HTTP requests answered, by endpoint and status.\n";
    out += "# TYPE nibble_requests_total counter\n";
    for (const auto& [key, count] : requests_) {
        append(&out, "nibble_requests_total{endpoint=\"%s\",status=\"%d\"} %lld\n",
               key.first.c_str(), key.second, static_cast<long long>(count));
    }
    out += "# HELP nibble_prompt_tokens_total Prompt tokens computed.\n";
    out += "# TYPE nibble_prompt_tokens_total counter\n";
    append(&out, "nibble_prompt_tokens_total %lld\n", static_cast<long long>(prompt_tokens_));
    out += "# HELP nibble_prompt_tokens_reused_total Prompt tokens whose KV cache was reused.\n";
    out += "# TYPE nibble_prompt_tokens_reused_total counter\n";
    append(&out, "nibble_prompt_tokens_reused_total %lld\n",
           static_cast<long long>(prompt_tokens_reused_));
    out += "# HELP nibble_generated_tokens_total Tokens generated.\n";
    out += "# TYPE nibble_generated_tokens_total counter\n";
    append(&out, "nibble_generated_tokens_total %lld\n", static_cast<long long>(generated_tokens_));
    out += "# HELP nibble_generated_tokens_per_second Generation rate over the last ~10 s.\n";
    out += "# TYPE nibble_generated_tokens_per_second gauge\n";
    append(&out, "nibble_generated_tokens_per_second %.3f\n", rate);
    out += "# HELP nibble_queue_length Requests waiting for a KV slot.\n";
    out += "# TYPE nibble_queue_length gauge\n";
    append(&out, "nibble_queue_length %d\n", g.queue_length);
    out += "# HELP nibble_requests_in_flight Requests running or waiting.\n";
    out += "# TYPE nibble_requests_in_flight gauge\n";
    append(&out, "nibble_requests_in_flight %d\n", g.in_flight);
    out += "# HELP nibble_kv_slots_in_use KV cache slots holding a running request.\n";
    out += "# TYPE nibble_kv_slots_in_use gauge\n";
    append(&out, "nibble_kv_slots_in_use %d\n", g.slots_in_use);
    out += "# HELP nibble_kv_slots KV cache slots (--parallel).\n";
    out += "# TYPE nibble_kv_slots gauge\n";
    append(&out, "nibble_kv_slots %d\n", g.slots);
    out += "# HELP nibble_ready 1 when the model is loaded and requests are taken.\n";
    out += "# TYPE nibble_ready gauge\n";
    append(&out, "nibble_ready %d\n", g.ready ? 1 : 0);
    out += "# HELP nibble_time_to_first_token_seconds From the request to its first token.\n";
    out += "# TYPE nibble_time_to_first_token_seconds histogram\n";
    int64_t cumulative = 0;
    for (size_t i = 0; i < kTtftBuckets.size(); ++i) {
        cumulative += ttft_counts_[i];
        append(&out, "nibble_time_to_first_token_seconds_bucket{le=\"%g\"} %lld\n", kTtftBuckets[i],
               static_cast<long long>(cumulative));
    }
    cumulative += ttft_counts_.back();
    append(&out, "nibble_time_to_first_token_seconds_bucket{le=\"+Inf\"} %lld\n",
           static_cast<long long>(cumulative));
    append(&out, "nibble_time_to_first_token_seconds_sum %.6f\n", ttft_sum_);
    append(&out, "nibble_time_to_first_token_seconds_count %lld\n",
           static_cast<long long>(ttft_count_));
    return out;
}

}  // namespace nibble::app

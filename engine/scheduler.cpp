// Continuous-batching scheduler: admission, batch assembly, sampling, stop
// conditions and slot reuse. Everything a step touches is sized when the
// scheduler is built or a request is admitted; decoding allocates nothing.
#include "engine/scheduler.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace nibble {

namespace {

double seconds_between(std::chrono::steady_clock::time_point a,
                       std::chrono::steady_clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

// Bytes at the end of `text` that are the start of some stop string (and so
// must not be shown yet).
size_t partial_stop_suffix(std::string_view text, const std::vector<std::string>& stops) {
    size_t hold = 0;
    for (const std::string& stop : stops) {
        for (size_t k = std::min(stop.size() - 1, text.size()); k > hold; --k) {
            if (text.substr(text.size() - k) == std::string_view(stop).substr(0, k)) {
                hold = k;
                break;
            }
        }
    }
    return hold;
}

}  // namespace

const char* finish_reason_name(FinishReason r) {
    switch (r) {
        case FinishReason::length:
            return "length";
        case FinishReason::eos:
            return "eos";
        case FinishReason::stop:
            return "stop";
        case FinishReason::cancelled:
            return "cancelled";
    }
    return "?";
}

Scheduler::Scheduler(InferenceState& state, const Tokenizer& tokenizer,
                     const SchedulerOptions& options)
    : state_(&state), tokenizer_(&tokenizer), options_(options) {
    const RuntimeOptions& ro = state.options();
    max_batch_ = options.max_batch_tokens > 0 ? std::min(options.max_batch_tokens, ro.max_batch)
                                              : ro.max_batch;
    if (max_batch_ < ro.n_sequences) {
        throw std::invalid_argument("the scheduler needs a batch of at least " +
                                    std::to_string(ro.n_sequences) + " tokens (one per slot)");
    }
    if (state.logit_rows() < ro.n_sequences) {
        throw std::invalid_argument("the scheduler needs logits of " +
                                    std::to_string(ro.n_sequences) +
                                    " tokens per batch (one per slot)");
    }
    vocab_ = state.model().config.vocab_size;
    slots_.resize(size_t(ro.n_sequences));
    for (Slot& slot : slots_) {
        slot.tokens.reserve(size_t(state.context()) + 1);
        slot.text.reserve(size_t(state.context()) * 8);
    }
    order_.reserve(slots_.size());
    batch_.resize(size_t(max_batch_));
    logits_copy_.resize(size_t(vocab_));
    logprob_order_.resize(size_t(vocab_));
}

RequestId Scheduler::submit(Request request) {
    if (request.prompt.empty()) throw std::invalid_argument("the prompt has no tokens");
    if (int(request.prompt.size()) > state_->context()) {
        throw std::invalid_argument("the prompt has " + std::to_string(request.prompt.size()) +
                                    " tokens, more than the context of " +
                                    std::to_string(state_->context()));
    }
    for (int32_t t : request.prompt) {
        if (t < 0 || t >= vocab_) {
            throw std::invalid_argument("prompt token " + std::to_string(t) +
                                        " is outside the vocabulary");
        }
    }
    for (const std::string& s : request.stop) {
        if (s.empty()) throw std::invalid_argument("empty stop string");
    }
    std::lock_guard lock(mutex_);
    const RequestId id = next_id_++;
    incoming_.push_back({id, std::move(request), Clock::now()});
    return id;
}

void Scheduler::cancel(RequestId id) {
    std::lock_guard lock(mutex_);
    cancels_.push_back(id);
}

bool Scheduler::idle() const {
    std::lock_guard lock(mutex_);
    return incoming_.empty() && waiting_.empty() && order_.empty();
}

int Scheduler::n_active() const {
    return int(order_.size());
}

int Scheduler::n_waiting() const {
    std::lock_guard lock(mutex_);
    return int(incoming_.size() + waiting_.size());
}

void Scheduler::run() {
    while (step()) {
    }
}

// Moves new submissions to the waiting queue and applies cancellations.
void Scheduler::take_in() {
    std::vector<RequestId> cancels;
    {
        std::lock_guard lock(mutex_);
        for (Pending& p : incoming_) waiting_.push_back(std::move(p));
        incoming_.clear();
        cancels.swap(cancels_);
    }
    for (RequestId id : cancels) {
        for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
            if (it->id != id) continue;
            Pending p = std::move(*it);
            waiting_.erase(it);
            finish_pending(p);
            break;
        }
        for (int index : order_) {
            Slot& slot = slots_[size_t(index)];
            if (slot.phase != Phase::free && slot.id == id) {
                finish(slot, FinishReason::cancelled);
            }
        }
    }
    std::erase_if(order_, [&](int i) { return slots_[size_t(i)].phase == Phase::free; });
}

// The free slot to use for `prompt`, and where its longest cached prefix is:
// *source is the slot holding it and *reuse its length (0: none), capped so
// that at least the last prompt token is computed (its logits are needed).
int Scheduler::choose_slot(const std::vector<int32_t>& prompt, int* source, int* reuse) const {
    *source = -1;
    *reuse = 0;
    if (options_.reuse_prefix) {
        const size_t cap = prompt.size() - 1;
        for (size_t i = 0; i < slots_.size(); ++i) {
            const Slot& s = slots_[i];
            const size_t n = std::min(size_t(s.n_cached), cap);
            size_t common = 0;
            while (common < n && s.tokens[common] == prompt[common]) ++common;
            const bool better = int(common) > *reuse ||
                                (int(common) == *reuse && common > 0 && s.phase == Phase::free &&
                                 slots_[size_t(*source)].phase != Phase::free);
            if (better) {
                *source = int(i);
                *reuse = int(common);
            }
        }
    }
    if (*source >= 0 && slots_[size_t(*source)].phase == Phase::free) return *source;
    // Otherwise the free slot used longest ago.
    int best = -1;
    for (size_t i = 0; i < slots_.size(); ++i) {
        if (slots_[i].phase != Phase::free) continue;
        if (best < 0 || slots_[i].admitted_order < slots_[size_t(best)].admitted_order) {
            best = int(i);
        }
    }
    return best;
}

void Scheduler::admit(Pending&& pending) {
    int source = -1, reuse = 0;
    const int index = choose_slot(pending.request.prompt, &source, &reuse);
    if (source >= 0 && source != index) state_->kv_cache().copy_prefix(source, index, reuse);
    Slot& slot = slots_[size_t(index)];
    slot.phase = Phase::prompt;
    slot.id = pending.id;
    slot.request = std::move(pending.request);
    slot.tokens.assign(slot.request.prompt.begin(), slot.request.prompt.end());
    slot.n_prompt = int(slot.tokens.size());
    slot.n_cached = reuse;
    slot.n_reused = reuse;
    slot.n_generated = 0;
    slot.sampler.emplace(slot.request.sampling, vocab_);
    slot.decoder.emplace(*tokenizer_);
    for (int32_t t : slot.tokens) slot.decoder->push(t);  // the completion continues this text
    slot.text.clear();
    slot.emitted = 0;
    slot.logits_row = -1;
    slot.admitted_order = ++admissions_;
    slot.submitted = pending.submitted;
    slot.admitted = Clock::now();
    slot.first_token = slot.admitted;
    stats_.prompt_tokens_reused += reuse;
    order_.push_back(index);
}

// Decoding sequences first (one token each), then prompt chunks in admission
// order while the batch has room. Returns the number of batch rows.
int Scheduler::fill_batch() {
    int n = 0, rows = 0;
    for (int index : order_) {
        Slot& slot = slots_[size_t(index)];
        if (slot.phase != Phase::decode) continue;
        const int pos = int(slot.tokens.size()) - 1;
        batch_[size_t(n++)] = {slot.tokens.back(), pos, index, true};
        slot.logits_row = rows++;
    }
    for (int index : order_) {
        Slot& slot = slots_[size_t(index)];
        if (slot.phase != Phase::prompt) continue;
        const int take = std::min(slot.n_prompt - slot.n_cached, max_batch_ - n);
        for (int i = 0; i < take; ++i) {
            const int pos = slot.n_cached + i;
            const bool last = pos == slot.n_prompt - 1;
            batch_[size_t(n++)] = {slot.tokens[size_t(pos)], pos, index, last};
            if (last) slot.logits_row = rows++;
        }
        if (n == max_batch_) break;
    }
    return n;
}

bool Scheduler::step() {
    take_in();
    while (!waiting_.empty() && order_.size() < slots_.size()) {
        Pending p = std::move(waiting_.front());
        waiting_.pop_front();
        admit(std::move(p));
    }
    if (order_.empty()) return !idle();
    const int n = fill_batch();
    const float* logits = state_->forward(std::span<const BatchToken>(batch_.data(), size_t(n)));
    ++stats_.steps;
    stats_.tokens_evaluated += n;
    for (int i = 0; i < n; ++i) {
        const BatchToken& t = batch_[size_t(i)];
        slots_[size_t(t.seq)].n_cached = t.pos + 1;
    }
    for (int index : order_) {
        Slot& slot = slots_[size_t(index)];
        if (slot.logits_row < 0) continue;
        const int row = slot.logits_row;
        slot.logits_row = -1;
        on_logits(slot, logits + size_t(row) * size_t(vocab_));
    }
    std::erase_if(order_, [&](int i) { return slots_[size_t(i)].phase == Phase::free; });
    return !idle();
}

// The model's output after the sequence's last token: sample, then check the
// stop conditions.
void Scheduler::on_logits(Slot& slot, const float* logits) {
    const Request& req = slot.request;
    const int context = state_->context();
    if (slot.phase == Phase::prompt) slot.first_token = Clock::now();
    if (req.n_predict >= 0 && slot.n_generated >= req.n_predict) {
        return finish(slot, FinishReason::length);
    }
    if (int(slot.tokens.size()) >= context) return finish(slot, FinishReason::length, true);
    std::copy(logits, logits + vocab_, logits_copy_.begin());
    const int32_t next = slot.sampler->sample(logits_copy_.data(), slot.tokens);
    if (req.n_logprobs >= 0) compute_logprobs(logits, next, req.n_logprobs);
    if (!req.ignore_eos && (tokenizer_->is_eos(next) || next == tokenizer_->bos_id())) {
        return finish(slot, FinishReason::eos);
    }
    slot.phase = Phase::decode;
    slot.tokens.push_back(next);
    ++slot.n_generated;
    slot.text += slot.decoder->push(next);

    // Stop strings: cut the completion at the first one; otherwise hold back a
    // tail that could still become one.
    if (!req.stop.empty()) {
        const size_t max_stop =
            std::max_element(req.stop.begin(), req.stop.end(), [](const auto& a, const auto& b) {
                return a.size() < b.size();
            })->size();
        const size_t from = slot.emitted > max_stop ? slot.emitted - max_stop : 0;
        size_t cut = std::string::npos;
        for (const std::string& s : req.stop) cut = std::min(cut, slot.text.find(s, from));
        if (cut != std::string::npos) {
            slot.text.resize(std::max(cut, slot.emitted));
            emit(slot, next, slot.text.size());
            return finish(slot, FinishReason::stop);
        }
    }
    emit(slot, next, slot.text.size() - partial_stop_suffix(slot.text, req.stop));
    if (req.n_predict >= 0 && slot.n_generated >= req.n_predict) {
        return finish(slot, FinishReason::length);
    }
    if (int(slot.tokens.size()) >= context) finish(slot, FinishReason::length, true);
}

// log softmax(logits)[token] = logits[token] - log sum_j exp(logits[j]),
// with the maximum subtracted first; and the n_top most likely tokens.
void Scheduler::compute_logprobs(const float* logits, int32_t token, int n_top) {
    const float max = *std::max_element(logits, logits + vocab_);
    double sum = 0.0;
    for (int j = 0; j < vocab_; ++j) sum += std::exp(double(logits[j] - max));
    const float log_norm = max + float(std::log(sum));
    token_logprob_ = logits[token] - log_norm;
    const int k = std::min(n_top, vocab_);
    for (int j = 0; j < vocab_; ++j) logprob_order_[size_t(j)] = {j, logits[j] - log_norm};
    std::partial_sort(logprob_order_.begin(), logprob_order_.begin() + k, logprob_order_.end(),
                      [](const TokenLogprob& a, const TokenLogprob& b) {
                          return a.logprob > b.logprob ||
                                 (a.logprob == b.logprob && a.token < b.token);
                      });
    top_logprobs_ = std::span<const TokenLogprob>(logprob_order_.data(), size_t(k));
}

// Passes text[emitted..upto) to on_token with `token` (-1: none, text only).
void Scheduler::emit(Slot& slot, int32_t token, size_t upto) {
    if (!slot.request.on_token) {
        slot.emitted = std::max(slot.emitted, upto);
        return;
    }
    TokenEvent e;
    e.id = slot.id;
    e.token = token;
    e.n_generated = slot.n_generated;
    if (token >= 0 && slot.request.n_logprobs >= 0) {
        e.logprob = token_logprob_;
        e.top_logprobs = top_logprobs_;
    }
    if (upto > slot.emitted) {
        e.text = std::string_view(slot.text).substr(slot.emitted, upto - slot.emitted);
        slot.emitted = upto;
    }
    if (token >= 0 || !e.text.empty()) slot.request.on_token(e);
}

void Scheduler::finish(Slot& slot, FinishReason reason, bool context_full) {
    if (reason != FinishReason::stop) slot.text += slot.decoder->flush();
    emit(slot, -1, slot.text.size());
    const auto now = Clock::now();
    const bool sampled = slot.phase == Phase::decode || reason != FinishReason::cancelled;
    FinishEvent e;
    e.id = slot.id;
    e.reason = reason;
    e.context_full = context_full;
    e.completion = slot.text;
    e.tokens = slot.tokens;
    e.n_prompt = slot.n_prompt;
    e.n_prompt_reused = slot.n_reused;
    e.n_generated = slot.n_generated;
    e.n_decode_evals = std::max(0, slot.n_cached - slot.n_prompt);
    e.queue_seconds = seconds_between(slot.submitted, slot.admitted);
    e.prompt_seconds = seconds_between(slot.admitted, sampled ? slot.first_token : now);
    e.generation_seconds = sampled ? seconds_between(slot.first_token, now) : 0.0;
    slot.phase = Phase::free;
    if (slot.request.on_finish) slot.request.on_finish(e);
    slot.request.on_token = nullptr;
    slot.request.on_finish = nullptr;
}

void Scheduler::finish_pending(Pending& pending) {
    if (!pending.request.on_finish) return;
    FinishEvent e;
    e.id = pending.id;
    e.reason = FinishReason::cancelled;
    e.tokens = pending.request.prompt;
    e.n_prompt = int(pending.request.prompt.size());
    e.queue_seconds = seconds_between(pending.submitted, Clock::now());
    pending.request.on_finish(e);
}

}  // namespace nibble

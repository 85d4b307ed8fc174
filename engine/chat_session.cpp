// Chat turns as scheduler requests whose prompt is the whole conversation: the
// scheduler's prefix reuse finds the conversation in the KV slot, so only the
// new tokens are computed.
#include "engine/chat_session.h"

#include <algorithm>
#include <stdexcept>

#include "tokenizer/chat_tokens.h"

namespace nibble {

namespace {

std::string trim(std::string_view s) {
    const size_t a = s.find_first_not_of(" \t\r\n");
    if (a == std::string_view::npos) return "";
    const size_t b = s.find_last_not_of(" \t\r\n");
    return std::string(s.substr(a, b - a + 1));
}

}  // namespace

ChatSession::ChatSession(InferenceState& state, const Tokenizer& tokenizer, ChatOptions options)
    : state_(&state),
      tokenizer_(&tokenizer),
      options_(std::move(options)),
      scheduler_(state, tokenizer) {
    reset();
}

void ChatSession::reset() {
    messages_.clear();
    if (!options_.system.empty()) {
        messages_.push_back({ChatMessage::Role::system, options_.system});
    }
    rebuild_tokens();
}

std::vector<int32_t> ChatSession::tokenize(std::string_view text) const {
    return tokenizer_->encode_template(text, false);
}

std::vector<int32_t> ChatSession::tokenize(const RenderedChat& rendered, size_t from) const {
    return tokenize_chat(*tokenizer_, rendered, from);
}

// The conversation's tokens from its rendered text (BOS first).
void ChatSession::rebuild_tokens() {
    tokens_ = tokenize(render_chat_marked(options_.chat_template, messages_, false));
    add_bos(tokens_);
}

// BOS in front when the model wants one and the template did not write it.
void ChatSession::add_bos(std::vector<int32_t>& tokens) const {
    add_bos_if_wanted(*tokenizer_, tokens);
}

// Removes the first user message after the system prompt and everything up to
// the next user message (its answer).
void ChatSession::drop_oldest_turn() {
    auto first = std::find_if(messages_.begin(), messages_.end(), [](const ChatMessage& m) {
        return m.role != ChatMessage::Role::system;
    });
    auto end = first + 1;
    while (end != messages_.end() && end->role != ChatMessage::Role::user) ++end;
    messages_.erase(first, end);
}

TurnStats ChatSession::turn(const std::string& user,
                            const std::function<void(std::string_view)>& on_text,
                            const std::atomic<bool>& interrupt) {
    const ChatTemplate t = options_.chat_template;
    const int context = state_->context();
    TurnStats stats;
    // The new text: the rendered conversation with the user's message and the
    // assistant header, minus what the conversation already rendered to.
    const std::string before = render_chat(t, messages_, false);
    messages_.push_back({ChatMessage::Role::user, user});
    const RenderedChat after = render_chat_marked(t, messages_, true);
    std::vector<int32_t> prompt = tokens_;
    if (after.text.compare(0, before.size(), before) == 0) {
        const auto delta = tokenize(after, before.size());
        prompt.insert(prompt.end(), delta.begin(), delta.end());
    } else {
        rebuild_tokens();  // not prefix-stable: start from the whole text
        prompt = tokens_;
    }
    // Room for the answer; without it drop the oldest turns and rebuild.
    const int room = options_.n_predict > 0 ? std::min(options_.n_predict, context / 2)
                                            : std::max(1, context / 4);
    while (int(prompt.size()) + room > context) {
        const bool has_old_turn = std::count_if(messages_.begin(), messages_.end(), [](auto& m) {
                                      return m.role == ChatMessage::Role::user;
                                  }) > 1;
        if (!has_old_turn) {
            if (int(prompt.size()) < context) break;  // a short answer still fits
            messages_.pop_back();
            throw std::invalid_argument("the message has " + std::to_string(prompt.size()) +
                                        " tokens with the template, the context " +
                                        std::to_string(context));
        }
        drop_oldest_turn();
        ++stats.dropped_turns;
        prompt = tokenize(render_chat_marked(t, messages_, true));
        add_bos(prompt);
    }

    Request request;
    request.prompt = prompt;
    request.sampling = options_.sampling;
    request.sampling.seed = options_.sampling.seed + uint64_t(turns_++);
    request.n_predict = options_.n_predict;
    request.stop = chat_stop_strings(t);
    request.ignore_eos = options_.ignore_eos;
    request.on_token = [&](const TokenEvent& e) {
        if (!e.text.empty()) on_text(e.text);
    };
    std::string answer;
    request.on_finish = [&](const FinishEvent& e) {
        tokens_.assign(e.tokens.begin(), e.tokens.end());
        answer = e.completion;
        stats.n_prompt_evaluated = e.n_prompt - e.n_prompt_reused;
        stats.n_prompt_reused = e.n_prompt_reused;
        stats.n_answer = e.n_generated;
        stats.prompt_seconds = e.prompt_seconds;
        stats.answer_seconds = e.generation_seconds;
        stats.reason = e.reason;
        stats.context_full = e.context_full;
    };
    const RequestId id = scheduler_.submit(std::move(request));
    bool cancelled = false;
    while (scheduler_.step()) {
        if (!cancelled && interrupt.load()) {
            scheduler_.cancel(id);
            cancelled = true;
        }
    }
    // Close the answer as the template does, so the next turn continues from
    // exactly the text the conversation renders to.
    messages_.push_back({ChatMessage::Role::assistant, trim(answer)});
    std::string suffix = assistant_suffix(t);
    for (const std::string& stop : chat_stop_strings(t)) {
        // The model wrote the end-of-turn marker itself: only the rest is missing.
        if (stats.reason == FinishReason::stop && suffix.rfind(stop, 0) == 0) {
            suffix = suffix.substr(stop.size());
        }
    }
    const auto closing = tokenize(suffix);
    if (int(tokens_.size() + closing.size()) <= context) {
        tokens_.insert(tokens_.end(), closing.begin(), closing.end());
    } else {
        rebuild_tokens();
    }
    return stats;
}

}  // namespace nibble

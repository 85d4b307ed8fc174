// ChatSession on stories260K: turns are evaluated on top of the conversation's
// KV cache, /reset forgets, a conversation much longer than the context keeps
// answering with the system prompt kept, special tokens in templates.
#include <doctest/doctest.h>

#include "engine/chat_session.h"
#include "models/loader.h"
#include "test_data.h"
#include "test_models.h"

using namespace nibble;
using nibble::test::stories260k;
using nibble::test::tok512;

namespace {

ChatOptions greedy(int n_predict, const std::string& system = "") {
    ChatOptions o;
    o.chat_template = ChatTemplate::plain;
    o.sampling.temperature = 0.0f;
    o.n_predict = n_predict;
    o.system = system;
    return o;
}

struct Answer {
    std::string text;
    TurnStats stats;
};

Answer say(ChatSession& chat, const std::string& user) {
    static const std::atomic<bool> never{false};
    Answer a;
    a.stats = chat.turn(
        user, [&](std::string_view t) { a.text += t; }, never);
    return a;
}

}  // namespace

TEST_CASE("each turn computes only its new tokens") {
    RuntimeOptions ro;
    InferenceState state(stories260k(), ro);
    ChatSession chat(state, tok512(), greedy(20, "Lily liked the park."));
    const Answer first = say(chat, "One day");
    CHECK_FALSE(first.text.empty());
    CHECK(first.stats.n_answer > 0);
    const size_t after_first = chat.tokens().size();
    const Answer second = say(chat, "Then Tom");
    CHECK_FALSE(second.text.empty());
    // Everything of the first turn but its last answer token (never fed to the
    // model) was already in the KV cache.
    const int closing = int(chat.tokenize("\n").size());  // the plain template's answer suffix
    CHECK(second.stats.n_prompt_reused == int(after_first) - 1 - closing);
    CHECK(second.stats.n_prompt_evaluated < 12);
    CHECK(chat.messages().size() == 5);  // system, user, assistant, user, assistant
    CHECK(chat.messages()[2].content.size() > 0);
}

TEST_CASE("the conversation equals one prompt of its rendered text") {
    // The second answer, computed incrementally, equals the answer to the whole
    // conversation rendered and evaluated from scratch.
    RuntimeOptions ro;
    InferenceState state(stories260k(), ro);
    ChatSession chat(state, tok512(), greedy(15));
    say(chat, "Once upon a time");
    const std::vector<int32_t> tokens_after_first = chat.tokens();
    const Answer second = say(chat, "The dog");

    InferenceState fresh_state(stories260k(), ro);
    Scheduler scheduler(fresh_state, tok512());
    Request r;
    r.prompt = tokens_after_first;
    const auto more = chat.tokenize("The dog");
    r.prompt.insert(r.prompt.end(), more.begin(), more.end());
    r.sampling.temperature = 0.0f;
    r.n_predict = 15;
    std::string text;
    r.on_finish = [&](const FinishEvent& e) { text = e.completion; };
    scheduler.submit(r);
    scheduler.run();
    CHECK(second.text == text);
}

TEST_CASE("reset forgets the conversation") {
    RuntimeOptions ro;
    InferenceState state(stories260k(), ro);
    ChatSession chat(state, tok512(), greedy(30));
    const Answer a = say(chat, "Once upon a time");
    const Answer b = say(chat, "Once upon a time");
    chat.reset();
    CHECK(chat.tokens() == std::vector<int32_t>{tok512().bos_id()});
    const Answer c = say(chat, "Once upon a time");
    CHECK(c.text == a.text);
    CHECK(b.text != a.text);  // with the conversation before it, the answer differs
    // The start of the old conversation (BOS and the same first words) is still
    // in the slot and is reused; nothing after it.
    CHECK(c.stats.n_prompt_reused == int(tok512().encode("Once upon a time", true).size()) - 1);
}

TEST_CASE("a conversation three times longer than the context keeps answering") {
    RuntimeOptions ro;
    ro.context = 96;
    InferenceState state(stories260k(), ro);
    const std::string system = "Lily and Tom were friends.";
    ChatSession chat(state, tok512(), greedy(16, system));
    const auto system_tokens = chat.tokenize(system + "\n");
    int total = 0, drops = 0;
    const char* lines[] = {"They went to the park", "The sun was hot", "Tom saw a dog",
                           "Lily laughed"};
    for (int turn = 0; turn < 24; ++turn) {
        CAPTURE(turn);
        const Answer a = say(chat, lines[turn % 4]);
        CHECK(a.stats.n_answer > 0);
        total += a.stats.n_prompt_evaluated + a.stats.n_answer;
        drops += a.stats.dropped_turns;
        CHECK(int(chat.tokens().size()) <= ro.context);
        // The system prompt stays at the start of the conversation.
        REQUIRE(chat.tokens().size() > system_tokens.size());
        CHECK(std::equal(system_tokens.begin(), system_tokens.end(), chat.tokens().begin() + 1));
        CHECK(chat.messages()[0].content == system);
    }
    CHECK(total > 3 * ro.context);
    CHECK(drops > 3);
}

TEST_CASE("special tokens of templates become single ids") {
    RuntimeOptions ro;
    InferenceState state(stories260k(), ro);
    ChatSession chat(state, tok512(), greedy(5));
    const auto ids = chat.tokenize("<s>[INST] Hi [/INST] Hello </s><|im_start|>");
    CHECK(ids.front() == tok512().bos_id());
    CHECK(std::count(ids.begin(), ids.end(), tok512().eos_id()) == 1);
    // tok512 has no <|im_start|> piece: it stays text.
    CHECK(ids.back() != tok512().eos_id());
    CHECK(tok512().decode(ids).find("<|im_start|>") != std::string::npos);
}

TEST_CASE("an interrupted answer ends with reason cancelled and stays in the conversation") {
    RuntimeOptions ro;
    InferenceState state(stories260k(), ro);
    ChatOptions o = greedy(200);
    o.ignore_eos = true;
    ChatSession chat(state, tok512(), o);
    std::atomic<bool> stop{false};
    std::string text;
    int pieces = 0;
    const TurnStats s = chat.turn(
        "Once upon a time",
        [&](std::string_view t) {
            text += t;
            if (++pieces == 5) stop.store(true);
        },
        stop);
    CHECK(s.reason == FinishReason::cancelled);
    CHECK(s.n_answer < 20);
    CHECK(chat.messages().back().role == ChatMessage::Role::assistant);
    CHECK_FALSE(chat.messages().back().content.empty());
}

// nibble chat: a conversation in the terminal (libedit line editing and
// history), or one turn per line of piped input. Ctrl-C stops the answer being
// written, Ctrl-D (end of input) exits.
#include <editline/readline.h>
#include <signal.h>  // NOLINT(modernize-deprecated-headers): sigaction is POSIX, not <csignal>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cxxopts.hpp>
#include <string>

#include "apps/commands.h"
#include "apps/sampling_options.h"
#include "apps/validate.h"
#include "engine/chat_session.h"
#include "models/input_file.h"
#include "models/loader.h"

namespace nibble::app {

namespace {

std::atomic<bool> g_interrupted{false};

void on_sigint(int) {
    g_interrupted.store(true);
}

// SIGINT sets the flag instead of ending the process (no SA_RESTART: a read
// waiting for input returns, and the prompt is shown again).
void install_sigint_handler() {
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGINT, &sa, nullptr);
}

// One line of piped input, of at most max_bytes (an endless line, such as
// /dev/zero, is refused instead of read); false at end of input.
bool read_piped_line(std::string* line, size_t max_bytes, int number) {
    line->clear();
    int c = 0;
    while ((c = std::getchar()) != EOF) {
        if (c == '\n') return true;
        if (line->size() >= max_bytes) {
            throw std::runtime_error("stdin: line " + std::to_string(number) + " is longer than " +
                                     byte_size_text(max_bytes) +
                                     ", more than the context can hold");
        }
        line->push_back(char(c));
    }
    return !line->empty();
}

// One line of input; false at end of input. Interactive lines come from
// libedit (editing, history); Ctrl-C at the prompt clears the line.
bool read_line(bool interactive, std::string* line, size_t max_bytes, int number) {
    if (!interactive) return read_piped_line(line, max_bytes, number);
    while (true) {
        g_interrupted.store(false);
        char* text = readline("> ");
        if (text == nullptr) {
            if (g_interrupted.load()) {
                std::fputc('\n', stdout);
                continue;
            }
            return false;
        }
        *line = text;
        std::free(text);
        if (!line->empty()) add_history(line->c_str());
        return true;
    }
}

void print_stats(const TurnStats& s) {
    std::printf("prompt: %d tokens (%d reused), %.1f tokens/s | answer: %d tokens, %.1f tokens/s\n",
                s.n_prompt_evaluated, s.n_prompt_reused, s.prompt_tokens_per_second(), s.n_answer,
                s.answer_tokens_per_second());
}

}  // namespace

int chat_command(int argc, char** argv) {
    cxxopts::Options options(argv[0], "Chat with a model in the terminal");
    add_model_options(options);
    add_template_option(options);
    // clang-format off
    options.add_options()
        ("system", "system prompt", cxxopts::value<std::string>()->default_value(""))
        ("n,n-predict", "tokens per answer (-1: until the end of the turn)", cxxopts::value<int>()->default_value("-1"))
        ("ignore-eos", "keep answering after end-of-sequence")
        ("h,help", "show this help");
    // clang-format on
    add_sampling_options(options, "-1");
    const auto parsed = parse_command_line(options, argc, argv);
    if (!parsed) return 0;
    const cxxopts::ParseResult& args = *parsed;
    const ModelOptions mo = model_options(args);
    ChatOptions chat;
    chat.n_predict = args["n-predict"].as<int>();
    if (chat.n_predict < -1 || chat.n_predict == 0) {
        throw UsageError("--n-predict must be -1 or positive");
    }
    chat.sampling = sampling_option_values(args);
    chat.system = args["system"].as<std::string>();
    chat.ignore_eos = args.count("ignore-eos") > 0;
    set_threads(mo.threads);

    LoadedModel loaded(mo);
    const Model& model = loaded.model;
    Tokenizer& tokenizer = loaded.tokenizer;
    chat.chat_template = chat_template_for(mo, model);
    // The template's end-of-turn token ends an answer, like EOS.
    if (const int32_t eot = tokenizer.special_id(chat_end_of_turn(chat.chat_template));
        eot >= 0 && !tokenizer.is_eos(eot)) {
        std::vector<int32_t> ids = tokenizer.extra_eos_ids();
        ids.push_back(eot);
        tokenizer.set_extra_eos_ids(std::move(ids));
    }
    RuntimeOptions ro = loaded.runtime;
    ro.max_logit_rows = 1;  // the last prompt token's or the decoded one's
    check_state_memory(model, ro, "--ctx-size", "--batch-size");
    InferenceState state(model, ro);
    ChatSession session(state, tokenizer, chat);
    // A system prompt that leaves no room for a message fails now, not at every turn.
    if (int(session.tokens().size()) + 4 > ro.context) {
        throw std::runtime_error("--system: the system prompt has " +
                                 std::to_string(session.tokens().size()) +
                                 " tokens with the template, no room left in the context of " +
                                 std::to_string(ro.context) + "; shorten it or raise --ctx-size");
    }
    // The longest line read: more bytes than this cannot fit in the context.
    const size_t max_line_bytes = std::max<size_t>(size_t(1) << 20, size_t(ro.context) * 64);
    const bool interactive = isatty(STDIN_FILENO) != 0;
    install_sigint_handler();
    if (interactive) {
        std::fprintf(stderr,
                     "chat template %s, context %d. /reset forgets the conversation, /stats "
                     "shows the last turn's speed, /exit or Ctrl-D quits, Ctrl-C stops an "
                     "answer.\n",
                     chat_template_name(chat.chat_template), ro.context);
    }
    TurnStats last;
    int line_number = 0;
    for (std::string line; read_line(interactive, &line, max_line_bytes, ++line_number);) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) continue;
        if (line == "/exit") break;
        if (line == "/reset") {
            session.reset();
            std::printf("[conversation reset]\n");
            std::fflush(stdout);
            continue;
        }
        if (line == "/stats") {
            print_stats(last);
            std::fflush(stdout);
            continue;
        }
        // (Interactive: read_line cleared it before the prompt, so a Ctrl-C
        // typed just after Enter still stops this answer.)
        if (!interactive) g_interrupted.store(false);
        try {
            last = session.turn(
                line,
                [](std::string_view text) {
                    std::fwrite(text.data(), 1, text.size(), stdout);
                    std::fflush(stdout);
                },
                g_interrupted);
        } catch (const std::invalid_argument& e) {
            std::fprintf(stderr, "[%s: message skipped]\n", e.what());
            continue;
        }
        std::fputc('\n', stdout);
        if (last.reason == FinishReason::cancelled) std::printf("[interrupted]\n");
        if (last.dropped_turns > 0) {
            std::printf(
                "[context full: dropped the %d oldest turn%s, kept the system prompt, "
                "recomputed %d tokens]\n",
                last.dropped_turns, last.dropped_turns == 1 ? "" : "s", last.n_prompt_evaluated);
        }
        std::fflush(stdout);
    }
    if (interactive) std::fputc('\n', stdout);
    return 0;
}

}  // namespace nibble::app

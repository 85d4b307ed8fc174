// nibble chat driven through a pseudo-terminal with stories260K: answers
// stream, /stats and /reset work, Ctrl-C stops an answer without exiting,
// Ctrl-D exits, and a conversation several times the context keeps answering.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "test_data.h"

using nibble::test::data_path;

namespace {

using Clock = std::chrono::steady_clock;

// `nibble chat ARGS` on a new pseudo-terminal.
class PtyChat {
  public:
    explicit PtyChat(const std::vector<std::string>& extra) {
        std::vector<std::string> args = {NIBBLE_BINARY, "chat",
                                         "-m",          data_path("stories260K.bin"),
                                         "--tokenizer", data_path("tok512.model"),
                                         "--template",  "plain",
                                         "--temp",      "0",
                                         "-t",          "1"};
        args.insert(args.end(), extra.begin(), extra.end());
        pid_ = forkpty(&fd_, nullptr, nullptr, nullptr);
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            setenv("TERM", "dumb", 1);
            std::vector<char*> argv;
            argv.reserve(args.size() + 1);
            for (std::string& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            execv(argv[0], argv.data());
            _exit(127);
        }
    }
    ~PtyChat() {
        if (pid_ > 0 && !exited_) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
        close(fd_);
    }

    // Reads until `needle` appears after output position `from`; returns its
    // position or npos on timeout. Counts the reads that brought text.
    size_t wait_for(const std::string& needle, size_t from, int* reads = nullptr,
                    double seconds = 120) {
        const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
        while (true) {
            const size_t at = output_.find(needle, from);
            if (at != std::string::npos) return at;
            if (Clock::now() > deadline) return std::string::npos;
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, 100) <= 0) continue;
            char buffer[4096];
            const ssize_t n = read(fd_, buffer, sizeof buffer);
            if (n <= 0) return std::string::npos;  // the child is gone
            output_.append(buffer, size_t(n));
            if (reads) ++*reads;
        }
    }
    // Waits until the line editor has put the terminal in raw mode (the pty
    // master reports the terminal's settings). A Ctrl-D typed while the
    // terminal is still canonical is consumed by the kernel's line discipline
    // as an end-of-file that the editor, switching to raw mode, never reads.
    bool wait_line_editor(double seconds = 60) {
        const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
        while (Clock::now() < deadline) {
            termios t{};
            if (tcgetattr(fd_, &t) == 0 && (t.c_lflag & ICANON) == 0) return true;
            usleep(2000);
        }
        return false;
    }
    void send(const std::string& text) {
        REQUIRE(write(fd_, text.data(), text.size()) == ssize_t(text.size()));
    }
    const std::string& output() const { return output_; }
    size_t size() const { return output_.size(); }

    // Exit code after the child ends (-1: killed or still running after the timeout).
    int wait_exit(double seconds = 60) {
        const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
        while (Clock::now() < deadline) {
            char buffer[4096];
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, 50) > 0) {
                const ssize_t n = read(fd_, buffer, sizeof buffer);
                if (n > 0) output_.append(buffer, size_t(n));
            }
            int status = 0;
            if (waitpid(pid_, &status, WNOHANG) == pid_) {
                exited_ = true;
                return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            }
        }
        return -1;
    }

  private:
    pid_t pid_ = -1;
    int fd_ = -1;
    bool exited_ = false;
    std::string output_;
};

const std::string kPrompt = "> ";

// Sends a line and returns the output it produced up to the next prompt.
std::string turn(PtyChat& chat, const std::string& line, int* reads = nullptr) {
    const size_t from = chat.size();
    chat.send(line + "\r");
    const size_t echo = chat.wait_for(line, from);
    REQUIRE(echo != std::string::npos);
    const size_t end = chat.wait_for("\n" + kPrompt, echo, reads);
    REQUIRE(end != std::string::npos);
    return chat.output().substr(echo, end - echo);
}

}  // namespace

TEST_CASE("a turn streams text; /stats; /reset forgets; Ctrl-D exits") {
    PtyChat chat({"-n", "40"});
    REQUIRE(chat.wait_for(kPrompt, 0) != std::string::npos);
    // (That answers stream is shown by the Ctrl-C test: text arrives while the
    // answer is still being written.)
    const std::string first = turn(chat, "Once upon a time");
    CHECK(first.size() > std::string("Once upon a time").size() + 40);
    const std::string stats = turn(chat, "/stats");
    CHECK(stats.find("answer: 40 tokens") != std::string::npos);
    const std::string second = turn(chat, "Once upon a time");
    CHECK(turn(chat, "/reset").find("[conversation reset]") != std::string::npos);
    const std::string again = turn(chat, "Once upon a time");
    // The answers (after the echoed line) are equal.
    auto answer = [](const std::string& out) {
        return out.substr(out.rfind("Once upon a time") + 16);
    };
    CHECK(answer(again) == answer(first));
    CHECK(answer(second) != answer(first));
    REQUIRE(chat.wait_line_editor());
    chat.send("\x04");
    CHECK(chat.wait_exit() == 0);
}

TEST_CASE("Ctrl-C stops an answer and returns to the prompt") {
    // Without EOS the answer would run to the end of a 4096-token context.
    PtyChat chat({"--ignore-eos", "-c", "4096"});
    REQUIRE(chat.wait_for(kPrompt, 0) != std::string::npos);
    const size_t from = chat.size();
    chat.send("Once upon a time\r");
    const size_t echo = chat.wait_for("Once upon a time", from);
    REQUIRE(echo != std::string::npos);
    REQUIRE(chat.wait_for(" ", echo + 60) != std::string::npos);  // text is coming
    chat.send("\x03");
    // The answer streamed: it was stopped well before the 4096-token context
    // it would otherwise fill (about 4 bytes a token).
    const size_t stopped = chat.wait_for("[interrupted]", echo);
    REQUIRE(stopped != std::string::npos);
    REQUIRE(chat.wait_for("\n" + kPrompt, stopped) != std::string::npos);
    CHECK(stopped - echo < 4 * 4096);
    CHECK(stopped - echo > 20);
    // Still running: another turn starts, and Ctrl-C stops it too.
    const size_t next = chat.size();
    chat.send("Tom had a dog\r");
    const size_t echo2 = chat.wait_for("Tom had a dog\r\n", next);
    REQUIRE(echo2 != std::string::npos);
    // The answer is coming: 60 more bytes (the echo may be repeated once when
    // the line was typed before the prompt's line editor started).
    REQUIRE(chat.wait_for(" ", echo2 + 60) != std::string::npos);
    chat.send("\x03");
    REQUIRE(chat.wait_for("[interrupted]", next) != std::string::npos);
    REQUIRE(chat.wait_for("\n" + kPrompt, next) != std::string::npos);
    chat.send("/exit\r");
    CHECK(chat.wait_exit() == 0);
}

TEST_CASE("a conversation three times longer than the context keeps answering") {
    PtyChat chat({"-c", "128", "-n", "24", "--system", "Lily and Tom were friends."});
    REQUIRE(chat.wait_for(kPrompt, 0) != std::string::npos);
    const char* lines[] = {"They went to the park", "The sun was hot", "Tom saw a dog",
                           "Lily laughed"};
    for (int i = 0; i < 16; ++i) {
        CAPTURE(i);
        const std::string out = turn(chat, lines[i % 4]);
        // The echoed line, then an answer.
        CHECK(out.size() > std::string(lines[i % 4]).size() + 10);
    }
    CHECK(chat.output().find("[context full: dropped the") != std::string::npos);
    chat.send("/exit\r");
    const int code = chat.wait_exit();
    CAPTURE(chat.output().substr(chat.size() > 400 ? chat.size() - 400 : 0));
    CHECK(code == 0);
}

// Running the nibble CLI on hostile input from tests: with a time limit (a
// FIFO must not hang the suite), checking for a one-line refusal, and killing
// a process mid-write.
#pragma once
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>  // NOLINT(modernize-deprecated-headers): kill is POSIX
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "test_data.h"

namespace nibble::test {

// `nibble ARGS` with its stderr captured, killed after `seconds` (exit code 124).
inline CliOutcome run_cli(const std::string& args, int seconds = 60) {
    return run_nibble(args, Capture::stderr_only, seconds);
}

inline int count_lines(const std::string& text) {
    return int(std::count(text.begin(), text.end(), '\n'));
}

// True when every byte is printable ASCII, a newline, or part of valid UTF-8
// at or above U+00A0 (no raw control or invalid bytes reach the terminal).
inline bool terminal_safe(const std::string& text) {
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    for (size_t i = 0; i < text.size();) {
        const unsigned char c = s[i];
        if (c == '\n' || (c >= 0x20 && c < 0x7f)) {
            ++i;
            continue;
        }
        size_t len = c >= 0xC2 && c <= 0xDF   ? 2
                     : c >= 0xE0 && c <= 0xEF ? 3
                     : c >= 0xF0 && c <= 0xF4 ? 4
                                              : 0;
        if (len == 0 || i + len > text.size()) return false;
        for (size_t k = 1; k < len; ++k) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
        }
        if (c == 0xC2 && s[i + 1] < 0xA0) return false;  // C1 controls
        i += len;
    }
    return true;
}

// A refusal: exit `code`, exactly one terminal-safe line on stderr containing `must_contain`.
inline void expect_refusal(const std::string& args, int code, const std::string& must_contain) {
    CAPTURE(args);
    const CliOutcome r = run_cli(args);
    CAPTURE(r.text);
    CHECK_FALSE(r.signalled);
    CHECK(r.exit_code == code);
    CHECK(count_lines(r.text) == 1);
    CHECK(r.text.size() < 1000);
    CHECK(terminal_safe(r.text));
    CHECK(r.text.find(must_contain) != std::string::npos);
}

// Starts `nibble ARGS...` (default signal dispositions, output discarded) and
// returns its pid.
inline pid_t spawn_nibble(const std::vector<std::string>& args) {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        for (int sig : {SIGINT, SIGTERM, SIGHUP}) signal(sig, SIG_DFL);
        const int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        std::vector<char*> argv;
        std::string binary = NIBBLE_BINARY;
        argv.push_back(binary.data());
        std::vector<std::string> copy = args;
        for (std::string& a : copy) argv.push_back(a.data());
        argv.push_back(nullptr);
        execv(binary.c_str(), argv.data());
        _exit(127);
    }
    return pid;
}

}  // namespace nibble::test

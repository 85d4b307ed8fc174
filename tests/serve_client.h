// A minimal HTTP/1.1 client over loopback sockets for the nibble serve tests:
// one request per connection, every read bounded by a timeout, chunked
// bodies decoded, server-sent events split into their data lines. Also starts
// `nibble serve` on a free port and waits (bounded) until it is ready.
#pragma once
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>  // NOLINT(modernize-deprecated-headers): kill is POSIX
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "test_data.h"

namespace nibble::test {

struct HttpReply {
    int status = 0;  // 0: no answer (connection failed or closed first)
    std::string headers;
    std::string body;                         // de-chunked
    std::string raw;                          // as received
    std::vector<std::string> events() const;  // "data: X" lines of an event stream -> X
};

inline std::vector<std::string> HttpReply::events() const {
    std::vector<std::string> out;
    size_t at = 0;
    while ((at = body.find("data: ", at)) != std::string::npos) {
        const size_t end = body.find("\n\n", at);
        if (end == std::string::npos) break;
        out.push_back(body.substr(at + 6, end - at - 6));
        at = end + 2;
    }
    return out;
}

// A connected socket with receive and send timeouts; -1 when refused.
inline int connect_loopback(int port, int timeout_seconds = 60) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    timeval tv{timeout_seconds, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(uint16_t(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
    // A signal (a child of another test thread exiting) interrupts a connect
    // that continues in the background: wait for it to complete.
    if (errno == EINTR) {
        pollfd p{fd, POLLOUT, 0};
        int error = 0;
        socklen_t length = sizeof error;
        if (poll(&p, 1, timeout_seconds * 1000) == 1 &&
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == 0) {
            return fd;
        }
    }
    close(fd);
    return -1;
}

inline bool send_all(int fd, const std::string& data) {
    size_t sent = 0;
    while (sent < data.size()) {
        const ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        sent += size_t(n);
    }
    return true;
}

inline std::string request_text(const std::string& method, const std::string& path,
                                const std::string& body, const std::string& extra_headers) {
    return method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" +
           "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n" + extra_headers + "\r\n" + body;
}

inline std::string dechunk(const std::string& raw) {
    std::string out;
    size_t at = 0;
    while (at < raw.size()) {
        const size_t eol = raw.find("\r\n", at);
        if (eol == std::string::npos) break;
        const size_t n = std::stoul(raw.substr(at, eol - at), nullptr, 16);
        if (n == 0) break;
        out += raw.substr(eol + 2, n);
        at = eol + 2 + n + 2;
    }
    return out;
}

inline HttpReply parse_reply(const std::string& raw) {
    HttpReply r;
    r.raw = raw;
    const size_t head_end = raw.find("\r\n\r\n");
    if (raw.rfind("HTTP/1.1 ", 0) != 0 || head_end == std::string::npos) return r;
    r.status = std::stoi(raw.substr(9, 3));
    r.headers = raw.substr(0, head_end);
    const std::string body = raw.substr(head_end + 4);
    r.body =
        r.headers.find("Transfer-Encoding: chunked") != std::string::npos ? dechunk(body) : body;
    return r;
}

// One request; reads the whole answer (the server closes the connection).
inline HttpReply http(int port, const std::string& method, const std::string& path,
                      const std::string& body = "", const std::string& extra_headers = "") {
    const int fd = connect_loopback(port);
    if (fd < 0) {
        HttpReply refused;
        refused.raw = "(connect: errno " + std::to_string(errno) + ")";
        return refused;
    }
    std::string raw;
    ssize_t n = -1;
    if (send_all(fd, request_text(method, path, body, extra_headers))) {
        char buffer[16384];
        while ((n = recv(fd, buffer, sizeof buffer, 0)) > 0 || (n < 0 && errno == EINTR)) {
            if (n > 0) raw.append(buffer, size_t(n));
        }
    }
    const int error = errno;
    close(fd);
    HttpReply reply = parse_reply(raw);
    if (reply.status == 0)
        reply.raw += " (ended with " + std::to_string(n) + ", errno " + std::to_string(error) + ")";
    return reply;
}

// Sends a request and reads until `marker` has arrived (or the connection
// ends); returns the socket, still open, and what was read.
inline int http_until(int port, const std::string& path, const std::string& body,
                      const std::string& marker, std::string* read) {
    const int fd = connect_loopback(port);
    REQUIRE(fd >= 0);
    REQUIRE(send_all(fd, request_text("POST", path, body, "")));
    char buffer[4096];
    ssize_t n;
    while (read->find(marker) == std::string::npos &&
           ((n = recv(fd, buffer, sizeof buffer, 0)) > 0 || (n < 0 && errno == EINTR))) {
        if (n > 0) read->append(buffer, size_t(n));
    }
    return fd;
}

// A `nibble serve` process on a free port, stopped (SIGKILL) when destroyed
// unless it was already waited for.
struct ServeProcess {
    pid_t pid = -1;
    int port = 0;
    std::string log_path;

    explicit ServeProcess(const std::vector<std::string>& args, const std::string& name = "serve") {
        static int started = 0;
        log_path =
            (temp_dir("nibble_serve_test") / (name + std::to_string(++started) + ".log")).string();
        std::filesystem::remove(log_path);
        pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) signal(sig, SIG_DFL);
            sigset_t none;
            sigemptyset(&none);
            sigprocmask(SIG_SETMASK, &none, nullptr);
            const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(log, 1);
            dup2(log, 2);
            std::vector<std::string> all = {NIBBLE_BINARY, "serve", "--port", "0"};
            all.insert(all.end(), args.begin(), args.end());
            std::vector<char*> argv;
            argv.reserve(all.size() + 1);
            for (std::string& a : all) argv.push_back(a.data());
            argv.push_back(nullptr);
            execv(argv[0], argv.data());
            _exit(127);
        }
        // The port from "listening on http://127.0.0.1:PORT", then /health 200.
        for (int i = 0; i < 600 && port == 0; ++i) {
            const std::string log = read_text(log_path);
            const size_t at = log.find("127.0.0.1:");
            if (at != std::string::npos && log.find(' ', at) != std::string::npos) {
                port = std::stoi(log.substr(at + 10));
            } else {
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
        }
        if (port == 0) kill(pid, SIGKILL);  // the destructor does not run after a failed REQUIRE
        REQUIRE_MESSAGE(port > 0, read_text(log_path));
        bool ready = false;
        for (int i = 0; i < 600 && !ready; ++i) {
            ready = http(port, "GET", "/health").status == 200;
            if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        if (!ready) kill(pid, SIGKILL);
        REQUIRE_MESSAGE(ready, read_text(log_path));
    }
    ~ServeProcess() {
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
        }
    }
    // Sends `sig` and waits (at most `seconds`) for the exit; the exit code,
    // or -1 when it did not exit normally in time (it is killed then).
    int signal_and_wait(int sig, int seconds) {
        kill(pid, sig);
        for (int i = 0; i < seconds * 20; ++i) {
            int status = 0;
            if (waitpid(pid, &status, WNOHANG) == pid) {
                pid = -1;
                return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        return -1;
    }
};

}  // namespace nibble::test

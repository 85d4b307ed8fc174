// Paths to the shared test data, temporary folders, and running the nibble CLI
// from tests.
#pragma once
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

namespace nibble::test {

inline std::string data_path(const std::string& name) {
    return std::string(NIBBLE_DATA_DIR) + "/" + name;
}

inline std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// A folder of this test process under the system temp directory, created on
// demand ("<name>_<pid>": tests of other builds or worktrees running at the same
// time never share it) and removed with everything in it when the process exits.
inline std::filesystem::path temp_dir(const std::string& name) {
    struct RemoveAtExit {
        std::vector<std::filesystem::path> dirs;
        ~RemoveAtExit() {
            for (const auto& d : dirs) {
                std::error_code ignored;
                std::filesystem::remove_all(d, ignored);
            }
        }
    };
    static RemoveAtExit created;
    auto dir = std::filesystem::temp_directory_path() / (name + "_" + std::to_string(getpid()));
    if (std::filesystem::create_directories(dir)) created.dirs.push_back(dir);
    return dir;
}

// Writes `bytes` to `path` (replacing it) and returns the path.
inline std::string write_file(const std::filesystem::path& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
    REQUIRE(out.good());
    return path.string();
}

struct CliOutcome {
    int exit_code = -1;  // -1 when the process did not exit normally
    bool signalled = false;
    std::string text;  // the captured stream
};

enum class Capture { stdout_only, stderr_only };

// Runs `nibble ARGS` through the shell and captures one of its streams (the
// other is discarded); with `timeout_seconds` > 0 it is killed after that long
// (a FIFO must not hang the suite).
inline CliOutcome run_nibble(const std::string& args, Capture capture, int timeout_seconds = 0) {
    const std::string redirect =
        capture == Capture::stderr_only ? " 2>&1 >/dev/null" : " 2>/dev/null";
    const std::string timeout =
        timeout_seconds > 0 ? "timeout -s KILL " + std::to_string(timeout_seconds) + " " : "";
    FILE* pipe = popen((timeout + std::string(NIBBLE_BINARY) + " " + args + redirect).c_str(), "r");
    REQUIRE(pipe != nullptr);
    CliOutcome out;
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) out.text.append(buffer, n);
    const int status = pclose(pipe);
    out.signalled = WIFSIGNALED(status);
    out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return out;
}

struct CliStreams {
    int exit_code = -1;  // -1 when the process did not exit normally
    std::string out, err;
};

// Runs `nibble ARGS` on one OpenMP thread with stdout and stderr captured
// separately (through files in this process's temporary folder).
inline CliStreams run_nibble_streams(const std::string& args) {
    const auto dir = temp_dir("nibble_cli_streams");
    const std::string out = (dir / "stdout.txt").string(), err = (dir / "stderr.txt").string();
    const std::string cmd = std::string("OMP_NUM_THREADS=1 '") + NIBBLE_BINARY + "' " + args +
                            " >'" + out + "' 2>'" + err + "'";
    const int status = std::system(cmd.c_str());
    CliStreams r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = read_text(out);
    r.err = read_text(err);
    return r;
}

}  // namespace nibble::test

// Paths to the shared test data, temporary folders, and running the nibble CLI
// from tests.
#pragma once
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

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

// A fresh-enough folder under the system temp directory, created on demand.
inline std::filesystem::path temp_dir(const std::string& name) {
    const auto dir = std::filesystem::temp_directory_path() / name;
    std::filesystem::create_directories(dir);
    return dir;
}

struct CliOutcome {
    int exit_code = -1;  // -1 when the process did not exit normally
    bool signalled = false;
    std::string text;  // the captured stream
};

enum class Capture { stdout_only, stderr_only };

// Runs `nibble ARGS` through the shell and captures one of its streams (the
// other is discarded).
inline CliOutcome run_nibble(const std::string& args, Capture capture) {
    const std::string redirect =
        capture == Capture::stderr_only ? " 2>&1 >/dev/null" : " 2>/dev/null";
    FILE* pipe = popen((std::string(NIBBLE_BINARY) + " " + args + redirect).c_str(), "r");
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

}  // namespace nibble::test

// nibble --version: the project version, the commit the binary was built from
// (the source tree's HEAD), and this CPU's features and chosen matmul kernel as
// the kernels library itself detects them.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/matmul_dispatch.h"
#include "test_data.h"

using namespace nibble;
using nibble::test::Capture;
using nibble::test::run_nibble;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

// HEAD of the source tree (12 hex digits), or "" when git cannot tell.
std::string source_head() {
    const std::string cmd =
        "git -C '" + std::string(NIBBLE_SOURCE_DIR) + "' rev-parse --short=12 HEAD 2>/dev/null";
    FILE* pipe = popen(cmd.c_str(), "r");
    REQUIRE(pipe != nullptr);
    char buffer[64] = {};
    const bool got = std::fgets(buffer, sizeof buffer, pipe) != nullptr;
    const int status = pclose(pipe);
    std::string head = got && status == 0 ? buffer : "";
    while (!head.empty() && head.back() == '\n') head.pop_back();
    return head;
}

}  // namespace

TEST_CASE("nibble --version names the version, the commit, the CPU features and the kernel") {
    const auto out = run_nibble("--version", Capture::stdout_only);
    REQUIRE(out.exit_code == 0);
    const auto lines = lines_of(out.text);
    CAPTURE(out.text);
    REQUIRE(lines.size() == 4);

    const std::string head = source_head();
    const std::string commit = head.empty() ? "unknown" : head;
    const std::string first = "nibble " + std::string(NIBBLE_VERSION) + " (commit " + commit;
    CHECK(lines[0].rfind(first, 0) == 0);
    CHECK((lines[0] == first + ")" || lines[0] == first + "-dirty)"));

    CHECK(lines[1].rfind("built with ", 0) == 0);
    const CpuFeatures& cpu = cpu_features();
    CHECK(lines[2] == "CPU: AVX2 = " + std::to_string(int(cpu.avx2)) +
                          " | AVX_VNNI = " + std::to_string(int(cpu.avx_vnni)) +
                          " | AVX512_VNNI = " + std::to_string(int(cpu.avx512)) +
                          " | AMX_INT8 = " + std::to_string(int(amx_tiles_usable())) +
                          " | NEON = " + std::to_string(int(cpu.neon)) +
                          " | DOTPROD = " + std::to_string(int(cpu.dotprod)));
    const std::string kernel = matmul_kernel_name(matmul_kernel());
    CHECK(lines[3].rfind("matmul kernel: " + kernel + " (int8 activations) | threads: ", 0) == 0);
}

TEST_CASE("nibble --version reports a bad NIBBLE_KERNEL in one line") {
    const auto out = run_nibble("--version", Capture::stderr_only);
    CHECK(out.exit_code == 0);
    CHECK(out.text.empty());
    REQUIRE(setenv("NIBBLE_KERNEL", "avx1024", 1) == 0);  // inherited by the child
    const auto bad = run_nibble("--version", Capture::stderr_only);
    REQUIRE(unsetenv("NIBBLE_KERNEL") == 0);
    CAPTURE(bad.text);
    CHECK(bad.exit_code == 1);
    CHECK(std::count(bad.text.begin(), bad.text.end(), '\n') == 1);
    CHECK(bad.text.find("NIBBLE_KERNEL") != std::string::npos);
}

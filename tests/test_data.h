// Paths to the shared test data and small helpers for reading it.
#pragma once
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

}  // namespace nibble::test

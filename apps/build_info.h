// What `nibble --version` reports: the version, the commit the binary was built
// from, the compiler, and what this CPU runs (features and the matmul kernel).
#pragma once
#include <cstdio>

namespace nibble::app {

// Defined in the build folder's build_info.cpp, regenerated at every build:
// the project version ("0.1.0") and the commit ("1a2b3c4d5e6f", with "-dirty"
// when the tree had uncommitted changes, or "unknown" outside git).
const char* build_version();
const char* build_commit();

// Prints the version block to `out`.
void print_version(std::FILE* out);

}  // namespace nibble::app

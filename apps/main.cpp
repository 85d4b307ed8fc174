// The nibble command line: subcommands run, info, perplexity, quantize, bench.
#include <cstdio>

int main() {
    std::puts("nibble");
    return 0;
}

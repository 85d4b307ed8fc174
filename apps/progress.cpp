// Progress bar / progress lines for nibble generate.
#include "apps/progress.h"

#include <cstdio>

namespace nibble::app {

Progress::Progress(int total, bool terminal)
    : total_(total),
      terminal_(terminal),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

double Progress::elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::token() {
    ++tokens_;
    if (terminal_) draw(false);
}

void Progress::finished(int /*evaluated*/, int /*generated*/) {
    ++done_;
    draw(true);
}

std::string Progress::summary() const {
    char text[128];
    const double t = elapsed();
    std::snprintf(text, sizeof text, "%lld tokens generated in %.1f s, %.1f tokens/s", tokens_, t,
                  t > 0 ? double(tokens_) / t : 0.0);
    return text;
}

void Progress::draw(bool force) {
    const auto now = std::chrono::steady_clock::now();
    const double t = elapsed();
    const double rate = t > 0 ? double(tokens_) / t : 0.0;
    const double eta = done_ > 0 ? t / done_ * (total_ - done_) : 0.0;
    if (!terminal_) {
        // A line each time another tenth of the prompts is done.
        const int decile = total_ > 0 ? done_ * 10 / total_ : 10;
        if (decile <= last_decile_) return;
        last_decile_ = decile;
        std::fprintf(stderr, "generate: %d/%d done (%d%%), %.1f tokens/s, ETA %.0f s\n", done_,
                     total_, total_ > 0 ? done_ * 100 / total_ : 100, rate, eta);
        return;
    }
    if (!force && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    constexpr int kWidth = 30;
    const int filled = total_ > 0 ? done_ * kWidth / total_ : kWidth;
    char bar[kWidth + 1];
    for (int i = 0; i < kWidth; ++i) bar[i] = i < filled ? '#' : '.';
    bar[kWidth] = '\0';
    std::fprintf(stderr, "\r[%s] %d/%d  %.1f tokens/s  ETA %d:%02d ", bar, done_, total_, rate,
                 int(eta) / 60, int(eta) % 60);
    std::fflush(stderr);
}

void Progress::end() {
    if (!terminal_) return;
    draw(true);
    std::fputc('\n', stderr);
}

}  // namespace nibble::app

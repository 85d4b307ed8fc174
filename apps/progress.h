// Progress of a batch job on stderr: a bar redrawn in place on a terminal
// (done/total, aggregate tokens/s, ETA), otherwise a plain line per 10%.
#pragma once
#include <chrono>
#include <string>

namespace nibble::app {

class Progress {
  public:
    Progress(int total, bool terminal);
    void token();  // one more generated token
    // A job finished; `evaluated` tokens went through the model for it.
    void finished(int evaluated, int generated);
    void end();  // final redraw and newline on a terminal
    int done() const { return done_; }
    std::string summary() const;  // "1234 tokens in 5.6 s, 220.4 tokens/s"

  private:
    void draw(bool force);
    double elapsed() const;
    int total_, done_ = 0, last_decile_ = 0;
    bool terminal_;
    long long tokens_ = 0;
    std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace nibble::app

// KL divergence and top-1 agreement of a model against saved full-precision
// log-probabilities (llama.cpp's --kl-divergence-base idea).
//
// Base file: "NBKL" magic, uint32 version 1, uint32 vocab, uint64 positions,
// uint64 FNV-1a hash of the scored target ids (so a comparison on other text
// or another protocol is refused), then float32 log-softmax [positions][vocab].
// Written and read one position at a time.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace nibble {

// log softmax(logits), in double then stored as float.
void log_softmax(const float* logits, int vocab, float* out);

class LogitsBaseWriter {
  public:
    // Writes to `fd`, a new file open for writing (the caller's temporary
    // file, renamed into place after finish()); `path` names it in messages.
    // Takes ownership of the descriptor.
    LogitsBaseWriter(const std::string& path, int fd, int vocab);
    ~LogitsBaseWriter();
    LogitsBaseWriter(const LogitsBaseWriter&) = delete;
    LogitsBaseWriter& operator=(const LogitsBaseWriter&) = delete;
    void add(const float* logits, int32_t target);
    // Writes the header, flushes, fsyncs and closes; throws on a write failure.
    void finish();
    int64_t positions() const { return positions_; }

  private:
    std::string path_;
    FILE* f_ = nullptr;
    int vocab_;
    int64_t positions_ = 0;
    uint64_t hash_;
    std::vector<float> row_;
};

struct KlStats {
    int64_t positions = 0;
    int64_t same_top1 = 0;
    double sum_kl = 0.0, max_kl = 0.0;
    double mean_kl() const { return positions ? sum_kl / double(positions) : 0.0; }
    double top1_agreement() const {
        return positions ? double(same_top1) / double(positions) : 0.0;
    }
};

class LogitsBaseReader {
  public:
    // Throws std::runtime_error("PATH: ...") for a missing or malformed file,
    // one whose vocabulary differs, or anything but a regular file (a FIFO is
    // refused at once, not waited on).
    LogitsBaseReader(const std::string& path, int vocab);
    ~LogitsBaseReader();
    LogitsBaseReader(const LogitsBaseReader&) = delete;
    LogitsBaseReader& operator=(const LogitsBaseReader&) = delete;
    // Compares the next saved position with these logits; throws if the file
    // has no more positions.
    void add(const float* logits, int32_t target);
    // Checks that every position was compared and the targets hash matches.
    void finish();
    const KlStats& stats() const { return stats_; }

  private:
    std::string path_;
    FILE* f_ = nullptr;
    int vocab_;
    int64_t expected_positions_ = 0;
    uint64_t expected_hash_ = 0, hash_;
    std::vector<float> base_, row_;
    KlStats stats_;
};

}  // namespace nibble

// Saved full-precision log-probabilities, KL divergence and top-1 agreement.
#include "eval/kl_divergence.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "models/input_file.h"

namespace nibble {

namespace {

constexpr char kMagic[4] = {'N', 'B', 'K', 'L'};
constexpr uint32_t kVersion = 1;
constexpr long kHeaderBytes = 4 + 4 + 4 + 8 + 8;
constexpr uint64_t kFnvOffset = 14695981039346656037ull, kFnvPrime = 1099511628211ull;

uint64_t fnv_add(uint64_t h, int32_t v) {
    for (int i = 0; i < 4; ++i) {
        h ^= uint64_t((uint32_t(v) >> (8 * i)) & 0xff);
        h *= kFnvPrime;
    }
    return h;
}

int argmax(const float* v, int n) {
    return int(std::max_element(v, v + n) - v);
}

}  // namespace

void log_softmax(const float* logits, int vocab, float* out) {
    const float max_logit = *std::max_element(logits, logits + vocab);
    double sum = 0.0;
    for (int v = 0; v < vocab; ++v) sum += std::exp(double(logits[v] - max_logit));
    const double log_sum = std::log(sum);
    for (int v = 0; v < vocab; ++v) out[v] = float(double(logits[v] - max_logit) - log_sum);
}

LogitsBaseWriter::LogitsBaseWriter(const std::string& path, int fd, int vocab)
    : path_(path), vocab_(vocab), hash_(kFnvOffset), row_(size_t(vocab)) {
    f_ = ::fdopen(fd, "wb");
    if (f_ == nullptr) {
        const int err = errno;
        ::close(fd);
        throw std::runtime_error(path + ": cannot write: " + std::strerror(err));
    }
    const std::vector<char> zeros(kHeaderBytes, 0);  // the header is written by finish()
    if (std::fwrite(zeros.data(), 1, zeros.size(), f_) != zeros.size()) {
        throw std::runtime_error(path_ + ": write failed: " + std::strerror(errno));
    }
}

LogitsBaseWriter::~LogitsBaseWriter() {
    if (f_ != nullptr) std::fclose(f_);
}

void LogitsBaseWriter::add(const float* logits, int32_t target) {
    log_softmax(logits, vocab_, row_.data());
    if (std::fwrite(row_.data(), sizeof(float), row_.size(), f_) != row_.size()) {
        throw std::runtime_error(path_ + ": write failed: " + std::strerror(errno));
    }
    hash_ = fnv_add(hash_, target);
    ++positions_;
}

void LogitsBaseWriter::finish() {
    const uint32_t vocab = uint32_t(vocab_);
    const uint64_t positions = uint64_t(positions_);
    bool ok = std::fseek(f_, 0, SEEK_SET) == 0;
    ok = ok && std::fwrite(kMagic, 1, 4, f_) == 4 && std::fwrite(&kVersion, 4, 1, f_) == 1 &&
         std::fwrite(&vocab, 4, 1, f_) == 1 && std::fwrite(&positions, 8, 1, f_) == 1 &&
         std::fwrite(&hash_, 8, 1, f_) == 1;
    ok = ok && std::fflush(f_) == 0 && ::fsync(::fileno(f_)) == 0;
    const int err = errno;
    ok = std::fclose(f_) == 0 && ok;
    f_ = nullptr;
    if (!ok) throw std::runtime_error(path_ + ": write failed: " + std::strerror(err));
}

LogitsBaseReader::LogitsBaseReader(const std::string& path, int vocab)
    : path_(path), vocab_(vocab), hash_(kFnvOffset), base_(size_t(vocab)), row_(size_t(vocab)) {
    const int fd = open_regular_file(path, "logits base");
    f_ = ::fdopen(fd, "rb");
    if (f_ == nullptr) {
        const int err = errno;
        ::close(fd);
        throw std::runtime_error(path + ": cannot open: " + std::strerror(err));
    }
    char magic[4];
    uint32_t version = 0, file_vocab = 0;
    uint64_t positions = 0;
    const bool ok = std::fread(magic, 1, 4, f_) == 4 && std::fread(&version, 4, 1, f_) == 1 &&
                    std::fread(&file_vocab, 4, 1, f_) == 1 &&
                    std::fread(&positions, 8, 1, f_) == 1 &&
                    std::fread(&expected_hash_, 8, 1, f_) == 1;
    if (!ok || std::memcmp(magic, kMagic, 4) != 0 || version != kVersion) {
        throw std::runtime_error(path + ": not a nibble logits base file (NBKL version 1)");
    }
    if (file_vocab != uint32_t(vocab)) {
        throw std::runtime_error(path + ": saved for a vocabulary of " +
                                 std::to_string(file_vocab) + " tokens, the model has " +
                                 std::to_string(vocab));
    }
    std::fseek(f_, 0, SEEK_END);
    const long size = std::ftell(f_);
    if (positions > (uint64_t(1) << 40) ||
        uint64_t(size) != uint64_t(kHeaderBytes) + positions * uint64_t(vocab) * 4) {
        throw std::runtime_error(path + ": truncated or corrupted (size does not match " +
                                 std::to_string(positions) + " positions)");
    }
    std::fseek(f_, kHeaderBytes, SEEK_SET);
    expected_positions_ = int64_t(positions);
}

LogitsBaseReader::~LogitsBaseReader() {
    if (f_ != nullptr) std::fclose(f_);
}

void LogitsBaseReader::add(const float* logits, int32_t target) {
    if (stats_.positions >= expected_positions_ ||
        std::fread(base_.data(), sizeof(float), base_.size(), f_) != base_.size()) {
        throw std::runtime_error(path_ + ": holds " + std::to_string(expected_positions_) +
                                 " positions, this run scores more (other text or protocol?)");
    }
    log_softmax(logits, vocab_, row_.data());
    double kl = 0.0;
    for (int v = 0; v < vocab_; ++v) {
        const double lp = base_[size_t(v)];
        kl += std::exp(lp) * (lp - double(row_[size_t(v)]));
    }
    kl = std::max(kl, 0.0);
    stats_.sum_kl += kl;
    stats_.max_kl = std::max(stats_.max_kl, kl);
    stats_.same_top1 += argmax(base_.data(), vocab_) == argmax(logits, vocab_);
    ++stats_.positions;
    hash_ = fnv_add(hash_, target);
}

void LogitsBaseReader::finish() {
    if (stats_.positions != expected_positions_ || hash_ != expected_hash_) {
        throw std::runtime_error(path_ + ": saved for other text or another protocol (" +
                                 std::to_string(expected_positions_) + " positions saved, " +
                                 std::to_string(stats_.positions) + " scored now)");
    }
}

}  // namespace nibble

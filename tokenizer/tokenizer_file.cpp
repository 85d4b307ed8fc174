// Tokenizer files: regular, non-empty and at most kMaxTokenizerFileBytes.
#include "tokenizer/tokenizer_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace nibble {

std::string read_tokenizer_file(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    const bool stat_ok = fstat(fd, &st) == 0;
    const int stat_errno = errno;
    const char* problem = nullptr;
    if (!stat_ok) {
        problem = std::strerror(stat_errno);
    } else if (S_ISDIR(st.st_mode)) {
        problem = "is a directory, not a tokenizer file";
    } else if (S_ISFIFO(st.st_mode)) {
        problem = "is a FIFO (named pipe), not a tokenizer file";
    } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
        problem = "is a device, not a tokenizer file";
    } else if (!S_ISREG(st.st_mode)) {
        problem = "is not a regular file";
    } else if (st.st_size == 0) {
        problem = "empty file";
    } else if (uint64_t(st.st_size) > kMaxTokenizerFileBytes) {
        problem = "is larger than the 64 MiB a tokenizer file may have";
    }
    if (problem != nullptr) {
        ::close(fd);
        throw std::runtime_error(path + ": " + problem);
    }
    std::string bytes(size_t(st.st_size), '\0');
    size_t at = 0;
    while (at < bytes.size()) {
        const ssize_t n = ::pread(fd, bytes.data() + at, bytes.size() - at, off_t(at));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            const int err = n < 0 ? errno : 0;
            ::close(fd);
            throw std::runtime_error(path + ": read error" +
                                     (err ? std::string(": ") + std::strerror(err) : ""));
        }
        at += size_t(n);
    }
    ::close(fd);
    return bytes;
}

}  // namespace nibble

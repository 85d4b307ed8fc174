// Regular-file checks before reading: open O_NONBLOCK, fstat, refuse anything
// that is not a regular file or is larger than its kind allows.
#include "models/input_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace nibble {

namespace {

const char* file_type_name(mode_t mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a regular file";
}

// Reads until EOF or until more than max_bytes have arrived (then throws).
std::string read_bounded(int fd, const std::string& name, const char* kind, uint64_t max_bytes) {
    std::string bytes;
    char buffer[1 << 16];
    while (true) {
        const ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n == 0) return bytes;
        if (n < 0) {
            if (errno == EINTR) continue;
            throw std::runtime_error(name + ": read error: " + std::strerror(errno));
        }
        if (bytes.size() + uint64_t(n) > max_bytes) {
            throw std::runtime_error(name + ": " + kind + " is larger than the limit of " +
                                     byte_size_text(max_bytes));
        }
        bytes.append(buffer, size_t(n));
    }
}

}  // namespace

std::string byte_size_text(uint64_t bytes) {
    char text[48];
    const double b = double(bytes);
    if (bytes >= (uint64_t(1) << 30)) {
        std::snprintf(text, sizeof text, "%.1f GiB", b / double(uint64_t(1) << 30));
    } else if (bytes >= (uint64_t(1) << 20)) {
        std::snprintf(text, sizeof text, "%.1f MiB", b / double(uint64_t(1) << 20));
    } else if (bytes >= 1024) {
        std::snprintf(text, sizeof text, "%.1f KiB", b / 1024.0);
    } else {
        std::snprintf(text, sizeof text, "%llu bytes", static_cast<unsigned long long>(bytes));
    }
    return text;
}

int open_regular_file(const std::string& path, const char* kind, uint64_t* size) {
    if (path.empty()) throw std::runtime_error(std::string("empty ") + kind + " path");
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        throw std::runtime_error(path + ": cannot stat: " + std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw std::runtime_error(path + ": is " + file_type_name(st.st_mode) + ", not a " + kind +
                                 " file");
    }
    // Regular files never block; clear the flag anyway so reads behave normally.
    const int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    if (size != nullptr) *size = uint64_t(st.st_size);
    return fd;
}

std::string read_input_file(const std::string& path, const char* kind, uint64_t max_bytes,
                            bool allow_stdin) {
    if (allow_stdin && path == "-") return read_bounded(STDIN_FILENO, "stdin", kind, max_bytes);
    uint64_t size = 0;
    const int fd = open_regular_file(path, kind, &size);
    if (size > max_bytes) {
        ::close(fd);
        throw std::runtime_error(path + ": " + kind + " of " + byte_size_text(size) +
                                 " is larger than the limit of " + byte_size_text(max_bytes));
    }
    try {
        std::string bytes = read_bounded(fd, path, kind, max_bytes);
        ::close(fd);
        return bytes;
    } catch (...) {
        ::close(fd);
        throw;
    }
}

}  // namespace nibble

// Safe output files: path checks, exclusive temporary files, removal on signals.
#include "models/output_file.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <stdexcept>

namespace nibble {

namespace {

// ---- the temporary files a signal must remove (async-signal-safe table) ----

constexpr int kSlots = 8;
constexpr size_t kPathMax = 4096;
char g_paths[kSlots][kPathMax];
std::atomic<int> g_used[kSlots];
std::mutex g_table_mutex;  // registration only; the handler never locks

extern "C" void remove_temporaries_and_reraise(int sig) {
    for (int i = 0; i < kSlots; ++i) {
        if (g_used[i].load() != 0) ::unlink(g_paths[i]);
    }
    std::signal(sig, SIG_DFL);
    std::raise(sig);
}

void install_handlers_once() {
    static std::once_flag once;
    std::call_once(once, [] {
        for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
            struct sigaction old {};
            if (sigaction(sig, nullptr, &old) != 0 || old.sa_handler == SIG_IGN) continue;
            struct sigaction sa {};
            sa.sa_handler = remove_temporaries_and_reraise;
            sigemptyset(&sa.sa_mask);
            sigaction(sig, &sa, nullptr);
        }
    });
}

int register_temporary(const std::string& path) {
    if (path.size() >= kPathMax) return -1;
    std::lock_guard<std::mutex> lock(g_table_mutex);
    for (int i = 0; i < kSlots; ++i) {
        if (g_used[i].load() != 0) continue;
        std::memcpy(g_paths[i], path.c_str(), path.size() + 1);
        g_used[i].store(1);
        return i;
    }
    return -1;
}

void unregister_temporary(int slot) {
    if (slot < 0) return;
    std::lock_guard<std::mutex> lock(g_table_mutex);
    g_used[slot].store(0);
}

std::string folder_of(const std::string& path) {
    const std::string parent = std::filesystem::path(path).parent_path().string();
    return parent.empty() ? "." : parent;
}

const char* non_file_kind(mode_t mode) {
    if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a regular file";
}

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Writes all of `bytes` (retrying short writes); false with errno set on failure.
bool write_all(int fd, const char* bytes, size_t n) {
    while (n > 0) {
        const ssize_t w = ::write(fd, bytes, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        if (w == 0) {
            errno = EIO;
            return false;
        }
        bytes += w;
        n -= size_t(w);
    }
    return true;
}

}  // namespace

void check_output_path(const std::string& output, const std::vector<std::string>& inputs) {
    if (output.empty()) throw std::runtime_error("the output path is empty");
    auto fail = [&](const std::string& problem) {
        throw std::runtime_error(output + ": " + problem);
    };
    struct stat out {};
    const bool exists = ::stat(output.c_str(), &out) == 0;
    if (exists) {
        if (S_ISDIR(out.st_mode)) fail("is a directory; give the output file's name");
        if (!S_ISREG(out.st_mode)) {
            fail(std::string("is ") + non_file_kind(out.st_mode) +
                 ", not a file to write; give a regular file's name");
        }
        for (const std::string& input : inputs) {
            struct stat in {};
            const bool is_stdin = input == "-";
            if (input.empty() ||
                (is_stdin ? ::fstat(STDIN_FILENO, &in) : ::stat(input.c_str(), &in)) != 0) {
                continue;
            }
            if (in.st_dev == out.st_dev && in.st_ino == out.st_ino) {
                fail("is the same file as the input " + std::string(is_stdin ? "stdin" : input) +
                     "; choose another output");
            }
        }
    }
    const std::string folder = folder_of(output);
    struct stat dir {};
    if (::stat(folder.c_str(), &dir) != 0) fail("folder " + folder + " does not exist");
    if (!S_ISDIR(dir.st_mode)) fail(folder + " is not a folder");
    if (::access(folder.c_str(), W_OK | X_OK) != 0) {
        fail("cannot write in folder " + folder + ": " + std::strerror(errno));
    }
}

std::vector<std::string> model_input_files(const std::string& model_path) {
    namespace fs = std::filesystem;
    std::vector<std::string> files = {model_path};
    std::error_code ec;
    const bool is_folder = fs::is_directory(model_path, ec);
    const bool hf_file = ends_with(model_path, ".safetensors") || ends_with(model_path, ".json");
    const fs::path folder = is_folder ? fs::path(model_path) : fs::path(folder_of(model_path));
    fs::directory_iterator it(folder, ec);
    if (ec) return files;
    for (const fs::directory_entry& e : it) {
        const std::string name = e.path().filename().string();
        const bool tokenizer =
            name.rfind("tokenizer", 0) == 0 ||
            (name.rfind("tok", 0) == 0 && (ends_with(name, ".model") || ends_with(name, ".bin")));
        // What a checkpoint folder is read from (an earlier output put there is not).
        const bool checkpoint = ends_with(name, ".safetensors") || ends_with(name, ".json") ||
                                ends_with(name, ".jinja") || ends_with(name, ".model");
        if ((((is_folder || hf_file) && checkpoint) || tokenizer) && e.is_regular_file(ec)) {
            files.push_back(e.path().string());
        }
    }
    return files;
}

LineOutput::LineOutput(const std::string& path, bool resume, uint64_t keep_bytes,
                       int64_t lines_kept)
    : path_(path), lines_(resume ? lines_kept : 0) {
    // O_NONBLOCK: a FIFO put at the path since the check cannot block the open.
    const int flags =
        (resume ? O_RDWR : O_WRONLY) | O_CLOEXEC | O_NONBLOCK | O_CREAT | (resume ? 0 : O_TRUNC);
    fd_ = ::open(path.c_str(), flags, 0666);
    if (fd_ < 0) {
        throw std::runtime_error(path + ": cannot open for writing: " + std::strerror(errno));
    }
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd_);
        fd_ = -1;
        throw std::runtime_error(path + ": is " + non_file_kind(st.st_mode) +
                                 ", not a file to write");
    }
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) & ~O_NONBLOCK);
    if (!resume) return;
    // Drop what an interrupted run left unfinished; end the last whole line.
    good_bytes_ = std::min<uint64_t>(keep_bytes, uint64_t(st.st_size));
    if (uint64_t(st.st_size) > good_bytes_ && ::ftruncate(fd_, off_t(good_bytes_)) != 0) {
        fail("cannot cut the unfinished last line", errno);
    }
    char last = '\n';
    if (good_bytes_ > 0 && ::pread(fd_, &last, 1, off_t(good_bytes_ - 1)) != 1) {
        fail("read failed", errno);
    }
    if (::lseek(fd_, off_t(good_bytes_), SEEK_SET) < 0) fail("seek failed", errno);
    if (last != '\n') {
        if (!write_all(fd_, "\n", 1)) fail("write failed", errno);
        ++good_bytes_;
    }
}

LineOutput::~LineOutput() {
    if (fd_ >= 0) ::close(fd_);
}

void LineOutput::fail(const char* what, int err) {
    // Keep the file a whole number of lines (best effort: the disk may be gone).
    if (fd_ >= 0) {
        if (::ftruncate(fd_, off_t(good_bytes_)) == 0) ::fsync(fd_);
        ::close(fd_);
        fd_ = -1;
    }
    throw std::runtime_error(path_ + ": " + what + ": " + std::strerror(err) + "; " +
                             std::to_string(lines_) +
                             (lines_ == 1 ? " result is" : " results are") + " safely in " + path_);
}

void LineOutput::write_line(std::string_view line) {
    if (fd_ < 0) throw std::runtime_error(path_ + ": output already closed");
    if (!write_all(fd_, line.data(), line.size())) fail("write failed", errno);
    good_bytes_ += line.size();
    ++lines_;
}

void LineOutput::finish() {
    if (fd_ < 0) return;
    if (::fsync(fd_) != 0) fail("write failed", errno);
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) {
        const int err = errno;
        throw std::runtime_error(path_ + ": write failed: " + std::strerror(err));
    }
}

TemporaryOutput::TemporaryOutput(const std::string& path) : path_(path) {
    install_handlers_once();
    std::string name = path + ".tmp.XXXXXX";
    // Signals wait while the file is created and registered, so none can leave it behind.
    sigset_t block, saved;
    sigemptyset(&block);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&block, sig);
    pthread_sigmask(SIG_BLOCK, &block, &saved);
    fd_ = ::mkostemp(name.data(), O_CLOEXEC);
    const int err = errno;
    if (fd_ >= 0) slot_ = register_temporary(name);
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    if (fd_ < 0) {
        throw std::runtime_error(path + ": cannot create a temporary file in " + folder_of(path) +
                                 ": " + std::strerror(err));
    }
    temp_path_ = name;
    // mkstemp creates 0600; the output gets the usual 0666 & ~umask.
    const mode_t mask = ::umask(0);
    ::umask(mask);
    ::fchmod(fd_, 0666 & ~mask);
}

TemporaryOutput::~TemporaryOutput() {
    if (fd_ >= 0) ::close(fd_);
    if (!done_) discard();
}

int TemporaryOutput::release_fd() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
}

void TemporaryOutput::commit() {
    if (done_) throw std::runtime_error(path_ + ": output already finished");
    // The data reaches the disk before the name points at it.
    const int sync_fd = fd_ >= 0 ? fd_ : ::open(temp_path_.c_str(), O_RDONLY | O_CLOEXEC);
    const bool synced = sync_fd >= 0 && ::fsync(sync_fd) == 0;
    const int sync_err = errno;
    if (sync_fd >= 0 && sync_fd != fd_) ::close(sync_fd);
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
    if (!synced) {
        discard();
        throw std::runtime_error(path_ + ": write failed: " + std::strerror(sync_err));
    }
    if (std::rename(temp_path_.c_str(), path_.c_str()) != 0) {
        const int err = errno;
        discard();
        throw std::runtime_error(path_ + ": cannot rename " + temp_path_ + ": " +
                                 std::strerror(err));
    }
    done_ = true;
    unregister_temporary(slot_);
    slot_ = -1;
}

void TemporaryOutput::discard() {
    if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
    done_ = true;
    unregister_temporary(slot_);
    slot_ = -1;
}

}  // namespace nibble

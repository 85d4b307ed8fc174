// Safe output files: path checks, exclusive temporary files, removal on signals.
#include "models/output_file.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

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
        if (!S_ISREG(out.st_mode)) fail("exists and is not a regular file");
        for (const std::string& input : inputs) {
            struct stat in {};
            if (input.empty() || ::stat(input.c_str(), &in) != 0) continue;
            if (in.st_dev == out.st_dev && in.st_ino == out.st_ino) {
                fail("is the same file as the input " + input + "; choose another output");
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
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
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

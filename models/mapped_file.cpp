// mmap of a whole regular file, read-only and shared with the page cache.
#include "models/mapped_file.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "models/input_file.h"

namespace nibble {

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
    // Refuses directories, FIFOs and devices before reading (a FIFO does not block).
    uint64_t size = 0;
    const int fd = open_regular_file(path, "model", &size);
    std::shared_ptr<MappedFile> file(new MappedFile());
    file->path_ = path;
    file->size_ = size_t(size);
    if (file->size_ > 0) {
        void* p = mmap(nullptr, file->size_, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            ::close(fd);
            throw std::runtime_error(path + ": mmap failed: " + std::strerror(errno));
        }
        file->data_ = static_cast<const uint8_t*>(p);
        // Ask for 2 MiB page-cache folios mapped by single page-table entries
        // (read-only file THP): decoding streams the whole file per token, and
        // one TLB entry per 2 MiB instead of per 4 KiB saves page walks. Only
        // a hint: kernels without it return an error, which changes nothing.
        madvise(p, file->size_, MADV_HUGEPAGE);
    }
    ::close(fd);
    return file;
}

void MappedFile::release(const void* p, size_t n) const {
    if (n == 0 || !contains(p, n)) return;
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    const auto begin = reinterpret_cast<uintptr_t>(p), end = begin + n;
    const uintptr_t first = (begin + page - 1) / page * page, last = end / page * page;
    // The whole pages inside [p, p + n), as an offset from p (no integer-to-pointer cast).
    auto* pages = const_cast<uint8_t*>(static_cast<const uint8_t*>(p)) + (first - begin);
    if (last > first) madvise(pages, last - first, MADV_DONTNEED);
}

MappedFile::~MappedFile() {
    if (data_ != nullptr) munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace nibble

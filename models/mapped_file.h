// A read-only memory mapping of a whole file (weights are used in place).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace nibble {

class MappedFile {
  public:
    // Maps `path`; throws std::runtime_error("<path>: <reason>") on failure.
    static std::shared_ptr<MappedFile> open(const std::string& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }
    // True when [p, p + n) lies inside this mapping.
    bool contains(const void* p, size_t n = 0) const {
        auto a = reinterpret_cast<const uint8_t*>(p);
        return a >= data_ && a + n <= data_ + size_;
    }

    // Drops the pages wholly inside [p, p + n) from this process's resident set
    // (MADV_DONTNEED; the file's bytes stay readable and fault back in on use).
    // Importers call it after converting a tensor so that a conversion's peak
    // memory is the converted model, not that plus the source.
    void release(const void* p, size_t n) const;

  private:
    MappedFile() = default;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
    std::string path_;
};

}  // namespace nibble

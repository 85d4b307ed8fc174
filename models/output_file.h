// Writing an output file without ever destroying an input or an existing file:
// the path is checked before any work, the data goes to a fresh temporary file
// next to it, and only the final rename replaces what was at the path. The
// temporary file is removed on error, on destruction and on SIGINT, SIGTERM
// and SIGHUP.
#pragma once
#include <string>
#include <vector>

namespace nibble {

// Throws std::runtime_error("<output>: <problem>") when `output` cannot be
// written safely: empty, an existing directory or non-regular file, the same
// file (device and inode, so symlinks and other spellings count) as any of
// `inputs` (empty entries and missing files are skipped), or in a folder that
// does not exist or cannot be written.
void check_output_path(const std::string& output, const std::vector<std::string>& inputs);

// A temporary file "<path>.tmp.XXXXXX" in the folder of `path`, created
// exclusively (never following a planted link), registered so that a signal
// removes it. commit() renames it to `path`; otherwise the destructor removes it.
class TemporaryOutput {
  public:
    explicit TemporaryOutput(const std::string& path);
    ~TemporaryOutput();
    TemporaryOutput(const TemporaryOutput&) = delete;
    TemporaryOutput& operator=(const TemporaryOutput&) = delete;

    // The open descriptor (owned by this object until release_fd()).
    int fd() const { return fd_; }
    // Hands the descriptor to the caller (e.g. to fdopen), who closes it.
    int release_fd();
    const std::string& temp_path() const { return temp_path_; }
    // Renames the temporary file to the final path (the descriptor must be closed).
    void commit();
    // Removes the temporary file now.
    void discard();

  private:
    std::string path_, temp_path_;
    int fd_ = -1;
    int slot_ = -1;  // entry in the signal handler's table
    bool done_ = false;
};

}  // namespace nibble

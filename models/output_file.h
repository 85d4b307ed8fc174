// Writing an output file without ever destroying an input or an existing file.
// Every command that writes a file goes through here: the path is checked
// against the command's inputs before any work; a whole-file output (a model,
// a logits base) goes to a fresh temporary file next to it, fsync'ed, and only
// the final rename replaces what was at the path; a line-by-line output
// (generate's JSONL) checks every write and keeps the file a whole number of
// lines. The temporary file is removed on error, on destruction and on SIGINT,
// SIGTERM and SIGHUP; after SIGKILL a "<path>.tmp.XXXXXX" stays behind (it is
// never read, and can be deleted).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace nibble {

// Throws std::runtime_error("<output>: <problem>") when `output` cannot be
// written safely: empty, an existing directory, FIFO, device or socket, the
// same file (device and inode, so hard links, symlinks and other spellings
// count) as any of `inputs` (empty entries and missing files are skipped;
// "-" is stdin), or in a folder that does not exist or cannot be written.
void check_output_path(const std::string& output, const std::vector<std::string>& inputs);

// The files a model path stands for, as inputs to check outputs against: the
// path itself; when it is a folder or a file of a Hugging Face folder
// (*.safetensors, *.json), every file of the folder a checkpoint is read from
// (*.safetensors, *.json, *.jinja, *.model); and the tokenizer files a command
// may pick up next to the model (tokenizer.*, tok*.model, tok*.bin).
std::vector<std::string> model_input_files(const std::string& model_path);

// An output written line by line as results arrive (generate's JSONL): every
// write is checked, a failed write cuts the file back to its last whole line and
// throws std::runtime_error("<path>: write failed: <reason>; N results are
// safely in <path>"), and finish() fsyncs. The path must have passed
// check_output_path; it is opened without following a FIFO (O_NONBLOCK, then
// checked to be a regular file).
class LineOutput {
  public:
    // A new output (an existing file is truncated), or with `resume` the
    // existing file cut to `keep_bytes` (dropping a line an interrupted run
    // left unfinished), a newline added when its last line lacks one, and
    // `lines_kept` results counted as already in it.
    LineOutput(const std::string& path, bool resume, uint64_t keep_bytes, int64_t lines_kept);
    ~LineOutput();
    LineOutput(const LineOutput&) = delete;
    LineOutput& operator=(const LineOutput&) = delete;

    // One result: `line` must end in '\n'.
    void write_line(std::string_view line);
    // fsync and close; throws like write_line.
    void finish();
    // Results in the file (kept and written).
    int64_t lines() const { return lines_; }

  private:
    [[noreturn]] void fail(const char* what, int err);
    std::string path_;
    int fd_ = -1;
    uint64_t good_bytes_ = 0;  // the file's size after the last whole line
    int64_t lines_ = 0;
};

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
    // fsyncs the temporary file and renames it to the final path (a released
    // descriptor must be closed by then).
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

// Watching certificate files and directories with inotify, for the control
// plane's event loop, and a debouncer for the two-step writes of cert + key.
//
// Files are watched through their parent directory, filtered by name: editors
// and certificate managers (certbot, cert-manager, `mv new.pem cert.pem`)
// replace a file by rename, and an inotify watch on the file's inode would
// follow the old inode and go silent after the first renewal. A watched file
// that is a symlink whose target starts in the same directory (Kubernetes
// secret volumes: tls.crt -> ..data/tls.crt, where ..data is swapped by
// rename) also reports changes of that first component ("..data") as changes
// of the file. A symlink into another directory (certbot's live/ -> archive/)
// reports the link being replaced, not writes to the target.
//
// The descriptor is non-blocking: poll/epoll it for input, then read_events()
// drains everything pending (empty when nothing is).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lodestone/result.h"

namespace lode::cp {

enum class FileEventKind : uint8_t {
  kWritten,    // IN_CLOSE_WRITE: a writer closed the file
  kCreated,    // IN_CREATE (a file still being written, or a new symlink/directory)
  kMovedIn,    // IN_MOVED_TO: renamed into place
  kDeleted,    // IN_DELETE
  kMovedOut,   // IN_MOVED_FROM
  kAttrib,     // IN_ATTRIB: mode or owner changed (a key made readable)
  kWatchGone,  // the watched directory was deleted or moved away: watch it again
  kOverflow,   // the kernel queue overflowed and events were lost: rescan everything
};

std::string_view to_string(FileEventKind k) noexcept;

struct FileEvent {
  FileEventKind kind = FileEventKind::kWritten;
  // The path that changed: directory + "/" + name for a watched directory,
  // the file's path (as given to watch_file) for a watched file, the
  // directory for kWatchGone; empty for kOverflow.
  std::string path;
  std::string watched;  // the path given to watch_file / watch_directory
  std::string name;     // the entry name in the directory; empty for kWatchGone / kOverflow
  bool is_dir = false;  // the entry is a directory
};

class FileWatch {
 public:
  [[nodiscard]] static Result<FileWatch, std::string> create();

  ~FileWatch();
  FileWatch(FileWatch&& o) noexcept;
  FileWatch& operator=(FileWatch&& o) noexcept;
  FileWatch(const FileWatch&) = delete;
  FileWatch& operator=(const FileWatch&) = delete;

  // Watches one file by name through its directory, which must exist (the
  // file need not). Watching it again is a no-op.
  [[nodiscard]] Result<void, std::string> watch_file(const std::string& path);
  // Watches every entry of a directory (not recursively).
  [[nodiscard]] Result<void, std::string> watch_directory(const std::string& path);
  // Stops watching a path given to watch_file / watch_directory (no-op if not).
  void unwatch(const std::string& path);

  [[nodiscard]] int fd() const noexcept { return fd_; }
  // What is pending, in kernel order, from at most `max_reads` reads of the
  // descriptor (64 KiB each); never blocks. A writer that keeps making
  // events in a watched directory cannot keep the caller here: what is
  // left is read on the next call (the descriptor stays readable).
  static constexpr int kReadsPerCall = 16;
  [[nodiscard]] std::vector<FileEvent> read_events(int max_reads = kReadsPerCall);

  // Paths watched (files and directories, as given); for tests and status.
  [[nodiscard]] size_t watch_count() const noexcept;

 private:
  explicit FileWatch(int fd) noexcept : fd_(fd) {}

  struct Dir {
    std::string path;    // without a trailing '/'
    bool whole = false;  // watch_directory(path)
    // Entry name → the watched file paths it stands for (the file's own name,
    // and the first component of a same-directory symlink target).
    std::map<std::string, std::set<std::string>, std::less<>> names;
    std::set<std::string> files;  // watch_file paths in this directory
  };

  Result<int, std::string> add_dir(const std::string& dir);
  void drop_if_unused(int wd);
  void report(const Dir& d, FileEventKind kind, std::string_view name, bool is_dir,
              std::vector<FileEvent>& out) const;
  void report_gone(int wd, std::vector<FileEvent>& out);

  int fd_ = -1;
  std::unordered_map<int, Dir> dirs_;           // by watch descriptor
  std::unordered_map<std::string, int> wd_of_;  // directory path → watch descriptor
};

// Collects change notices per key (a path, a host) and reports a key once no
// notice came for `quiet` (writers write the cert, then the key), or once it
// has been pending for `max_delay` (a file rewritten without pause still gets
// loaded). Pure: the caller passes the time.
class Debouncer {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Debouncer(std::chrono::milliseconds quiet,
                     std::chrono::milliseconds max_delay = std::chrono::seconds(5)) noexcept
      : quiet_(quiet), max_delay_(max_delay) {}

  void note(const std::string& key, Clock::time_point now);
  // The keys settled at `now`, sorted; they are forgotten.
  [[nodiscard]] std::vector<std::string> take_settled(Clock::time_point now);
  // When the next key settles; nullopt when none is pending.
  [[nodiscard]] std::optional<Clock::time_point> next_deadline() const;
  // Milliseconds until next_deadline(), rounded up, 0 if past, -1 if none
  // (a poll/epoll_wait timeout).
  [[nodiscard]] int timeout_ms(Clock::time_point now) const;
  [[nodiscard]] size_t pending() const noexcept { return pending_.size(); }

 private:
  struct Times {
    Clock::time_point first;
    Clock::time_point last;
  };
  Clock::time_point settles_at(const Times& t) const noexcept;

  std::chrono::milliseconds quiet_;
  std::chrono::milliseconds max_delay_;
  std::map<std::string, Times> pending_;
};

}  // namespace lode::cp

#include "controlplane/file_watch.h"

#include <errno.h>
#include <limits.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <system_error>
#include <utility>

namespace lode::cp {

namespace {

constexpr uint32_t kDirMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE |
                              IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;

std::string errno_text(int err) {
  return std::error_code(err, std::generic_category()).message();
}

std::string strip_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// "dir/name" → {"dir", "name"}; "name" → {".", "name"}; "/name" → {"/", "name"}.
std::pair<std::string, std::string> split_path(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

// The first component of a symlink's relative target when it is an entry of
// the link's own directory ("..data/tls.crt" → "..data"); empty otherwise.
std::string same_dir_link_head(const std::string& path) {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf) - 1);
  if (n <= 0) return {};
  std::string_view target(buf, static_cast<size_t>(n));
  if (target.front() == '/') return {};
  while (target.starts_with("./")) target.remove_prefix(2);
  const std::string_view head = target.substr(0, target.find('/'));
  if (head.empty() || head == "." || head == "..") return {};
  return std::string(head);
}

std::optional<FileEventKind> kind_of(uint32_t mask) {
  if ((mask & IN_CLOSE_WRITE) != 0) return FileEventKind::kWritten;
  if ((mask & IN_MOVED_TO) != 0) return FileEventKind::kMovedIn;
  if ((mask & IN_CREATE) != 0) return FileEventKind::kCreated;
  if ((mask & IN_DELETE) != 0) return FileEventKind::kDeleted;
  if ((mask & IN_MOVED_FROM) != 0) return FileEventKind::kMovedOut;
  if ((mask & IN_ATTRIB) != 0) return FileEventKind::kAttrib;
  return std::nullopt;
}

}  // namespace

std::string_view to_string(FileEventKind k) noexcept {
  switch (k) {
    case FileEventKind::kWritten:
      return "written";
    case FileEventKind::kCreated:
      return "created";
    case FileEventKind::kMovedIn:
      return "moved-in";
    case FileEventKind::kDeleted:
      return "deleted";
    case FileEventKind::kMovedOut:
      return "moved-out";
    case FileEventKind::kAttrib:
      return "attrib";
    case FileEventKind::kWatchGone:
      return "watch-gone";
    case FileEventKind::kOverflow:
      return "overflow";
  }
  return "?";
}

// --- FileWatch -----------------------------------------------------------------

Result<FileWatch, std::string> FileWatch::create() {
  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return unexpected("inotify_init1: " + errno_text(errno));
  return FileWatch(fd);
}

FileWatch::~FileWatch() {
  if (fd_ >= 0) ::close(fd_);
}

FileWatch::FileWatch(FileWatch&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)), dirs_(std::move(o.dirs_)), wd_of_(std::move(o.wd_of_)) {}

FileWatch& FileWatch::operator=(FileWatch&& o) noexcept {
  if (this == &o) return *this;
  if (fd_ >= 0) ::close(fd_);
  fd_ = std::exchange(o.fd_, -1);
  dirs_ = std::move(o.dirs_);
  wd_of_ = std::move(o.wd_of_);
  return *this;
}

Result<int, std::string> FileWatch::add_dir(const std::string& dir) {
  if (auto it = wd_of_.find(dir); it != wd_of_.end()) return it->second;
  const int wd = ::inotify_add_watch(fd_, dir.c_str(), kDirMask);
  if (wd < 0) {
    const int err = errno;
    std::string msg = "cannot watch directory " + dir + ": " + errno_text(err);
    if (err == ENOSPC) msg += " (raise fs.inotify.max_user_watches)";
    return unexpected(std::move(msg));
  }
  wd_of_.emplace(dir, wd);
  // The same directory under another spelling gets the same descriptor; the
  // first spelling names it in events.
  Dir& d = dirs_[wd];
  if (d.path.empty()) d.path = dir;
  return wd;
}

Result<void, std::string> FileWatch::watch_directory(const std::string& path) {
  auto wd = add_dir(strip_slashes(path));
  if (!wd) return unexpected(wd.error());
  dirs_[*wd].whole = true;
  return {};
}

Result<void, std::string> FileWatch::watch_file(const std::string& path) {
  auto [dir, name] = split_path(path);
  if (name.empty() || name == "." || name == "..") {
    return unexpected("cannot watch " + path + ": not a file name");
  }
  auto wd = add_dir(dir);
  if (!wd) return unexpected(wd.error());
  Dir& d = dirs_[*wd];
  d.files.insert(path);
  d.names[name].insert(path);
  if (std::string head = same_dir_link_head(path); !head.empty()) d.names[head].insert(path);
  return {};
}

void FileWatch::drop_if_unused(int wd) {
  const auto it = dirs_.find(wd);
  if (it == dirs_.end() || it->second.whole || !it->second.files.empty()) return;
  ::inotify_rm_watch(fd_, wd);
  std::erase_if(wd_of_, [wd](const auto& kv) { return kv.second == wd; });
  dirs_.erase(it);
}

void FileWatch::unwatch(const std::string& path) {
  const std::string p = strip_slashes(path);
  if (auto it = wd_of_.find(p); it != wd_of_.end()) {
    const int wd = it->second;
    dirs_[wd].whole = false;
    drop_if_unused(wd);
    return;
  }
  auto [dir, name] = split_path(path);
  const auto it = wd_of_.find(dir);
  if (it == wd_of_.end()) return;
  const int wd = it->second;
  Dir& d = dirs_[wd];
  d.files.erase(path);
  for (auto n = d.names.begin(); n != d.names.end();) {
    n->second.erase(path);
    n = n->second.empty() ? d.names.erase(n) : std::next(n);
  }
  drop_if_unused(wd);
}

size_t FileWatch::watch_count() const noexcept {
  size_t n = 0;
  for (const auto& [wd, d] : dirs_) n += (d.whole ? 1 : 0) + d.files.size();
  return n;
}

void FileWatch::report(const Dir& d, FileEventKind kind, std::string_view name, bool is_dir,
                       std::vector<FileEvent>& out) const {
  if (d.whole) {
    out.push_back(FileEvent{kind, (d.path == "/" ? "" : d.path) + "/" + std::string(name), d.path,
                            std::string(name), is_dir});
  }
  const auto it = d.names.find(name);
  if (it == d.names.end()) return;
  for (const std::string& file : it->second) {
    out.push_back(FileEvent{kind, file, file, std::string(name), is_dir});
  }
}

void FileWatch::report_gone(int wd, std::vector<FileEvent>& out) {
  const auto it = dirs_.find(wd);
  if (it == dirs_.end()) return;
  const Dir& d = it->second;
  if (d.whole) out.push_back(FileEvent{FileEventKind::kWatchGone, d.path, d.path, {}, true});
  for (const std::string& file : d.files) {
    out.push_back(FileEvent{FileEventKind::kWatchGone, file, file, {}, false});
  }
  ::inotify_rm_watch(fd_, wd);  // IN_MOVE_SELF keeps the watch on the moved directory
  std::erase_if(wd_of_, [wd](const auto& kv) { return kv.second == wd; });
  dirs_.erase(it);
}

std::vector<FileEvent> FileWatch::read_events(int max_reads) {
  std::vector<FileEvent> out;
  if (fd_ < 0) return out;
  alignas(inotify_event) char buf[64 * 1024];
  for (int reads = 0; reads < max_reads; ++reads) {
    const ssize_t n = ::read(fd_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EAGAIN: drained
    for (size_t at = 0; at + sizeof(inotify_event) <= static_cast<size_t>(n);) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + at);
      at += sizeof(inotify_event) + ev->len;
      if ((ev->mask & IN_Q_OVERFLOW) != 0) {
        out.push_back(FileEvent{FileEventKind::kOverflow, {}, {}, {}, false});
        continue;
      }
      if ((ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT)) != 0) {
        report_gone(ev->wd, out);  // an unwatched descriptor is no longer in dirs_
        continue;
      }
      const auto it = dirs_.find(ev->wd);
      const auto kind = kind_of(ev->mask);
      if (it == dirs_.end() || !kind || ev->len == 0) continue;
      report(it->second, *kind, std::string_view(ev->name), (ev->mask & IN_ISDIR) != 0, out);
    }
  }
  return out;
}

// --- Debouncer -----------------------------------------------------------------

void Debouncer::note(const std::string& key, Clock::time_point now) {
  auto [it, fresh] = pending_.try_emplace(key, Times{now, now});
  if (!fresh) it->second.last = now;
}

Debouncer::Clock::time_point Debouncer::settles_at(const Times& t) const noexcept {
  return std::min(t.last + quiet_, t.first + max_delay_);
}

std::vector<std::string> Debouncer::take_settled(Clock::time_point now) {
  std::vector<std::string> out;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (settles_at(it->second) <= now) {
      out.push_back(it->first);
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
  return out;  // std::map order: sorted
}

std::optional<Debouncer::Clock::time_point> Debouncer::next_deadline() const {
  std::optional<Clock::time_point> best;
  for (const auto& [key, t] : pending_) {
    const auto at = settles_at(t);
    if (!best || at < *best) best = at;
  }
  return best;
}

int Debouncer::timeout_ms(Clock::time_point now) const {
  const auto at = next_deadline();
  if (!at) return -1;
  if (*at <= now) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(*at - now).count();
  return static_cast<int>(std::min<decltype(ms)>(ms, INT_MAX));
}

}  // namespace lode::cp

#include "tools/lodestone/user_writable.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string_view>

namespace lode::app {

namespace {

std::string what_it_is(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISREG(mode)) return "a regular file";
  return "of an unknown type";
}

// fstat(fd); on failure fd is closed and the error names `shown`.
Result<struct stat, std::string> stat_or_close(int fd, const std::string& shown) {
  struct stat st {};
  if (fstat(fd, &st) == 0) return st;
  const int e = errno;
  close(fd);
  return unexpected(shown + ": " + std::strerror(e));
}

// DIR/NAME removed as remove_cert_store says; `shown` names it in errors.
Result<void, std::string> remove_store_at(int dir_fd, const char* name, const std::string& shown,
                                          std::span<const uid_t> owners) {
  const int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return {};
    if (errno == ELOOP || errno == ENOTDIR) {
      return unexpected(shown + ": not a directory (a symbolic link or a file): left alone");
    }
    return unexpected(shown + ": " + std::strerror(errno));
  }
  const auto got = stat_or_close(fd, shown);
  if (!got) return unexpected(got.error());
  const struct stat& st = *got;
  if (std::find(owners.begin(), owners.end(), st.st_uid) == owners.end()) {
    close(fd);
    return unexpected(shown + ": owned by uid " + std::to_string(st.st_uid) +
                      ", not by Lodestone or its [process] user: left alone");
  }
  if ((st.st_mode & 077) != 0) {
    close(fd);
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return unexpected(shown + ": mode " + mode +
                      ", not 0700 as the control plane makes it: left alone");
  }
  DIR* d = fdopendir(fd);
  if (d == nullptr) {
    const int e = errno;
    close(fd);
    return unexpected(shown + ": " + std::strerror(e));
  }
  // Relative to the directory opened and checked: whatever the name points
  // to by now, only this directory's entries go.
  while (const dirent* e = readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
      unlinkat(fd, e->d_name, 0);
  }
  closedir(d);
  if (unlinkat(dir_fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return unexpected(shown + ": " + std::strerror(errno));
  }
  return {};
}

// "lodestone-PID.sock.certs": PID, else 0.
pid_t store_pid(std::string_view name) {
  constexpr std::string_view kPrefix = "lodestone-", kSuffix = ".sock.certs";
  if (!name.starts_with(kPrefix) || !name.ends_with(kSuffix)) return 0;
  const std::string_view digits =
      name.substr(kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size());
  pid_t pid = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), pid);
  if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty() ||
      digits[0] == '+')
    return 0;
  return pid > 0 ? pid : 0;
}

}  // namespace

Result<int, std::string> open_log_file(const std::string& path) {
  // O_NONBLOCK: a FIFO without a reader fails (ENXIO) instead of blocking
  // the open. Cleared once checked.
  constexpr int kFlags = O_WRONLY | O_APPEND | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
  int fd = open(path.c_str(), kFlags | O_CREAT | O_NOFOLLOW, 0640);
  const bool linked = fd < 0 && errno == ELOOP;
  if (linked) {
    // A symbolic link is followed only to this process's own stdout or
    // stderr (/dev/stdout: a file, a pipe, journald's socket; taken by dup,
    // never handed over) or to a FIFO (a log shipper's): the path may be
    // the [process] user's, and opening a device can act (a watchdog). The
    // target is looked at through an O_PATH descriptor, which opens
    // nothing, and only then opened, through that descriptor (no swap in
    // between).
    const int at = open(path.c_str(), O_PATH | O_CLOEXEC);
    if (at < 0) return unexpected(path + ": " + std::strerror(errno));
    const auto looked = stat_or_close(at, path);
    if (!looked) return unexpected(looked.error());
    const struct stat& target = *looked;
    for (const int std_fd : {STDOUT_FILENO, STDERR_FILENO}) {
      struct stat s {};
      if (fstat(std_fd, &s) == 0 && s.st_dev == target.st_dev && s.st_ino == target.st_ino) {
        close(at);
        const int d = fcntl(std_fd, F_DUPFD_CLOEXEC, 3);
        if (d < 0) return unexpected(path + ": " + std::strerror(errno));
        return d;
      }
    }
    if (!S_ISFIFO(target.st_mode)) {
      close(at);
      return unexpected(path + ": a symbolic link to " + what_it_is(target.st_mode) +
                        ": refused (the log is opened as root; a regular file is handed to the [process] user: "
                        "name the file itself)");
    }
    fd = open(("/proc/self/fd/" + std::to_string(at)).c_str(), kFlags);
    close(at);
  }
  if (fd < 0) {
    if (errno == ENXIO) return unexpected(path + ": a FIFO with no reader (or a socket): refused");
    return unexpected(path + ": " + std::strerror(errno));
  }
  const auto got = stat_or_close(fd, path);
  if (!got) return unexpected(got.error());
  const struct stat& st = *got;
  if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode) && !S_ISSOCK(st.st_mode)) {
    close(fd);
    return unexpected(path + ": " + what_it_is(st.st_mode) + ", not a file or a stream: refused");
  }
  if (S_ISREG(st.st_mode) && st.st_nlink != 1) {
    close(fd);
    return unexpected(path + ": has " + std::to_string(st.st_nlink) +
                      " hard links (another name for the same file): refused");
  }
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    const int e = errno;
    close(fd);
    return unexpected(path + ": " + std::strerror(e));
  }
  return fd;
}

Result<void, std::string> give_socket(const std::string& path, uid_t uid, gid_t gid) {
  // (fchown() on the listening socket's descriptor would change the socket's
  // own inode, not the file connect() checks: the file is opened instead.)
  const int fd = open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return unexpected(path + ": " + std::strerror(errno));
  struct stat st {};
  std::string refused;
  if (fstat(fd, &st) != 0) {
    refused = std::strerror(errno);
  } else if (!S_ISSOCK(st.st_mode)) {
    refused = what_it_is(st.st_mode) + ", not the socket just bound: refused";
  } else if (st.st_uid != geteuid()) {
    refused =
        "a socket owned by uid " + std::to_string(st.st_uid) + ", not the one just bound: refused";
  } else if (st.st_nlink != 1) {
    refused =
        "a socket with " + std::to_string(st.st_nlink) + " links, not the one just bound: refused";
  } else if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH) != 0) {
    refused = std::strerror(errno);
  }
  close(fd);
  if (!refused.empty()) return unexpected(path + ": " + refused);
  return {};
}

Result<void, std::string> give_directory(const std::string& path, uid_t uid, gid_t gid, bool may_be_missing) {
  // "link/" would follow the link whatever O_NOFOLLOW says.
  std::string name = path;
  while (name.size() > 1 && name.back() == '/') name.pop_back();
  const int fd = open(name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT && may_be_missing) return {};
    return unexpected(path + ": " + std::strerror(errno));
  }
  const auto got = stat_or_close(fd, path);
  if (!got) return unexpected(got.error());
  std::string refused;
  if (S_ISLNK(got->st_mode)) {
    refused = "a symbolic link: refused (name the directory itself: it is given to the [process] user)";
  } else if (!S_ISDIR(got->st_mode)) {
    refused = what_it_is(got->st_mode) + ", not a directory: refused";
  } else if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH) != 0) {
    refused = std::strerror(errno);
  }
  close(fd);
  if (!refused.empty()) return unexpected(path + ": " + refused);
  return {};
}

Result<void, std::string> remove_cert_store(const std::string& path,
                                            std::span<const uid_t> owners) {
  const size_t slash = path.rfind('/');
  const std::string parent = slash == std::string::npos ? "."
                             : slash == 0               ? "/"
                                                        : path.substr(0, slash);
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  const int dir_fd = open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0)
    return errno == ENOENT ? Result<void, std::string>{}
                           : unexpected(parent + ": " + std::strerror(errno));
  auto done = remove_store_at(dir_fd, name.c_str(), path, owners);
  close(dir_fd);
  return done;
}

std::vector<std::string> remove_dead_cert_stores(const std::string& run_dir,
                                                 std::span<const uid_t> owners) {
  std::vector<std::string> left;
  const int dir_fd = open(run_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return left;
  std::vector<std::string> dead;
  const int list_fd = dup(dir_fd);
  DIR* d = list_fd >= 0 ? fdopendir(list_fd) : nullptr;
  if (d == nullptr && list_fd >= 0) close(list_fd);
  if (d != nullptr) {
    while (const dirent* e = readdir(d)) {
      const pid_t pid = store_pid(e->d_name);
      if (pid != 0 && pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH)
        dead.emplace_back(e->d_name);
    }
    closedir(d);
  }
  for (const auto& name : dead) {
    if (auto ok = remove_store_at(dir_fd, name.c_str(), run_dir + "/" + name, owners); !ok)
      left.push_back(ok.error());
  }
  close(dir_fd);
  return left;
}

}  // namespace lode::app

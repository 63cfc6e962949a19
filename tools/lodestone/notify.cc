#include "tools/lodestone/notify.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace lode::app {

Result<ServiceNotifier, std::string> ServiceNotifier::for_socket(std::string_view path) {
  ServiceNotifier n;
  if (path.empty()) return n;
  // '@' names a socket in the abstract namespace (a leading NUL on the wire).
  const bool abstract = path.front() == '@';
  if (!abstract && path.front() != '/') {
    return unexpected("NOTIFY_SOCKET=" + std::string(path) + ": not an absolute path or @abstract name");
  }
  if (path.size() >= sizeof n.addr_.sun_path) {
    return unexpected("NOTIFY_SOCKET=" + std::string(path) + ": longer than a unix socket name can be");
  }
  n.addr_.sun_family = AF_UNIX;
  std::memcpy(n.addr_.sun_path, path.data(), path.size());
  if (abstract) n.addr_.sun_path[0] = '\0';
  // An abstract name is exactly its bytes; a path ends at its NUL.
  n.len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));
  return n;
}

Result<ServiceNotifier, std::string> ServiceNotifier::from_environment() {
  const char* v = std::getenv("NOTIFY_SOCKET");
  const std::string value = v == nullptr ? std::string() : std::string(v);
  unsetenv("NOTIFY_SOCKET");
  return for_socket(value);
}

Result<void, std::string> ServiceNotifier::reloading() const {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const unsigned long long usec =
      static_cast<unsigned long long>(ts.tv_sec) * 1000000ull + static_cast<unsigned long long>(ts.tv_nsec) / 1000ull;
  return send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

Result<void, std::string> ServiceNotifier::send(std::string_view state) const {
  if (!enabled()) return {};
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return unexpected(std::string("sd_notify: socket: ") + std::strerror(errno));
  const ssize_t sent = sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                              reinterpret_cast<const sockaddr*>(&addr_), len_);
  const int err = errno;
  close(fd);
  if (sent < 0) return unexpected(std::string("sd_notify: ") + std::strerror(err));
  if (static_cast<size_t>(sent) != state.size()) return unexpected(std::string("sd_notify: short datagram"));
  return {};
}

}  // namespace lode::app

// sd_notify spoken directly (tools/lodestone/notify.h): which NOTIFY_SOCKET
// values are refused, and the datagrams a listening socket receives.
#include "tools/lodestone/notify.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <string>

namespace lode::app {
namespace {

// A datagram socket bound to `name` ('@' first: abstract), like systemd's.
class Listener {
 public:
  explicit Listener(const std::string& name) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    name.copy(a.sun_path, sizeof a.sun_path - 1);
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + 1);
    if (name[0] == '@') {
      a.sun_path[0] = '\0';
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
    } else {
      path_ = name;
      unlink(name.c_str());
    }
    bound_ = bind(fd_, reinterpret_cast<sockaddr*>(&a), len) == 0;
    timeval tv{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~Listener() {
    close(fd_);
    if (!path_.empty()) unlink(path_.c_str());
  }
  bool bound() const { return bound_; }
  std::string next() {
    char buf[4096];
    const ssize_t n = recv(fd_, buf, sizeof buf, 0);
    return n < 0 ? std::string("(nothing)") : std::string(buf, static_cast<size_t>(n));
  }

 private:
  int fd_ = -1;
  bool bound_ = false;
  std::string path_;
};

std::string temp_path(const char* tag) {
  return "/tmp/lode-notify-test-" + std::to_string(getpid()) + "-" + tag;
}

TEST(ServiceNotifier, UnsetSendsNothingAndSucceeds) {
  auto n = ServiceNotifier::for_socket("");
  ASSERT_TRUE(n);
  EXPECT_FALSE(n->enabled());
  EXPECT_TRUE(n->ready());
  EXPECT_TRUE(n->stopping());
}

TEST(ServiceNotifier, RefusesWhatCannotBeAUnixSocket) {
  for (const char* bad : {"relative/notify", "notify", "vsock:2:1234", " /tmp/x"}) {
    auto n = ServiceNotifier::for_socket(bad);
    ASSERT_FALSE(n) << bad;
    EXPECT_NE(n.error().find(bad), std::string::npos) << n.error();
  }
  const std::string too_long = "/" + std::string(sizeof(sockaddr_un{}.sun_path), 'x');
  EXPECT_FALSE(ServiceNotifier::for_socket(too_long));
  EXPECT_FALSE(ServiceNotifier::for_socket("@" + std::string(sizeof(sockaddr_un{}.sun_path), 'x')));
}

TEST(ServiceNotifier, PathSocketGetsEachStateAsOneDatagram) {
  const std::string path = temp_path("path");
  Listener l(path);
  ASSERT_TRUE(l.bound());
  auto n = ServiceNotifier::for_socket(path);
  ASSERT_TRUE(n);
  ASSERT_TRUE(n->enabled());
  ASSERT_TRUE(n->ready());
  EXPECT_EQ(l.next(), "READY=1");
  timespec before{};
  clock_gettime(CLOCK_MONOTONIC, &before);
  ASSERT_TRUE(n->reloading());
  timespec after{};
  clock_gettime(CLOCK_MONOTONIC, &after);
  const std::string reloading = l.next();
  const std::string prefix = "RELOADING=1\nMONOTONIC_USEC=";
  ASSERT_EQ(reloading.rfind(prefix, 0), 0u) << reloading;
  const unsigned long long usec = std::stoull(reloading.substr(prefix.size()));
  EXPECT_GE(usec, static_cast<unsigned long long>(before.tv_sec) * 1000000ull + before.tv_nsec / 1000);
  EXPECT_LE(usec, static_cast<unsigned long long>(after.tv_sec) * 1000000ull + after.tv_nsec / 1000);
  ASSERT_TRUE(n->stopping());
  EXPECT_EQ(l.next(), "STOPPING=1");
}

TEST(ServiceNotifier, AbstractSocket) {
  const std::string name = "@lode-notify-test-" + std::to_string(getpid());
  Listener l(name);
  ASSERT_TRUE(l.bound());
  auto n = ServiceNotifier::for_socket(name);
  ASSERT_TRUE(n);
  ASSERT_TRUE(n->ready());
  EXPECT_EQ(l.next(), "READY=1");
}

TEST(ServiceNotifier, NobodyListeningIsAnErrorNotACrash) {
  auto n = ServiceNotifier::for_socket(temp_path("absent"));
  ASSERT_TRUE(n);
  auto sent = n->ready();
  ASSERT_FALSE(sent);
  EXPECT_NE(sent.error().find("sd_notify"), std::string::npos) << sent.error();
}

TEST(ServiceNotifier, FromEnvironmentTakesTheVariableAway) {
  const std::string path = temp_path("env");
  Listener l(path);
  ASSERT_TRUE(l.bound());
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  auto n = ServiceNotifier::from_environment();
  EXPECT_EQ(std::getenv("NOTIFY_SOCKET"), nullptr) << "children must not inherit it";
  ASSERT_TRUE(n);
  ASSERT_TRUE(n->ready());
  EXPECT_EQ(l.next(), "READY=1");
  setenv("NOTIFY_SOCKET", "not/absolute", 1);
  EXPECT_FALSE(ServiceNotifier::from_environment());
  EXPECT_EQ(std::getenv("NOTIFY_SOCKET"), nullptr);
  auto none = ServiceNotifier::from_environment();
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->enabled());
}

}  // namespace
}  // namespace lode::app

// [process] user: looking the identity up, and becoming it in a forked child
// (the ids, the capabilities kept for binding, then none, root not
// regainable). As a non-root user become() must fail with a reason.
#include "tools/lodestone/privileges.h"

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

namespace lode::app {
namespace {

// A TCP port below 1024 bound on 127.0.0.1: 0, or the errno.
int bind_low_port() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int err = EADDRINUSE;
  for (uint16_t port = 900; port < 1000 && err == EADDRINUSE; ++port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    err = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 ? 0 : errno;
  }
  close(fd);
  return err;
}

Identity nobody() {
  auto id = lookup_identity("nobody", "");
  EXPECT_TRUE(id) << (id ? "" : id.error());
  return id ? *id : Identity{};
}

TEST(Privileges, LooksUpUserAndGroup) {
  const Identity id = nobody();
  const passwd* pw = getpwnam("nobody");
  ASSERT_NE(pw, nullptr);
  EXPECT_EQ(id.uid, pw->pw_uid);
  EXPECT_EQ(id.gid, pw->pw_gid) << "no group: the user's primary group";
  auto root_group = lookup_identity("nobody", "root");
  ASSERT_TRUE(root_group);
  EXPECT_EQ(root_group->gid, 0u);
  EXPECT_EQ(root_group->name, "nobody:root");
}

TEST(Privileges, RefusesUnknownNamesAndRoot) {
  auto user = lookup_identity("no-such-user-lodestone", "");
  ASSERT_FALSE(user);
  EXPECT_NE(user.error().find("no such user"), std::string::npos) << user.error();
  auto group = lookup_identity("nobody", "no-such-group-lodestone");
  ASSERT_FALSE(group);
  EXPECT_NE(group.error().find("no such group"), std::string::npos) << group.error();
  auto root = lookup_identity("root", "");
  ASSERT_FALSE(root);
  EXPECT_NE(root.error().find("is root"), std::string::npos) << root.error();
}

// In a child: 0 on success, else the step that failed (1..11).
int become_then_drop(const Identity& id) {
  if (auto ok = become(id, {CAP_NET_BIND_SERVICE}); !ok) return 1;
  uid_t r = 0, e = 0, s = 0;
  getresuid(&r, &e, &s);
  if (r != id.uid || e != id.uid || s != id.uid || getgid() != id.gid) return 2;
  gid_t groups[4];
  if (getgroups(4, groups) != 0) return 3;                      // supplementary groups gone
  if (bind_low_port() != 0) return 4;                           // CAP_NET_BIND_SERVICE kept
  if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) return 5;
  if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) return 6;
  if (auto ok = drop_capabilities(); !ok) return 7;
  if (bind_low_port() != EACCES) return 8;                      // and now gone
  if (setuid(0) == 0) return 9;
  // Started as the user already (the restart case, or `User=` in a unit):
  // nothing to change, nothing to keep, no error.
  if (auto ok = become(id, {CAP_NET_BIND_SERVICE}); !ok) return 10;
  return bind_low_port() == EACCES ? 0 : 11;
}

TEST(Privileges, BecomesTheUserKeepingOnlyWhatBindingNeeds) {
  const Identity id = nobody();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) _exit(getuid() == 0 ? become_then_drop(id) : (become(id, {CAP_NET_BIND_SERVICE}) ? 10 : 0));
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << (getuid() == 0 ? "step that failed" : "become() succeeded without root");
}

}  // namespace
}  // namespace lode::app

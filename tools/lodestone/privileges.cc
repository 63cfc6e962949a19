#include "tools/lodestone/privileges.h"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace lode::app {
namespace {

// capget/capset of the calling thread (no libcap for two calls).
struct Caps {
  __user_cap_data_struct data[2]{};
};

bool get_caps(Caps& c) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  return syscall(SYS_capget, &header, c.data) == 0;
}

// Effective and permitted become `caps`, less what this thread lacks (a
// process started unprivileged keeps its none).
bool set_caps(std::initializer_list<int> caps) {
  Caps now;
  if (!get_caps(now)) return false;
  Caps c;
  for (int cap : caps) {
    const auto bit = 1u << (cap % 32);
    c.data[cap / 32].effective |= bit & now.data[cap / 32].permitted;
    c.data[cap / 32].permitted |= bit & now.data[cap / 32].permitted;
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  return syscall(SYS_capset, &header, c.data) == 0;
}

Result<void, std::string> failed(const std::string& what) {
  return unexpected(what + ": " + std::strerror(errno));
}

}  // namespace

Result<Identity, std::string> lookup_identity(const std::string& user, const std::string& group) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return unexpected("[process] user \"" + user + "\": no such user");
  }
  Identity id{pw.pw_uid, pw.pw_gid, user};
  if (!group.empty()) {
    struct group g {};
    struct group* gfound = nullptr;
    if (getgrnam_r(group.c_str(), &g, buf.data(), buf.size(), &gfound) != 0 || gfound == nullptr) {
      return unexpected("[process] group \"" + group + "\": no such group");
    }
    id.gid = g.gr_gid;
  }
  id.name += ":" + (group.empty() ? std::to_string(id.gid) : group);
  if (id.uid == 0) return unexpected("[process] user \"" + user + "\" is root: name an unprivileged user");
  return id;
}

Result<void, std::string> become(const Identity& id, std::initializer_list<int> keep) {
  const std::string who = "cannot become " + id.name;
  if (getuid() != id.uid || geteuid() != id.uid || getgid() != id.gid) {
    // KEEPCAPS (this thread only) keeps the permitted set across the change
    // of ids; every other thread loses all (glibc changes the ids of all).
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return failed(who + ": PR_SET_KEEPCAPS");
    if (setgroups(0, nullptr) != 0) return failed(who + ": setgroups");
    if (setresgid(id.gid, id.gid, id.gid) != 0) return failed(who + ": setresgid");
    if (setresuid(id.uid, id.uid, id.uid) != 0) return failed(who + ": setresuid");
    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
  }
  if (!set_caps(keep)) return failed(who + ": capset");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return failed(who + ": PR_SET_NO_NEW_PRIVS");
  // Changing ids resets the flag to fs.suid_dumpable: keys live here.
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  uid_t r = 0, e = 0, s = 0;
  gid_t rg = 0, eg = 0, sg = 0;
  getresuid(&r, &e, &s);
  getresgid(&rg, &eg, &sg);
  if (r != id.uid || e != id.uid || s != id.uid || rg != id.gid || eg != id.gid || sg != id.gid) {
    return unexpected(who + ": the ids did not change");
  }
  return {};
}

Result<void, std::string> drop_capabilities() {
  if (!set_caps({})) return failed("dropping capabilities: capset");
  Caps c;
  if (!get_caps(c)) return failed("dropping capabilities: capget");
  if ((c.data[0].effective | c.data[1].effective | c.data[0].permitted | c.data[1].permitted) != 0) {
    return unexpected(std::string("dropping capabilities: some are left"));
  }
  if (setuid(0) == 0) return unexpected(std::string("dropping capabilities: root can still be regained"));
  return {};
}

}  // namespace lode::app

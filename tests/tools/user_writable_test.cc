// What the dataplane opens, hands over or removes as root in places the
// [process] user may write (tools/lodestone/user_writable.h): a symbolic
// link, a hard link, a FIFO, a device, a store of the wrong owner or mode put
// where the access log, the control socket or a certificate store goes is
// refused and left alone, and the file it points to is untouched. Calls that
// could block (a FIFO) run in a child bounded by alarm(), so a regression
// fails instead of hanging the suite.
#include "tools/lodestone/user_writable.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "tests/support/bounded.h"
#include "tests/support/test_pki.h"

namespace lode::app {
namespace {

using test::TempDir;

struct stat stat_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
  return st;
}

bool exists(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0;
}

using test::bounded;

// A unix socket bound at `path` (the descriptor stays open).
int bind_socket(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0)
      << path << ": " << std::strerror(errno);
  return fd;
}

// A PID that existed and is gone (a child, reaped).
pid_t dead_pid() {
  const pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, nullptr, 0);
  return pid;
}

constexpr uid_t kOther = 54321;  // nobody's: an owner the stores must not have

// ------------------------------------------------------------------ open_log_file

TEST(OpenLogFile, CreatesAndAppendsBlocking) {
  TempDir dir;
  const std::string log = dir.write("access.log", "before\n");
  auto fd = open_log_file(log);
  ASSERT_TRUE(fd) << fd.error();
  EXPECT_EQ(fcntl(*fd, F_GETFL) & (O_APPEND | O_NONBLOCK | O_ACCMODE), O_APPEND | O_WRONLY)
      << "appending, and blocking again once checked";
  EXPECT_NE(fcntl(*fd, F_GETFD) & FD_CLOEXEC, 0) << "the control plane must not inherit it";
  ASSERT_EQ(write(*fd, "after\n", 6), 6);
  close(*fd);
  EXPECT_EQ(stat_of(log).st_size, 13);

  const std::string fresh = dir.path() + "/new.log";
  auto created = open_log_file(fresh);
  ASSERT_TRUE(created) << created.error();
  close(*created);
  EXPECT_TRUE(S_ISREG(stat_of(fresh).st_mode));
  EXPECT_EQ(stat_of(fresh).st_mode & 0077 & ~0040, 0u) << "not writable or readable by others";
}

TEST(OpenLogFile, RefusesASymbolicLinkToAFileAndLeavesItsTargetAlone) {
  TempDir dir;
  const std::string target = dir.write("shadow", "root's\n");
  const std::string log = dir.path() + "/access.log";
  ASSERT_EQ(symlink(target.c_str(), log.c_str()), 0);
  auto fd = open_log_file(log);
  ASSERT_FALSE(fd) << "opened through a symlink";
  EXPECT_NE(fd.error().find(log + ": a symbolic link to a regular file"), std::string::npos) << fd.error();
  EXPECT_EQ(stat_of(target).st_size, 7);

  // Dangling: not created at the link's target either.
  const std::string dangling = dir.path() + "/dangling.log";
  ASSERT_EQ(symlink((dir.path() + "/made-by-root").c_str(), dangling.c_str()), 0);
  EXPECT_FALSE(open_log_file(dangling));
  EXPECT_FALSE(exists(dir.path() + "/made-by-root"));
}

TEST(OpenLogFile, RefusesAHardLink) {
  TempDir dir;
  const std::string other = dir.write("passwd", "x\n");
  const std::string log = dir.path() + "/access.log";
  ASSERT_EQ(link(other.c_str(), log.c_str()), 0);
  auto fd = open_log_file(log);
  ASSERT_FALSE(fd) << "opened a file with another name";
  EXPECT_NE(fd.error().find(log + ": has 2 hard links"), std::string::npos) << fd.error();
}

TEST(OpenLogFile, AFifoWithNoReaderIsRefusedWithoutBlocking) {
  TempDir dir;
  const std::string fifo = dir.path() + "/access.log";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  // No reader: a blocking open would wait for one forever.
  EXPECT_EQ(bounded([&] {
              auto fd = open_log_file(fifo);
              return !fd && fd.error() == fifo + ": a FIFO with no reader (or a socket): refused" ? 0 : 1;
            }),
            0)
      << "1: opened or another error; 142: blocked (SIGALRM)";
  // A reader (a log shipper's pipe): taken, blocking once open, as stderr is.
  const int reader = open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(reader, 0);
  auto fd = open_log_file(fifo);
  ASSERT_TRUE(fd) << fd.error();
  EXPECT_EQ(fcntl(*fd, F_GETFL) & O_NONBLOCK, 0);
  close(*fd);
  close(reader);
}

// A symbolic link is followed only to this process's own stderr or stdout
// (/dev/stderr, whatever it is: a file, a pipe, a socket; taken by dup) or
// to a FIFO (a shipper's pipe); never to a device (opening one can act: a
// watchdog) or another file. A device named itself is the operator's
// choice. A directory is refused.
TEST(OpenLogFile, ALinkLeadsOnlyToOurOwnStderrOrAFifo) {
  TempDir dir;
  const std::string err_link = dir.path() + "/stderr.log";
  ASSERT_EQ(symlink("/proc/self/fd/2", err_link.c_str()), 0);
  auto err_fd = open_log_file(err_link);
  ASSERT_TRUE(err_fd) << err_fd.error();
  struct stat a {}, b {};
  ASSERT_EQ(fstat(*err_fd, &a), 0);
  ASSERT_EQ(fstat(STDERR_FILENO, &b), 0);
  EXPECT_TRUE(a.st_dev == b.st_dev && a.st_ino == b.st_ino) << "our own stderr";
  close(*err_fd);

  const std::string fifo = dir.path() + "/pipe";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const int reader = open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(reader, 0);
  const std::string fifo_link = dir.path() + "/shipper.log";
  ASSERT_EQ(symlink(fifo.c_str(), fifo_link.c_str()), 0);
  auto shipped = open_log_file(fifo_link);
  ASSERT_TRUE(shipped) << shipped.error();
  close(*shipped);
  close(reader);

  const std::string dev_link = dir.path() + "/access.log";
  ASSERT_EQ(symlink("/dev/null", dev_link.c_str()), 0);
  auto dev = open_log_file(dev_link);
  ASSERT_FALSE(dev) << "followed a link to a device";
  EXPECT_NE(dev.error().find(dev_link + ": a symbolic link to a character device"), std::string::npos) << dev.error();
  auto direct = open_log_file("/dev/null");
  ASSERT_TRUE(direct) << direct.error();
  close(*direct);
  EXPECT_FALSE(open_log_file(dir.path()));
}

// ------------------------------------------------------------------ give_socket

// run_dir / state_dir at start: the directory itself is given; a symbolic
// link at its name (with or without a trailing slash) is refused and its
// target left alone (before, chown() followed it: root gave the user
// whatever the link named).
TEST(GiveDirectory, GivesTheDirectoryItselfNeverALinksTarget) {
  TempDir dir;
  const uid_t to = geteuid() == 0 ? 65534 : geteuid();
  const gid_t group = getegid() == 0 ? 65534 : getegid();
  const std::string run = dir.mkdir("run");
  auto ok = give_directory(run, to, group, false);
  EXPECT_TRUE(ok) << ok.error();
  EXPECT_EQ(stat_of(run).st_uid, to);
  EXPECT_EQ(stat_of(run).st_gid, group);

  const std::string target = dir.mkdir("roots");
  const std::string link = dir.path() + "/state";
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
  const struct stat before = stat_of(target);
  for (const std::string& named : {link, link + "/", link + "//"}) {
    auto refused = give_directory(named, 12345, 12345, true);
    ASSERT_FALSE(refused) << named << ": followed the link";
    EXPECT_NE(refused.error().find("a symbolic link: refused"), std::string::npos) << refused.error();
  }
  EXPECT_EQ(stat_of(target).st_uid, before.st_uid);
  EXPECT_EQ(stat_of(target).st_gid, before.st_gid);

  const std::string file = dir.write("file", "x");
  auto not_dir = give_directory(file, to, group, true);
  ASSERT_FALSE(not_dir);
  EXPECT_EQ(not_dir.error(), file + ": a regular file, not a directory: refused");

  EXPECT_TRUE(give_directory(dir.path() + "/absent", to, group, true)) << "state_dir may be absent";
  EXPECT_FALSE(give_directory(dir.path() + "/absent", to, group, false)) << "run_dir may not";
}

TEST(GiveSocket, ChownsTheSocketJustBound) {
  TempDir dir;
  const std::string path = dir.path() + "/lodestone-1.sock";
  const int fd = bind_socket(path);
  const uid_t to = geteuid() == 0 ? 65534 : geteuid();
  const gid_t group = getegid() == 0 ? 65534 : getegid();
  auto ok = give_socket(path, to, group);
  EXPECT_TRUE(ok) << ok.error();
  EXPECT_EQ(stat_of(path).st_uid, to);
  EXPECT_EQ(stat_of(path).st_gid, group);
  close(fd);
}

TEST(GiveSocket, RefusesASymbolicLinkSwappedInAfterBind) {
  TempDir dir;
  const std::string path = dir.path() + "/lodestone-1.sock";
  const std::string target = dir.write("shadow", "root's\n");
  const int fd = bind_socket(path);
  // The user owns the directory: the socket renamed away, a link put there.
  ASSERT_EQ(rename(path.c_str(), (path + ".moved").c_str()), 0);
  ASSERT_EQ(symlink(target.c_str(), path.c_str()), 0);
  const uid_t before = stat_of(target).st_uid;
  auto ok =
      give_socket(path, geteuid() == 0 ? 65534 : geteuid(), getegid() == 0 ? 65534 : getegid());
  ASSERT_FALSE(ok) << "followed the link";
  EXPECT_NE(ok.error().find(path + ": "), std::string::npos) << ok.error();
  EXPECT_EQ(stat_of(target).st_uid, before);
  close(fd);
}

TEST(GiveSocket, RefusesWhatIsNotOurSocket) {
  TempDir dir;
  const std::string file = dir.write("lodestone-1.sock", "a file");
  auto ok = give_socket(file, geteuid(), getegid());
  ASSERT_FALSE(ok);
  EXPECT_EQ(ok.error(), file + ": a regular file, not the socket just bound: refused");

  // A second name for our socket (a hard link the user made) is refused too.
  const std::string path = dir.path() + "/lodestone-2.sock";
  const int fd = bind_socket(path);
  ASSERT_EQ(link(path.c_str(), (dir.path() + "/other").c_str()), 0);
  auto linked = give_socket(path, geteuid(), getegid());
  ASSERT_FALSE(linked);
  EXPECT_NE(linked.error().find("with 2 links"), std::string::npos) << linked.error();
  close(fd);

  if (geteuid() == 0) {  // a socket someone else bound
    const std::string theirs = dir.path() + "/lodestone-3.sock";
    const int t = bind_socket(theirs);
    ASSERT_EQ(lchown(theirs.c_str(), kOther, kOther), 0);
    auto other = give_socket(theirs, 65534, 65534);
    ASSERT_FALSE(other);
    EXPECT_NE(other.error().find("owned by uid 54321"), std::string::npos) << other.error();
    close(t);
  }
}

// ------------------------------------------------------------------ certificate stores

// RUN/NAME made like the control plane makes a store: 0700, two files.
std::string make_store(const TempDir& dir, const std::string& name) {
  const std::string store = dir.mkdir(name);
  chmod(store.c_str(), 0700);
  dir.write(name + "/a.pem", "cert");
  dir.write(name + "/a.key", "key");
  return store;
}

TEST(RemoveCertStore, RemovesTheStoreAndItsFiles) {
  TempDir dir;
  const std::string store = make_store(dir, "lodestone-1.sock.certs");
  const std::vector<uid_t> owners{geteuid()};
  auto ok = remove_cert_store(store, owners);
  EXPECT_TRUE(ok) << ok.error();
  EXPECT_FALSE(exists(store));
  EXPECT_TRUE(remove_cert_store(store, owners)) << "absent: nothing to do";
}

TEST(RemoveCertStore, LeavesASymbolicLinkAndItsTargetAlone) {
  TempDir dir;
  const std::string victim = dir.mkdir("etc");
  chmod(victim.c_str(), 0700);
  dir.write("etc/shadow", "root's");
  const std::string store = dir.path() + "/lodestone-1.sock.certs";
  ASSERT_EQ(symlink(victim.c_str(), store.c_str()), 0);
  const std::vector<uid_t> owners{geteuid()};
  auto ok = remove_cert_store(store, owners);
  ASSERT_FALSE(ok) << "followed the link";
  EXPECT_EQ(ok.error(), store + ": not a directory (a symbolic link or a file): left alone");
  EXPECT_TRUE(exists(victim + "/shadow")) << "a file behind the link was removed";
  EXPECT_TRUE(exists(store));
}

TEST(RemoveCertStore, LeavesAnotherOwnersOrALooseModeAlone) {
  TempDir dir;
  const std::vector<uid_t> owners{geteuid()};
  const std::string loose = make_store(dir, "loose.certs");
  chmod(loose.c_str(), 0755);
  auto ok = remove_cert_store(loose, owners);
  ASSERT_FALSE(ok);
  EXPECT_EQ(ok.error(), loose + ": mode 0755, not 0700 as the control plane makes it: left alone");
  EXPECT_TRUE(exists(loose + "/a.key"));

  const std::string theirs = make_store(dir, "theirs.certs");
  const std::vector<uid_t> not_them{geteuid() + 1};
  auto refused = remove_cert_store(theirs, not_them);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().find("owned by uid " + std::to_string(geteuid())), std::string::npos)
      << refused.error();
  EXPECT_TRUE(exists(theirs + "/a.key"));
  // The [process] user's store is removed as ours is.
  const std::vector<uid_t> both{geteuid() + 1, geteuid()};
  EXPECT_TRUE(remove_cert_store(theirs, both));
  EXPECT_FALSE(exists(theirs));
}

TEST(RemoveDeadCertStores, RemovesOnlyTheStoresOfTheDead) {
  TempDir dir;
  const pid_t dead = dead_pid();
  const std::string gone = make_store(dir, "lodestone-" + std::to_string(dead) + ".sock.certs");
  const std::string alive =
      make_store(dir, "lodestone-" + std::to_string(getppid()) + ".sock.certs");
  const std::string ours = make_store(dir, "lodestone-" + std::to_string(getpid()) + ".sock.certs");
  const std::string other_name =
      make_store(dir, "lodestone-" + std::to_string(dead) + ".sock.certs.old");
  // A dead PID's name, a link to a directory of someone else's files.
  const std::string victim = dir.mkdir("etc");
  dir.write("etc/shadow", "root's");
  const std::string linked =
      dir.path() + "/lodestone-" + std::to_string(dead_pid()) + ".sock.certs";
  ASSERT_EQ(symlink(victim.c_str(), linked.c_str()), 0);

  const std::vector<uid_t> owners{geteuid()};
  const auto left = remove_dead_cert_stores(dir.path(), owners);
  EXPECT_FALSE(exists(gone));
  EXPECT_TRUE(exists(alive + "/a.key"));
  EXPECT_TRUE(exists(ours + "/a.key"));
  EXPECT_TRUE(exists(other_name + "/a.key"));
  EXPECT_TRUE(exists(victim + "/shadow")) << "a file behind the link was removed";
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0], linked + ": not a directory (a symbolic link or a file): left alone");
}

}  // namespace
}  // namespace lode::app

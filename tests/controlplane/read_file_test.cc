// Files the control plane reads by a path an admin or a configuration gives
// it (routes.reload's "path", [tls] ticket_key_file: detail::read_file in
// controlplane/control_plane_impl.h; certificates, keys and CA files:
// tls::detail::read_small_file): a regular file within the cap, or an error
// naming the path. A FIFO must not block the event loop, /dev/zero or a
// sparse file must not fill the memory. Calls that could block or run away
// run in a child bounded by alarm() and RLIMIT_AS, so a regression fails
// instead of hanging the suite or the machine.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <string>

#include "controlplane/control_plane_impl.h"
#include "dataplane/tls/tls_context.h"
#include "tests/support/bounded.h"
#include "tests/support/test_pki.h"

namespace lode::cp {
namespace {

using test::TempDir;

// Bounded in time and, where no sanitizer's allocator needs more, at 1 GiB
// of address space.
int bounded(const std::function<int()>& fn) { return test::bounded(fn, true); }

// 0: refused with an error that starts with "PATH: " and holds `why`.
int refused(const Result<std::string, std::string>& r, const std::string& path,
            const std::string& why) {
  if (r) return 1;
  if (!r.error().starts_with(path + ": ")) return 2;
  return r.error().find(why) != std::string::npos ? 0 : 3;
}

TEST(ReadFile, ReadsARegularFileWhole) {
  TempDir dir;
  std::string big(300 * 1024, 'x');  // several reads
  big += "end";
  const std::string path = dir.write("lodestone.toml", big);
  auto text = read_file(path);
  ASSERT_TRUE(text) << text.error();
  EXPECT_EQ(*text, big);
  auto empty = read_file(dir.write("empty.toml", ""));
  ASSERT_TRUE(empty) << empty.error();
  EXPECT_EQ(*empty, "");
}

TEST(ReadFile, AbsentFileIsNamed) {
  auto text = read_file("/nonexistent/lodestone.toml");
  ASSERT_FALSE(text);
  EXPECT_EQ(text.error(), "/nonexistent/lodestone.toml: cannot open: No such file or directory");
}

TEST(ReadFile, FifoIsRefusedWithoutBlocking) {
  TempDir dir;
  const std::string fifo = dir.path() + "/routes.toml";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  // No writer: a blocking open waits for one forever.
  EXPECT_EQ(bounded([&] { return refused(read_file(fifo), fifo, "a FIFO, not a regular file"); }),
            0)
      << "1: read; 142: blocked (SIGALRM)";
  // A writer that never writes nor closes: a read would wait forever.
  const int writer = open(fifo.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(writer, 0);
  EXPECT_EQ(bounded([&] { return refused(read_file(fifo), fifo, "a FIFO, not a regular file"); }),
            0);
  close(writer);
}

TEST(ReadFile, DevZeroIsRefusedNotReadForever) {
  EXPECT_EQ(bounded([] {
              return refused(read_file("/dev/zero"), "/dev/zero", "a device, not a regular file");
            }),
            0)
      << "1: read; 137/142: ran out of memory or time";
}

TEST(ReadFile, DirectoryIsRefused) {
  TempDir dir;
  EXPECT_EQ(refused(read_file(dir.path()), dir.path(), "a directory, not a regular file"), 0);
}

TEST(ReadFile, FileOverTheCapIsRefused) {
  TempDir dir;
  const std::string path = dir.path() + "/huge.toml";
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, static_cast<off_t>(kMaxReadFile) + 1), 0);  // sparse: costs no disk
  close(fd);
  EXPECT_EQ(kMaxReadFile, 16u << 20);
  auto text = read_file(path);
  ASSERT_FALSE(text) << "read " << text->size() << " bytes";
  EXPECT_EQ(text.error(), path + ": larger than 16777216 bytes");
  // At the cap exactly: read.
  ASSERT_EQ(truncate(path.c_str(), static_cast<off_t>(kMaxReadFile)), 0);
  auto at_cap = read_file(path);
  ASSERT_TRUE(at_cap) << at_cap.error();
  EXPECT_EQ(at_cap->size(), kMaxReadFile);
  // A smaller cap for the caller that wants one.
  EXPECT_EQ(refused(read_file(path, 1024), path, "larger than 1024 bytes"), 0);
}

// tls::detail::read_small_file (certificates, keys, CA files): the same
// refusals, its own cap.
TEST(ReadSmallFile, FifoIsRefusedWithoutBlocking) {
  TempDir dir;
  const std::string fifo = dir.path() + "/key.pem";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(bounded([&] {
              return refused(tls::detail::read_small_file(fifo, 65536), fifo, "not a regular file");
            }),
            0)
      << "1: read; 142: blocked (SIGALRM)";
}

TEST(ReadSmallFile, DevZeroAndAFileOverItsCapAreRefused) {
  EXPECT_EQ(bounded([] {
              return refused(tls::detail::read_small_file("/dev/zero", 65536), "/dev/zero",
                             "not a regular file");
            }),
            0);
  TempDir dir;
  const std::string path = dir.path() + "/chain.pem";
  ASSERT_EQ(close(open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600)), 0);
  ASSERT_EQ(truncate(path.c_str(), 65537), 0);
  EXPECT_EQ(refused(tls::detail::read_small_file(path, 65536), path, "larger than 65536 bytes"), 0);
}

}  // namespace
}  // namespace lode::cp

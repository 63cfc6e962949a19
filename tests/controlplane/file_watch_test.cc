#include "controlplane/file_watch.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "tests/support/test_pki.h"

namespace lode::cp {
namespace {

using namespace std::chrono_literals;
using test::TempDir;

std::string show(const std::vector<FileEvent>& events) {
  std::string out;
  for (const auto& e : events) {
    out += std::string(to_string(e.kind)) + " " + e.path + " (watched " + e.watched + ", name " +
           e.name + (e.is_dir ? ", dir" : "") + ")\n";
  }
  return out.empty() ? "(no events)" : out;
}

bool has_event(const std::vector<FileEvent>& events, FileEventKind kind, const std::string& path) {
  return std::any_of(events.begin(), events.end(),
                     [&](const FileEvent& e) { return e.kind == kind && e.path == path; });
}

class FileWatchTest : public ::testing::Test {
 protected:
  TempDir dir;
  FileWatch watch = make();

  static FileWatch make() {
    auto w = FileWatch::create();
    if (!w) {
      ADD_FAILURE() << w.error();
      std::abort();
    }
    return std::move(*w);
  }

  // Polls and reads until `done` holds for what was read, or `limit` passes.
  std::vector<FileEvent> collect(const std::function<bool(const std::vector<FileEvent>&)>& done,
                                 std::chrono::milliseconds limit = 2s) {
    std::vector<FileEvent> seen;
    const auto end = std::chrono::steady_clock::now() + limit;
    while (!done(seen) && std::chrono::steady_clock::now() < end) {
      pollfd p{watch.fd(), POLLIN, 0};
      if (::poll(&p, 1, 50) > 0) {
        auto more = watch.read_events();
        seen.insert(seen.end(), more.begin(), more.end());
      }
    }
    return seen;
  }
  std::vector<FileEvent> until(FileEventKind kind, const std::string& path) {
    return collect([&](const auto& evs) { return has_event(evs, kind, path); });
  }
  // Everything that arrives within `window` (for "nothing happens" checks).
  std::vector<FileEvent> settle(std::chrono::milliseconds window = 200ms) {
    return collect([](const auto&) { return false; }, window);
  }
  std::string path(const std::string& rel) const { return dir.path() + "/" + rel; }
};

// --- the descriptor ------------------------------------------------------------

TEST_F(FileWatchTest, DescriptorIsNonBlockingAndReadsNothingWhenIdle) {
  ASSERT_GE(watch.fd(), 0);
  EXPECT_NE(::fcntl(watch.fd(), F_GETFL) & O_NONBLOCK, 0);
  EXPECT_NE(::fcntl(watch.fd(), F_GETFD) & FD_CLOEXEC, 0);
  ASSERT_TRUE(watch.watch_directory(dir.path()));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(watch.read_events().empty());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s) << "a blocking read would not return";
}

// A call reads the descriptor a bounded number of times: a writer that keeps
// making events cannot hold the control plane's loop in it; the rest waits
// for the next call (before, it read until the queue was empty).
TEST_F(FileWatchTest, OneCallReadsABoundedAmountAndTheRestComesNext) {
  ASSERT_TRUE(watch.watch_directory(dir.path()));
  constexpr int kFiles = 3000;  // 6,000 events (create, close-write): more than one 64 KiB read
  for (int i = 0; i < kFiles; ++i) {
    const int fd = ::open(path("f" + std::to_string(100000 + i) + ".pem").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ::close(fd);
  }
  const auto first = watch.read_events(1);
  EXPECT_GT(first.size(), 0u);
  EXPECT_LT(first.size(), 2u * kFiles) << "one read took everything";
  size_t created = 0, calls = 1;
  for (const auto& e : first) created += e.kind == FileEventKind::kCreated;
  while (true) {
    const auto more = watch.read_events(1);
    if (more.empty()) break;
    ++calls;
    for (const auto& e : more) created += e.kind == FileEventKind::kCreated;
  }
  EXPECT_EQ(created, static_cast<size_t>(kFiles)) << "nothing lost across calls";
  EXPECT_GE(calls, 2u);
}

// --- directories ------------------------------------------------------------------

TEST_F(FileWatchTest, SeesWriteAndCloseInAWatchedDirectory) {
  ASSERT_TRUE(watch.watch_directory(dir.path() + "/"));
  dir.write("a.test.pem", "one");
  const auto events = until(FileEventKind::kWritten, path("a.test.pem"));
  ASSERT_TRUE(has_event(events, FileEventKind::kWritten, path("a.test.pem"))) << show(events);
  const auto it = std::find_if(events.begin(), events.end(), [](const FileEvent& e) {
    return e.kind == FileEventKind::kWritten;
  });
  EXPECT_EQ(it->watched, dir.path());
  EXPECT_EQ(it->name, "a.test.pem");
  EXPECT_FALSE(it->is_dir);
}

TEST_F(FileWatchTest, SeesANewSubdirectory) {
  ASSERT_TRUE(watch.watch_directory(dir.path()));
  dir.mkdir("a.test");
  const auto events = until(FileEventKind::kCreated, path("a.test"));
  ASSERT_TRUE(has_event(events, FileEventKind::kCreated, path("a.test"))) << show(events);
  EXPECT_TRUE(events.back().is_dir);
}

TEST_F(FileWatchTest, RemovedDirectoryIsReportedGoneAndCanBeWatchedAgain) {
  const std::string sub = dir.mkdir("sites");
  ASSERT_TRUE(watch.watch_directory(sub));
  ASSERT_EQ(::rmdir(sub.c_str()), 0);
  const auto events = until(FileEventKind::kWatchGone, sub);
  ASSERT_TRUE(has_event(events, FileEventKind::kWatchGone, sub)) << show(events);
  EXPECT_EQ(watch.watch_count(), 0u);
  EXPECT_FALSE(watch.watch_directory(sub)) << "gone";
  dir.mkdir("sites");
  ASSERT_TRUE(watch.watch_directory(sub));
  dir.write("sites/a.pem", "x");
  EXPECT_TRUE(has_event(until(FileEventKind::kWritten, sub + "/a.pem"), FileEventKind::kWritten,
                        sub + "/a.pem"));
}

TEST_F(FileWatchTest, MovedDirectoryIsReportedGone) {
  const std::string sub = dir.mkdir("sites");
  ASSERT_TRUE(watch.watch_directory(sub));
  ASSERT_EQ(std::rename(sub.c_str(), path("sites.old").c_str()), 0);
  auto events = until(FileEventKind::kWatchGone, sub);
  ASSERT_TRUE(has_event(events, FileEventKind::kWatchGone, sub)) << show(events);
  dir.write("sites.old/a.pem", "x");  // no longer reported under the old name
  events = settle();
  EXPECT_TRUE(events.empty()) << show(events);
}

TEST_F(FileWatchTest, WatchingAMissingDirectoryFails) {
  auto r = watch.watch_directory(path("nope"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find(path("nope")), std::string::npos) << r.error();
}

TEST_F(FileWatchTest, WatchingARegularFileAsADirectoryFails) {
  EXPECT_FALSE(watch.watch_directory(dir.write("plain", "x")));
}

// --- files ---------------------------------------------------------------------------

TEST_F(FileWatchTest, SeesRenameOverAWatchedFileLikeCertbot) {
  const std::string cert = dir.write("cert.pem", "old");
  ASSERT_TRUE(watch.watch_file(cert));
  dir.write(".cert.pem.tmp", "new");
  ASSERT_EQ(std::rename(path(".cert.pem.tmp").c_str(), cert.c_str()), 0);
  const auto events = until(FileEventKind::kMovedIn, cert);
  ASSERT_TRUE(has_event(events, FileEventKind::kMovedIn, cert)) << show(events);
  for (const auto& e : events) EXPECT_EQ(e.path, cert) << "the temporary file is not reported";

  // The watch survives the replacement (an inode watch would not).
  dir.write("cert.pem", "newer");
  const auto later = until(FileEventKind::kWritten, cert);
  EXPECT_TRUE(has_event(later, FileEventKind::kWritten, cert)) << show(later);
}

TEST_F(FileWatchTest, SeesAWatchedFileDeletedAndCreatedAgain) {
  const std::string key = dir.write("key.pem", "k");
  ASSERT_TRUE(watch.watch_file(key));
  ASSERT_EQ(::unlink(key.c_str()), 0);
  auto events = until(FileEventKind::kDeleted, key);
  ASSERT_TRUE(has_event(events, FileEventKind::kDeleted, key)) << show(events);
  dir.write("key.pem", "k2");
  events = until(FileEventKind::kWritten, key);
  EXPECT_TRUE(has_event(events, FileEventKind::kCreated, key)) << show(events);
  EXPECT_TRUE(has_event(events, FileEventKind::kWritten, key)) << show(events);
}

TEST_F(FileWatchTest, FileNeedNotExistYet) {
  const std::string cert = path("later.pem");
  ASSERT_TRUE(watch.watch_file(cert));
  dir.write("later.pem", "x");
  EXPECT_TRUE(has_event(until(FileEventKind::kWritten, cert), FileEventKind::kWritten, cert));
}

TEST_F(FileWatchTest, OtherFilesOfTheDirectoryAreNotReportedForAWatchedFile) {
  ASSERT_TRUE(watch.watch_file(dir.write("cert.pem", "x")));
  dir.write("other.pem", "y");
  dir.write("cert.pem.bak", "z");
  const auto events = settle();
  EXPECT_TRUE(events.empty()) << show(events);
}

TEST_F(FileWatchTest, KubernetesStyleSymlinkSwapIsReportedForTheFile) {
  dir.write("..2024_a/tls.crt", "a");
  ASSERT_EQ(::symlink("..2024_a", path("..data").c_str()), 0);
  ASSERT_EQ(::symlink("..data/tls.crt", path("tls.crt").c_str()), 0);
  const std::string crt = path("tls.crt");
  ASSERT_TRUE(watch.watch_file(crt));

  dir.write("..2024_b/tls.crt", "b");
  ASSERT_EQ(::symlink("..2024_b", path("..data_tmp").c_str()), 0);
  ASSERT_EQ(std::rename(path("..data_tmp").c_str(), path("..data").c_str()), 0);
  const auto events = until(FileEventKind::kMovedIn, crt);
  ASSERT_TRUE(has_event(events, FileEventKind::kMovedIn, crt)) << show(events);
  EXPECT_EQ(events.back().name, "..data");
}

TEST_F(FileWatchTest, WatchingAFileInAMissingDirectoryFails) {
  EXPECT_FALSE(watch.watch_file(path("nope/cert.pem")));
  EXPECT_FALSE(watch.watch_file(dir.path() + "/"));
}

TEST_F(FileWatchTest, UnwatchStopsReports) {
  const std::string cert = dir.write("cert.pem", "x");
  ASSERT_TRUE(watch.watch_file(cert));
  ASSERT_TRUE(watch.watch_file(cert)) << "twice is fine";
  ASSERT_TRUE(watch.watch_directory(dir.path()));
  EXPECT_EQ(watch.watch_count(), 2u);
  watch.unwatch(cert);
  dir.write("cert.pem", "y");
  auto events = until(FileEventKind::kWritten, cert);
  ASSERT_EQ(events.size(), 1u) << show(events);
  EXPECT_EQ(events[0].watched, dir.path()) << "only the directory watch reports it";
  watch.unwatch(dir.path());
  EXPECT_EQ(watch.watch_count(), 0u);
  dir.write("cert.pem", "z");
  events = settle();
  EXPECT_TRUE(events.empty()) << show(events);
}

TEST_F(FileWatchTest, WatchedFileAndDirectoryBothReport) {
  const std::string cert = dir.write("cert.pem", "x");
  ASSERT_TRUE(watch.watch_file(cert));
  ASSERT_TRUE(watch.watch_directory(dir.path()));
  dir.write("cert.pem", "y");
  const auto events = collect([](const auto& evs) { return evs.size() >= 2; });
  ASSERT_EQ(events.size(), 2u) << show(events);
  EXPECT_EQ(events[0].watched, dir.path());
  EXPECT_EQ(events[1].watched, cert);
}

TEST_F(FileWatchTest, MovedWatchIsUsable) {
  FileWatch moved = std::move(watch);
  ASSERT_TRUE(moved.watch_directory(dir.path()));
  EXPECT_EQ(watch.fd(), -1);  // NOLINT(bugprone-use-after-move): checked on purpose
  EXPECT_TRUE(watch.read_events().empty());
  dir.write("a.pem", "x");
  pollfd p{moved.fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  EXPECT_TRUE(has_event(moved.read_events(), FileEventKind::kWritten, path("a.pem")));
}

// --- Debouncer ----------------------------------------------------------------------------

using Clock = Debouncer::Clock;

TEST(FileWatchDebouncer, KeySettlesAfterTheQuietPeriod) {
  Debouncer d(100ms);
  const Clock::time_point t0{};
  EXPECT_EQ(d.timeout_ms(t0), -1);
  d.note("a.test", t0);
  EXPECT_TRUE(d.take_settled(t0 + 99ms).empty());
  EXPECT_EQ(d.timeout_ms(t0 + 40ms), 60);
  EXPECT_EQ(d.take_settled(t0 + 100ms), std::vector<std::string>{"a.test"});
  EXPECT_EQ(d.pending(), 0u);
  EXPECT_TRUE(d.take_settled(t0 + 1s).empty()) << "reported once";
}

TEST(FileWatchDebouncer, NewNoticePostponesSettling) {
  Debouncer d(100ms);
  const Clock::time_point t0{};
  d.note("a.test", t0);         // cert written
  d.note("a.test", t0 + 80ms);  // key written
  EXPECT_TRUE(d.take_settled(t0 + 150ms).empty());
  EXPECT_EQ(d.take_settled(t0 + 180ms), std::vector<std::string>{"a.test"});
}

TEST(FileWatchDebouncer, MaxDelayBoundsThePostponing) {
  Debouncer d(100ms, 300ms);
  const Clock::time_point t0{};
  for (int i = 0; i <= 5; ++i) d.note("busy", t0 + i * 60ms);
  EXPECT_EQ(*d.next_deadline(), t0 + 300ms);
  EXPECT_EQ(d.take_settled(t0 + 300ms), std::vector<std::string>{"busy"});
}

TEST(FileWatchDebouncer, KeysAreIndependentAndReportedSorted) {
  Debouncer d(100ms);
  const Clock::time_point t0{};
  d.note("c.test", t0);
  d.note("a.test", t0 + 10ms);
  d.note("b.test", t0 + 500ms);
  EXPECT_EQ(d.take_settled(t0 + 200ms), (std::vector<std::string>{"a.test", "c.test"}));
  EXPECT_EQ(d.pending(), 1u);
  EXPECT_EQ(d.timeout_ms(t0 + 700ms), 0) << "past due";
}

TEST(FileWatchDebouncer, TimeoutRoundsUp) {
  Debouncer d(100ms);
  const Clock::time_point t0{};
  d.note("a", t0);
  EXPECT_EQ(d.timeout_ms(t0 + 99ms + 500us), 1);
}

}  // namespace
}  // namespace lode::cp

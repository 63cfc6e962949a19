#include "dataplane/worker/heap_trim.h"

#include <gtest/gtest.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "tests/support/sanitizer.h"

namespace lode::worker {
namespace {

using namespace std::chrono_literals;
using Clock = HeapTrimmer::Clock;

TEST(HeapTrimmerTest, TrimsOnceAfterActivityThenQuiet) {
  HeapTrimmer t(1000ms);
  const auto t0 = Clock::now();
  EXPECT_FALSE(t.observe(1, t0));           // first sight: a change
  EXPECT_FALSE(t.observe(1, t0 + 500ms));   // not quiet long enough
  EXPECT_TRUE(t.observe(1, t0 + 1000ms));   // quiet for 1 s: trim
  EXPECT_FALSE(t.observe(1, t0 + 1100ms));  // once
  EXPECT_FALSE(t.observe(1, t0 + 60s));     // nothing new: never again
}

TEST(HeapTrimmerTest, NeverTrimsWhileBusy) {
  HeapTrimmer t(1000ms);
  const auto t0 = Clock::now();
  for (int i = 0; i < 100; ++i) {
    EXPECT_FALSE(t.observe(static_cast<uint64_t>(i), t0 + i * 100ms)) << i;  // moves every tick
  }
  EXPECT_FALSE(t.observe(99, t0 + 10'500ms));
  EXPECT_TRUE(t.observe(99, t0 + 10'900ms));
}

TEST(HeapTrimmerTest, ABurstAfterATrimArmsItAgain) {
  HeapTrimmer t(1000ms);
  const auto t0 = Clock::now();
  EXPECT_FALSE(t.observe(7, t0));
  EXPECT_TRUE(t.observe(7, t0 + 1s));
  EXPECT_FALSE(t.observe(8, t0 + 5s));
  EXPECT_FALSE(t.observe(8, t0 + 5500ms));
  EXPECT_TRUE(t.observe(8, t0 + 6s));
}

TEST(HeapTrimmerTest, ActivityMovesWithEachCounter) {
  WorkerStats s;
  const uint64_t base = heap_activity(s);
  for (std::atomic<uint64_t>* c : {&s.accepted, &s.active, &s.handshakes, &s.bytes_client_in,
                                   &s.bytes_client_out, &s.buffered_bytes}) {
    c->fetch_add(1);
    EXPECT_NE(heap_activity(s), base);
    c->fetch_sub(1);
    EXPECT_EQ(heap_activity(s), base);
  }
  // A second worker's counters are folded in, not added: one worker's
  // accept and another's close do not cancel out.
  WorkerStats a, b;
  a.active = 1;
  const uint64_t one = heap_activity(b, heap_activity(a));
  a.active = 0;
  b.active = 1;
  EXPECT_NE(heap_activity(b, heap_activity(a)), one);
}

long rss_pages() {
  long size = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  if (std::fscanf(f, "%ld %ld", &size, &resident) != 2) resident = -1;
  std::fclose(f);
  return resident;
}

// The pattern of a burst of handshakes on a worker thread: per connection a
// few ~17 KB transient buffers and small transient pieces, freed, between
// small allocations that live on. The free pages stay resident until
// trim_heap() gives them back.
TEST(HeapTrimTest, GivesBackTheHolesABurstLeaves) {
#ifdef LODE_TEST_OWN_ALLOCATOR
  GTEST_SKIP() << "the sanitizer's allocator is not glibc's: nothing of glibc's to trim; the "
                  "release build runs this";
#endif
  const long page = sysconf(_SC_PAGESIZE);
  long before = 0, after = 0;
  std::vector<void*> live;
  std::thread worker([&] {  // its own arena, as a worker's
    for (int burst = 0; burst < 8; ++burst) {
      std::vector<void*> transient;
      for (int c = 0; c < 100; ++c) {
        for (int k = 0; k < 3; ++k) {
          void* p = std::malloc(17'000);
          std::memset(p, 1, 17'000);
          transient.push_back(p);
        }
        for (int k = 0; k < 30; ++k) {
          void* p = std::malloc(static_cast<size_t>(32 + (k * 53) % 700));
          std::memset(p, 1, 32);
          (k % 2 == 0 ? transient : live).push_back(p);
        }
      }
      for (void* p : transient) std::free(p);
    }
    before = rss_pages();
    trim_heap();
    after = rss_pages();
  });
  worker.join();
  for (void* p : live) std::free(p);
  ASSERT_GT(before, 0);
  // 8 bursts x 100 x 3 x 17 KB went through; one burst's worth (~5 MB) is
  // left free between live pieces: most of it goes back.
  EXPECT_GE((before - after) * page, 2L << 20)
      << "RSS " << before * page << " -> " << after * page << " bytes";
}

}  // namespace
}  // namespace lode::worker

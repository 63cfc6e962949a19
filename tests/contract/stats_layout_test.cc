// The dataplane's counters in shared memory: what the writer lays out, the
// reader's view validates and sums; a segment of another layout is refused.
#include "lodestone/stats_layout.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cstring>
#include <vector>

#include "dataplane/control/stats_segment.h"
#include "dataplane/worker/stats.h"

namespace lode::stats {
namespace {

// The control plane's side: map the memfd read-only and open a view.
struct ReadOnly {
  const std::byte* base = nullptr;
  size_t size = 0;
  explicit ReadOnly(int fd) {
    struct stat st{};
    fstat(fd, &st);
    size = static_cast<size_t>(st.st_size);
    base = static_cast<const std::byte*>(mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0));
  }
  ~ReadOnly() { munmap(const_cast<std::byte*>(base), size); }
};

TEST(StatsLayout, WritersCountersAreReadAndSummedThroughAReadOnlyMapping) {
  auto seg = control::StatsSegment::create(3);
  ASSERT_TRUE(seg) << seg.error();
  worker::bump(seg->worker(0)->handshakes, 5);
  worker::bump(seg->worker(2)->handshakes, 7);
  worker::bump(seg->worker(1)->active, 2);
  ReadOnly ro(seg->fd());
  StatsView v;
  ASSERT_TRUE(StatsView::open({ro.base, ro.size}, v));
  EXPECT_EQ(v.workers(), 3u);
  size_t hs = 0, active = 0;
  for (size_t c = 0; c < kCounterCount; ++c) {
    if (kCounters[c].name == "handshakes") hs = c;
    if (kCounters[c].name == "active") active = c;
  }
  EXPECT_EQ(v.total(hs), 12u);
  EXPECT_EQ(v.value(2, hs), 7u);
  EXPECT_EQ(v.total(active), 2u);
  EXPECT_TRUE(kCounters[active].gauge);
  EXPECT_FALSE(kCounters[hs].gauge);
  // Live: a later write is seen without remapping.
  worker::bump(seg->worker(1)->handshakes);
  EXPECT_EQ(v.total(hs), 13u);
  struct stat st{};
  ASSERT_EQ(fstat(seg->fd(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(StatsLayout, OtherLayoutsAndShortSegmentsAreRefused) {
  auto seg = control::StatsSegment::create(2);
  ASSERT_TRUE(seg);
  ReadOnly ro(seg->fd());
  std::vector<std::byte> copy(ro.base, ro.base + ro.size);
  StatsView v;
  ASSERT_TRUE(StatsView::open(copy, v));
  auto with = [&](auto mutate) {
    std::vector<std::byte> b = copy;
    StatsHeader h;
    std::memcpy(&h, b.data(), sizeof h);
    mutate(h, b);
    std::memcpy(b.data(), &h, sizeof h);
    StatsView out;
    return StatsView::open(b, out);
  };
  EXPECT_FALSE(with([](StatsHeader& h, auto&) { h.magic[0] = 'X'; }));
  EXPECT_FALSE(with([](StatsHeader& h, auto&) { h.layout_version = kStatsLayoutVersion + 1; }));
  EXPECT_FALSE(with([](StatsHeader& h, auto&) { h.header_size = 32; }));
  EXPECT_FALSE(with([](StatsHeader& h, auto&) { h.counters = kCounterCount + 1; }));
  EXPECT_FALSE(with([](StatsHeader& h, auto&) { h.block_size = 8; }));
  EXPECT_FALSE(with([](StatsHeader& h, auto&) { h.workers = 3; }));  // blocks beyond the file
  EXPECT_FALSE(with([](StatsHeader& h, auto&) { h.workers = kMaxWorkers + 1; }));
  EXPECT_FALSE(StatsView::open(std::span<const std::byte>(copy).first(kStatsHeaderSize - 1), v));
  EXPECT_FALSE(StatsView::open(std::span<const std::byte>(copy).first(copy.size() - 1), v));
  EXPECT_FALSE(control::StatsSegment::create(0));
  EXPECT_FALSE(control::StatsSegment::create(kMaxWorkers + 1));
}

}  // namespace
}  // namespace lode::stats

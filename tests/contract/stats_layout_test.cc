// The dataplane's counters in shared memory: what the writer lays out, the
// reader's view validates and sums; a segment of another layout is refused.
#include "lodestone/stats_layout.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
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

// The memfd handed to the control plane is sealed: it cannot shrink it
// (before, an ftruncate there made every worker's next counter write a
// SIGBUS), grow it, write it or map it writable; our own mapping still writes.
// A memfd without the size seals is refused by the reader.
TEST(StatsLayout, TheSegmentHandedOverCannotBeResizedOrWritten) {
  auto seg = control::StatsSegment::create(2);
  ASSERT_TRUE(seg) << seg.error();
  const int fd = dup(seg->fd());  // what the control plane receives
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(control::stats_size_sealed(fd));
  struct stat st{};
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_NE(ftruncate(fd, 0), 0);
  EXPECT_NE(ftruncate(fd, st.st_size + 4096), 0);
  EXPECT_EQ(fcntl(fd, F_ADD_SEALS, 0), -1) << "F_SEAL_SEAL: no seal can be taken off or added";
  void* w = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  EXPECT_EQ(w, MAP_FAILED) << "writable mapping";
  if (w != MAP_FAILED) munmap(w, static_cast<size_t>(st.st_size));
  const char byte = 1;
  EXPECT_EQ(pwrite(fd, &byte, 1, 0), -1);
  worker::bump(seg->worker(1)->handshakes, 3);
  ReadOnly ro(fd);
  StatsView v;
  ASSERT_TRUE(StatsView::open({ro.base, ro.size}, v));
  EXPECT_EQ(v.workers(), 2u);
  close(fd);

  const int plain = memfd_create("unsealed", MFD_CLOEXEC);
  ASSERT_GE(plain, 0);
  ASSERT_EQ(ftruncate(plain, 4096), 0);
  EXPECT_FALSE(control::stats_size_sealed(plain));
  close(plain);
}

// The SIGHUP reloads asked, numbered by the dataplane's main thread and read
// live by the control plane (which answers with the number it read).
TEST(StatsLayout, ReloadsAskedAreNumberedAndReadLive) {
  auto seg = control::StatsSegment::create(1);
  ASSERT_TRUE(seg) << seg.error();
  ReadOnly ro(seg->fd());
  StatsView v;
  ASSERT_TRUE(StatsView::open({ro.base, ro.size}, v));
  EXPECT_EQ(v.reloads_asked(), 0u);
  EXPECT_EQ(seg->ask_reload(), 1u);
  EXPECT_EQ(seg->ask_reload(), 2u);
  EXPECT_EQ(v.reloads_asked(), 2u);
  // In the header's last 8 bytes: no header field or counter moved.
  EXPECT_LE(sizeof(StatsHeader), kReloadsAskedOffset);
  EXPECT_EQ(v.workers(), 1u);
  uint64_t raw = 0;
  std::memcpy(&raw, ro.base + kReloadsAskedOffset, sizeof raw);
  EXPECT_EQ(raw, 2u);
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
  EXPECT_FALSE(with([](StatsHeader& h, auto&) { h.route_slots = 0; }));
  EXPECT_FALSE(with([](StatsHeader& h, auto&) { h.backend_slots = h.backend_slots + 1; }));  // past the file
  EXPECT_FALSE(with([](StatsHeader& h, auto&) { h.series_sizes = 0; }));
  EXPECT_FALSE(with([](StatsHeader& h, auto&) { h.route_counters = kRouteCounterCount + 1; }));
  EXPECT_FALSE(with([](StatsHeader& h, auto&) { h.backend_counters = 0; }));
  EXPECT_FALSE(with([](StatsHeader& h, auto&) { h.handshake_buckets = kHandshakeBuckets - 1; }));
  EXPECT_FALSE(with([](StatsHeader& h, auto&) { h.front_counters = 1; }));
  EXPECT_FALSE(with([](StatsHeader& h, auto&) { h.front_rows = 1; }));  // rows beyond the file
  EXPECT_FALSE(with([](StatsHeader& h, auto&) { h.front_rows = kMaxFrontLcores + 1; }));
  EXPECT_FALSE(control::StatsSegment::create(0));
  EXPECT_FALSE(control::StatsSegment::create(kMaxWorkers + 1));
  EXPECT_FALSE(control::StatsSegment::create(1, 1, 8));  // slot 0 alone is "(other)"
  EXPECT_FALSE(control::StatsSegment::create(1, 8, 8, kMaxFrontLcores + 1));
}

// The dpdk front's lcores count the flows they route themselves in rows of
// their own after the workers': summed with the workers' once the lcores
// have started, and only the rows of lcores started.
TEST(StatsLayout, FrontLcoresHaveSeriesRowsAfterTheWorkers) {
  auto seg = control::StatsSegment::create(2, 8, 8, 4);
  ASSERT_TRUE(seg) << seg.error();
  EXPECT_EQ(seg->front_rows(), 4u);
  const uint32_t route = seg->route_slot("vip", "pass", 1);
  const uint32_t be = seg->backend_slot("pool", "10.0.0.9:443", 1);
  worker::bump(seg->routes(0)[route].connections, 1);
  worker::bump(seg->routes(2)[route].connections, 10);   // lcore 0
  worker::bump(seg->routes(3)[route].connections, 100);  // lcore 1
  worker::bump(seg->backends(3)[be].picks, 7);
  worker::bump(seg->routes(5)[route].connections, 1000);  // lcore 3: not started
  ReadOnly ro(seg->fd());
  StatsView v;
  ASSERT_TRUE(StatsView::open({ro.base, ro.size}, v));
  EXPECT_EQ(v.series_rows(), 2u) << "no lcore started yet";
  EXPECT_EQ(v.route_total(route, 0), 1u);
  seg->front()->lcores.store(2);
  EXPECT_EQ(v.series_rows(), 4u);
  EXPECT_EQ(kRouteCounters[0].name, "connections");
  EXPECT_EQ(v.route_total(route, 0), 111u);
  EXPECT_EQ(kBackendCounters[0].name, "picks");
  EXPECT_EQ(v.backend_total(be, 0), 7u);
  seg->front()->lcores.store(kMaxFrontLcores);  // more lcores than rows: the rows
  EXPECT_EQ(v.series_rows(), 6u);
  EXPECT_EQ(v.route_total(route, 0), 1111u);
  // A kernel front's segment has no such rows.
  auto kernel = control::StatsSegment::create(2, 8, 8);
  ASSERT_TRUE(kernel);
  kernel->front()->lcores.store(2);
  ReadOnly kro(kernel->fd());
  StatsView kv;
  ASSERT_TRUE(StatsView::open({kro.base, kro.size}, kv));
  EXPECT_EQ(kv.series_rows(), 2u);
}

TEST(StatsLayout, TheDpdkFrontsLcoresAreReadOnceStarted) {
  auto seg = control::StatsSegment::create(1);
  ASSERT_TRUE(seg);
  ReadOnly ro(seg->fd());
  StatsView v;
  ASSERT_TRUE(StatsView::open({ro.base, ro.size}, v));
  EXPECT_EQ(v.front_lcores(), 0u) << "the kernel front: no lcore";
  FrontArea& f = *seg->front();
  f.lcore[1].syn_cookies.store(42);
  f.lcores.store(2);
  EXPECT_EQ(v.front_lcores(), 2u);
  size_t c = 0;
  while (kFrontCounters[c].name != "syn_cookies") ++c;
  EXPECT_EQ(v.front_value(1, c), 42u);
  EXPECT_EQ(v.front_value(0, c), 0u);
  f.lcores.store(kMaxFrontLcores + 5);  // a writer gone wrong: clamped
  EXPECT_EQ(v.front_lcores(), kMaxFrontLcores);
}

TEST(StatsLayout, HandshakeBucketsAreUpperBoundsInclusive) {
  EXPECT_EQ(handshake_bucket(0), 0u);
  EXPECT_EQ(handshake_bucket(250), 0u);
  EXPECT_EQ(handshake_bucket(251), 1u);
  EXPECT_EQ(handshake_bucket(1'000'000), kHandshakeBucketsUs.size() - 1);
  EXPECT_EQ(handshake_bucket(1'000'001), kHandshakeBuckets - 1);  // +Inf
}

TEST(StatsLayout, SeriesKeepTheirSlotsAcrossEpochsAndAreSummedOverWorkers) {
  auto seg = control::StatsSegment::create(2, 8, 8);
  ASSERT_TRUE(seg) << seg.error();
  const uint32_t app = seg->route_slot("https", "app", 1);
  const uint32_t api = seg->route_slot("https", "api", 1);
  const uint32_t be = seg->backend_slot("pool", "127.0.0.1:9001", 1);
  EXPECT_NE(app, kOtherSlot);
  EXPECT_NE(app, api);
  EXPECT_NE(be, kOtherSlot);
  EXPECT_EQ(seg->route_slot("https", "app", 1), app) << "asking twice in one epoch";
  EXPECT_NE(seg->route_slot("other", "app", 1), app) << "the listener is part of the name";
  seg->retire_unseen(1);
  worker::bump(seg->routes(0)[app].connections, 3);
  worker::bump(seg->routes(1)[app].connections, 4);
  worker::bump(seg->routes(1)[app].handshake_buckets[2], 6);
  worker::bump(seg->backends(1)[be].connect_failures, 2);

  ReadOnly ro(seg->fd());
  StatsView v;
  ASSERT_TRUE(StatsView::open({ro.base, ro.size}, v));
  EXPECT_EQ(v.route_slots(), 8u);
  SeriesLabel l;
  ASSERT_TRUE(v.route_label(app, l));
  EXPECT_EQ(l.a, "https");
  EXPECT_EQ(l.b, "app");
  EXPECT_FALSE(l.retired);
  EXPECT_FALSE(v.backend_label(app == be ? be + 1 : 7, l)) << "a free slot has no name";
  ASSERT_TRUE(v.backend_label(be, l));
  EXPECT_EQ(l.a, "pool");
  EXPECT_EQ(l.b, "127.0.0.1:9001");
  ASSERT_TRUE(v.route_label(kOtherSlot, l));
  EXPECT_EQ(l.b, "(other)");
  EXPECT_EQ(v.route_total(app, 0), 7u);  // "connections" is the first route counter
  EXPECT_EQ(kRouteCounters[0].name, "connections");
  EXPECT_EQ(v.route_bucket_total(app, 2), 6u);
  EXPECT_EQ(v.backend_total(be, 3), 2u);
  EXPECT_EQ(kBackendCounters[3].name, "connect_failures");

  // Epoch 2 without "api": retired, then back in epoch 3 with the same slot.
  EXPECT_EQ(seg->route_slot("https", "app", 2), app);
  seg->retire_unseen(2);
  ASSERT_TRUE(v.route_label(api, l));
  EXPECT_TRUE(l.retired);
  ASSERT_TRUE(v.route_label(app, l));
  EXPECT_FALSE(l.retired);
  EXPECT_EQ(seg->route_slot("https", "api", 3), api);
  seg->retire_unseen(3);
  ASSERT_TRUE(v.route_label(api, l));
  EXPECT_FALSE(l.retired);
}

TEST(StatsLayout, FullDirectoryReusesTheLongestRetiredSlotThenOverflowsToOther) {
  auto seg = control::StatsSegment::create(1, 4, 2);  // routes: (other) + 3
  ASSERT_TRUE(seg);
  const uint32_t a = seg->route_slot("l", "a", 1);
  const uint32_t b = seg->route_slot("l", "b", 1);
  const uint32_t c = seg->route_slot("l", "c", 1);
  EXPECT_EQ(seg->route_slot("l", "d", 1), kOtherSlot) << "no slot left";
  seg->retire_unseen(1);
  // Epoch 2 keeps b and c: a retires at 2.
  seg->route_slot("l", "b", 2);
  seg->route_slot("l", "c", 2);
  seg->retire_unseen(2);
  // Epoch 3 keeps c only: b retires at 3. A new name takes a's slot (retired first).
  seg->route_slot("l", "c", 3);
  seg->retire_unseen(3);
  EXPECT_EQ(seg->route_slot("l", "e", 4), a);
  EXPECT_EQ(seg->route_slot("l", "f", 4), b);
  EXPECT_EQ(seg->route_slot("l", "c", 4), c);
  EXPECT_EQ(seg->route_slot("l", "g", 4), kOtherSlot);
  ReadOnly ro(seg->fd());
  StatsView v;
  ASSERT_TRUE(StatsView::open({ro.base, ro.size}, v));
  SeriesLabel l;
  ASSERT_TRUE(v.route_label(a, l));
  EXPECT_EQ(l.b, "e");
  // "a" comes back: a fresh slot is needed and none is free.
  EXPECT_EQ(seg->route_slot("l", "a", 5), kOtherSlot);
}

TEST(StatsLayout, NamesTooLongForTheEntryAreCutAndStayDistinct) {
  auto seg = control::StatsSegment::create(1, 8, 2);
  ASSERT_TRUE(seg);
  const std::string listener(80, 'l');
  const std::string r1 = std::string(100, 'r') + "1", r2 = std::string(100, 'r') + "2";
  const uint32_t s1 = seg->route_slot(listener, r1, 1), s2 = seg->route_slot(listener, r2, 1);
  ReadOnly ro(seg->fd());
  StatsView v;
  ASSERT_TRUE(StatsView::open({ro.base, ro.size}, v));
  SeriesLabel a, b;
  ASSERT_TRUE(v.route_label(s1, a));
  ASSERT_TRUE(v.route_label(s2, b));
  EXPECT_LE(a.a.size() + a.b.size(), kSeriesNameBytes);
  EXPECT_NE(a.b, b.b);
  EXPECT_EQ(a.b.substr(a.b.size() - 2), "~" + std::to_string(s1));
}

TEST(StatsLayout, RefusedNamesAreReadNewestFirstWithTheirBytes) {
  auto seg = control::StatsSegment::create(1);
  ASSERT_TRUE(seg);
  WorkerStats& w = *seg->worker(0);
  auto put = [&](std::string_view reason, std::string_view name) {  // as the worker writes
    const uint64_t at = w.refused_next.load();
    RefusedName& e = w.refused[at % kRefusedRing];
    seq_begin(e.seq);
    e.unix_ms.store(1000 + at);
    e.meta.store(reason.size() | name.size() << 8);
    e.text.store(std::string(reason) + std::string(name));
    seq_end(e.seq);
    w.refused_next.store(at + 1);
  };
  ReadOnly ro(seg->fd());
  StatsView v;
  ASSERT_TRUE(StatsView::open({ro.base, ro.size}, v));
  EXPECT_TRUE(v.refused(0).empty());
  put("no_route", "x.test");
  using namespace std::string_literals;
  const std::string evil = "<script>\x00\"\n</script>"s;  // a NUL, a quote, a newline inside
  put("hello:bad_host_name", evil);
  auto r = v.refused(0);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].reason, "hello:bad_host_name");
  EXPECT_EQ(r[0].name, evil);
  EXPECT_EQ(r[1].name, "x.test");
  EXPECT_EQ(r[1].unix_ms, 1000u);
  for (int i = 0; i < 20; ++i) put("rejected", "n" + std::to_string(i) + ".test");
  r = v.refused(0);
  ASSERT_EQ(r.size(), kRefusedRing);
  EXPECT_EQ(r[0].name, "n19.test");
  EXPECT_EQ(r.back().name, "n12.test");
}

}  // namespace
}  // namespace lode::stats

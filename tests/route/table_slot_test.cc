// TableSlot<T>: lock-free readers, epoch-based (QSBR) reclamation.
#include "dataplane/route/table_slot.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/route_table_builder.h"
#include "lodestone/route_table.h"

namespace lode::route {
namespace {

// Counts its destructions; `canary` is checked by readers (ASan reports a
// read of a freed one).
struct Tracked {
  Tracked(int g, std::atomic<int>* d) : gen(g), destroyed(d) {}
  ~Tracked() {
    canary = 0;
    destroyed->fetch_add(1);
  }
  int gen;
  std::atomic<int>* destroyed;
  uint64_t canary = 0xC0FFEE;
};

using Slot = TableSlot<Tracked>;

Slot::Reader register_ok(Slot& s) {
  auto r = s.register_reader();
  EXPECT_TRUE(r.has_value());
  return std::move(r).value();
}

TEST(TableSlot, ReaderSeesTheInitialThenThePublishedTable) {
  std::atomic<int> destroyed{0};
  Slot slot(std::make_unique<Tracked>(0, &destroyed));
  Slot::Reader r = register_ok(slot);
  ASSERT_NE(r.get(), nullptr);
  EXPECT_EQ(r.get()->gen, 0);
  slot.publish(std::make_unique<Tracked>(1, &destroyed));
  EXPECT_EQ(r.get()->gen, 1);
}

TEST(TableSlot, EmptySlotReadsNull) {
  Slot slot;
  Slot::Reader r = register_ok(slot);
  EXPECT_EQ(r.get(), nullptr);
}

TEST(TableSlot, RetiredTableIsKeptUntilTheReaderPassesAQuiescentPoint) {
  std::atomic<int> destroyed{0};
  Slot slot(std::make_unique<Tracked>(0, &destroyed));
  Slot::Reader r = register_ok(slot);
  const Tracked* held = r.get();
  EXPECT_EQ(slot.publish(std::make_unique<Tracked>(1, &destroyed)), 0u);
  EXPECT_EQ(slot.reclaim(), 0u);
  EXPECT_EQ(slot.retired_count(), 1u);
  EXPECT_EQ(destroyed.load(), 0);
  EXPECT_EQ(held->canary, 0xC0FFEEu);  // still readable
  r.quiescent();
  EXPECT_EQ(slot.reclaim(), 1u);
  EXPECT_EQ(destroyed.load(), 1);
  EXPECT_EQ(slot.retired_count(), 0u);
}

TEST(TableSlot, QuiescentBeforeThePublishDoesNotCount) {
  std::atomic<int> destroyed{0};
  Slot slot(std::make_unique<Tracked>(0, &destroyed));
  Slot::Reader r = register_ok(slot);
  r.quiescent();
  (void)r.get();
  slot.publish(std::make_unique<Tracked>(1, &destroyed));
  EXPECT_EQ(slot.reclaim(), 0u);
  EXPECT_EQ(destroyed.load(), 0);
}

TEST(TableSlot, EveryOnlineReaderMustPass) {
  std::atomic<int> destroyed{0};
  Slot slot(std::make_unique<Tracked>(0, &destroyed));
  Slot::Reader a = register_ok(slot);
  Slot::Reader b = register_ok(slot);
  EXPECT_NE(a.index(), b.index());
  slot.publish(std::make_unique<Tracked>(1, &destroyed));
  slot.publish(std::make_unique<Tracked>(2, &destroyed));
  a.quiescent();
  EXPECT_EQ(slot.reclaim(), 0u);
  EXPECT_EQ(destroyed.load(), 0);
  b.quiescent();
  EXPECT_EQ(slot.reclaim(), 2u);
  EXPECT_EQ(destroyed.load(), 2);
}

TEST(TableSlot, OnlyTablesRetiredBeforeTheSlowestReaderAreFreed) {
  std::atomic<int> destroyed{0};
  Slot slot(std::make_unique<Tracked>(0, &destroyed));
  Slot::Reader a = register_ok(slot);
  Slot::Reader b = register_ok(slot);
  EXPECT_EQ(slot.publish(std::make_unique<Tracked>(1, &destroyed)), 0u);  // retires 0
  b.quiescent();                                                          // b is past it
  EXPECT_EQ(slot.reclaim(), 0u);                                          // a is not
  a.quiescent();
  // Retires 1 and frees 0, which both readers are past.
  EXPECT_EQ(slot.publish(std::make_unique<Tracked>(2, &destroyed)), 1u);
  EXPECT_EQ(destroyed.load(), 1);
  b.quiescent();
  EXPECT_EQ(slot.reclaim(), 0u);  // a is not past the retire of 1
  EXPECT_EQ(slot.retired_count(), 1u);
  a.quiescent();
  EXPECT_EQ(slot.reclaim(), 1u);
  EXPECT_EQ(destroyed.load(), 2);
}

TEST(TableSlot, OfflineReaderDoesNotBlockReclamation) {
  std::atomic<int> destroyed{0};
  Slot slot(std::make_unique<Tracked>(0, &destroyed));
  Slot::Reader active = register_ok(slot);
  Slot::Reader sleeper = register_ok(slot);
  sleeper.offline();
  EXPECT_FALSE(sleeper.is_online());
  slot.publish(std::make_unique<Tracked>(1, &destroyed));
  active.quiescent();
  EXPECT_EQ(slot.reclaim(), 1u);
  EXPECT_EQ(destroyed.load(), 1);
  // Back online it sees the new table, and from then on it holds back frees.
  sleeper.online();
  EXPECT_EQ(sleeper.get()->gen, 1);
  slot.publish(std::make_unique<Tracked>(2, &destroyed));
  active.quiescent();
  EXPECT_EQ(slot.reclaim(), 0u);
  sleeper.quiescent();
  EXPECT_EQ(slot.reclaim(), 1u);
  EXPECT_EQ(destroyed.load(), 2);
}

TEST(TableSlot, NoReadersMeansImmediateReclamation) {
  std::atomic<int> destroyed{0};
  Slot slot(std::make_unique<Tracked>(0, &destroyed));
  EXPECT_EQ(slot.publish(std::make_unique<Tracked>(1, &destroyed)), 1u);
  EXPECT_EQ(destroyed.load(), 1);
}

TEST(TableSlot, UnregisteringReleasesWhatTheReaderHeldBack) {
  std::atomic<int> destroyed{0};
  Slot slot(std::make_unique<Tracked>(0, &destroyed));
  {
    Slot::Reader r = register_ok(slot);
    slot.publish(std::make_unique<Tracked>(1, &destroyed));
    EXPECT_EQ(destroyed.load(), 0);
  }
  EXPECT_EQ(destroyed.load(), 1);
  EXPECT_EQ(slot.reader_count(), 0u);
}

TEST(TableSlot, ReaderRegisteredAfterAPublishDoesNotHoldBackOlderTables) {
  std::atomic<int> destroyed{0};
  Slot slot(std::make_unique<Tracked>(0, &destroyed));
  Slot::Reader old_reader = register_ok(slot);
  slot.publish(std::make_unique<Tracked>(1, &destroyed));
  Slot::Reader late = register_ok(slot);
  old_reader.quiescent();
  EXPECT_EQ(slot.reclaim(), 1u);
}

TEST(TableSlot, AtMostMaxReaders) {
  Slot slot;
  std::vector<Slot::Reader> readers;
  for (uint32_t i = 0; i < Slot::kMaxReaders; ++i) readers.push_back(register_ok(slot));
  auto extra = slot.register_reader();
  ASSERT_FALSE(extra.has_value());
  EXPECT_EQ(extra.error(), SlotError::kTooManyReaders);
  readers.pop_back();  // frees one reader slot
  EXPECT_TRUE(slot.register_reader().has_value());
}

TEST(TableSlot, MovedReaderKeepsItsRegistration) {
  std::atomic<int> destroyed{0};
  Slot slot(std::make_unique<Tracked>(0, &destroyed));
  Slot::Reader a = register_ok(slot);
  Slot::Reader b = std::move(a);
  EXPECT_FALSE(static_cast<bool>(a));
  EXPECT_EQ(slot.reader_count(), 1u);
  slot.publish(std::make_unique<Tracked>(1, &destroyed));
  EXPECT_EQ(destroyed.load(), 0);
  b.quiescent();
  EXPECT_EQ(slot.reclaim(), 1u);
}

TEST(TableSlot, DestructorFreesTheCurrentAndTheRetired) {
  std::atomic<int> destroyed{0};
  {
    Slot slot(std::make_unique<Tracked>(0, &destroyed));
    Slot::Reader r = register_ok(slot);
    slot.publish(std::make_unique<Tracked>(1, &destroyed));
    slot.publish(std::make_unique<Tracked>(2, &destroyed));
    EXPECT_EQ(destroyed.load(), 0);
    r.reset();
  }
  EXPECT_EQ(destroyed.load(), 3);
}

// A reader in another thread holds a table across the writer's publish and
// reclaim: nothing is freed until it says it has let go.
TEST(TableSlot, TableHeldByAnotherThreadIsNotFreedUnderIt) {
  std::atomic<int> destroyed{0};
  Slot slot(std::make_unique<Tracked>(0, &destroyed));
  std::mutex m;
  std::condition_variable cv;
  int step = 0;
  auto wait_for = [&](int s) {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return step >= s; });
  };
  auto advance = [&](int s) {
    {
      std::lock_guard lock(m);
      step = s;
    }
    cv.notify_all();
  };
  std::thread reader([&] {
    Slot::Reader r = register_ok(slot);
    const Tracked* held = r.get();
    advance(1);
    wait_for(2);  // the writer has published and tried to reclaim
    EXPECT_EQ(held->canary, 0xC0FFEEu);
    EXPECT_EQ(held->gen, 0);
    r.quiescent();
    advance(3);
    wait_for(4);
  });
  wait_for(1);
  slot.publish(std::make_unique<Tracked>(1, &destroyed));
  for (int i = 0; i < 10; ++i) EXPECT_EQ(slot.reclaim(), 0u);
  EXPECT_EQ(destroyed.load(), 0);
  advance(2);
  wait_for(3);
  EXPECT_EQ(slot.reclaim(), 1u);
  EXPECT_EQ(destroyed.load(), 1);
  advance(4);
  reader.join();
}

// Route tables under load: reader threads look names up while a writer
// publishes 2,000 generations. Generation g routes every name to a route
// whose pool index is g, so a reader can tell a torn or freed table.
struct Generation {
  FlatTable table;
  RouteTableView view;
  uint32_t gen = 0;
  std::atomic<int>* destroyed = nullptr;
  ~Generation() {
    if (destroyed != nullptr) destroyed->fetch_add(1);
  }
};

constexpr int kNamesPerTable = 16;

std::string test_name(int i) {
  return "host" + std::to_string(i) + ".example.com";
}

std::unique_ptr<const Generation> make_generation(uint32_t gen, std::atomic<int>* destroyed) {
  RouteTableBuilder b(0x1234 + gen);
  const uint32_t r = b.add_route({"gen", Action::kTerminate, 0, gen, gen});
  for (int i = 0; i < kNamesPerTable; ++i) EXPECT_TRUE(b.add_name(test_name(i), r).has_value());
  EXPECT_TRUE(b.add_name("*.wild.example.com", r).has_value());
  auto g = std::make_unique<Generation>();
  g->table = std::move(b.build()).value();
  g->view = *RouteTableView::open(g->table.bytes());
  g->gen = gen;
  g->destroyed = destroyed;
  return g;
}

TEST(TableSlot, ReadersHammerLookupsWhileTheWriterPublishes) {
  constexpr int kReaders = 4;
  constexpr uint32_t kPublications = 2000;
  std::atomic<int> destroyed{0};
  TableSlot<Generation> slot(make_generation(0, &destroyed));
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::atomic<uint64_t> lookups{0};
  std::vector<std::thread> readers;
  std::vector<std::string> names;
  for (int i = 0; i < kNamesPerTable; ++i) names.push_back(test_name(i));

  std::atomic<int> ready{0};
  std::atomic<uint64_t> passes{0};
  for (int t = 0; t < kReaders; ++t) {
    readers.emplace_back([&, t] {
      auto reg = slot.register_reader();
      ready.fetch_add(1);
      if (!reg) {
        failures.fetch_add(1);
        return;
      }
      auto r = std::move(reg).value();
      uint32_t last_gen = 0;
      uint64_t n = 0;
      for (uint64_t pass = 0; !stop.load(std::memory_order_relaxed); ++pass) {
        const Generation* g = r.get();
        if (g->gen < last_gen) failures.fetch_add(1);  // generations never go back
        last_gen = g->gen;
        for (int i = 0; i < 8; ++i) {
          const Match m = g->view.find(names[(pass + i) % names.size()]);
          if (m.kind != MatchKind::kExact || g->view.route(m.route).pool != g->gen)
            failures.fetch_add(1);
        }
        const Match w = g->view.find("x.wild.example.com");
        if (w.kind != MatchKind::kWildcard || g->view.route(w.route).cert != g->gen)
          failures.fetch_add(1);
        n += 9;
        r.quiescent();
        passes.fetch_add(1, std::memory_order_relaxed);
        if ((pass + t) % 64 == 0) {  // sometimes sleep, offline
          r.offline();
          std::this_thread::yield();
          r.online();
        }
      }
      lookups.fetch_add(n);
    });
  }
  while (ready.load() < kReaders) std::this_thread::yield();
  for (uint32_t gen = 1; gen <= kPublications; ++gen) {
    slot.publish(make_generation(gen, &destroyed));
    // Let the readers run between publications (bounded: a reader that is
    // descheduled must not stall the test).
    const uint64_t seen = passes.load();
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(1);
    while (passes.load() < seen + kReaders && std::chrono::steady_clock::now() < until) {
      std::this_thread::yield();
    }
  }
  stop.store(true);
  for (auto& th : readers) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(lookups.load(), 0u);
  slot.reclaim();
  EXPECT_EQ(slot.retired_count(), 0u);                           // all readers gone
  EXPECT_EQ(destroyed.load(), static_cast<int>(kPublications));  // all but the current
}

}  // namespace
}  // namespace lode::route

// dataplane/control/persistent_map.h: the path-copying hash trie that holds
// the dataplane's certificates. Persistence (an old map never changes),
// correctness at 100,000 keys and under trie-level hash collisions, and the
// point of it all: one set() on a big map copies one path, not the map.
#include "dataplane/control/persistent_map.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace lode::control {
namespace {

std::string key_of(int i) { return "name:host-" + std::to_string(i) + ".example.com"; }

using IntMap = PersistentMap<int>;

IntMap build(int n) {
  IntMap m;
  for (int i = 0; i < n; ++i) m = m.set(key_of(i), i);
  return m;
}

// A value that counts how often it is copied.
struct Counted {
  static inline int copies = 0;
  int v = 0;
  Counted() = default;
  explicit Counted(int x) : v(x) {}
  Counted(const Counted& o) : v(o.v) { ++copies; }
  Counted(Counted&& o) noexcept : v(o.v) {}
  Counted& operator=(const Counted& o) {
    v = o.v;
    ++copies;
    return *this;
  }
  Counted& operator=(Counted&& o) noexcept {
    v = o.v;
    return *this;
  }
};

std::map<std::string, int> contents(const IntMap& m) {
  std::map<std::string, int> out;
  m.for_each([&](std::string_view k, const int& v) {
    const bool fresh = out.emplace(std::string(k), v).second;
    EXPECT_TRUE(fresh) << "visited twice: " << k;
  });
  return out;
}

TEST(PersistentMap, EmptyMapHasNothing) {
  const IntMap m;
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(m.size(), 0u);
  EXPECT_EQ(m.find("a"), nullptr);
  EXPECT_EQ(m.find(""), nullptr);
  const IntMap e = m.erase("a");
  EXPECT_TRUE(e.empty());
  int visits = 0;
  m.for_each([&](std::string_view, const int&) { ++visits; });
  EXPECT_EQ(visits, 0);
}

TEST(PersistentMap, SetFindErase) {
  IntMap m = IntMap().set("a", 1).set("b", 2).set("", 3);
  EXPECT_EQ(m.size(), 3u);
  EXPECT_FALSE(m.empty());
  ASSERT_NE(m.find("a"), nullptr);
  EXPECT_EQ(*m.find("a"), 1);
  EXPECT_EQ(*m.find("b"), 2);
  EXPECT_EQ(*m.find(""), 3);
  EXPECT_EQ(m.find("c"), nullptr);
  EXPECT_EQ(m.find("A"), nullptr);
  EXPECT_EQ(m.find("a "), nullptr);

  m = m.erase("a");
  EXPECT_EQ(m.size(), 2u);
  EXPECT_EQ(m.find("a"), nullptr);
  EXPECT_EQ(*m.find("b"), 2);
  m = m.erase("b").erase("");
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(m.find("b"), nullptr);
  // Usable again after becoming empty.
  m = m.set("b", 5);
  EXPECT_EQ(m.size(), 1u);
  EXPECT_EQ(*m.find("b"), 5);
}

TEST(PersistentMap, OldMapUnchangedBySetAndErase) {
  const IntMap m1 = IntMap().set("a", 1).set("b", 2);
  const IntMap m2 = m1.set("c", 3).set("a", 10);
  const IntMap m3 = m2.erase("b");

  EXPECT_EQ(m1.size(), 2u);
  EXPECT_EQ(*m1.find("a"), 1);
  EXPECT_EQ(*m1.find("b"), 2);
  EXPECT_EQ(m1.find("c"), nullptr);

  EXPECT_EQ(m2.size(), 3u);
  EXPECT_EQ(*m2.find("a"), 10);
  EXPECT_EQ(*m2.find("b"), 2);
  EXPECT_EQ(*m2.find("c"), 3);

  EXPECT_EQ(m3.size(), 2u);
  EXPECT_EQ(m3.find("b"), nullptr);
  EXPECT_EQ(*m3.find("a"), 10);

  const std::map<std::string, int> want1{{"a", 1}, {"b", 2}};
  EXPECT_EQ(contents(m1), want1);
}

TEST(PersistentMap, HundredThousandKeys) {
  constexpr int kN = 100'000;
  const IntMap full = build(kN);
  ASSERT_EQ(full.size(), static_cast<size_t>(kN));
  int missing = 0, wrong = 0;
  for (int i = 0; i < kN; ++i) {
    const int* v = full.find(key_of(i));
    if (v == nullptr) {
      ++missing;
    } else if (*v != i) {
      ++wrong;
    }
  }
  EXPECT_EQ(missing, 0);
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(full.find(key_of(kN)), nullptr);

  IntMap half = full;
  for (int i = 0; i < kN; i += 2) half = half.erase(key_of(i));
  EXPECT_EQ(half.size(), static_cast<size_t>(kN / 2));
  int still_there = 0, gone = 0;
  for (int i = 0; i < kN; ++i) {
    const int* v = half.find(key_of(i));
    if (i % 2 == 0) {
      still_there += v != nullptr;
    } else {
      gone += v == nullptr || *v != i;
    }
  }
  EXPECT_EQ(still_there, 0);
  EXPECT_EQ(gone, 0);
  // The full map did not change under the erasures.
  EXPECT_EQ(full.size(), static_cast<size_t>(kN));
  int lost = 0;
  for (int i = 0; i < kN; i += 2) lost += full.find(key_of(i)) == nullptr;
  EXPECT_EQ(lost, 0);
  size_t visited = 0;
  half.for_each([&](std::string_view, const int& v) {
    ++visited;
    EXPECT_EQ(v % 2, 1);
  });
  EXPECT_EQ(visited, static_cast<size_t>(kN / 2));

  // Erase the rest: the map is empty, and every key gone.
  for (int i = 1; i < kN; i += 2) half = half.erase(key_of(i));
  EXPECT_TRUE(half.empty());
  EXPECT_EQ(half.find(key_of(1)), nullptr);
}

TEST(PersistentMap, KeysSharingPrefixesAreDistinct) {
  IntMap m;
  const std::string prefix = "dir:certs/" + std::string(500, 'p');
  std::vector<std::string> keys;
  for (int c = 0x21; c < 0x7f; ++c) keys.push_back(prefix + static_cast<char>(c));
  for (size_t n = 1; n <= 40; ++n) keys.push_back(std::string(n, 'a'));  // each a prefix of the next
  keys.push_back(prefix);
  for (size_t i = 0; i < keys.size(); ++i) m = m.set(keys[i], static_cast<int>(i));
  ASSERT_EQ(m.size(), keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    const int* v = m.find(keys[i]);
    ASSERT_NE(v, nullptr) << keys[i];
    EXPECT_EQ(*v, static_cast<int>(i)) << keys[i];
  }
  EXPECT_EQ(m.find(std::string(41, 'a')), nullptr);
  EXPECT_EQ(m.find(prefix.substr(0, prefix.size() - 1)), nullptr);
}

// Keys whose hashes agree in their low 20 bits land in one slot for five trie
// levels: the leaf splits cascade down before the keys part.
TEST(PersistentMap, KeysCollidingInTheTrie) {
  constexpr uint64_t kMask = (1u << 20) - 1;
  std::vector<std::string> keys;
  const uint64_t target = IntMap::hash_of("name:seed") & kMask;
  keys.push_back("name:seed");
  for (uint64_t i = 0; keys.size() < 12 && i < 200'000'000; ++i) {
    std::string k = "name:c" + std::to_string(i);
    if ((IntMap::hash_of(k) & kMask) == target) keys.push_back(std::move(k));
  }
  ASSERT_EQ(keys.size(), 12u);

  IntMap m;
  std::vector<IntMap> history;
  for (size_t i = 0; i < keys.size(); ++i) {
    history.push_back(m);
    m = m.set(keys[i], static_cast<int>(i));
    for (size_t j = 0; j <= i; ++j) {
      const int* v = m.find(keys[j]);
      ASSERT_NE(v, nullptr) << "after " << i << " sets, key " << j;
      EXPECT_EQ(*v, static_cast<int>(j));
    }
  }
  EXPECT_EQ(m.size(), keys.size());
  // Every earlier version still holds exactly its own keys.
  for (size_t i = 0; i < history.size(); ++i) {
    EXPECT_EQ(history[i].size(), i);
    EXPECT_EQ(contents(history[i]).size(), i);
    if (i > 0) EXPECT_NE(history[i].find(keys[i - 1]), nullptr);
    EXPECT_EQ(history[i].find(keys[i]), nullptr);
  }
  // Replace inside the deep leaves, then erase one at a time.
  m = m.set(keys[5], 500);
  EXPECT_EQ(m.size(), keys.size());
  EXPECT_EQ(*m.find(keys[5]), 500);
  for (size_t i = 0; i < keys.size(); ++i) {
    m = m.erase(keys[i]);
    EXPECT_EQ(m.size(), keys.size() - i - 1);
    EXPECT_EQ(m.find(keys[i]), nullptr);
    for (size_t j = i + 1; j < keys.size(); ++j) ASSERT_NE(m.find(keys[j]), nullptr) << i << "," << j;
  }
  EXPECT_TRUE(m.empty());
}

TEST(PersistentMap, ReplacingKeepsSize) {
  const IntMap m = build(1000);
  const IntMap r = m.set(key_of(500), -1);
  EXPECT_EQ(r.size(), 1000u);
  EXPECT_EQ(*r.find(key_of(500)), -1);
  EXPECT_EQ(*m.find(key_of(500)), 500);
  size_t n = 0;
  r.for_each([&](std::string_view, const int&) { ++n; });
  EXPECT_EQ(n, 1000u);
  // Setting the same value again is a replacement too.
  EXPECT_EQ(r.set(key_of(500), -1).size(), 1000u);
}

TEST(PersistentMap, EraseOfMissingKeyReturnsEqualMap) {
  const IntMap m = build(5000);
  const IntMap same = m.erase("name:not-there");
  EXPECT_EQ(same.size(), m.size());
  // Not a copy: the very same nodes.
  int shared = 0;
  for (int i = 0; i < 5000; ++i) shared += same.find(key_of(i)) == m.find(key_of(i));
  EXPECT_EQ(shared, 5000);
  const IntMap empty;
  EXPECT_TRUE(empty.erase("x").empty());
}

TEST(PersistentMap, ForEachVisitsEveryEntryOnce) {
  const IntMap m = build(20'000);
  const auto seen = contents(m);  // fails on a key visited twice
  ASSERT_EQ(seen.size(), 20'000u);
  for (int i = 0; i < 20'000; ++i) {
    const auto it = seen.find(key_of(i));
    ASSERT_NE(it, seen.end()) << i;
    EXPECT_EQ(it->second, i);
  }
}

// The reason for the structure: one set() on a 100,000-entry map copies one
// root-to-leaf path. Counted copies of values and shared value addresses say
// how much was copied, whatever the machine's speed.
TEST(PersistentMap, OneSetOnALargeMapSharesAlmostEverything) {
  constexpr int kN = 100'000;
  PersistentMap<Counted> m;
  for (int i = 0; i < kN; ++i) m = m.set(key_of(i), Counted(i));

  Counted::copies = 0;
  const PersistentMap<Counted> added = m.set("name:new", Counted(-1));
  // The leaf on the path (at most 8 entries), plus, when that leaf splits,
  // the entries re-inserted into its new children.
  EXPECT_LE(Counted::copies, 48) << "values copied by one insertion";
  Counted::copies = 0;
  const PersistentMap<Counted> replaced = m.set(key_of(777), Counted(-2));
  EXPECT_LE(Counted::copies, 8) << "values copied by one replacement";
  Counted::copies = 0;
  const PersistentMap<Counted> erased = m.erase(key_of(4242));
  EXPECT_LE(Counted::copies, 8) << "values copied by one erasure";

  int shared_added = 0, shared_replaced = 0, shared_erased = 0;
  for (int i = 0; i < kN; ++i) {
    const std::string k = key_of(i);
    const Counted* old = m.find(k);
    ASSERT_NE(old, nullptr);
    shared_added += added.find(k) == old;
    shared_replaced += replaced.find(k) == old;
    shared_erased += erased.find(k) == old;
  }
  // Only the one leaf on the path (at most 8 entries) is a copy.
  EXPECT_GE(shared_added, kN - 8);
  EXPECT_GE(shared_replaced, kN - 8);
  EXPECT_GE(shared_erased, kN - 8);
  EXPECT_EQ(added.find("name:new")->v, -1);
  EXPECT_EQ(replaced.find(key_of(777))->v, -2);
  EXPECT_EQ(m.find(key_of(777))->v, 777);
  EXPECT_EQ(erased.find(key_of(4242)), nullptr);
  EXPECT_EQ(erased.size(), static_cast<size_t>(kN - 1));
}

TEST(PersistentMap, SharedValuesAreReleasedWithTheLastMap) {
  auto value = std::make_shared<int>(7);
  std::weak_ptr<int> weak = value;
  {
    PersistentMap<std::shared_ptr<int>> m;
    for (int i = 0; i < 100; ++i) m = m.set(key_of(i), std::make_shared<int>(i));
    m = m.set("held", std::move(value));
    const auto m2 = m.erase("held");
    EXPECT_FALSE(weak.expired());    // m still holds it
    EXPECT_EQ(weak.use_count(), 1);  // in one leaf of m; m2's copy of that leaf left it out
    m = m2;
    EXPECT_TRUE(weak.expired());
  }
}

TEST(PersistentMap, ReadersOfAnOldMapAreUndisturbedByWriters) {
  const IntMap base = build(20'000);
  std::atomic<bool> done{false};
  std::atomic<int> errors{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      int i = t;
      while (!done.load(std::memory_order_relaxed)) {
        const int* v = base.find(key_of(i % 20'000));
        if (v == nullptr || *v != i % 20'000) errors.fetch_add(1);
        i += 7;
      }
    });
  }
  IntMap w = base;
  for (int i = 0; i < 20'000; ++i) {
    w = (i % 3 == 0) ? w.erase(key_of(i)) : w.set(key_of(i), -i);
  }
  done = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(base.size(), 20'000u);
  EXPECT_EQ(*base.find(key_of(3)), 3);
  EXPECT_EQ(w.find(key_of(3)), nullptr);
  EXPECT_EQ(*w.find(key_of(4)), -4);
}

}  // namespace
}  // namespace lode::control

#include "dataplane/route/maglev.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace lode::route {
namespace {

// Owns the identity strings the MaglevBackend views point at.
struct Backends {
  std::vector<std::string> ids;
  std::vector<uint32_t> weights;

  static Backends numbered(int n, uint32_t weight = 1) {
    Backends b;
    for (int i = 0; i < n; ++i)
      b.add("10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1) + ":443", weight);
    return b;
  }
  void add(std::string id, uint32_t weight) {
    ids.push_back(std::move(id));
    weights.push_back(weight);
  }
  void remove(size_t i) {
    ids.erase(ids.begin() + static_cast<long>(i));
    weights.erase(weights.begin() + static_cast<long>(i));
  }
  std::vector<MaglevBackend> list() const {
    std::vector<MaglevBackend> v;
    for (size_t i = 0; i < ids.size(); ++i) v.push_back({ids[i], weights[i]});
    return v;
  }
};

MaglevTable build_ok(const Backends& b, uint32_t m = kMaglevDefaultTableSize) {
  auto t = MaglevTable::build(b.list(), m);
  EXPECT_TRUE(t.has_value()) << (t ? "" : to_string(t.error()));
  return std::move(t).value();
}

MaglevError build_error(const std::vector<MaglevBackend>& list,
                        uint32_t m = kMaglevDefaultTableSize) {
  auto t = MaglevTable::build(list, m);
  EXPECT_FALSE(t.has_value());
  return t ? MaglevError::kNoBackends : t.error();
}

std::vector<uint32_t> slot_counts(const MaglevTable& t) {
  std::vector<uint32_t> c(t.backend_count());
  for (uint16_t s : t.slots()) ++c.at(s);
  return c;
}

// Fraction of slots whose backend identity differs between two tables.
double moved_fraction(const MaglevTable& a, const Backends& ba, const MaglevTable& b,
                      const Backends& bb) {
  EXPECT_EQ(a.size(), b.size());
  uint32_t moved = 0;
  for (uint32_t k = 0; k < a.size(); ++k) {
    if (ba.ids[a.slots()[k]] != bb.ids[b.slots()[k]]) ++moved;
  }
  return static_cast<double>(moved) / a.size();
}

// --- Errors --------------------------------------------------------------------

TEST(MaglevBuild, ZeroBackendsRefused) {
  EXPECT_EQ(build_error({}), MaglevError::kNoBackends);
}

TEST(MaglevBuild, AllWeightsZeroRefused) {
  EXPECT_EQ(build_error({{"a:1", 0}, {"b:1", 0}}), MaglevError::kAllWeightsZero);
  EXPECT_EQ(build_error({{"a:1", 0}}), MaglevError::kAllWeightsZero);
}

TEST(MaglevBuild, TableSizeNotPrimeRefused) {
  EXPECT_EQ(build_error({{"a:1", 1}}, 65536), MaglevError::kTableSizeNotPrime);
  EXPECT_EQ(build_error({{"a:1", 1}}, 65535), MaglevError::kTableSizeNotPrime);
  EXPECT_EQ(build_error({{"a:1", 1}}, 10403), MaglevError::kTableSizeNotPrime);  // 101 * 103
}

TEST(MaglevBuild, TableSizeOutOfRangeRefused) {
  EXPECT_EQ(build_error({{"a:1", 1}}, 0), MaglevError::kTableSizeOutOfRange);
  EXPECT_EQ(build_error({{"a:1", 1}}, 97), MaglevError::kTableSizeOutOfRange);  // prime, small
  EXPECT_EQ(build_error({{"a:1", 1}}, 16777259), MaglevError::kTableSizeOutOfRange);  // prime, big
}

TEST(MaglevBuild, TableBelowHundredSlotsPerBackendRefused) {
  const Backends two = Backends::numbered(2);
  EXPECT_EQ(build_error(two.list(), 199), MaglevError::kTableTooSmall);  // prime < 200
  EXPECT_TRUE(MaglevTable::build(two.list(), 211).has_value());
  const Backends many = Backends::numbered(656);  // 65,600 > 65,537
  EXPECT_EQ(build_error(many.list()), MaglevError::kTableTooSmall);
  EXPECT_TRUE(MaglevTable::build(many.list(), 100003).has_value());
}

TEST(MaglevBuild, TooManyBackendsRefused) {
  const std::vector<MaglevBackend> list(kMaglevMaxBackends + 1, MaglevBackend{"x", 1});
  EXPECT_EQ(build_error(list, kMaglevMaxTableSize), MaglevError::kTooManyBackends);
}

TEST(MaglevBuild, EmptyIdentityRefused) {
  EXPECT_EQ(build_error({{"a:1", 1}, {"", 1}}), MaglevError::kEmptyId);
}

TEST(MaglevBuild, DuplicateIdentityRefused) {
  EXPECT_EQ(build_error({{"a:1", 1}, {"b:1", 1}, {"a:1", 2}}), MaglevError::kDuplicateId);
}

TEST(MaglevBuild, WeightAboveMaximumRefused) {
  EXPECT_EQ(build_error({{"a:1", 1}, {"b:1", kMaglevMaxWeight + 1}}), MaglevError::kWeightTooLarge);
}

TEST(MaglevBuild, ErrorsHaveMessages) {
  for (auto e :
       {MaglevError::kNoBackends, MaglevError::kTooManyBackends, MaglevError::kTableSizeNotPrime,
        MaglevError::kTableSizeOutOfRange, MaglevError::kTableTooSmall, MaglevError::kEmptyId,
        MaglevError::kDuplicateId, MaglevError::kWeightTooLarge, MaglevError::kAllWeightsZero}) {
    EXPECT_FALSE(to_string(e).empty());
    EXPECT_NE(to_string(e), "bad Maglev table");
  }
}

TEST(MaglevPrime, SmallAndLarge) {
  EXPECT_FALSE(is_prime(0));
  EXPECT_FALSE(is_prime(1));
  EXPECT_TRUE(is_prime(2));
  EXPECT_TRUE(is_prime(3));
  EXPECT_FALSE(is_prime(4));
  EXPECT_FALSE(is_prime(9));
  EXPECT_TRUE(is_prime(65537));
  EXPECT_TRUE(is_prime(kMaglevMaxTableSize));
  EXPECT_FALSE(is_prime(65537u * 3));
  EXPECT_FALSE(is_prime(4294967295u));  // 3 * 5 * 17 * 257 * 65537
  EXPECT_TRUE(is_prime(4294967291u));   // largest 32-bit prime
}

// --- Population ----------------------------------------------------------------

TEST(MaglevTable, EverySlotHoldsABackend) {
  for (int n : {1, 2, 7, 64}) {
    const Backends b = Backends::numbered(n);
    const MaglevTable t = build_ok(b);
    ASSERT_EQ(t.size(), kMaglevDefaultTableSize);
    ASSERT_EQ(t.backend_count(), static_cast<uint32_t>(n));
    for (uint16_t s : t.slots()) ASSERT_LT(s, n);
  }
}

TEST(MaglevTable, LookupIsSlotOfKeyModuloSize) {
  const Backends b = Backends::numbered(5);
  const MaglevTable t = build_ok(b, 1009);
  for (uint64_t key : {uint64_t{0}, uint64_t{1}, uint64_t{1008}, uint64_t{1009},
                       uint64_t{0xFFFFFFFFFFFFFFFF}, uint64_t{0x123456789abcdef0}}) {
    EXPECT_EQ(t.lookup(key), t.slots()[key % 1009]) << key;
  }
}

TEST(MaglevTable, EqualWeightsShareEqually) {
  for (int n : {3, 10, 100}) {
    const Backends b = Backends::numbered(n);
    const MaglevTable t = build_ok(b);
    const double ideal = static_cast<double>(t.size()) / n;
    for (uint32_t c : slot_counts(t)) {
      // Weighted turns give exact shares give or take a slot; allow 2.
      EXPECT_LE(std::fabs(c - ideal), 2.0) << "n=" << n << " count=" << c;
    }
  }
}

TEST(MaglevTable, UnequalWeightsShareByWeight) {
  Backends b;
  b.add("10.0.0.1:443", 1);
  b.add("10.0.0.2:443", 2);
  b.add("10.0.0.3:443", 3);
  b.add("10.0.0.4:443", 10);
  b.add("10.0.0.5:443", 100);
  const MaglevTable t = build_ok(b);
  const std::vector<uint32_t> c = slot_counts(t);
  for (size_t i = 0; i < c.size(); ++i) {
    const double ideal = static_cast<double>(t.size()) * b.weights[i] / 116.0;
    EXPECT_LE(std::fabs(c[i] - ideal), std::max(2.0, ideal * 0.001)) << "backend " << i;
  }
}

TEST(MaglevTable, ExtremeWeightRatioStillProportional) {
  Backends b;
  b.add("big:1", kMaglevMaxWeight);
  b.add("small:1", 1);
  const MaglevTable t = build_ok(b);
  const std::vector<uint32_t> c = slot_counts(t);
  EXPECT_LE(c[1], 2u);  // ideal: 65537 / 65536 = 1 slot
  EXPECT_EQ(c[0] + c[1], t.size());
}

TEST(MaglevTable, ZeroWeightBackendHoldsNoSlot) {
  Backends b = Backends::numbered(4);
  b.weights[2] = 0;
  const MaglevTable t = build_ok(b);
  const std::vector<uint32_t> c = slot_counts(t);
  EXPECT_EQ(c[2], 0u);
  for (size_t i : {0, 1, 3}) EXPECT_NEAR(c[i], t.size() / 3.0, 2.0);
}

TEST(MaglevTable, SmallPrimeTableFilled) {
  const Backends b = Backends::numbered(3);
  const MaglevTable t = build_ok(b, 307);
  for (uint32_t c : slot_counts(t)) EXPECT_NEAR(c, 307 / 3.0, 1.0);
}

// --- Determinism ------------------------------------------------------------------

TEST(MaglevTable, SameInputGivesIdenticalTable) {
  const Backends b = Backends::numbered(17, 3);
  const MaglevTable t1 = build_ok(b);
  const MaglevTable t2 = build_ok(b);
  ASSERT_TRUE(
      std::equal(t1.slots().begin(), t1.slots().end(), t2.slots().begin(), t2.slots().end()));
  EXPECT_EQ(t1.fingerprint(), t2.fingerprint());
}

TEST(MaglevTable, ListOrderDoesNotMatter) {
  Backends b = Backends::numbered(9);
  b.weights = {1, 2, 3, 1, 2, 3, 1, 2, 3};
  Backends r;
  for (size_t i = b.ids.size(); i-- > 0;) r.add(b.ids[i], b.weights[i]);
  const MaglevTable tb = build_ok(b);
  const MaglevTable tr = build_ok(r);
  EXPECT_EQ(moved_fraction(tb, b, tr, r), 0.0);
}

TEST(MaglevTable, DifferentWeightsOrSizeGiveDifferentTables) {
  const Backends b = Backends::numbered(4);
  Backends w = b;
  w.weights[0] = 2;
  EXPECT_NE(build_ok(b).fingerprint(), build_ok(w).fingerprint());
  EXPECT_NE(build_ok(b, 65521).fingerprint(), build_ok(b).fingerprint());
}

// A change to name_hash, the seeds or the population changes these: every
// node would have to be upgraded together. Update them only on purpose.
TEST(MaglevTable, GoldenFingerprint) {
  const Backends equal = Backends::numbered(10);
  EXPECT_EQ(build_ok(equal).fingerprint(), 0xfcf5b39161da8c25ull);
  Backends weighted;
  weighted.add("10.0.0.1:443", 1);
  weighted.add("10.0.0.2:443", 2);
  weighted.add("[2001:db8::1]:8443", 5);
  EXPECT_EQ(build_ok(weighted, 1009).fingerprint(), 0x1a90cdd804879c65ull);
  const MaglevTable small = build_ok(weighted, 1009);
  // The first slots, spelled out, so a failure shows what changed.
  const std::vector<uint16_t> head(small.slots().begin(), small.slots().begin() + 16);
  EXPECT_EQ(head, (std::vector<uint16_t>{2, 2, 2, 1, 1, 2, 2, 2, 2, 2, 0, 2, 2, 1, 1, 2}));
}

// --- Disruption --------------------------------------------------------------------

constexpr double kSlack = 0.01;  // measured: < 0.7% for these sizes

TEST(MaglevDisruption, RemovingOneBackendMovesAboutOneNth) {
  for (int n : {5, 10, 50}) {
    const Backends before = Backends::numbered(n);
    const MaglevTable t0 = build_ok(before);
    for (size_t gone : {size_t{0}, static_cast<size_t>(n / 2), static_cast<size_t>(n - 1)}) {
      Backends after = before;
      after.remove(gone);
      const MaglevTable t1 = build_ok(after);
      const double moved = moved_fraction(t0, before, t1, after);
      EXPECT_LE(moved, 1.0 / n + kSlack) << "n=" << n << " removed " << gone;
      EXPECT_GE(moved, 1.0 / n - 0.001);  // the removed backend's slots did move
      // Slots that were not the removed backend's mostly stay put.
      uint32_t kept_moved = 0, kept = 0;
      for (uint32_t k = 0; k < t0.size(); ++k) {
        if (t0.slots()[k] == gone) continue;
        ++kept;
        if (before.ids[t0.slots()[k]] != after.ids[t1.slots()[k]]) ++kept_moved;
      }
      EXPECT_LE(static_cast<double>(kept_moved) / kept, kSlack);
    }
  }
}

TEST(MaglevDisruption, AddingOneBackendMovesAboutOneNthPlusOne) {
  for (int n : {4, 10, 50}) {
    const Backends before = Backends::numbered(n);
    Backends after = before;
    after.add("192.168.77.7:443", 1);
    const double moved = moved_fraction(build_ok(before), before, build_ok(after), after);
    EXPECT_LE(moved, 1.0 / (n + 1) + kSlack) << "n=" << n;
  }
}

TEST(MaglevDisruption, RemovingAWeightedBackendMovesItsShare) {
  Backends before;
  before.add("10.0.0.1:443", 1);
  before.add("10.0.0.2:443", 2);
  before.add("10.0.0.3:443", 3);
  before.add("10.0.0.4:443", 4);
  Backends after = before;
  after.remove(3);  // 4/10 of the slots
  const double moved = moved_fraction(build_ok(before), before, build_ok(after), after);
  EXPECT_LE(moved, 0.4 + kSlack);
  EXPECT_GE(moved, 0.4 - 0.001);
}

TEST(MaglevDisruption, DrainingToZeroWeightMatchesRemoval) {
  Backends drained = Backends::numbered(8);
  drained.weights[3] = 0;
  Backends removed = Backends::numbered(8);
  removed.remove(3);
  EXPECT_EQ(moved_fraction(build_ok(drained), drained, build_ok(removed), removed), 0.0);
}

}  // namespace
}  // namespace lode::route

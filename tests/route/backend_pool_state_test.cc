// Backend pools with the control plane's state (dataplane/route/
// backend_pool.h): health-checked down and drained backends are not picked
// for new connections, effective weights, when_all_down = fail_open | reject,
// and passive health composed with active health.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "dataplane/route/backend_pool.h"

namespace lode::route {
namespace {

struct B {
  uint32_t weight = 1;
  bool down = false;
  bool drained = false;
};

PoolSpec spec_of(Algorithm algo, const std::vector<B>& backends, AllDownPolicy policy = AllDownPolicy::kFailOpen) {
  PoolSpec s;
  s.algorithm = algo;
  s.when_all_down = policy;
  s.maglev_table_size = 1009;
  for (size_t i = 0; i < backends.size(); ++i) {
    BackendSpec b;
    b.address = *parse_socket_address("10.0.0." + std::to_string(i + 1) + ":443");
    b.weight = backends[i].weight;
    b.down = backends[i].down;
    b.drained = backends[i].drained;
    s.backends.push_back(b);
  }
  return s;
}

BackendPool build(PoolSpec s) {
  auto p = BackendPool::build(std::move(s));
  EXPECT_TRUE(p.has_value());
  return std::move(p).value();
}

// A connection's keys: a client address and an SNI (each Maglev algorithm
// hashes its own; without it, it would fall back to round robin).
struct Keys {
  SocketAddress client;
  std::string sni;
  explicit Keys(int i)
      : client(*parse_socket_address("192.0.2." + std::to_string(i % 250 + 1) + ":1000")),
        sni("host" + std::to_string(i) + ".example") {}
  PickContext context(uint64_t now = 0) const {
    PickContext ctx;
    ctx.client = &client;
    ctx.sni = sni;
    ctx.now_ms = now;
    return ctx;
  }
};

// Counts of picks per backend over `n` connections (each closed at once).
std::map<uint32_t, int> picks(const BackendPool& pool, PoolState& st, int n, uint64_t now = 0) {
  std::map<uint32_t, int> out;
  for (int i = 0; i < n; ++i) {
    TriedSet tried;
    const Keys keys(i);
    const PickContext ctx = keys.context(now);
    auto r = pool.pick(st, ctx, tried);
    if (!r) {
      ++out[kNoBackend];
      continue;
    }
    ++out[*r];
    pool.on_close(st, *r);
  }
  return out;
}

class EveryAlgorithm : public ::testing::TestWithParam<Algorithm> {};

TEST_P(EveryAlgorithm, DownAndDrainedBackendsGetNoNewConnection) {
  const BackendPool pool = build(spec_of(GetParam(), {{1, true, false}, {1, false, true}, {1}, {1}}));
  PoolState st(pool);
  const auto got = picks(pool, st, 200);
  EXPECT_EQ(got.count(0), 0u);
  EXPECT_EQ(got.count(1), 0u);
  EXPECT_GT(got.at(2), 0);
  EXPECT_GT(got.at(3), 0);
  EXPECT_EQ(got.count(kNoBackend), 0u);
  EXPECT_EQ(st.pool_counters().fail_open, 0u);
  EXPECT_EQ(st.pool_counters().hash_fallbacks, 0u);  // a Maglev pool used its key
  EXPECT_FALSE(pool.available(0));
  EXPECT_FALSE(pool.available(1));
  EXPECT_TRUE(pool.available(2));
}

TEST_P(EveryAlgorithm, AllDownFailsOpenToADownBackendButNeverADrainedOne) {
  const BackendPool pool = build(spec_of(GetParam(), {{1, false, true}, {1, true, false}, {1, true, false}}));
  PoolState st(pool);
  const auto got = picks(pool, st, 30);
  EXPECT_EQ(got.count(0), 0u);  // drained: never
  EXPECT_EQ(got.count(kNoBackend), 0u);
  EXPECT_EQ(st.pool_counters().fail_open, 30u);
  PoolState st2(pool);
  EXPECT_FALSE(pool.refuse_new(st2, 0));  // fail_open never refuses
}

TEST_P(EveryAlgorithm, AllDownRejectsWhenThePoolSaysSo) {
  const BackendPool pool =
      build(spec_of(GetParam(), {{1, true, false}, {1, false, true}}, AllDownPolicy::kReject));
  PoolState st(pool);
  EXPECT_TRUE(pool.refuse_new(st, 0));
  TriedSet tried;
  auto r = pool.pick(st, Keys(1).context(), tried);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), PickError::kNoneAvailable);
  EXPECT_EQ(st.pool_counters().refused, 2u);
  EXPECT_EQ(st.counters(0).active + st.counters(1).active, 0u);
}

TEST_P(EveryAlgorithm, RejectPolicyServesWhileOneBackendIsEligible) {
  const BackendPool pool =
      build(spec_of(GetParam(), {{1, true, false}, {1}, {1, false, true}}, AllDownPolicy::kReject));
  PoolState st(pool);
  EXPECT_FALSE(pool.refuse_new(st, 0));
  const auto got = picks(pool, st, 20);
  EXPECT_EQ(got.at(1), 20);
}

TEST_P(EveryAlgorithm, EveryBackendDrainedIsNoneAvailableEvenFailOpen) {
  const BackendPool pool = build(spec_of(GetParam(), {{1, false, true}, {1, false, true}}));
  PoolState st(pool);
  TriedSet tried;
  auto r = pool.pick(st, Keys(1).context(), tried);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), PickError::kNoneAvailable);
}

INSTANTIATE_TEST_SUITE_P(Pools, EveryAlgorithm,
                         ::testing::Values(Algorithm::kRoundRobin, Algorithm::kLeastConn, Algorithm::kMaglevClient,
                                           Algorithm::kMaglevSni));

TEST(BackendPoolState, PassiveEjectionComposesWithActiveHealth) {
  // Backend 0 is down by the checks, backend 1 passively ejected: with
  // reject, nothing is eligible until backend 1's cool-down ends.
  PoolSpec s = spec_of(Algorithm::kRoundRobin, {{1, true, false}, {1}}, AllDownPolicy::kReject);
  s.fail_threshold = 1;
  s.cooldown_ms = 1000;
  const BackendPool pool = build(s);
  PoolState st(pool);
  TriedSet tried;
  PickContext ctx;
  ctx.now_ms = 10;
  auto r = pool.pick(st, ctx, tried);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, 1u);
  pool.on_connect_fail(st, 1, 10);  // ejected until 1010
  EXPECT_TRUE(pool.refuse_new(st, 500));
  EXPECT_FALSE(pool.refuse_new(st, 1010));  // half-open: eligible for a trial
}

TEST(BackendPoolState, EffectiveWeightsShareTheTraffic) {
  const BackendPool pool = build(spec_of(Algorithm::kRoundRobin, {{3}, {1}}));
  PoolState st(pool);
  const auto got = picks(pool, st, 400);
  EXPECT_EQ(got.at(0), 300);
  EXPECT_EQ(got.at(1), 100);
}

TEST(BackendPoolState, MaglevKeepsOtherBackendsKeysWhenOneIsDrained) {
  const BackendPool all = build(spec_of(Algorithm::kMaglevClient, {{1}, {1}, {1}, {1}}));
  const BackendPool drained = build(spec_of(Algorithm::kMaglevClient, {{1}, {1}, {1, false, true}, {1}}));
  PoolState a(all), b(drained);
  int moved_elsewhere = 0;
  for (int i = 1; i <= 250; ++i) {
    SocketAddress client = *parse_socket_address("198.51.100." + std::to_string(i) + ":5");
    PickContext ctx;
    ctx.client = &client;
    TriedSet t1, t2;
    const uint32_t x = *all.pick(a, ctx, t1);
    const uint32_t y = *drained.pick(b, ctx, t2);
    all.on_close(a, x);
    drained.on_close(b, y);
    EXPECT_NE(y, 2u);
    if (x != 2) EXPECT_EQ(x, y) << "a key of a backend that was not drained moved";
    moved_elsewhere += x == 2 ? 1 : 0;
  }
  EXPECT_GT(moved_elsewhere, 0);
}

TEST(BackendPoolState, MaglevWeightChangeKeepsMostKeys) {
  const BackendPool before = build(spec_of(Algorithm::kMaglevSni, {{1}, {1}, {1}}));
  const BackendPool after = build(spec_of(Algorithm::kMaglevSni, {{1}, {1}, {2}}));
  PoolState a(before), b(after);
  int same = 0, to_heavier = 0;
  const int n = 600;
  for (int i = 0; i < n; ++i) {
    PickContext ctx;
    const std::string sni = "host" + std::to_string(i) + ".example";
    ctx.sni = sni;
    TriedSet t1, t2;
    const uint32_t x = *before.pick(a, ctx, t1);
    const uint32_t y = *after.pick(b, ctx, t2);
    same += x == y ? 1 : 0;
    to_heavier += y == 2 ? 1 : 0;
  }
  // 1/3 -> 1/2 of the table: the ideal moves 1/6 of the keys.
  EXPECT_GT(same, n * 2 / 3);
  EXPECT_GT(to_heavier, n / 3);
}

TEST(BackendPoolState, ReloadedStateKeepsPassiveHealthByIdentity) {
  PoolSpec s = spec_of(Algorithm::kRoundRobin, {{1}, {1}});
  s.fail_threshold = 1;
  const BackendPool first = build(s);
  PoolState st(first);
  TriedSet t;
  PickContext ctx;
  ctx.now_ms = 5;
  (void)first.pick(st, ctx, t);
  first.on_connect_fail(st, 0, 5);
  s.backends[1].drained = true;  // a drain is a new pool of the same backends
  const BackendPool second = build(s);
  PoolState next(second, first, st);
  EXPECT_EQ(next.health(0, 6), BackendHealth::kEjected);
  // Backend 0 ejected, backend 1 drained: fail open to 0, never to 1.
  const auto got = picks(second, next, 5, 6);
  EXPECT_EQ(got.at(0), 5);
}

}  // namespace
}  // namespace lode::route

#include "dataplane/route/backend_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <memory>
#include <string>
#include <vector>

namespace lode::route {
namespace {

SocketAddress addr(std::string_view s) {
  auto a = parse_socket_address(s);
  EXPECT_TRUE(a.has_value()) << s;
  return a.value_or(SocketAddress{});
}

PoolSpec spec_of(Algorithm algo, std::vector<uint32_t> weights) {
  PoolSpec s;
  s.algorithm = algo;
  for (size_t i = 0; i < weights.size(); ++i) {
    BackendSpec b;
    b.address = addr("10.0.0." + std::to_string(i + 1) + ":443");
    b.weight = weights[i];
    s.backends.push_back(b);
  }
  return s;
}

BackendPool build_ok(PoolSpec s) {
  auto p = BackendPool::build(std::move(s));
  EXPECT_TRUE(p.has_value()) << (p ? "" : p.error().to_string());
  return std::move(p).value();
}

PoolError build_error(PoolSpec s) {
  auto p = BackendPool::build(std::move(s));
  EXPECT_FALSE(p.has_value());
  return p ? PoolError{} : p.error();
}

// One connection: a fresh TriedSet per pick.
uint32_t pick_new(const BackendPool& pool, PoolState& st, const PickContext& ctx = {}) {
  TriedSet tried;
  auto r = pool.pick(st, ctx, tried);
  EXPECT_TRUE(r.has_value());
  return r.value_or(kNoBackend);
}

// A connection that is picked and closed at once: only the algorithm's own
// state moves.
std::string sequence(const BackendPool& pool, PoolState& st, int picks) {
  std::string out;
  for (int i = 0; i < picks; ++i) {
    const uint32_t b = pick_new(pool, st);
    pool.on_close(st, b);
    out.push_back(static_cast<char>('A' + b));
  }
  return out;
}

void fail_times(const BackendPool& pool, PoolState& st, uint32_t idx, int n, uint64_t now) {
  for (int i = 0; i < n; ++i) pool.on_connect_fail(st, idx, now);
}

// --- Build ------------------------------------------------------------------------

TEST(BackendPoolBuild, NoBackendsRefused) {
  EXPECT_EQ(build_error(spec_of(Algorithm::kRoundRobin, {})).code, PoolErrorCode::kNoBackends);
}

TEST(BackendPoolBuild, ZeroWeightRefusedAndNamed) {
  const PoolError e = build_error(spec_of(Algorithm::kRoundRobin, {1, 0, 1}));
  EXPECT_EQ(e.code, PoolErrorCode::kZeroWeight);
  EXPECT_EQ(e.backend, 1u);
  EXPECT_NE(e.to_string().find("backend[1]"), std::string::npos) << e.to_string();
}

TEST(BackendPoolBuild, WeightAboveMaximumRefused) {
  const PoolError e = build_error(spec_of(Algorithm::kLeastConn, {kMaxBackendWeight + 1}));
  EXPECT_EQ(e.code, PoolErrorCode::kWeightTooLarge);
  EXPECT_EQ(e.backend, 0u);
}

TEST(BackendPoolBuild, MoreThanMaxBackendsRefused) {
  const std::vector<uint32_t> w65(kMaxPoolBackends + 1, 1);
  PoolSpec s = spec_of(Algorithm::kRoundRobin, {});
  for (uint32_t i = 0; i < w65.size(); ++i) {
    s.backends.push_back({addr("10.1.0." + std::to_string(i + 1) + ":443"), 1, {}});
  }
  EXPECT_EQ(build_error(s).code, PoolErrorCode::kTooManyBackends);
  s.backends.pop_back();
  EXPECT_TRUE(BackendPool::build(s).has_value());  // exactly 64 is fine
}

TEST(BackendPoolBuild, DuplicateBackendRefused) {
  PoolSpec s = spec_of(Algorithm::kRoundRobin, {1, 1});
  s.backends.push_back({addr("10.0.0.1:443"), 2, {}});
  const PoolError e = build_error(s);
  EXPECT_EQ(e.code, PoolErrorCode::kDuplicateBackend);
  EXPECT_EQ(e.backend, 2u);
  // An explicit identity equal to another backend's address string, too.
  PoolSpec t = spec_of(Algorithm::kMaglevClient, {1, 1});
  t.backends[1].id = "10.0.0.1:443";
  EXPECT_EQ(build_error(t).code, PoolErrorCode::kDuplicateBackend);
}

TEST(BackendPoolBuild, BackendWithoutIdentityRefused) {
  PoolSpec s = spec_of(Algorithm::kRoundRobin, {1});
  s.backends.push_back({SocketAddress{}, 1, {}});  // no address, no id
  EXPECT_EQ(build_error(s).code, PoolErrorCode::kNoIdentity);
}

TEST(BackendPoolBuild, BadHealthAndRetrySettingsRefused) {
  PoolSpec s = spec_of(Algorithm::kRoundRobin, {1});
  s.fail_threshold = 0;
  EXPECT_EQ(build_error(s).code, PoolErrorCode::kBadFailThreshold);
  s.fail_threshold = kMaxFailThreshold + 1;
  EXPECT_EQ(build_error(s).code, PoolErrorCode::kBadFailThreshold);
  s.fail_threshold = 3;
  s.cooldown_ms = 0;
  EXPECT_EQ(build_error(s).code, PoolErrorCode::kBadCooldown);
  s.cooldown_ms = kMaxCooldownMs + 1;
  EXPECT_EQ(build_error(s).code, PoolErrorCode::kBadCooldown);
  s.cooldown_ms = 1000;
  s.max_connect_attempts = 0;
  EXPECT_EQ(build_error(s).code, PoolErrorCode::kBadMaxConnectAttempts);
  s.max_connect_attempts = kMaxPoolBackends + 1;
  EXPECT_EQ(build_error(s).code, PoolErrorCode::kBadMaxConnectAttempts);
}

TEST(BackendPoolBuild, MaglevTableErrorsPassedThrough) {
  PoolSpec s = spec_of(Algorithm::kMaglevSni, {1, 1});
  s.maglev_table_size = 65536;
  PoolError e = build_error(s);
  EXPECT_EQ(e.code, PoolErrorCode::kMaglevTable);
  EXPECT_EQ(e.maglev, MaglevError::kTableSizeNotPrime);
  EXPECT_NE(e.to_string().find("prime"), std::string::npos);
  s.maglev_table_size = 101;  // prime, but < 100 slots per backend
  EXPECT_EQ(build_error(s).maglev, MaglevError::kTableTooSmall);
  // Round robin builds no table, so it does not care.
  s.algorithm = Algorithm::kRoundRobin;
  const BackendPool rr = build_ok(s);
  EXPECT_EQ(rr.maglev(), nullptr);
}

TEST(BackendPoolBuild, IdentityDefaultsToAddress) {
  PoolSpec s = spec_of(Algorithm::kMaglevClient, {1, 1});
  s.backends[1].id = "db-2";
  const BackendPool p = build_ok(s);
  EXPECT_EQ(p.backend(0).id, "10.0.0.1:443");
  EXPECT_EQ(p.backend(1).id, "db-2");
  ASSERT_NE(p.maglev(), nullptr);
  EXPECT_EQ(p.maglev()->backend_count(), 2u);
  // The default identity is SocketAddress::to_string()'s text, v4 and v6.
  PoolSpec v6 = spec_of(Algorithm::kRoundRobin, {});
  for (const char* a : {"[2001:db8::1]:8443", "[::ffff:10.1.2.3]:1", "255.255.255.255:65535"}) {
    v6.backends.push_back({addr(a), 1, {}});
  }
  const BackendPool q = build_ok(v6);
  for (uint32_t i = 0; i < q.size(); ++i) {
    EXPECT_EQ(q.backend(i).id, q.backend(i).address.to_string());
  }
  EXPECT_EQ(q.backend(0).id, "[2001:db8::1]:8443");
}

TEST(PoolState, StateOfAnotherPoolRefused) {
  const BackendPool a = build_ok(spec_of(Algorithm::kRoundRobin, {1, 1}));
  const BackendPool b = build_ok(spec_of(Algorithm::kRoundRobin, {1, 1}));
  PoolState sa(a);
  TriedSet tried;
  auto r = b.pick(sa, {}, tried);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), PickError::kStateMismatch);
  EXPECT_EQ(tried.attempts(), 0u);
  // A moved pool is still the same pool.
  BackendPool moved = build_ok(spec_of(Algorithm::kRoundRobin, {1}));
  PoolState sm(moved);
  const BackendPool there = std::move(moved);
  EXPECT_EQ(pick_new(there, sm), 0u);
}

TEST(PoolState, NewGenerationKeepsHealthByIdentity) {
  const BackendPool old_pool = build_ok(spec_of(Algorithm::kRoundRobin, {1, 1, 1}));
  PoolState old_state(old_pool);
  fail_times(old_pool, old_state, 1, 3, 1000);  // 10.0.0.2 ejected
  fail_times(old_pool, old_state, 2, 2, 1000);  // 10.0.0.3 two failures in a row
  PoolSpec next = spec_of(Algorithm::kLeastConn, {});
  for (const char* a : {"10.0.0.9:443", "10.0.0.3:443", "10.0.0.2:443"}) {
    next.backends.push_back({addr(a), 1, {}});
  }
  const BackendPool new_pool = build_ok(next);
  PoolState st(new_pool, old_pool, old_state);
  EXPECT_EQ(st.health(0, 2000), BackendHealth::kUp);       // new backend
  EXPECT_EQ(st.health(2, 2000), BackendHealth::kEjected);  // still cooling down
  EXPECT_EQ(st.health(2, 11'000), BackendHealth::kHalfOpen);
  new_pool.on_connect_fail(st, 1, 2000);  // third in a row, across the reload
  EXPECT_EQ(st.health(1, 2000), BackendHealth::kEjected);
  EXPECT_EQ(st.counters(2).connect_failures, 0u);  // counters start afresh
  EXPECT_EQ(st.counters(1).ejections, 1u);
}

// A reload between a half-open trial's pick and its verdict: the new
// generation's state carried the trial in flight; the verdict, reported to
// the old generation's state (the connection's), is carried over by
// identity (carry_verdict). Before, the new state waited a cooldown for a
// trial that would never report, and did not learn the backend was up (or
// failed again).
TEST(PoolState, AVerdictOfAnOlderGenerationIsCarriedToTheNewOne) {
  const BackendPool old_pool = build_ok(spec_of(Algorithm::kLeastConn, {1, 1}));
  // The backend at 10.0.0.1 is index 1 in the new pool (reordered).
  PoolSpec reordered = spec_of(Algorithm::kLeastConn, {});
  for (const char* a : {"10.0.0.2:443", "10.0.0.1:443", "10.0.0.7:443"}) reordered.backends.push_back({addr(a), 1, {}});
  const BackendPool new_pool = build_ok(reordered);
  const auto trial_then_reload = [&](PoolState& old_state, TriedSet& trial) {
    fail_times(old_pool, old_state, 0, 3, 0);  // ejected until 10 s
    EXPECT_EQ(old_pool.pick(old_state, {nullptr, {}, 10'000}, trial).value_or(kNoBackend), 0u);
    EXPECT_TRUE(trial.trial());
    return PoolState(new_pool, old_pool, old_state);
  };
  // A pick in the new generation that may only take 10.0.0.1 (index 1).
  const auto pick_only_1 = [&](PoolState& st, uint64_t now, TriedSet& t) {
    t.add(0);
    t.add(2);
    return new_pool.pick(st, {nullptr, {}, now}, t).value_or(kNoBackend);
  };
  {  // up
    PoolState old_state(old_pool);
    TriedSet trial;
    PoolState st = trial_then_reload(old_state, trial);
    EXPECT_EQ(st.health(1, 10'001), BackendHealth::kHalfOpen) << "carried: the trial in flight";
    old_pool.on_connect_ok(old_state, 0);
    new_pool.carry_verdict(st, old_pool, 0, BackendPool::Verdict::kUp, trial, 10'002);
    EXPECT_EQ(st.health(1, 10'002), BackendHealth::kUp);
    EXPECT_EQ(st.counters(1).active, 0u) << "active counts are the generation's own";
    EXPECT_EQ(st.health(0, 10'002), BackendHealth::kUp);
    EXPECT_EQ(st.health(2, 10'002), BackendHealth::kUp);
  }
  {  // failed: ejected again from now
    PoolState old_state(old_pool);
    TriedSet trial;
    PoolState st = trial_then_reload(old_state, trial);
    old_pool.on_connect_fail(old_state, 0, 10'500);
    new_pool.carry_verdict(st, old_pool, 0, BackendPool::Verdict::kFailed, trial, 10'500);
    EXPECT_EQ(st.health(1, 20'499), BackendHealth::kEjected);
    EXPECT_EQ(st.health(1, 20'500), BackendHealth::kHalfOpen);
    EXPECT_EQ(st.counters(1).ejections, 1u) << "a new ejection, in this generation";
    EXPECT_EQ(st.counters(1).connect_failures, 0u);
    EXPECT_EQ(st.pool_counters().unbalanced_releases, 0u);
  }
  {  // the trial abandoned: another may go at once in the new generation
    PoolState old_state(old_pool);
    TriedSet trial;
    PoolState st = trial_then_reload(old_state, trial);
    TriedSet other;  // a pick that was not the trial changes nothing
    new_pool.carry_verdict(st, old_pool, 0, BackendPool::Verdict::kAbandoned, other, 10'100);
    TriedSet t1;
    EXPECT_NE(new_pool.pick(st, {nullptr, {}, 10'100}, t1).value_or(kNoBackend), 1u) << "not the one on trial";
    old_pool.on_abandon(old_state, 0, trial);
    new_pool.carry_verdict(st, old_pool, 0, BackendPool::Verdict::kAbandoned, trial, 10'200);
    TriedSet t2;
    EXPECT_EQ(pick_only_1(st, 10'200, t2), 1u);
    EXPECT_TRUE(t2.trial()) << "a new trial in the new generation";
  }
  {  // a generation made for a backend state change keeps the pool object
     // itself (each generation has its own state): the verdict is carried
    const auto shared = std::make_shared<const BackendPool>(build_ok(spec_of(Algorithm::kLeastConn, {1})));
    PoolState a(*shared);
    fail_times(*shared, a, 0, 3, 0);
    TriedSet trial;
    ASSERT_EQ(shared->pick(a, {nullptr, {}, 10'000}, trial).value_or(kNoBackend), 0u);
    PoolState b(*shared, *shared, a);
    shared->on_connect_ok(a, 0);
    shared->carry_verdict(b, *shared, 0, BackendPool::Verdict::kUp, trial, 10'001);
    EXPECT_EQ(b.health(0, 10'001), BackendHealth::kUp);
  }
  {  // an abandoned trial of the old generation begun after the reload does
     // not end the trial the new generation began itself
    PoolState a(old_pool);
    fail_times(old_pool, a, 0, 3, 0);
    PoolState b(new_pool, old_pool, a);  // 10.0.0.1 is index 1 there
    TriedSet own;
    ASSERT_EQ(pick_only_1(b, 10'000, own), 1u);
    ASSERT_TRUE(own.trial());
    TriedSet late;  // a retry in the old generation, after the reload (the same millisecond)
    ASSERT_EQ(old_pool.pick(a, {nullptr, {}, 10'000}, late).value_or(kNoBackend), 0u);
    ASSERT_TRUE(late.trial());
    old_pool.on_abandon(a, 0, late);
    new_pool.carry_verdict(b, old_pool, 0, BackendPool::Verdict::kAbandoned, late, 10'002);
    TriedSet next;
    ASSERT_EQ(pick_only_1(b, 10'003, next), 1u);
    EXPECT_FALSE(next.trial()) << "a fail-open pick: the new generation's own trial is still in flight";
  }
  {  // a state of another pool, or a backend the new pool lacks: nothing
    PoolState old_state(old_pool);
    TriedSet trial;
    PoolState st = trial_then_reload(old_state, trial);
    PoolState foreign(old_pool);
    new_pool.carry_verdict(foreign, old_pool, 0, BackendPool::Verdict::kFailed, trial, 10'300);
    EXPECT_EQ(foreign.counters(0).ejections, 0u);
    const BackendPool elsewhere = build_ok(spec_of(Algorithm::kLeastConn, {1, 1, 1, 1, 1, 1, 1, 1, 1}));
    new_pool.carry_verdict(st, elsewhere, 8, BackendPool::Verdict::kUp, trial, 10'300);
    EXPECT_EQ(st.health(1, 10'300), BackendHealth::kHalfOpen);
  }
}

TEST(PoolState, NewGenerationIgnoresAMismatchedPreviousState) {
  const BackendPool a = build_ok(spec_of(Algorithm::kRoundRobin, {1, 1}));
  const BackendPool b = build_ok(spec_of(Algorithm::kRoundRobin, {1, 1}));
  PoolState sa(a);
  fail_times(a, sa, 0, 3, 0);
  PoolState st(a, b, sa);  // sa is not b's state
  EXPECT_EQ(st.health(0, 1), BackendHealth::kUp);
  EXPECT_EQ(pick_new(a, st), 0u);
}

TEST(PoolState, OutOfRangeIndexIgnoredAndCounted) {
  const BackendPool p = build_ok(spec_of(Algorithm::kLeastConn, {1, 1}));
  PoolState st(p);
  p.on_connect_ok(st, 2);
  p.on_connect_fail(st, 99, 5);
  p.on_close(st, kNoBackend);
  EXPECT_EQ(st.pool_counters().bad_index, 3u);
}

TEST(PoolState, UnbalancedReleaseDoesNotUnderflow) {
  const BackendPool p = build_ok(spec_of(Algorithm::kLeastConn, {1, 1}));
  PoolState st(p);
  p.on_close(st, 0);
  p.on_connect_fail(st, 0, 1);
  EXPECT_EQ(st.counters(0).active, 0u);
  EXPECT_EQ(st.pool_counters().unbalanced_releases, 2u);
}

// --- Smooth weighted round robin -----------------------------------------------------

TEST(BackendPoolRoundRobin, Weights3And1Interleave) {
  const BackendPool p = build_ok(spec_of(Algorithm::kRoundRobin, {3, 1}));
  PoolState st(p);
  EXPECT_EQ(sequence(p, st, 8), "AABAAABA");
}

TEST(BackendPoolRoundRobin, Weights5And1And1Interleave) {
  const BackendPool p = build_ok(spec_of(Algorithm::kRoundRobin, {5, 1, 1}));
  PoolState st(p);
  EXPECT_EQ(sequence(p, st, 14), "AABACAAAABACAA");
}

TEST(BackendPoolRoundRobin, EqualWeightsRotate) {
  const BackendPool p = build_ok(spec_of(Algorithm::kRoundRobin, {1, 1, 1}));
  PoolState st(p);
  EXPECT_EQ(sequence(p, st, 6), "ABCABC");
}

TEST(BackendPoolRoundRobin, WorkersAreIndependent) {
  const BackendPool p = build_ok(spec_of(Algorithm::kRoundRobin, {1, 1}));
  PoolState w1(p), w2(p);
  EXPECT_EQ(sequence(p, w1, 3), "ABA");
  EXPECT_EQ(sequence(p, w2, 2), "AB");  // w1's picks do not move w2's cursor
}

TEST(BackendPoolRoundRobin, PoolOfOne) {
  const BackendPool p = build_ok(spec_of(Algorithm::kRoundRobin, {7}));
  PoolState st(p);
  EXPECT_EQ(sequence(p, st, 4), "AAAA");
  TriedSet tried;
  ASSERT_EQ(p.pick(st, {}, tried).value_or(kNoBackend), 0u);
  p.on_connect_fail(st, 0, 1);
  auto retry = p.pick(st, {}, tried);
  ASSERT_FALSE(retry.has_value());
  EXPECT_EQ(retry.error(), PickError::kAllTried);
}

TEST(BackendPoolRoundRobin, PicksCounted) {
  const BackendPool p = build_ok(spec_of(Algorithm::kRoundRobin, {3, 1}));
  PoolState st(p);
  (void)sequence(p, st, 8);
  EXPECT_EQ(st.counters(0).picks, 6u);
  EXPECT_EQ(st.counters(1).picks, 2u);
  EXPECT_EQ(st.pool_counters().picks, 8u);
  EXPECT_EQ(st.pool_counters().retries, 0u);
  EXPECT_EQ(st.counters(0).active, 0u);
}

// --- Least connections -------------------------------------------------------------

TEST(BackendPoolLeastConn, PicksTheIdleBackend) {
  const BackendPool p = build_ok(spec_of(Algorithm::kLeastConn, {1, 1, 1}));
  PoolState st(p);
  const uint32_t a = pick_new(p, st);
  const uint32_t b = pick_new(p, st);
  const uint32_t c = pick_new(p, st);
  EXPECT_EQ((std::set<uint32_t>{a, b, c}).size(), 3u);  // one each
  p.on_close(st, 1);
  EXPECT_EQ(pick_new(p, st), 1u);  // the only one with a free place
  p.on_close(st, 2);
  p.on_close(st, 2);  // unbalanced: ignored, stays at 0
  EXPECT_EQ(pick_new(p, st), 2u);
}

TEST(BackendPoolLeastConn, RespectsWeights) {
  const BackendPool p = build_ok(spec_of(Algorithm::kLeastConn, {3, 1}));
  PoolState st(p);
  for (int i = 0; i < 8; ++i) (void)pick_new(p, st);  // none closes
  EXPECT_EQ(st.counters(0).active, 6u);
  EXPECT_EQ(st.counters(1).active, 2u);
}

TEST(BackendPoolLeastConn, TiesRotate) {
  const BackendPool p = build_ok(spec_of(Algorithm::kLeastConn, {1, 1, 1}));
  PoolState st(p);
  EXPECT_EQ(sequence(p, st, 7), "ABCABCA");
}

TEST(BackendPoolLeastConn, FailedConnectReleasesItsPlace) {
  const BackendPool p = build_ok(spec_of(Algorithm::kLeastConn, {1, 1}));
  PoolState st(p);
  const uint32_t a = pick_new(p, st);
  EXPECT_EQ(st.counters(a).active, 1u);
  p.on_connect_fail(st, a, 10);
  EXPECT_EQ(st.counters(a).active, 0u);
  EXPECT_EQ(st.counters(a).connect_failures, 1u);
}

TEST(BackendPoolLeastConn, SkipsEjectedEvenWhenIdle) {
  const BackendPool p = build_ok(spec_of(Algorithm::kLeastConn, {1, 1}));
  PoolState st(p);
  fail_times(p, st, 0, 3, 100);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(pick_new(p, st, {nullptr, {}, 200}), 1u);
  EXPECT_EQ(st.counters(1).active, 4u);
}

// --- Maglev -------------------------------------------------------------------------

TEST(BackendPoolMaglev, ClientStickyAcrossCallsWorkersAndNodes) {
  const PoolSpec s = spec_of(Algorithm::kMaglevClient, {1, 1, 1, 1, 1});
  const BackendPool node1 = build_ok(s);
  const BackendPool node2 = build_ok(s);
  PoolState w1(node1), w2(node1), other(node2);
  for (int c = 0; c < 50; ++c) {
    const SocketAddress client = addr("198.51.100." + std::to_string(c) + ":40000");
    const SocketAddress same_ip = addr("198.51.100." + std::to_string(c) + ":51234");
    const uint32_t first = pick_new(node1, w1, {&client, {}, 0});
    for (int i = 0; i < 3; ++i) EXPECT_EQ(pick_new(node1, w1, {&client, {}, 0}), first);
    EXPECT_EQ(pick_new(node1, w2, {&same_ip, {}, 0}), first);
    EXPECT_EQ(pick_new(node2, other, {&client, {}, 0}), first);
    EXPECT_EQ(first, node1.maglev()->lookup(*client_key(client)));
  }
}

TEST(BackendPoolMaglev, ClientKeyIgnoresPortAndMapsV4InV6) {
  const auto k4 = client_key(addr("192.0.2.7:1"));
  ASSERT_TRUE(k4.has_value());
  EXPECT_EQ(client_key(addr("192.0.2.7:65535")), k4);
  EXPECT_EQ(client_key(addr("[::ffff:192.0.2.7]:443")), k4);
  EXPECT_NE(client_key(addr("192.0.2.8:1")), k4);
  EXPECT_NE(client_key(addr("[2001:db8::7]:1")), k4);
  EXPECT_FALSE(client_key(SocketAddress{}).has_value());
}

TEST(BackendPoolMaglev, ClientsSpreadByWeight) {
  const BackendPool p = build_ok(spec_of(Algorithm::kMaglevClient, {1, 1, 2}));
  PoolState st(p);
  std::vector<int> count(3);
  for (int c = 0; c < 8000; ++c) {
    const SocketAddress client =
        addr("10." + std::to_string(c / 250) + "." + std::to_string(c % 250) + ".9:1000");
    const uint32_t b = pick_new(p, st, {&client, {}, 0});
    p.on_close(st, b);
    ++count[b];
  }
  EXPECT_NEAR(count[0], 2000, 200);
  EXPECT_NEAR(count[1], 2000, 200);
  EXPECT_NEAR(count[2], 4000, 300);
}

TEST(BackendPoolMaglev, ListOrderDoesNotChangeTheBackendAddress) {
  const PoolSpec s = spec_of(Algorithm::kMaglevClient, {1, 2, 3, 4});
  PoolSpec r = s;
  std::reverse(r.backends.begin(), r.backends.end());
  const BackendPool ps = build_ok(s), pr = build_ok(r);
  PoolState ss(ps), sr(pr);
  for (int c = 0; c < 40; ++c) {
    const SocketAddress client = addr("203.0.113." + std::to_string(c) + ":1");
    EXPECT_EQ(ps.backend(pick_new(ps, ss, {&client, {}, 0})).id,
              pr.backend(pick_new(pr, sr, {&client, {}, 0})).id);
  }
}

TEST(BackendPoolMaglev, SniSticky) {
  const BackendPool p = build_ok(spec_of(Algorithm::kMaglevSni, {1, 1, 1, 1}));
  PoolState w1(p), w2(p);
  std::set<uint32_t> seen;
  for (int n = 0; n < 40; ++n) {
    const std::string name = "tenant" + std::to_string(n) + ".example.com";
    const uint32_t b = pick_new(p, w1, {nullptr, name, 0});
    EXPECT_EQ(pick_new(p, w1, {nullptr, name, 0}), b);
    EXPECT_EQ(pick_new(p, w2, {nullptr, name, 0}), b);
    EXPECT_EQ(b, p.maglev()->lookup(sni_key(name)));
    seen.insert(b);
  }
  EXPECT_EQ(seen.size(), 4u);  // 40 names do reach every backend
  EXPECT_EQ(w1.pool_counters().hash_fallbacks, 0u);
}

TEST(BackendPoolMaglev, MissingKeyFallsBackToRoundRobinCounted) {
  const BackendPool sni = build_ok(spec_of(Algorithm::kMaglevSni, {1, 1}));
  PoolState s1(sni);
  EXPECT_EQ(sequence(sni, s1, 4), "ABAB");  // no SNI
  EXPECT_EQ(s1.pool_counters().hash_fallbacks, 4u);

  const BackendPool cli = build_ok(spec_of(Algorithm::kMaglevClient, {1, 1}));
  PoolState s2(cli);
  const SocketAddress unspec{};
  EXPECT_EQ(pick_new(cli, s2, {nullptr, "x.example", 0}), 0u);  // no client
  EXPECT_EQ(pick_new(cli, s2, {&unspec, "x.example", 0}), 1u);  // not IPv4/IPv6
  EXPECT_EQ(s2.pool_counters().hash_fallbacks, 2u);
}

// --- Retries --------------------------------------------------------------------------

TEST(BackendPoolRetry, NeverRepeatsATriedBackendThenRunsOut) {
  for (Algorithm algo : {Algorithm::kRoundRobin, Algorithm::kLeastConn, Algorithm::kMaglevClient,
                         Algorithm::kMaglevSni}) {
    PoolSpec s = spec_of(algo, {1, 2, 1, 3});
    s.max_connect_attempts = 4;
    const BackendPool p = build_ok(s);
    PoolState st(p);
    const SocketAddress client = addr("192.0.2.1:5555");
    const PickContext ctx{&client, "a.example", 0};
    TriedSet tried;
    std::set<uint32_t> got;
    for (int i = 0; i < 4; ++i) {
      auto r = p.pick(st, ctx, tried);
      ASSERT_TRUE(r.has_value()) << to_string(algo);
      EXPECT_TRUE(got.insert(*r).second) << to_string(algo) << " repeated " << *r;
      p.on_connect_fail(st, *r, 0);
    }
    auto r = p.pick(st, ctx, tried);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), PickError::kAllTried) << to_string(algo);  // before kAttemptsExhausted
    EXPECT_EQ(st.pool_counters().retries, 3u);
    EXPECT_EQ(st.pool_counters().retries_exhausted, 1u);
  }
}

TEST(BackendPoolRetry, AttemptsBounded) {
  const BackendPool p = build_ok(spec_of(Algorithm::kRoundRobin, {1, 1, 1, 1, 1}));
  PoolState st(p);
  TriedSet tried;
  for (uint32_t i = 0; i < kDefaultMaxConnectAttempts; ++i) {
    auto r = p.pick(st, {}, tried);
    ASSERT_TRUE(r.has_value());
    p.on_connect_fail(st, *r, 0);
  }
  auto r = p.pick(st, {}, tried);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), PickError::kAttemptsExhausted);
  EXPECT_EQ(tried.attempts(), kDefaultMaxConnectAttempts);
  EXPECT_EQ(st.pool_counters().retries_exhausted, 1u);
}

TEST(BackendPoolRetry, CallerAddingThePickAgainIsHarmless) {
  const BackendPool p = build_ok(spec_of(Algorithm::kRoundRobin, {1, 1, 1, 1}));
  PoolState st(p);
  TriedSet tried;
  for (uint32_t i = 0; i < kDefaultMaxConnectAttempts; ++i) {
    auto r = p.pick(st, {}, tried);
    ASSERT_TRUE(r.has_value()) << "attempt " << i;
    tried.add(*r);  // a caller that records the pick itself too
    EXPECT_EQ(tried.attempts(), i + 1);
    p.on_connect_fail(st, *r, 0);
  }
  EXPECT_FALSE(p.pick(st, {}, tried).has_value());
  TriedSet bad;
  bad.add(64);  // outside any pool: ignored
  EXPECT_EQ(bad.attempts(), 0u);
  EXPECT_FALSE(bad.contains(64));
}

TEST(BackendPoolRetry, MaglevRetryIsDeterministicAcrossWorkers) {
  PoolSpec s = spec_of(Algorithm::kMaglevClient, {1, 1, 1, 1, 1, 1, 1, 1});
  s.max_connect_attempts = 8;
  const BackendPool p = build_ok(s);
  PoolState w1(p), w2(p);
  for (int c = 0; c < 20; ++c) {
    const SocketAddress client = addr("100.64.0." + std::to_string(c) + ":9");
    TriedSet t1, t2;
    for (int i = 0; i < 8; ++i) {
      auto a = p.pick(w1, {&client, {}, 0}, t1);
      auto b = p.pick(w2, {&client, {}, 0}, t2);
      ASSERT_TRUE(a.has_value() && b.has_value());
      EXPECT_EQ(*a, *b) << "client " << c << " attempt " << i;
      p.on_close(w1, *a);
      p.on_close(w2, *b);
    }
    EXPECT_EQ(t1.mask(), 0xFFu);
  }
}

TEST(BackendPoolRetry, SkipsTriedAndEjectedTogether) {
  PoolSpec s = spec_of(Algorithm::kRoundRobin, {1, 1, 1});
  const BackendPool p = build_ok(s);
  PoolState st(p);
  fail_times(p, st, 2, 3, 50);  // C ejected
  TriedSet tried;
  auto first = p.pick(st, {nullptr, {}, 60}, tried);
  ASSERT_TRUE(first.has_value());
  p.on_connect_fail(st, *first, 60);
  auto second = p.pick(st, {nullptr, {}, 60}, tried);
  ASSERT_TRUE(second.has_value());
  EXPECT_NE(*second, *first);
  EXPECT_NE(*second, 2u);
  EXPECT_EQ(st.pool_counters().fail_open, 0u);
}

// --- Passive health ---------------------------------------------------------------------

TEST(BackendPoolHealth, ThreeConsecutiveFailuresEject) {
  const BackendPool p = build_ok(spec_of(Algorithm::kRoundRobin, {1, 1}));
  PoolState st(p);
  fail_times(p, st, 0, 2, 1000);
  EXPECT_EQ(st.health(0, 1000), BackendHealth::kUp);
  EXPECT_EQ(sequence(p, st, 2), "AB");  // still in
  p.on_connect_fail(st, 0, 1000);
  EXPECT_EQ(st.health(0, 1000), BackendHealth::kEjected);
  EXPECT_EQ(st.counters(0).ejections, 1u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(pick_new(p, st, {nullptr, {}, 1001}), 1u);
}

TEST(BackendPoolHealth, SuccessResetsTheFailureRun) {
  const BackendPool p = build_ok(spec_of(Algorithm::kRoundRobin, {1, 1}));
  PoolState st(p);
  fail_times(p, st, 0, 2, 10);
  p.on_connect_ok(st, 0);
  fail_times(p, st, 0, 2, 20);
  EXPECT_EQ(st.health(0, 20), BackendHealth::kUp);
  EXPECT_EQ(st.counters(0).ejections, 0u);
  EXPECT_EQ(st.counters(0).connect_failures, 4u);
}

TEST(BackendPoolHealth, ThresholdAndCooldownConfigurable) {
  PoolSpec s = spec_of(Algorithm::kRoundRobin, {1, 1});
  s.fail_threshold = 1;
  s.cooldown_ms = 500;
  const BackendPool p = build_ok(s);
  PoolState st(p);
  p.on_connect_fail(st, 1, 100);
  EXPECT_EQ(st.health(1, 100), BackendHealth::kEjected);
  EXPECT_EQ(st.health(1, 599), BackendHealth::kEjected);
  EXPECT_EQ(st.health(1, 600), BackendHealth::kHalfOpen);
}

TEST(BackendPoolHealth, CooldownExpiryReadmitsForOneTrial) {
  const BackendPool p = build_ok(spec_of(Algorithm::kRoundRobin, {1, 1}));
  PoolState st(p);
  fail_times(p, st, 0, 3, 1000);
  EXPECT_EQ(pick_new(p, st, {nullptr, {}, 10'999}), 1u);  // cool-down: 10 s
  EXPECT_EQ(st.health(0, 11'000), BackendHealth::kHalfOpen);
  std::string seq;
  for (int i = 0; i < 4; ++i) {
    const uint32_t b = pick_new(p, st, {nullptr, {}, 11'000});
    seq.push_back(static_cast<char>('A' + b));
  }
  EXPECT_EQ(seq, "ABBB");  // one trial in flight, the rest elsewhere
  p.on_connect_ok(st, 0);
  EXPECT_EQ(st.health(0, 11'001), BackendHealth::kUp);
  p.on_connect_fail(st, 0, 11'002);  // a single failure after recovery: still up
  EXPECT_EQ(st.health(0, 11'002), BackendHealth::kUp);
}

TEST(BackendPoolHealth, HalfOpenFailureReejects) {
  const BackendPool p = build_ok(spec_of(Algorithm::kRoundRobin, {1, 1}));
  PoolState st(p);
  fail_times(p, st, 0, 3, 0);
  TriedSet tried;
  ASSERT_EQ(p.pick(st, {nullptr, {}, 10'000}, tried).value_or(kNoBackend), 0u);  // the trial
  p.on_connect_fail(st, 0, 10'050);
  EXPECT_EQ(st.health(0, 10'050), BackendHealth::kEjected);
  EXPECT_EQ(st.health(0, 20'049), BackendHealth::kEjected);
  EXPECT_EQ(st.health(0, 20'050), BackendHealth::kHalfOpen);
  EXPECT_EQ(st.counters(0).ejections, 2u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(pick_new(p, st, {nullptr, {}, 15'000}), 1u);
}

TEST(BackendPoolHealth, AbandonedTrialAllowsAnother) {
  const BackendPool p = build_ok(spec_of(Algorithm::kLeastConn, {1, 1}));
  PoolState st(p);
  fail_times(p, st, 0, 3, 0);
  TriedSet trial;
  ASSERT_EQ(p.pick(st, {nullptr, {}, 10'000}, trial).value_or(kNoBackend), 0u);
  EXPECT_TRUE(trial.trial());
  EXPECT_EQ(pick_new(p, st, {nullptr, {}, 10'000}), 1u);
  p.on_abandon(st, 0, trial);  // the trial's client went away before the verdict
  EXPECT_EQ(pick_new(p, st, {nullptr, {}, 10'001}), 0u);
}

// A connection that had its verdict before the ejection (a long one, still
// open) closes during the half-open trial: the trial goes on alone (its
// close cleared the trial, and a second one went to a backend that may
// still be dead).
// ... and neither does the abandon of a connection that was not the trial
// (a fail-open pick made while the trial is in flight, one still connecting
// when it began): only the trial's own.
TEST(BackendPoolHealth, AnOldConnectionsCloseLetsNoSecondTrialGo) {
  // One backend (fail open when it is not eligible): a second trial would
  // be a pick of an eligible backend, not a fail-open one.
  const BackendPool p = build_ok(spec_of(Algorithm::kLeastConn, {1}));
  PoolState st(p);
  const auto pick = [&](uint64_t now, TriedSet& t) { return p.pick(st, {nullptr, {}, now}, t).value_or(kNoBackend); };
  TriedSet old, connecting, failing[3];
  ASSERT_EQ(pick(0, old), 0u);
  p.on_connect_ok(st, 0);  // up, and stays open
  ASSERT_EQ(pick(0, connecting), 0u);  // still connecting when the trial begins
  for (TriedSet& f : failing) {
    ASSERT_EQ(pick(0, f), 0u);
    p.on_connect_fail(st, 0, 0);
  }
  TriedSet trial;
  ASSERT_EQ(pick(10'000, trial), 0u);
  EXPECT_TRUE(trial.trial());
  EXPECT_EQ(st.pool_counters().fail_open, 0u);
  p.on_close(st, 0);                 // the old connection ends
  p.on_abandon(st, 0, connecting);   // the one connecting gives up
  TriedSet open_pick;
  ASSERT_EQ(pick(10'001, open_pick), 0u);
  EXPECT_FALSE(open_pick.trial());
  EXPECT_EQ(st.pool_counters().fail_open, 1u) << "not a second trial: the first is still in flight";
  p.on_abandon(st, 0, open_pick);  // nor after a fail-open pick's abandon
  TriedSet again;
  ASSERT_EQ(pick(10'002, again), 0u);
  EXPECT_EQ(st.pool_counters().fail_open, 2u);
  p.on_abandon(st, 0, trial);  // the trial's client goes away before its verdict
  TriedSet next_trial;
  ASSERT_EQ(pick(10'003, next_trial), 0u);
  EXPECT_TRUE(next_trial.trial()) << "a new trial";
  EXPECT_EQ(st.pool_counters().fail_open, 2u);
  EXPECT_EQ(st.pool_counters().unbalanced_releases, 0u);
}

TEST(BackendPoolHealth, UnreportedTrialExpiresAfterACooldown) {
  const BackendPool p = build_ok(spec_of(Algorithm::kLeastConn, {1, 1}));
  PoolState st(p);
  fail_times(p, st, 0, 3, 0);
  EXPECT_EQ(pick_new(p, st, {nullptr, {}, 10'000}), 0u);  // trial, never reported
  EXPECT_EQ(pick_new(p, st, {nullptr, {}, 19'999}), 1u);
  EXPECT_EQ(pick_new(p, st, {nullptr, {}, 20'000}), 0u);  // a new trial
}

TEST(BackendPoolHealth, FailureWhileEjectedExtendsWithoutCountingAnEjection) {
  const BackendPool p = build_ok(spec_of(Algorithm::kRoundRobin, {1, 1}));
  PoolState st(p);
  fail_times(p, st, 0, 3, 0);
  p.on_connect_fail(st, 0, 5000);  // a connect begun before the ejection
  EXPECT_EQ(st.counters(0).ejections, 1u);
  EXPECT_EQ(st.health(0, 14'999), BackendHealth::kEjected);
  EXPECT_EQ(st.health(0, 15'000), BackendHealth::kHalfOpen);
}

TEST(BackendPoolHealth, MaglevWalksAwayFromEjectedAndComesBack) {
  const BackendPool p = build_ok(spec_of(Algorithm::kMaglevClient, {1, 1, 1, 1}));
  PoolState st(p);
  const SocketAddress client = addr("192.0.2.44:1234");
  const uint32_t home = pick_new(p, st, {&client, {}, 0});
  p.on_close(st, home);
  fail_times(p, st, home, 3, 100);
  const uint32_t away = pick_new(p, st, {&client, {}, 200});
  EXPECT_NE(away, home);
  EXPECT_EQ(pick_new(p, st, {&client, {}, 300}), away);  // sticky while ejected too
  EXPECT_EQ(st.pool_counters().fail_open, 0u);
  p.on_connect_ok(st, home);  // e.g. another connection got through
  EXPECT_EQ(pick_new(p, st, {&client, {}, 400}), home);
}

TEST(BackendPoolHealth, AllDownFailsOpenToLeastRecentlyFailed) {
  const BackendPool p = build_ok(spec_of(Algorithm::kRoundRobin, {1, 1, 1}));
  PoolState st(p);
  fail_times(p, st, 1, 3, 100);  // B failed first
  fail_times(p, st, 0, 3, 200);
  fail_times(p, st, 2, 3, 300);
  TriedSet tried;
  auto r = p.pick(st, {nullptr, {}, 400}, tried);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, 1u);
  EXPECT_EQ(st.pool_counters().fail_open, 1u);
  EXPECT_EQ(st.counters(1).fail_open_picks, 1u);
  // Its retry fails open to the next least recently failed, never to B again.
  p.on_connect_fail(st, 1, 410);
  auto r2 = p.pick(st, {nullptr, {}, 420}, tried);
  ASSERT_TRUE(r2.has_value());
  EXPECT_EQ(*r2, 0u);
  EXPECT_EQ(st.pool_counters().fail_open, 2u);
  // A fail-open success brings that backend back.
  p.on_connect_ok(st, 0);
  EXPECT_EQ(st.health(0, 430), BackendHealth::kUp);
  EXPECT_EQ(pick_new(p, st, {nullptr, {}, 430}), 0u);
  EXPECT_EQ(st.pool_counters().fail_open, 2u);
}

TEST(BackendPoolHealth, AllDownFailOpenForEveryAlgorithm) {
  for (Algorithm algo : {Algorithm::kRoundRobin, Algorithm::kLeastConn, Algorithm::kMaglevClient,
                         Algorithm::kMaglevSni}) {
    const BackendPool p = build_ok(spec_of(algo, {1, 1}));
    PoolState st(p);
    fail_times(p, st, 0, 3, 10);
    fail_times(p, st, 1, 3, 5);
    const SocketAddress client = addr("192.0.2.1:1");
    EXPECT_EQ(pick_new(p, st, {&client, "a.example", 20}), 1u) << to_string(algo);
    EXPECT_EQ(st.pool_counters().fail_open, 1u) << to_string(algo);
  }
}

TEST(BackendPoolHealth, PoolOfOneAlwaysAnswers) {
  const BackendPool p = build_ok(spec_of(Algorithm::kLeastConn, {1}));
  PoolState st(p);
  fail_times(p, st, 0, 3, 0);
  EXPECT_EQ(st.health(0, 1), BackendHealth::kEjected);
  EXPECT_EQ(pick_new(p, st, {nullptr, {}, 1}), 0u);  // fail open
  EXPECT_EQ(st.pool_counters().fail_open, 1u);
}

TEST(BackendPoolHealth, WorkersHaveTheirOwnHealth) {
  const BackendPool p = build_ok(spec_of(Algorithm::kRoundRobin, {1, 1}));
  PoolState w1(p), w2(p);
  fail_times(p, w1, 0, 3, 0);
  EXPECT_EQ(w1.health(0, 1), BackendHealth::kEjected);
  EXPECT_EQ(w2.health(0, 1), BackendHealth::kUp);
  EXPECT_EQ(w2.counters(0).connect_failures, 0u);
}

TEST(BackendPoolNames, EnumsHaveNames) {
  EXPECT_EQ(to_string(Algorithm::kMaglevSni), "maglev_sni");
  EXPECT_EQ(to_string(BackendHealth::kHalfOpen), "half_open");
  EXPECT_NE(to_string(PickError::kAllTried), to_string(PickError::kAttemptsExhausted));
}

}  // namespace
}  // namespace lode::route

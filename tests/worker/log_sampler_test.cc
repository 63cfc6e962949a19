#include "dataplane/worker/log_sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace lode::worker {
namespace {

// Successful connections kept out of `n` at `rate`.
int kept(LogSampler& s, double rate, int n) {
  int k = 0;
  for (int i = 0; i < n; ++i) k += s.keep(true, rate) ? 1 : 0;
  return k;
}

TEST(LogSampler, KeepsAboutTheRateOfSuccessfulConnections) {
  constexpr int kN = 100'000;
  for (const double rate : {0.01, 0.1, 0.25, 0.5, 0.9}) {
    LogSampler s(42);
    const int k = kept(s, rate, kN);
    // Binomial: 6 standard deviations, far from both neighbours tested.
    const double sd = std::sqrt(kN * rate * (1 - rate));
    EXPECT_NEAR(k, kN * rate, 6 * sd + 1) << "rate " << rate;
  }
}

TEST(LogSampler, ErrorsAreAlwaysLogged) {
  LogSampler s(7);
  for (const double rate : {0.0, 0.001, 0.25, -1.0, std::numeric_limits<double>::quiet_NaN()}) {
    for (int i = 0; i < 10'000; ++i) ASSERT_TRUE(s.keep(false, rate)) << "rate " << rate;
  }
}

TEST(LogSampler, RateOneKeepsAllAndZeroNone) {
  LogSampler s(3);
  EXPECT_EQ(kept(s, 1.0, 10'000), 10'000);
  EXPECT_EQ(kept(s, 2.0, 1'000), 1'000);  // clamped, never "none"
  EXPECT_EQ(kept(s, 0.0, 10'000), 0);
  EXPECT_EQ(kept(s, -0.5, 1'000), 0);
  EXPECT_EQ(kept(s, std::numeric_limits<double>::quiet_NaN(), 1'000), 0);
}

TEST(LogSampler, DeterministicForASeedAndDifferentAcrossSeeds) {
  LogSampler a(11), b(11), c(12);
  int same_ab = 0, same_ac = 0;
  for (int i = 0; i < 1'000; ++i) {
    const bool x = a.keep(true, 0.5), y = b.keep(true, 0.5), z = c.keep(true, 0.5);
    same_ab += x == y ? 1 : 0;
    same_ac += x == z ? 1 : 0;
  }
  EXPECT_EQ(same_ab, 1'000);
  EXPECT_LT(same_ac, 700);  // independent streams agree about half the time
}

// A counter ("every 2nd") would log only one of two alternating kinds of
// connection (round-robin over two backends); the draw must not alias.
TEST(LogSampler, DoesNotAliasWithPeriodicTraffic) {
  LogSampler s(5);
  int kept_even = 0, kept_odd = 0;
  for (int i = 0; i < 20'000; ++i) {
    if (s.keep(true, 0.5)) (i % 2 == 0 ? kept_even : kept_odd)++;
  }
  EXPECT_GT(kept_even, 4'000);
  EXPECT_GT(kept_odd, 4'000);
}

TEST(LogSampler, ZeroSeedStillDraws) {
  LogSampler s(0);  // xorshift's fixed point is replaced
  const int k = kept(s, 0.5, 10'000);
  EXPECT_GT(k, 4'000);
  EXPECT_LT(k, 6'000);
}

}  // namespace
}  // namespace lode::worker

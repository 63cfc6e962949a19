// SYN cookies: the cost of make() (one SipHash-2-4 of 52 bytes) and check()
// for a valid cookie (one MAC) and a forged one while two keys are held (two
// MACs, the worst case), IPv4 and IPv6. The ratio table compares siphash24
// with OpenSSL's SipHash (EVP_MAC "SIPHASH", 64-bit output, one context
// re-keyed per call) on the cookie's 52-byte input and on 8 bytes, in the same
// run.
//
//   ./build/release/bench/syn_cookie_bench --benchmark_min_time=0.5
#include <array>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <vector>

#include "bench_ratio.h"
#include "dataplane/front/syn_cookie.h"
#include "support/openssl_siphash.h"

namespace {

using lode::front::FlowKey;
using lode::front::IpAddr;
using lode::front::siphash24;
using lode::front::SynCookies;
using lode::front::SynOptions;

constexpr size_t kFlows = 1024;  // a power of two
constexpr uint64_t kNow = 1'700'000'000;
constexpr std::array<uint8_t, 16> kKey = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3};
constexpr std::array<uint8_t, 16> kNextKey = {2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4, 5, 9, 0, 4, 5};

struct Syn {
  FlowKey flow;
  uint32_t isn = 0;
  uint32_t cookie = 0;  // made at kNow under kKey
};

std::vector<Syn> make_syns(bool v6, const SynCookies& cookies) {
  std::mt19937_64 rng(v6 ? 6 : 4);
  std::vector<Syn> syns(kFlows);
  for (Syn& s : syns) {
    std::array<uint8_t, 16> src{}, dst{};
    for (auto& b : src) b = static_cast<uint8_t>(rng());
    for (auto& b : dst) b = static_cast<uint8_t>(rng());
    s.flow.src = v6 ? IpAddr::v6(src) : IpAddr::v4(static_cast<uint32_t>(rng()));
    s.flow.dst = v6 ? IpAddr::v6(dst) : IpAddr::v4(0xc6336407);
    s.flow.sport = static_cast<uint16_t>(rng());
    s.flow.dport = 443;
    s.isn = static_cast<uint32_t>(rng());
    s.cookie = cookies.make(s.flow, s.isn, SynOptions{1460, 7, true}, kNow);
  }
  return syns;
}

void BM_Make(benchmark::State& state) {
  const SynCookies cookies(kKey);
  const std::vector<Syn> syns = make_syns(state.range(0) != 0, cookies);
  const SynOptions opt{1460, 7, true};
  size_t i = 0;
  for (auto _ : state) {
    const Syn& s = syns[i++ & (kFlows - 1)];
    benchmark::DoNotOptimize(cookies.make(s.flow, s.isn, opt, kNow));
  }
}
BENCHMARK(BM_Make)->Name("cookie_make/v4")->Arg(0);
BENCHMARK(BM_Make)->Name("cookie_make/v6")->Arg(1);

void BM_CheckValid(benchmark::State& state) {
  const SynCookies cookies(kKey);
  const std::vector<Syn> syns = make_syns(state.range(0) != 0, cookies);
  size_t i = 0;
  for (auto _ : state) {
    const Syn& s = syns[i++ & (kFlows - 1)];
    const auto got = cookies.check(s.flow, s.isn, s.cookie, kNow + SynCookies::kSlotSeconds);
    if (!got) std::abort();
    benchmark::DoNotOptimize(got);
  }
}
BENCHMARK(BM_CheckValid)->Name("cookie_check_valid/v4")->Arg(0);
BENCHMARK(BM_CheckValid)->Name("cookie_check_valid/v6")->Arg(1);

// A forged ACK after rotate(): both keys are tried before it is refused.
void BM_CheckForged(benchmark::State& state) {
  SynCookies cookies(kKey);
  const std::vector<Syn> syns = make_syns(state.range(0) != 0, cookies);
  cookies.rotate(kNextKey);
  size_t i = 0;
  for (auto _ : state) {
    const Syn& s = syns[i++ & (kFlows - 1)];
    benchmark::DoNotOptimize(cookies.check(s.flow, s.isn ^ 1, s.cookie, kNow));
  }
}
BENCHMARK(BM_CheckForged)->Name("cookie_check_forged_2keys/v4")->Arg(0);
BENCHMARK(BM_CheckForged)->Name("cookie_check_forged_2keys/v6")->Arg(1);

std::vector<std::vector<uint8_t>> messages(size_t len) {
  std::mt19937_64 rng(len);
  std::vector<std::vector<uint8_t>> v(kFlows, std::vector<uint8_t>(len));
  for (auto& m : v) {
    for (auto& b : m) b = static_cast<uint8_t>(rng());
  }
  return v;
}

void BM_SipHash(benchmark::State& state) {
  const auto msgs = messages(static_cast<size_t>(state.range(0)));
  size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(siphash24(kKey, msgs[i++ & (kFlows - 1)]));
}
BENCHMARK(BM_SipHash)->Name("siphash_52B/lodestone")->Arg(52);
BENCHMARK(BM_SipHash)->Name("siphash_8B/lodestone")->Arg(8);

void BM_OpenSslSipHash(benchmark::State& state) {
  const auto msgs = messages(static_cast<size_t>(state.range(0)));
  lode::test::OpenSslSipHash openssl;
  if (openssl(kKey, msgs[0]) != siphash24(kKey, msgs[0])) std::abort();
  size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(openssl(kKey, msgs[i++ & (kFlows - 1)]));
}
BENCHMARK(BM_OpenSslSipHash)->Name("siphash_52B/openssl")->Arg(52);
BENCHMARK(BM_OpenSslSipHash)->Name("siphash_8B/openssl")->Arg(8);

}  // namespace

LODE_BENCHMARK_MAIN_WITH_RATIOS("/lodestone", "/openssl")

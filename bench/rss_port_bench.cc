// The software RSS of the dpdk front (dataplane/front/toeplitz.h): one
// Toeplitz hash of a TCP 4-tuple, and one local port choice for a backend
// leg (the port search FlowEngine::rss_local_port runs: ports whose return
// tuple hashes to the lcore's queue, the taken ones skipped), by the number
// of queues the RETA spreads over.
#include <benchmark/benchmark.h>

#include <bitset>
#include <cstdint>
#include <vector>

#include "dataplane/front/flow_engine.h"
#include "dataplane/front/toeplitz.h"

namespace lode::front {
namespace {

constexpr uint8_t kKey[40] = {0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67,
                              0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb,
                              0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
                              0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa};

RssHash rss_over(uint32_t queues) {
  std::vector<uint16_t> reta(128);
  for (size_t i = 0; i < reta.size(); ++i) reta[i] = static_cast<uint16_t>(i % queues);
  return *RssHash::make(kKey, std::move(reta));
}

FlowKey tuple(uint8_t family) {
  FlowKey k;
  k.src.family = k.dst.family = family;
  for (uint8_t i = 0; i < 16; ++i) {
    k.src.bytes[i] = static_cast<uint8_t>(0x20 + i);
    k.dst.bytes[i] = static_cast<uint8_t>(0x90 + 3 * i);
  }
  k.sport = 443;
  k.dport = 20000;
  return k;
}

void hash(benchmark::State& state, uint8_t family) {
  const RssHash rss = rss_over(4);
  FlowKey k = tuple(family);
  for (auto _ : state) {
    ++k.dport;
    benchmark::DoNotOptimize(rss.hash(k));
  }
}
void BM_ToeplitzHashIpv4Tcp(benchmark::State& state) { hash(state, 4); }
void BM_ToeplitzHashIpv6Tcp(benchmark::State& state) { hash(state, 6); }

// What rss_local_port does per leg, one peer: the search from a rotating
// cursor, a port taken by one of this lcore's flows skipped. The taken set
// is emptied every 1000 legs (flows end), as an engine's would be.
void BM_RssPortChoice(benchmark::State& state) {
  const auto queues = static_cast<uint32_t>(state.range(0));
  const uint8_t family = static_cast<uint8_t>(state.range(1));
  const RssHash rss = rss_over(queues);
  const FlowKey k = tuple(family);
  std::bitset<65536> taken;
  uint32_t cursor = 0, held = 0;
  uint64_t misses = 0;
  for (auto _ : state) {
    const uint16_t port = rss.find_dport(k, static_cast<uint16_t>(queues - 1), FlowEngine::kFirstLocalPort,
                                         FlowEngine::kLastRssPort, cursor, FlowEngine::kRssPortAttempts,
                                         [&](uint16_t p) { return !taken[p]; });
    if (port == 0) {
      ++misses;
      continue;
    }
    taken[port] = true;
    cursor = uint32_t{port} - FlowEngine::kFirstLocalPort + 1;
    if (++held == 1000) {
      taken.reset();
      held = 0;
    }
  }
  state.counters["misses"] = static_cast<double>(misses);
}

BENCHMARK(BM_ToeplitzHashIpv4Tcp);
BENCHMARK(BM_ToeplitzHashIpv6Tcp);
BENCHMARK(BM_RssPortChoice)->ArgsProduct({{2, 4, 8, 16}, {4, 6}})->ArgNames({"queues", "family"});

}  // namespace
}  // namespace lode::front

BENCHMARK_MAIN();

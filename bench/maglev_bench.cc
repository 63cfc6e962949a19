// Backend selection: Maglev lookup and build, and the per-connection pick of
// each pool algorithm (pick + on_close, so the state stays steady). The ratio
// table compares a Maglev lookup with rendezvous hashing (highest random
// weight, O(backends)) over the same keys and backends, in the same run.
//
//   ./build/release/bench/maglev_bench --benchmark_min_time=0.5
#include <cstdint>
#include <string>
#include <vector>

#include "bench_ratio.h"
#include "dataplane/route/backend_pool.h"
#include "dataplane/route/maglev.h"
#include "lodestone/name_hash.h"

namespace {

using lode::route::Algorithm;
using lode::route::BackendPool;
using lode::route::MaglevBackend;
using lode::route::MaglevTable;
using lode::route::PickContext;
using lode::route::PoolSpec;
using lode::route::PoolState;
using lode::route::TriedSet;

std::vector<std::string> backend_ids(int n) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) {
    ids.push_back("10." + std::to_string(i / 65536) + "." + std::to_string(i / 256 % 256) + "." +
                  std::to_string(i % 256) + ":443");
  }
  return ids;
}

std::vector<MaglevBackend> maglev_list(const std::vector<std::string>& ids) {
  std::vector<MaglevBackend> v;
  for (size_t i = 0; i < ids.size(); ++i) v.push_back({ids[i], static_cast<uint32_t>(1 + i % 3)});
  return v;
}

// 4096 pseudo-random keys (splitmix64), walked in order.
const std::vector<uint64_t>& keys() {
  static const std::vector<uint64_t> k = [] {
    std::vector<uint64_t> v(4096);
    uint64_t x = 42;
    for (uint64_t& e : v) {
      uint64_t z = (x += 0x9e3779b97f4a7c15ull);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      e = z ^ (z >> 31);
    }
    return v;
  }();
  return k;
}

void BM_MaglevLookup(benchmark::State& state) {
  const auto ids = backend_ids(static_cast<int>(state.range(0)));
  const MaglevTable t = MaglevTable::build(maglev_list(ids)).value();
  const auto& k = keys();
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(t.lookup(k[i++ & 4095]));
  }
}
BENCHMARK(BM_MaglevLookup)->Name("ConsistentHash_8backends/lodestone")->Arg(8);
BENCHMARK(BM_MaglevLookup)->Name("ConsistentHash_64backends/lodestone")->Arg(64);

// Rendezvous hashing: the backend with the highest hash(key, backend).
void BM_RendezvousLookup(benchmark::State& state) {
  const auto ids = backend_ids(static_cast<int>(state.range(0)));
  std::vector<uint64_t> seeds;
  for (const auto& id : ids) seeds.push_back(lode::name_hash(id, 1));
  const auto& k = keys();
  size_t i = 0;
  for (auto _ : state) {
    const uint64_t key = k[i++ & 4095];
    uint32_t best = 0;
    uint64_t best_h = 0;
    for (uint32_t b = 0; b < seeds.size(); ++b) {
      uint64_t h = (key ^ seeds[b]) * 0x9e3779b97f4a7c15ull;
      h ^= h >> 29;
      if (h >= best_h) {
        best_h = h;
        best = b;
      }
    }
    benchmark::DoNotOptimize(best);
  }
}
BENCHMARK(BM_RendezvousLookup)->Name("ConsistentHash_8backends/rendezvous")->Arg(8);
BENCHMARK(BM_RendezvousLookup)->Name("ConsistentHash_64backends/rendezvous")->Arg(64);

void BM_MaglevBuild(benchmark::State& state) {
  const auto ids = backend_ids(static_cast<int>(state.range(0)));
  const auto list = maglev_list(ids);
  const auto m = static_cast<uint32_t>(state.range(1));
  for (auto _ : state) {
    auto t = MaglevTable::build(list, m);
    if (!t) state.SkipWithError("build failed");
    benchmark::DoNotOptimize(t);
  }
  state.SetLabel("M=" + std::to_string(m));
}
// M >= 100 slots per backend: 1000 backends need M >= 100,000 (100003).
BENCHMARK(BM_MaglevBuild)
    ->Args({10, 65537})
    ->Args({100, 65537})
    ->Args({655, 65537})
    ->Args({1000, 100003})
    ->Unit(benchmark::kMillisecond);

PoolSpec pool_spec(Algorithm algo, int n) {
  PoolSpec s;
  s.algorithm = algo;
  for (const auto& id : backend_ids(n)) {
    lode::route::BackendSpec b;
    b.address = lode::parse_socket_address(id).value();
    b.weight = static_cast<uint32_t>(1 + s.backends.size() % 3);
    s.backends.push_back(b);
  }
  return s;
}

void BM_PoolPick(benchmark::State& state, Algorithm algo) {
  const int n = static_cast<int>(state.range(0));
  const BackendPool pool = BackendPool::build(pool_spec(algo, n)).value();
  PoolState st(pool);
  // Some connections held open, unevenly, so least-conn has work to do.
  for (int i = 0; i < 4 * n; ++i) {
    TriedSet t;
    (void)pool.pick(st, {}, t);
  }
  const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (int i = 0; i < 256; ++i) v.push_back("tenant" + std::to_string(i) + ".example.com");
    return v;
  }();
  std::vector<lode::SocketAddress> clients;
  for (int i = 0; i < 256; ++i) {
    clients.push_back(lode::parse_socket_address("198.51." + std::to_string(i / 200) + "." +
                                                 std::to_string(i % 200) + ":40000")
                          .value());
  }
  size_t i = 0;
  for (auto _ : state) {
    const PickContext ctx{&clients[i & 255], names[i & 255], 1000};
    ++i;
    TriedSet tried;
    auto r = pool.pick(st, ctx, tried);
    benchmark::DoNotOptimize(r);
    pool.on_close(st, *r);
  }
}
BENCHMARK_CAPTURE(BM_PoolPick, smooth_wrr, Algorithm::kRoundRobin)->Arg(8)->Arg(64);
BENCHMARK_CAPTURE(BM_PoolPick, least_conn, Algorithm::kLeastConn)->Arg(8)->Arg(64);
BENCHMARK_CAPTURE(BM_PoolPick, maglev_client, Algorithm::kMaglevClient)->Arg(8)->Arg(64);
BENCHMARK_CAPTURE(BM_PoolPick, maglev_sni, Algorithm::kMaglevSni)->Arg(8)->Arg(64);

}  // namespace

LODE_BENCHMARK_MAIN_WITH_RATIOS("/lodestone", "/rendezvous")

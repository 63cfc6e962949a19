// The dpdk front's per-packet work on one core, without the NIC: the flow
// engine fed frames from memory, its output written to a reused buffer.
//   forward/client_to_backend, forward/backend_to_client: one segment of an
//     established passthrough flow (1448 bytes of payload) parsed, looked up,
//     translated and rebuilt with its checksums;
//   syn: a SYN answered with a cookie SYN-ACK;
//   new_flow: SYN, cookie ACK, a 517-byte ClientHello parsed and routed to a
//     reject (alert + FIN), the client's FIN: one whole connection;
//   ForwardInPlaceManyFlows/flows:N/prefetch:K: segments of N spliced flows
//     in a random order, with FlowEngine::prefetch_flow K frames ahead.
// bench/dpdk_front_bench.sh runs it beside dpdk-testpmd's io forwarding on
// the same machine and prints the ratio.
//
//   ./build/release/bench/flow_engine_bench --benchmark_min_time=0.5
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "bench/flow_engine_fixture.h"
#include "support/hello_builder.h"

namespace {

using namespace lode::front;
using lode::bench::establish;
using lode::bench::Established;
using lode::bench::frame_of;
using lode::bench::from_client;
using lode::bench::kNow;
using lode::bench::make_engine;
using Sink = lode::bench::CopySink;

// The sink of the hot loops: nothing copied; frames rewritten in place
// are "sent" as they are.
class NullSink : public FrameSink {
 public:
  std::span<uint8_t> buffer() noexcept override { return buf_; }
  void send(size_t) noexcept override { ++frames; }
  bool send_in_place(std::span<uint8_t>) noexcept override {
    ++frames;
    return true;
  }
  uint64_t frames = 0;

 private:
  std::array<uint8_t, kMaxFrame> buf_{};
};

void forward(benchmark::State& state, bool to_backend) {
  Established e = establish();
  NullSink sink;
  const std::vector<uint8_t>& src = to_backend ? e.client_data : e.backend_data;
  alignas(64) static uint8_t buf[kMaxFrame];  // where an mbuf's data starts (see forward_in_place)
  const std::span<const uint8_t> f(buf, src.size());
  std::copy(src.begin(), src.end(), buf);
  for (auto _ : state) e.engine->on_frame(f, kNow, sink);
  if (sink.frames != state.iterations() || e.engine->flows() != 1) state.SkipWithError("not forwarded");
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * f.size()));
}
void BM_ForwardClientToBackend(benchmark::State& state) { forward(state, true); }
void BM_ForwardBackendToClient(benchmark::State& state) { forward(state, false); }

// The same segments rewritten in the received buffer (what the lcores do):
// each iteration first restores the 66 header bytes, as a new receive would.
void forward_in_place(benchmark::State& state, bool to_backend, bool nic_verified = false, bool timestamps = false) {
  Established e = establish(timestamps);
  NullSink sink;
  const std::vector<uint8_t>& src = to_backend ? e.client_data : e.backend_data;
  // The frame where an mbuf's data starts: on a 64-byte boundary (the heap
  // gives 16, and the checksum loop's speed depended on where).
  alignas(64) static uint8_t buf[kMaxFrame];
  const std::span<uint8_t> f(buf, src.size());
  std::copy(src.begin(), src.end(), f.begin());
  const std::vector<uint8_t> headers(src.begin(), src.begin() + 66);
  const uint64_t before = e.engine->stats().forwarded_in_place;
  for (auto _ : state) {
    std::copy(headers.begin(), headers.end(), f.begin());
    e.engine->on_frame_in_place(f, kNow, sink, nic_verified);
  }
  if (sink.frames != state.iterations() ||
      e.engine->stats().forwarded_in_place - before != static_cast<uint64_t>(state.iterations())) {
    state.SkipWithError("not forwarded in place");
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * f.size()));
}
void BM_ForwardInPlaceClientToBackend(benchmark::State& state) { forward_in_place(state, true); }
void BM_ForwardInPlaceBackendToClient(benchmark::State& state) { forward_in_place(state, false); }
// With the NIC's RX checksum offload (RTE_MBUF_F_RX_L4_CKSUM_GOOD): the
// payload is not read at all.
void BM_ForwardInPlaceNicChecksumClientToBackend(benchmark::State& state) { forward_in_place(state, true, true); }
void BM_ForwardInPlaceNicChecksumBackendToClient(benchmark::State& state) { forward_in_place(state, false, true); }
// The same with timestamps on both sides (TSval/TSecr translated too).
void BM_ForwardInPlaceNicChecksumTimestampsClientToBackend(benchmark::State& state) {
  forward_in_place(state, true, true, true);
}
void BM_ForwardInPlaceNicChecksumTimestampsBackendToClient(benchmark::State& state) {
  forward_in_place(state, false, true, true);
}

// Many established flows (the flow table out of cache): each iteration is
// one burst of 32 segments of flows drawn uniformly at random, each frame
// given its flow's headers (retarget: addresses, port, checksums; the
// payload untouched) and handled in place with the NIC's checksum flag, as
// the lcore does. Args: flows, prefetch distance (FlowEngine::prefetch_flow
// for frame i + K and prefetch_flow_links for frame i + K / 2 while frame i
// is handled; 0: neither), direction (1: client to backend). The clock moves 1 ms every 32 bursts (about 30 Mpps), so
// the timeout lists are relinked as under real traffic. Items: frames.
void BM_ForwardInPlaceManyFlows(benchmark::State& state) {
  constexpr size_t kBurst = 32;
  const auto n = static_cast<uint32_t>(state.range(0));
  const auto k = static_cast<size_t>(state.range(1));
  const bool to_backend = state.range(2) != 0;
  // One engine per flow count, kept across the benchmark's runs (setting up
  // 100,000 flows takes a while).
  static std::map<uint32_t, lode::bench::EstablishedFlows> engines;
  auto it = engines.find(n);
  if (it == engines.end()) it = engines.emplace(n, lode::bench::establish_flows(n)).first;
  lode::bench::EstablishedFlows& e = it->second;
  static uint64_t clock = 0;  // the engine's clock never goes back
  NullSink sink;
  const std::vector<uint8_t>& src = to_backend ? e.client_data : e.backend_data;
  const size_t hdr = 54;  // Ethernet, IPv4, TCP without options
  // Where mbufs' data would start: 64-byte aligned, 2 KiB apart.
  alignas(64) static uint8_t bufs[kBurst][2048];
  for (auto& b : bufs) std::copy(src.begin(), src.end(), b);
  std::vector<uint32_t> order(size_t{1} << 16);
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (uint32_t& j : order) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    j = static_cast<uint32_t>(((x >> 32) * n) >> 32);
  }
  size_t next = 0;
  const uint64_t before = e.engine->stats().forwarded_in_place;
  std::array<std::span<uint8_t>, kBurst> frames;
  for (size_t i = 0; i < kBurst; ++i) frames[i] = std::span<uint8_t>(bufs[i], src.size());
  for (auto _ : state) {
    for (size_t i = 0; i < kBurst; ++i) {
      std::copy(src.begin(), src.begin() + hdr, bufs[i]);
      if (n > 1) lode::bench::retarget(bufs[i], to_backend, e.flows[order[next++ & (order.size() - 1)]]);
    }
    const uint64_t now = kNow + (++clock >> 5);
    for (size_t i = 0; i < k && i < kBurst; ++i) e.engine->prefetch_flow(frames[i]);
    for (size_t i = 0; i < k / 2 && i < kBurst; ++i) e.engine->prefetch_flow_links(frames[i]);
    for (size_t i = 0; i < kBurst; ++i) {
      if (k > 0 && i + k < kBurst) e.engine->prefetch_flow(frames[i + k]);
      if (k > 1 && i + k / 2 < kBurst) e.engine->prefetch_flow_links(frames[i + k / 2]);
      e.engine->on_frame_in_place(frames[i], now, sink, true);
    }
  }
  const uint64_t frames_done = static_cast<uint64_t>(state.iterations()) * kBurst;
  if (sink.frames != frames_done || e.engine->stats().forwarded_in_place - before != frames_done ||
      e.engine->flows() != n) {
    state.SkipWithError("not forwarded in place");
  }
  state.SetItemsProcessed(static_cast<int64_t>(frames_done));
}

void BM_SynToCookieSynAck(benchmark::State& state) {
  auto engine = make_engine();
  NullSink sink;
  const auto syn = frame_of(from_client(40000, kTcpSyn, 1, 0));
  for (auto _ : state) engine->on_frame(syn, kNow, sink);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_NewFlowRejectedInTheDataplane(benchmark::State& state) {
  auto engine = make_engine();
  Sink sink;
  static const auto hello = lode::test::HelloBuilder().sni("r.test").records();
  uint16_t port = 1024;
  for (auto _ : state) {
    port = static_cast<uint16_t>(port == 65535 ? 1024 : port + 1);
    engine->on_frame(frame_of(from_client(port, kTcpSyn, 7, 0)), kNow, sink);
    const uint32_t isn = parse_frame(sink.last).seq;
    engine->on_frame(frame_of(from_client(port, kTcpAck, 8, isn + 1)), kNow, sink);
    engine->on_frame(frame_of(from_client(port, kTcpAck | kTcpPsh, 8, isn + 1, hello)), kNow, sink);
    engine->on_frame(frame_of(from_client(port, kTcpFin | kTcpAck, 8 + static_cast<uint32_t>(hello.size()), isn + 9)),
                     kNow, sink);
  }
  if (engine->flows() != 0) state.SkipWithError("flows left");
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

BENCHMARK(BM_ForwardClientToBackend);
BENCHMARK(BM_ForwardBackendToClient);
BENCHMARK(BM_ForwardInPlaceClientToBackend);
BENCHMARK(BM_ForwardInPlaceBackendToClient);
BENCHMARK(BM_ForwardInPlaceNicChecksumClientToBackend);
BENCHMARK(BM_ForwardInPlaceNicChecksumBackendToClient);
BENCHMARK(BM_ForwardInPlaceNicChecksumTimestampsClientToBackend);
BENCHMARK(BM_ForwardInPlaceNicChecksumTimestampsBackendToClient);
BENCHMARK(BM_ForwardInPlaceManyFlows)
    ->ArgNames({"flows", "prefetch", "to_backend"})
    ->ArgsProduct({{1, 1000, 100000}, {0, 4, 8}, {1, 0}});
BENCHMARK(BM_SynToCookieSynAck);
BENCHMARK(BM_NewFlowRejectedInTheDataplane);

}  // namespace

BENCHMARK_MAIN();

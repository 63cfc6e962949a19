// The dpdk front's per-packet work on one core, without the NIC: the flow
// engine fed frames from memory, its output written to a reused buffer.
//   forward/client_to_backend, forward/backend_to_client: one segment of an
//     established passthrough flow (1448 bytes of payload) parsed, looked up,
//     translated and rebuilt with its checksums;
//   syn: a SYN answered with a cookie SYN-ACK;
//   new_flow: SYN, cookie ACK, a 517-byte ClientHello parsed and routed to a
//     reject (alert + FIN), the client's FIN: one whole connection;
//   new_flow_passthrough: SYN, cookie ACK, a 600-byte ClientHello parsed and
//     routed to a passthrough pool, our SYN to the backend (its MAC known),
//     the backend's SYN-ACK, the hello replayed, the backend's ACK passed to
//     the client (spliced), the client's RST passed to the backend: one whole
//     passthrough connection up to the splice (the new-flow path);
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

// Takes what the engine sends, reading only what the new-flow loop needs
// from it: the cookie ISN of a SYN-ACK, the local port of our SYN to the
// backend (IPv4, no IP options: the fixture's frames).
class NewFlowSink : public FrameSink {
 public:
  std::span<uint8_t> buffer() noexcept override { return buf_; }
  void send(size_t len) noexcept override {
    ++frames;
    if (len < 54 || buf_[12] != 0x08 || buf_[13] != 0x00 || buf_[23] != kProtoTcp) return;
    const uint8_t flags = buf_[47];
    if (flags == (kTcpSyn | kTcpAck)) cookie_isn = get32(&buf_[38]);
    if (flags == kTcpSyn) syn_port = static_cast<uint16_t>(buf_[34] << 8 | buf_[35]);
  }
  bool send_in_place(std::span<uint8_t>) noexcept override {
    ++frames;
    return true;
  }
  uint64_t frames = 0;
  uint32_t cookie_isn = 0;
  uint16_t syn_port = 0;

 private:
  static constexpr uint8_t kProtoTcp = 6;
  static uint32_t get32(const uint8_t* p) noexcept {
    return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
  }
  std::array<uint8_t, kMaxFrame> buf_{};
};

void BM_NewFlowPassedThroughInTheDataplane(benchmark::State& state) {
  auto engine = make_engine();
  NewFlowSink sink;
  static const auto hello = [] {
    const size_t base = lode::test::HelloBuilder().sni("p.test").records().size();
    return lode::test::HelloBuilder().sni("p.test").ext(21, lode::test::Bytes(600 - base - 4, 0)).records();
  }();
  const auto hello_len = static_cast<uint32_t>(hello.size());
  auto backend = [](uint16_t lport, uint8_t flags, uint32_t seq, uint32_t ack) {
    TcpSegment b;
    b.src_mac = lode::bench::kBackendMac;
    b.dst_mac = lode::bench::kOurMac;
    b.flow = FlowKey{lode::bench::kBackend, lode::bench::kVip, 443, lport};
    b.seq = seq;
    b.ack = ack;
    b.flags = flags;
    b.window = 2000;
    return frame_of(b);
  };
  // One connection; `prime`: the first, whose hello brings the ARP request
  // for the backend (answered here) instead of our SYN.
  auto connection = [&](uint16_t port, bool prime) {
    engine->on_frame(frame_of(from_client(port, kTcpSyn, 7, 0)), kNow, sink);
    const uint32_t isn = sink.cookie_isn;
    engine->on_frame(frame_of(from_client(port, kTcpAck, 8, isn + 1)), kNow, sink);
    sink.syn_port = 0;
    engine->on_frame(frame_of(from_client(port, kTcpAck | kTcpPsh, 8, isn + 1, hello)), kNow, sink);
    if (prime) {
      std::vector<uint8_t> req(64), arp(64);
      req.resize(build_arp_request(req, lode::bench::kOurMac, lode::bench::kVipV4, lode::bench::kBackendV4));
      arp.resize(build_arp_reply(arp, parse_frame(req), lode::bench::kBackendMac, lode::bench::kBackendV4));
      engine->on_frame(arp, kNow, sink);
    }
    const uint16_t lport = sink.syn_port;
    engine->on_frame(backend(lport, kTcpSyn | kTcpAck, 5000, 8), kNow, sink);         // the replay
    engine->on_frame(backend(lport, kTcpAck, 5001, 8 + hello_len), kNow, sink);      // spliced
    engine->on_frame(frame_of(from_client(port, kTcpRst | kTcpAck, 8 + hello_len, isn + 1)), kNow, sink);
  };
  connection(1023, true);
  const uint64_t spliced = engine->stats().spliced_to_client;
  uint16_t port = 1024;
  for (auto _ : state) {
    port = static_cast<uint16_t>(port == 65535 ? 1024 : port + 1);
    connection(port, false);
  }
  if (engine->flows() != 0) state.SkipWithError("flows left");
  if (engine->stats().spliced_to_client - spliced != state.iterations()) state.SkipWithError("a flow not spliced");
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
BENCHMARK(BM_NewFlowPassedThroughInTheDataplane);

}  // namespace

BENCHMARK_MAIN();

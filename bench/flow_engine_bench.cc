// The dpdk front's per-packet work on one core, without the NIC: the flow
// engine fed frames from memory, its output written to a reused buffer.
//   forward/client_to_backend, forward/backend_to_client: one segment of an
//     established passthrough flow (1448 bytes of payload) parsed, looked up,
//     translated and rebuilt with its checksums;
//   syn: a SYN answered with a cookie SYN-ACK;
//   new_flow: SYN, cookie ACK, a 517-byte ClientHello parsed and routed to a
//     reject (alert + FIN), the client's FIN: one whole connection.
// bench/dpdk_front_bench.sh runs it beside dpdk-testpmd's io forwarding on
// the same machine and prints the ratio.
//
//   ./build/release/bench/flow_engine_bench --benchmark_min_time=0.5
#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "controlplane/config.h"
#include "dataplane/front/flow_engine.h"
#include "dataplane/tls/ticket_keys.h"
#include "support/hello_builder.h"
#include "tools/lodestone/runtime_builder.h"

namespace {

using namespace lode::front;

constexpr MacAddr kOurMac = {0x02, 0, 0, 0, 0, 1};
constexpr MacAddr kClientMac = {0x02, 0, 0, 0, 0, 2};
constexpr MacAddr kBackendMac = {0x02, 0, 0, 0, 0, 9};
const IpAddr kVip = IpAddr::v4(0x0a000001);
const IpAddr kClient = IpAddr::v4(0x0a000002);
const IpAddr kBackend = IpAddr::v4(0x0a000009);
constexpr uint64_t kNow = 1'000'000;

class Sink : public FrameSink {
 public:
  std::span<uint8_t> buffer() noexcept override { return buf_; }
  void send(size_t len) noexcept override {
    last.assign(buf_.begin(), buf_.begin() + static_cast<long>(len));
    if (parse_frame(last).l3 == L3::kArp) arp = last;
    ++frames;
  }
  std::vector<uint8_t> last, arp;
  uint64_t frames = 0;

 private:
  std::array<uint8_t, kMaxFrame> buf_{};
};

// A second sink for the hot loops: nothing copied; frames rewritten in place
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

std::unique_ptr<FlowEngine> make_engine() {
  static const std::string toml =
      "[[listener]]\nname = \"vip\"\nlisten = [\"10.0.0.1:443\"]\n"
      "[[pool]]\nname = \"p\"\nbackends = [\"10.0.0.9:443\"]\n"
      "[[route]]\nname = \"r\"\nnames = [\"r.test\"]\naction = \"reject\"\n"
      "[[route]]\nname = \"p\"\nnames = [\"p.test\"]\naction = \"passthrough\"\npool = \"p\"\n";
  auto cfg = lode::config::load_config_string(toml, "bench.toml");
  auto keys = lode::tls::TicketKeys::create(1);
  if (!cfg || !keys) std::abort();
  auto built = lode::app::build_runtime(*cfg, *keys, 1);
  if (!built) std::abort();
  EngineConfig ec;
  ec.mac = kOurMac;
  ec.vips = vips_of(*built->runtime);
  ec.cookie_key = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6};
  return std::make_unique<FlowEngine>(ec, built->runtime);
}

std::vector<uint8_t> frame_of(const TcpSegment& s) {
  std::vector<uint8_t> f(kMaxFrame);
  f.resize(build_tcp(f, s));
  return f;
}

TcpSegment from_client(uint16_t sport, uint8_t flags, uint32_t seq, uint32_t ack, std::span<const uint8_t> data = {}) {
  TcpSegment s;
  s.src_mac = kClientMac;
  s.dst_mac = kOurMac;
  s.flow = FlowKey{kClient, kVip, sport, 443};
  s.seq = seq;
  s.ack = ack;
  s.flags = flags;
  s.window = 2000;
  s.payload = data;
  return s;
}

// One established passthrough flow; returns the two frames to replay.
// timestamps: both ends send them (RFC 7323), as Linux does by default.
struct Established {
  std::unique_ptr<FlowEngine> engine;
  std::vector<uint8_t> client_data, backend_data;
};

Established establish(bool timestamps = false) {
  Established e;
  e.engine = make_engine();
  Sink sink;
  const uint32_t cisn = 1000;
  uint32_t client_ts = 7000;
  auto client = [&](uint8_t flags, uint32_t seq, uint32_t ack, std::span<const uint8_t> data = {}) {
    TcpSegment s = from_client(40000, flags, seq, ack, data);
    if (timestamps) {
      s.options.has_timestamps = true;
      s.options.ts_val = client_ts++;
      s.options.ts_ecr = sink.last.empty() ? 0 : parse_frame(sink.last).options.ts_val;
    }
    return frame_of(s);
  };
  e.engine->on_frame(client(kTcpSyn, cisn, 0), kNow, sink);
  const Packet sa = parse_frame(sink.last);
  const uint32_t isn = sa.seq;
  e.engine->on_frame(client(kTcpAck, cisn + 1, isn + 1), kNow, sink);
  static const auto hello = lode::test::HelloBuilder().sni("p.test").records();
  e.engine->on_frame(client(kTcpAck, cisn + 1, isn + 1, hello), kNow, sink);
  std::vector<uint8_t> arp(64);
  const Packet req = parse_frame(sink.arp);  // the ARP request for the backend
  arp.resize(build_arp_reply(arp, req, kBackendMac, 0x0a000009));
  e.engine->on_frame(arp, kNow, sink);
  const Packet syn = parse_frame(sink.last);  // our SYN to the backend
  TcpSegment b;
  b.src_mac = kBackendMac;
  b.dst_mac = kOurMac;
  b.flow = FlowKey{kBackend, kVip, 443, syn.sport};
  b.seq = 5000;
  b.ack = cisn + 1;
  b.flags = kTcpSyn | kTcpAck;
  b.window = 2000;
  if (timestamps) {
    b.options.has_timestamps = true;
    b.options.ts_val = 90000;
    b.options.ts_ecr = syn.options.ts_val;
  }
  e.engine->on_frame(frame_of(b), kNow, sink);
  static std::vector<uint8_t> payload(1448, 0x5a);
  const uint32_t after_hello = cisn + 1 + static_cast<uint32_t>(hello.size());
  b.flags = kTcpAck;
  b.seq = 5001;
  b.ack = after_hello;
  b.payload = payload;
  if (timestamps) b.options.ts_val = 90001;
  e.backend_data = frame_of(b);
  // The backend acknowledges the replayed hello (the flow leaves the replay
  // wait, as it does once the backend has the bytes).
  e.engine->on_frame(e.backend_data, kNow, sink);
  e.client_data = client(kTcpAck, after_hello, isn + 1, payload);
  return e;
}

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
BENCHMARK(BM_SynToCookieSynAck);
BENCHMARK(BM_NewFlowRejectedInTheDataplane);

}  // namespace

BENCHMARK_MAIN();

// The flow engine set up for the benchmarks: one VIP (10.0.0.1:443), a
// reject route and a passthrough route to one backend, and one passthrough
// flow brought to the established splice state the way a real connection
// gets there (SYN -> cookie SYN-ACK, ACK, ClientHello, ARP for the backend,
// the backend's SYN-ACK, the backend acknowledging the replayed hello).
// Shared by bench/flow_engine_bench.cc (the engine on frames in memory) and
// bench/dpdk_ring_forward_bench.cc (the engine behind a net_ring port).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "controlplane/config.h"
#include "dataplane/front/flow_engine.h"
#include "dataplane/tls/ticket_keys.h"
#include "support/hello_builder.h"
#include "tools/lodestone/runtime_builder.h"

namespace lode::bench {

inline constexpr front::MacAddr kOurMac = {0x02, 0, 0, 0, 0, 1};
inline constexpr front::MacAddr kClientMac = {0x02, 0, 0, 0, 0, 2};
inline constexpr front::MacAddr kBackendMac = {0x02, 0, 0, 0, 0, 9};
inline constexpr uint32_t kVipV4 = 0x0a000001, kClientV4 = 0x0a000002, kBackendV4 = 0x0a000009;
inline const front::IpAddr kVip = front::IpAddr::v4(kVipV4);
inline const front::IpAddr kClient = front::IpAddr::v4(kClientV4);
inline const front::IpAddr kBackend = front::IpAddr::v4(kBackendV4);
inline constexpr uint16_t kClientPort = 40000;
inline constexpr uint64_t kNow = 1'000'000;
inline constexpr size_t kSegmentPayload = 1448;  // 1,502-byte frames (1,514 with timestamps)

// Keeps a copy of the last frame sent (and of the last ARP frame).
class CopySink : public front::FrameSink {
 public:
  std::span<uint8_t> buffer() noexcept override { return buf_; }
  void send(size_t len) noexcept override {
    last.assign(buf_.begin(), buf_.begin() + static_cast<long>(len));
    if (front::parse_frame(last).l3 == front::L3::kArp) arp = last;
    sent.push_back(last);
    if (sent.size() > 64) sent.erase(sent.begin());
    ++frames;
  }
  std::vector<uint8_t> last, arp;
  std::vector<std::vector<uint8_t>> sent;  // the latest frames, up to 64
  uint64_t frames = 0;

 private:
  std::array<uint8_t, front::kMaxFrame> buf_{};
};

// backends: 10.0.0.9, 10.0.0.10, ... in the pool (each takes at most the
// engine's 41,000 local ports: many flows need several). max_flows: the
// engine's flow slots.
inline std::unique_ptr<front::FlowEngine> make_engine(uint32_t backends = 1, uint32_t max_flows = 65536) {
  std::string pool;
  for (uint32_t i = 0; i < backends; ++i) {
    pool += (i == 0 ? "\"10.0.0." : ", \"10.0.0.") + std::to_string(9 + i) + ":443\"";
  }
  const std::string toml =
      "[[listener]]\nname = \"vip\"\nlisten = [\"10.0.0.1:443\"]\n"
      "[[pool]]\nname = \"p\"\nbackends = [" + pool + "]\n"
      "[[route]]\nname = \"r\"\nnames = [\"r.test\"]\naction = \"reject\"\n"
      "[[route]]\nname = \"p\"\nnames = [\"p.test\"]\naction = \"passthrough\"\npool = \"p\"\n";
  auto cfg = lode::config::load_config_string(toml, "bench.toml");
  auto keys = lode::tls::TicketKeys::create(1);
  if (!cfg || !keys) std::abort();
  auto built = lode::app::build_runtime(*cfg, *keys, 1);
  if (!built) std::abort();
  front::EngineConfig ec;
  ec.mac = kOurMac;
  ec.vips = front::vips_of(*built->runtime);
  ec.cookie_key = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6};
  ec.max_flows = max_flows;
  return std::make_unique<front::FlowEngine>(ec, built->runtime);
}

inline std::vector<uint8_t> frame_of(const front::TcpSegment& s) {
  std::vector<uint8_t> f(front::kMaxFrame);
  f.resize(front::build_tcp(f, s));
  return f;
}

inline front::TcpSegment from_client(uint16_t sport, uint8_t flags, uint32_t seq, uint32_t ack,
                                     std::span<const uint8_t> data = {}) {
  front::TcpSegment s;
  s.src_mac = kClientMac;
  s.dst_mac = kOurMac;
  s.flow = front::FlowKey{kClient, kVip, sport, 443};
  s.seq = seq;
  s.ack = ack;
  s.flags = flags;
  s.window = 2000;
  s.payload = data;
  return s;
}

// One established passthrough flow and the two data segments to replay:
// client_data (client -> VIP) and backend_data (backend -> VIP), each with
// kSegmentPayload bytes. timestamps: both ends send them (RFC 7323), as Linux
// does by default.
struct Established {
  std::unique_ptr<front::FlowEngine> engine;
  std::vector<uint8_t> client_data, backend_data;
  uint16_t local_port = 0;  // the engine's port towards the backend
};

inline Established establish(bool timestamps = false) {
  using namespace lode::front;
  Established e;
  e.engine = make_engine();
  CopySink sink;
  const uint32_t cisn = 1000;
  uint32_t client_ts = 7000;
  auto client = [&](uint8_t flags, uint32_t seq, uint32_t ack, std::span<const uint8_t> data = {}) {
    TcpSegment s = from_client(kClientPort, flags, seq, ack, data);
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
  arp.resize(build_arp_reply(arp, req, kBackendMac, kBackendV4));
  e.engine->on_frame(arp, kNow, sink);
  const Packet syn = parse_frame(sink.last);  // our SYN to the backend
  e.local_port = syn.sport;
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
  static std::vector<uint8_t> payload(kSegmentPayload, 0x5a);
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

// Many established passthrough flows in one engine (the flow table out of
// cache): flow j is client 10.1.(j / 16384).(...)'s port 30000 + j % 16384
// (the address's low 16 bits: 256 + j / 16384), spliced the way
// establish() splices its one flow, to the backend Maglev picks among
// kManyBackends. The segments to replay are flow 0's (client_data,
// backend_data, no timestamps), moved to flow j by retarget().
inline constexpr uint32_t kManyBackends = 4;  // 10.0.0.9 .. 10.0.0.12
struct FlowEnds {
  uint32_t client_ip = 0;   // host order
  uint32_t backend_ip = 0;  // host order
  uint32_t client_ack = 0;  // what the client acknowledges (our cookie ISN + 1)
  uint16_t client_port = 0;
  uint16_t local_port = 0;  // the engine's port towards the backend
};
struct EstablishedFlows {
  std::unique_ptr<front::FlowEngine> engine;
  std::vector<uint8_t> client_data, backend_data;  // flow 0's
  std::vector<FlowEnds> flows;
};

inline EstablishedFlows establish_flows(uint32_t n) {
  using namespace lode::front;
  EstablishedFlows e;
  e.engine = make_engine(kManyBackends, std::max<uint32_t>(n + 16, 65536));
  e.flows.resize(n);
  CopySink sink;
  const uint32_t cisn = 1000;
  static const auto hello = lode::test::HelloBuilder().sni("p.test").records();
  static std::vector<uint8_t> payload(kSegmentPayload, 0x5a);
  const uint32_t after_hello = cisn + 1 + static_cast<uint32_t>(hello.size());
  for (uint32_t j = 0; j < n; ++j) {
    FlowEnds& fe = e.flows[j];
    fe.client_ip = 0x0a010000u + 256 + j / 16384;
    fe.client_port = static_cast<uint16_t>(30000 + j % 16384);
    auto client = [&](uint8_t flags, uint32_t seq, uint32_t ack, std::span<const uint8_t> data = {}) {
      TcpSegment s = from_client(fe.client_port, flags, seq, ack, data);
      s.flow.src = IpAddr::v4(fe.client_ip);
      return frame_of(s);
    };
    e.engine->on_frame(client(kTcpSyn, cisn, 0), kNow, sink);
    const uint32_t isn = parse_frame(sink.last).seq;
    fe.client_ack = isn + 1;
    e.engine->on_frame(client(kTcpAck, cisn + 1, isn + 1), kNow, sink);
    sink.sent.clear();
    e.engine->on_frame(client(kTcpAck, cisn + 1, isn + 1, hello), kNow, sink);
    // Our SYN to the backend, after its ARP for the first flow to it.
    for (size_t i = 0; i < sink.sent.size(); ++i) {
      const Packet p = parse_frame(sink.sent[i]);
      if (p.l3 != L3::kArp) continue;
      std::vector<uint8_t> arp(64);
      arp.resize(build_arp_reply(arp, p, kBackendMac, p.arp.target_ip));
      e.engine->on_frame(arp, kNow, sink);
    }
    Packet syn;
    for (const auto& f : sink.sent) {
      if (const Packet p = parse_frame(f); p.l3 == L3::kIpv4 && p.flags == kTcpSyn) syn = p;
    }
    if (syn.l3 != L3::kIpv4 || syn.flags != kTcpSyn) {  // our SYN to the backend
      std::fprintf(stderr, "establish_flows: flow %u: no SYN to a backend (l3 %d, flags %#x)\n", j,
                   static_cast<int>(syn.l3), syn.flags);
      std::abort();
    }
    fe.backend_ip = syn.dst.v4_host();
    fe.local_port = syn.sport;
    TcpSegment b;
    b.src_mac = kBackendMac;
    b.dst_mac = kOurMac;
    b.flow = FlowKey{syn.dst, kVip, 443, syn.sport};
    b.seq = 5000;
    b.ack = cisn + 1;
    b.flags = kTcpSyn | kTcpAck;
    b.window = 2000;
    e.engine->on_frame(frame_of(b), kNow, sink);
    b.flags = kTcpAck;
    b.seq = 5001;
    b.ack = after_hello;
    b.payload = payload;
    const auto backend_data = frame_of(b);
    e.engine->on_frame(backend_data, kNow, sink);
    if (j == 0) {
      e.backend_data = backend_data;
      e.client_data = client(kTcpAck, after_hello, isn + 1, payload);
    }
  }
  if (e.engine->flows() != n) {
    std::fprintf(stderr, "establish_flows: %zu flows of %u\n", e.engine->flows(), n);
    std::abort();
  }
  return e;
}

// Moves a segment of flow 0 (establish_flows' client_data or backend_data,
// or its headers) to flow `to`: the client's segment gets its
// address, port and acknowledgement, the backend's its address and our
// local port; both checksums are updated (RFC 1624), the payload is not read.
inline void retarget(uint8_t* frame, bool client_side, const FlowEnds& to) noexcept {
  uint8_t* const ip = frame + 14;
  uint8_t* const tcp = ip + 20;
  auto get16 = [](const uint8_t* p) { return static_cast<uint32_t>(p[0] << 8 | p[1]); };
  auto put16 = [](uint8_t* p, uint32_t v) {
    p[0] = static_cast<uint8_t>(v >> 8);
    p[1] = static_cast<uint8_t>(v);
  };
  auto fold = [](uint32_t s) {
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return s;
  };
  uint32_t old_sum = 0, new_sum = 0;
  auto change32 = [&](uint8_t* p, uint32_t v) {
    old_sum += get16(p) + get16(p + 2);
    new_sum += (v >> 16) + (v & 0xffff);
    put16(p, v >> 16);
    put16(p + 2, v & 0xffff);
  };
  auto change16 = [&](uint8_t* p, uint16_t v) {
    old_sum += get16(p);
    new_sum += v;
    put16(p, v);
  };
  if (client_side) {
    change32(ip + 12, to.client_ip);
    change16(tcp, to.client_port);
    change32(tcp + 8, to.client_ack);
  } else {
    change32(ip + 12, to.backend_ip);
    change16(tcp + 2, to.local_port);
  }
  // TCP: HC' = ~(~HC + ~m + m') over the changed words (the pseudo-header's
  // source address among them).
  const uint32_t tcp_sum = (~get16(tcp + 16) & 0xffff) + (~fold(old_sum) & 0xffff) + fold(new_sum);
  put16(tcp + 16, ~fold(tcp_sum) & 0xffff);
  // IPv4: recomputed.
  put16(ip + 10, 0);
  uint32_t s = 0;
  for (int i = 0; i < 20; i += 2) s += get16(ip + i);
  put16(ip + 10, ~fold(s) & 0xffff);
}

}  // namespace lode::bench

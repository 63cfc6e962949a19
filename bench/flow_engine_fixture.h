// The flow engine set up for the benchmarks: one VIP (10.0.0.1:443), a
// reject route and a passthrough route to one backend, and one passthrough
// flow brought to the established splice state the way a real connection
// gets there (SYN -> cookie SYN-ACK, ACK, ClientHello, ARP for the backend,
// the backend's SYN-ACK, the backend acknowledging the replayed hello).
// Shared by bench/flow_engine_bench.cc (the engine on frames in memory) and
// bench/dpdk_ring_forward_bench.cc (the engine behind a net_ring port).
#pragma once

#include <array>
#include <cstdint>
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
    ++frames;
  }
  std::vector<uint8_t> last, arp;
  uint64_t frames = 0;

 private:
  std::array<uint8_t, front::kMaxFrame> buf_{};
};

inline std::unique_ptr<front::FlowEngine> make_engine() {
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
  front::EngineConfig ec;
  ec.mac = kOurMac;
  ec.vips = front::vips_of(*built->runtime);
  ec.cookie_key = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6};
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

}  // namespace lode::bench

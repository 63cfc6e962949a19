// Shared parts of the dpdk front's flow engine tests (tests/front/*): the
// addresses of the test link, a runtime built from a TOML configuration, the
// EngineConfig around it, and a FrameSink that records what it is given.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "controlplane/config.h"
#include "dataplane/front/flow_engine.h"
#include "dataplane/front/packet.h"
#include "dataplane/tls/ticket_keys.h"
#include "tools/lodestone/runtime_builder.h"

namespace lode::front::fixture {

inline constexpr MacAddr kOurMac = {0x02, 0, 0, 0, 0, 1};
inline constexpr MacAddr kClientMac = {0x02, 0, 0, 0, 0, 2};
inline constexpr MacAddr kBackendMac = {0x02, 0, 0, 0, 0, 9};
inline constexpr MacAddr kExcMac = {0x02, 0, 0, 0, 0, 0x31};     // ours on the exception port
inline constexpr MacAddr kKernelMac = {0x02, 0, 0, 0, 0, 0x32};  // the kernel's tap
inline const IpAddr kVip = IpAddr::v4(0x0a000001);               // 10.0.0.1
inline const IpAddr kClient = IpAddr::v4(0x0a000002);            // 10.0.0.2
inline constexpr uint32_t kExcAddr = 0xa9fe4d02;                 // 169.254.77.2
inline constexpr uint32_t kKernelAddr = 0xa9fe4d01;              // 169.254.77.1
inline constexpr uint64_t kT = 1'000'000;

inline uint32_t u32(size_t v) { return static_cast<uint32_t>(v); }
inline std::vector<uint8_t> as_vec(std::span<const uint8_t> s) { return {s.begin(), s.end()}; }

// A segment from src_mac to dst_mac on `flow` (no options, no VLAN).
inline TcpSegment segment(const MacAddr& src_mac, const MacAddr& dst_mac, const FlowKey& flow, uint8_t flags,
                          uint32_t seq, uint32_t ack, uint16_t window, std::span<const uint8_t> payload = {}) {
  TcpSegment s;
  s.src_mac = src_mac;
  s.dst_mac = dst_mac;
  s.flow = flow;
  s.seq = seq;
  s.ack = ack;
  s.flags = flags;
  s.window = window;
  s.payload = payload;
  return s;
}

// The frame of segment `s` (built in `room` bytes); checks it was built.
inline std::vector<uint8_t> frame_of(const TcpSegment& s, size_t room = kMaxFrame) {
  std::vector<uint8_t> f(room);
  f.resize(build_tcp(f, s));
  EXPECT_GT(f.size(), 0u);
  return f;
}

// The runtime of `cfg`, with fresh ticket keys (generation 1); null, the
// test failed with the reason, when it does not build.
inline std::shared_ptr<worker::Runtime> runtime_of(const config::Config& cfg) {
  auto keys = tls::TicketKeys::create(1);
  EXPECT_TRUE(keys.has_value());
  if (!keys) return nullptr;
  auto built = app::build_runtime(cfg, *keys, 1);
  EXPECT_TRUE(built.has_value()) << built.error()[0];
  if (!built) return nullptr;
  return built->runtime;
}

// The runtime of the configuration `toml` (`name` for its errors); null,
// the test failed with the reason, when it does not load or build.
inline std::shared_ptr<worker::Runtime> runtime_from(const std::string& toml, const std::string& name) {
  auto cfg = config::load_config_string(toml, name);
  EXPECT_TRUE(cfg.has_value()) << (cfg ? std::string() : cfg.error()[0].to_string());
  if (!cfg) return nullptr;
  return runtime_of(*cfg);
}

// An engine's configuration for `runtime`: our MAC and its VIPs.
inline EngineConfig engine_config(const worker::Runtime& runtime) {
  EngineConfig ec;
  ec.mac = kOurMac;
  ec.vips = vips_of(runtime);
  return ec;
}

// Terminate flows handed to `workers` workers through the exception port
// (kExcMac / kExcAddr ours, kKernelAddr the kernel's, ports from 20443).
inline void enable_handoff(EngineConfig& ec, uint16_t workers) {
  ec.handoff.enabled = true;
  ec.handoff.mac = kExcMac;
  ec.handoff.address = kExcAddr;
  ec.handoff.kernel = kKernelAddr;
  ec.handoff.first_port = 20443;
  ec.handoff.workers = workers;
}

// A router's (10.0.0.254's) "fragmentation needed, next hop MTU `mtu`"
// about `sent`, an IPv4 segment the engine forwarded: to its source, from
// the router's MAC to ours, quoting its addresses, ports, sequence number
// and length.
inline std::vector<uint8_t> router_too_big(const Packet& sent, uint32_t mtu) {
  IcmpTooBig m;
  m.src_mac = {0x02, 0, 0, 0, 0, 0xfe};
  m.dst_mac = kOurMac;
  m.from = IpAddr::v4(0x0a0000fe);
  m.to = sent.src;
  m.mtu = mtu;
  m.quoted = FlowKey{sent.src, sent.dst, sent.sport, sent.dport};
  m.quoted_seq = sent.seq;
  m.quoted_length = static_cast<uint32_t>(40 + sent.payload.size());
  std::vector<uint8_t> f(kMaxFrame);
  f.resize(build_icmp_too_big(f, m));
  EXPECT_GT(f.size(), 0u);
  return f;
}

// Keeps every frame the engine sends. exhausted: no buffer to give;
// in_place: frames rewritten where they were received are taken too;
// exception: the exception port's sink, if any.
class RecordingSink : public FrameSink {
 public:
  std::span<uint8_t> buffer() noexcept override {
    if (exhausted) return {};
    scratch_.assign(kMaxFrame, 0);
    return scratch_;
  }
  void send(size_t len) noexcept override { frames.emplace_back(scratch_.begin(), scratch_.begin() + len); }
  bool send_in_place(std::span<uint8_t> frame) noexcept override {
    if (!in_place) return false;
    frames.emplace_back(frame.begin(), frame.end());
    ++in_place_sent;
    return true;
  }
  FrameSink* exception_sink() noexcept override { return exception; }

  std::vector<std::vector<uint8_t>> frames;
  bool exhausted = false;
  bool in_place = false;
  size_t in_place_sent = 0;
  FrameSink* exception = nullptr;

 private:
  std::vector<uint8_t> scratch_;
};

// Several engines as the lcores of one port (tests/front/*lcores*, *rss*):
// a sink that records the frames an engine hands to another lcore
// (FrameSink::redirect; accept_redirects = false: a full ring), an lcore's
// engine with its wire and exception sinks, and what one frame into it
// brought out, parsed.
class RedirectSink : public RecordingSink {
 public:
  RedirectSink() { in_place = true; }
  bool redirect(uint32_t lcore, std::span<const uint8_t> frame) noexcept override {
    if (!accept_redirects) return false;
    redirects.push_back({lcore, std::vector<uint8_t>(frame.begin(), frame.end())});
    return true;
  }
  struct Redirect {
    uint32_t lcore;
    std::vector<uint8_t> frame;
  };
  std::vector<Redirect> redirects;
  bool accept_redirects = true;
};

struct TestLcore {
  std::unique_ptr<FlowEngine> engine;
  RedirectSink wire, exc;
};

struct LcoreOut {
  std::vector<Packet> wire, exc;
  std::vector<RedirectSink::Redirect> redirects;
};

// Feeds frames into lcores, keeping every frame alive for the parsed
// packets that point into them.
class LcoreFeeder {
 public:
  // A frame into `l`: received (redirected = false) or from another lcore
  // (redirected = true, as the rings of dpdk_front.cc deliver it), from the
  // wire or the exception port.
  LcoreOut feed(TestLcore& l, std::vector<uint8_t> frame, bool exception = false, bool redirected = false) {
    l.wire.frames.clear();
    l.exc.frames.clear();
    l.wire.redirects.clear();
    stored_.push_back(std::move(frame));
    std::span<uint8_t> f = stored_.back();
    if (redirected) {
      l.engine->on_redirected_frame_in_place(f, kT, l.wire, exception);
    } else if (exception) {
      l.engine->on_exception_frame_in_place(f, kT, l.wire);
    } else {
      l.engine->on_frame_in_place(f, kT, l.wire);
    }
    LcoreOut o;
    for (auto& fr : l.wire.frames) o.wire.push_back(parse_frame(keep(fr)));
    for (auto& fr : l.exc.frames) o.exc.push_back(parse_frame(keep(fr)));
    o.redirects = l.wire.redirects;
    return o;
  }

  // A passthrough flow of `l` whose SYN to the backend was `our_syn` (the
  // hello, `hello_len` bytes, waiting to be replayed) is spliced: the
  // backend's SYN-ACK (ISN `backend_isn`) brings the replay, then the
  // backend sends `n` bytes; returns that segment as the client gets it.
  Packet splice_and_send_down(TestLcore& l, const Packet& our_syn, size_t hello_len, uint32_t backend_isn,
                              size_t n) {
    const FlowKey back{our_syn.dst, our_syn.src, our_syn.dport, our_syn.sport};
    const uint32_t replayed = our_syn.seq + 1 + u32(hello_len);
    EXPECT_EQ(feed(l, frame_of(segment(kBackendMac, kOurMac, back, kTcpSyn | kTcpAck, backend_isn, our_syn.seq + 1,
                                       1000)))
                  .wire.size(),
              1u)
        << "the replay";
    const std::vector<uint8_t> data(n, 'b');
    LcoreOut o = feed(l, frame_of(segment(kBackendMac, kOurMac, back, kTcpAck | kTcpPsh, backend_isn + 1, replayed,
                                          1000, data)));
    EXPECT_EQ(o.wire.size(), 1u);
    return o.wire.empty() ? Packet{} : o.wire[0];
  }

 private:
  std::span<const uint8_t> keep(const std::vector<uint8_t>& f) {
    outs_.push_back(f);
    return outs_.back();
  }
  std::deque<std::vector<uint8_t>> stored_, outs_;
};

}  // namespace lode::front::fixture

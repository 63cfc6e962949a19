// libFuzzer target for the dpdk front's flow engine as a whole: the input is
// a script of events, not one frame, so the fuzzer gets past the SYN cookie
// (it cannot forge one) into the states behind it: hellos collected from
// segments in any order, routed, spliced to a backend that answers ARP and
// SYN, handed to a worker's kernel through the exception port, and the
// forwarding fast path (flow_engine_forward.cc: frames rewritten in place,
// with and without a NIC-verified checksum).
//
// Each event is one opcode byte and its arguments, read from the input:
//   client SYN (options from the input) · the cookie's ACK, with or without a
//   payload (fuzz bytes, or a real hello for a routed name, cut anywhere) ·
//   client segments at sequence offsets around the flow's, any flags and
//   options · the backend's (or the worker kernel's) answers: ARP replies,
//   SYN-ACKs, data, FIN, RST, SACK blocks · a raw frame from the input ·
//   the clock moved on (across hello, connect, idle and cookie periods).
//
// Checked: every frame the engine sends parses with valid checksums and fits
// kMaxFrame; the flow count stays within max_flows; the burst loop's
// prefetches (FlowEngine::prefetch_flow, prefetch_flow_links), called on
// every frame before it is delivered, read nothing past it; the check of
// the NIC's RSS hash (FlowEngine::check_nic_hash, called on every frame from
// the wire with, in turn, our own hash of its tuple and one taken from its
// bytes) reads nothing past it, finds the tuple the full parser finds
// (rss_tcp_tuple), and turns hash steering off exactly at its second
// mismatch; after the script, the clock moved a day on empties the flow
// table (no flow is kept forever).
// Any failure aborts. Also built without libFuzzer as flow_engine_fuzz_replay
// and run over the committed corpus by ctest.
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "controlplane/config.h"
#include "dataplane/front/flow_engine.h"
#include "dataplane/front/packet.h"
#include "dataplane/tls/ticket_keys.h"
#include "support/hello_builder.h"
#include "tools/lodestone/runtime_builder.h"

namespace {

using namespace lode::front;

#define FUZZ_CHECK(cond)       \
  do {                         \
    if (!(cond)) std::abort(); \
  } while (0)

constexpr MacAddr kOurMac = {0x02, 0, 0, 0, 0, 1};
constexpr MacAddr kClientMac = {0x02, 0, 0, 0, 0, 2};
constexpr MacAddr kBackendMac = {0x02, 0, 0, 0, 0, 9};
constexpr MacAddr kExcMac = {0x02, 0, 0, 0, 0, 0x21};
constexpr MacAddr kKernelMac = {0x02, 0, 0, 0, 0, 0x22};
constexpr uint32_t kVip4 = 0x0a000001;      // 10.0.0.1
constexpr uint32_t kClient4 = 0x0a000002;   // 10.0.0.2
constexpr uint32_t kExcAddr = 0xa9fe4d02;   // 169.254.77.2
constexpr uint32_t kKernelAddr = 0xa9fe4d01;
const uint8_t kVip6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
const uint8_t kClient6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};

// The input, read front to back; zeros once it runs out.
class Reader {
 public:
  Reader(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  bool done() const { return i_ >= n_; }
  uint8_t u8() { return i_ < n_ ? d_[i_++] : 0; }
  uint16_t u16() { return static_cast<uint16_t>(u8() << 8 | u8()); }
  uint32_t u32() { return static_cast<uint32_t>(u16()) << 16 | u16(); }
  std::span<const uint8_t> bytes(size_t max) {
    const size_t want = std::min<size_t>(u16() % (max + 1), n_ - std::min(i_, n_));
    std::span<const uint8_t> s(d_ + i_, want);
    i_ += want;
    return s;
  }

 private:
  const uint8_t* d_;
  size_t n_, i_ = 0;
};

class Sink : public FrameSink {
 public:
  std::span<uint8_t> buffer() noexcept override {
    if (starved) return {};
    scratch_.assign(kMaxFrame, 0);
    return scratch_;
  }
  void send(size_t len) noexcept override {
    FUZZ_CHECK(len <= kMaxFrame);
    frames.emplace_back(scratch_.begin(), scratch_.begin() + static_cast<long>(len));
  }
  bool send_in_place(std::span<uint8_t> frame) noexcept override {
    if (!in_place) return false;
    frames.emplace_back(frame.begin(), frame.end());
    return true;
  }
  FrameSink* exception_sink() noexcept override { return exception; }
  std::vector<std::vector<uint8_t>> frames;
  bool starved = false;
  bool in_place = false;
  FrameSink* exception = nullptr;

 private:
  std::vector<uint8_t> scratch_;
};

struct Setup {
  std::shared_ptr<const lode::worker::Runtime> runtime;
  EngineConfig config;
  uint32_t p_slot = 0;  // route p's series slot (max_connections = 2)
};

constexpr uint64_t kRouteCap = 2;
constexpr size_t kSeriesRows = 16;

const Setup& setup() {
  static const Setup s = [] {
    const std::string toml =
        "[[listener]]\nname = \"vip\"\nlisten = [\"10.0.0.1:443\", \"[fd00::1]:443\"]\nmax_hello_bytes = 4096\n"
        "[[pool]]\nname = \"p\"\nbackends = [\"10.0.0.9:443\"]\n"
        "[[pool]]\nname = \"app\"\nbackends = [\"127.0.0.1:9000\"]\n"
        "[[certificate]]\nname = \"t\"\ncert = \"t.pem\"\nkey = \"t.key\"\n"
        "[[route]]\nname = \"r\"\nnames = [\"r.test\"]\naction = \"reject\"\n"
        "[[route]]\nname = \"rr\"\nnames = [\"rr.test\"]\naction = \"reject\"\nreject_with = \"reset\"\n"
        "[[route]]\nname = \"p\"\nnames = [\"p.test\"]\naction = \"passthrough\"\npool = \"p\"\nmax_connections = 2\n"
        "[[route]]\nname = \"t\"\nnames = [\"t.test\"]\naction = \"terminate\"\npool = \"app\"\ncertificate = \"t\"\n"
        "[timeouts]\nhello_ms = 2000\n";
    auto cfg = lode::config::load_config_string(toml, "fuzz.toml");
    if (!cfg) std::abort();
    auto keys = lode::tls::TicketKeys::create(1);
    if (!keys) std::abort();
    auto built = lode::app::build_runtime(*cfg, *keys, 1);
    if (!built) std::abort();
    // Series slots as the stats segment gives them: route r of the
    // listener in slot r + 1, backend b of pool i in slot 1 + 4 * i + b.
    for (auto& l : built->runtime->listeners) {
      l.route_slots.resize(l.table.route_count());
      for (uint32_t r = 0; r < l.route_slots.size(); ++r) l.route_slots[r] = r + 1;
    }
    for (uint32_t i = 0; i < built->runtime->pools.size(); ++i) {
      auto& pr = built->runtime->pools[i];
      pr.backend_slots.resize(pr.pool->size());
      for (uint32_t b = 0; b < pr.backend_slots.size(); ++b) pr.backend_slots[b] = 1 + 4 * i + b;
    }
    Setup out;
    out.runtime = built->runtime;
    const auto& table = out.runtime->listeners[0].table;
    for (uint32_t r = 0; r < table.route_count(); ++r) {
      if (table.route(r).name == "p") out.p_slot = r + 1;
    }
    if (out.p_slot == 0) std::abort();
    out.config.mac = kOurMac;
    out.config.vips = vips_of(*out.runtime);
    out.config.max_flows = 16;
    out.config.cookie_key = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3};
    out.config.handoff.enabled = true;
    out.config.handoff.mac = kExcMac;
    out.config.handoff.address = kExcAddr;
    out.config.handoff.kernel = kKernelAddr;
    out.config.handoff.first_port = 20443;
    out.config.handoff.workers = 2;
    // One lcore: the RSS hash changes no port choice, it only enables the
    // check of the NIC's hash (check_nic_hash).
    constexpr uint8_t kRssKey[40] = {0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67,
                                     0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb,
                                     0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
                                     0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa};
    out.config.rss = RssHash::make(kRssKey, std::vector<uint16_t>(128, 0));
    if (!out.config.rss) std::abort();
    return out;
  }();
  return s;
}

// What the script knows of a client connection (one per client port).
struct Client {
  bool v6 = false;
  uint32_t isn = 0;          // the client's
  std::optional<uint32_t> our_isn;  // from the SYN-ACK it got
  uint32_t next = 0;         // the client's next sequence number
};

// The far side of a flow's backend leg, learned from the SYN the engine sent.
struct Far {
  FlowKey key;          // as the engine sends: src = the engine's, dst = the far end
  MacAddr engine_mac{};
  bool exception = false;
  uint32_t engine_isn = 0;
  uint32_t isn = 0;     // ours (the far end's)
  uint32_t next = 0;
};

class Script {
 public:
  explicit Script(Reader& r) : r_(r), engine_(own_config(), setup().runtime) { wire_.exception = &exc_; }

  void run() {
    for (int steps = 0; steps < 256 && !r_.done(); ++steps) step();
    // FLOW_ENGINE_FUZZ_VERBOSE=1: the counters an input reached (to check
    // that the committed seeds get where they should).
    if (std::getenv("FLOW_ENGINE_FUZZ_VERBOSE") != nullptr) {
#define LODE_FUZZ_PRINT(name, help) \
  if (engine_.stats().name != 0) std::fprintf(stderr, "  %s=%llu\n", #name, static_cast<unsigned long long>(engine_.stats().name));
      LODE_FRONT_COUNTERS(LODE_FUZZ_PRINT)
#undef LODE_FUZZ_PRINT
    }
    // The clock a day on: every flow ends by a timeout.
    for (int i = 0; i < 8; ++i) {
      now_ += 3 * 3'600'000ull;
      engine_.on_tick(now_, wire_);
      drain();
    }
    FUZZ_CHECK(engine_.flows() == 0);
    // No flow left: nothing counted open (the gauges went down on every
    // path a flow ends by).
    for (size_t i = 0; i < kSeriesRows; ++i) {
      FUZZ_CHECK(routes_[i].active.load() == 0);
      FUZZ_CHECK(backends_[i].active.load() == 0);
    }
  }

 private:
  void step() {
    const uint8_t op = r_.u8();
    switch (op % 13) {
      case 0: syn(); break;
      case 1: cookie_ack(); break;
      case 2: client_segment(); break;
      case 3: case 4: far_segment(false); break;
      case 5: far_segment(true); break;
      case 6: raw(false); break;
      case 7: raw(true); break;
      case 8: now_ += r_.u8() * 50ull; engine_.on_tick(now_, wire_); break;
      case 9: now_ += (r_.u8() % 4) * 300'000ull; engine_.on_tick(now_, wire_); break;
      case 10: wire_.in_place = !wire_.in_place; verified_ = r_.u8() & 1; break;
      case 11: wire_.starved = r_.u8() % 8 == 0; exc_.starved = wire_.starved; break;
      case 12: too_big(); break;
    }
    drain();
  }

  Client& client(uint8_t sel) {
    const uint16_t port = static_cast<uint16_t>(40000 + sel % 6);
    return clients_[port];
  }
  static uint16_t port_of(uint8_t sel) { return static_cast<uint16_t>(40000 + sel % 6); }

  TcpSegment client_seg(uint16_t port, const Client& c, uint8_t flags, uint32_t seq, uint32_t ack) const {
    TcpSegment s;
    s.src_mac = kClientMac;
    s.dst_mac = kOurMac;
    s.flow.src = c.v6 ? IpAddr::v6(std::span<const uint8_t, 16>(kClient6, 16)) : IpAddr::v4(kClient4);
    s.flow.dst = c.v6 ? IpAddr::v6(std::span<const uint8_t, 16>(kVip6, 16)) : IpAddr::v4(kVip4);
    s.flow.sport = port;
    s.flow.dport = 443;
    s.seq = seq;
    s.ack = ack;
    s.flags = flags;
    s.window = 64240;
    return s;
  }

  void options(TcpOptions& o) {
    const uint8_t m = r_.u8();
    if (m & 1) o.mss = r_.u16();
    if (m & 2) o.wscale = static_cast<int8_t>(r_.u8() % 20);
    o.sack_ok = m & 4;
    if (m & 8) {
      o.has_timestamps = true;
      o.ts_val = r_.u32();
      o.ts_ecr = r_.u32();
    }
  }

  void syn() {
    const uint8_t sel = r_.u8();
    Client& c = client(sel);
    c.v6 = sel & 0x80;
    c.isn = r_.u32();
    c.our_isn.reset();
    c.next = c.isn + 1;
    TcpSegment s = client_seg(port_of(sel), c, kTcpSyn, c.isn, 0);
    options(s.options);
    feed(s, false);
  }

  // The payload of a client segment: fuzz bytes, or part of a real hello.
  std::vector<uint8_t> payload() {
    const uint8_t kind = r_.u8();
    if (kind % 4 != 0) {
      auto b = r_.bytes(1400);
      return {b.begin(), b.end()};
    }
    static const char* const kNames[] = {"p.test", "t.test", "r.test", "rr.test", "none.test"};
    const auto h = lode::test::HelloBuilder().sni(kNames[(kind >> 2) % 5]).records();
    const size_t from = r_.u16() % (h.size() + 1);
    const size_t len = std::min<size_t>(h.size() - from, r_.u16() % 1500);
    return {h.begin() + static_cast<long>(from), h.begin() + static_cast<long>(from + len)};
  }

  void cookie_ack() {
    const uint8_t sel = r_.u8();
    Client& c = client(sel);
    if (!c.our_isn) return;
    const auto data = payload();
    TcpSegment s = client_seg(port_of(sel), c, kTcpAck | (data.empty() ? 0 : kTcpPsh), c.next, *c.our_isn + 1);
    s.payload = data;
    feed(s, false);
    c.next += static_cast<uint32_t>(data.size());
  }

  void client_segment() {
    const uint8_t sel = r_.u8();
    Client& c = client(sel);
    const uint8_t flags = r_.u8();
    const int16_t off = static_cast<int16_t>(r_.u16());
    const int16_t ack_off = static_cast<int16_t>(r_.u16());
    const auto data = payload();
    const uint32_t ack = c.our_isn ? *c.our_isn + 1 + static_cast<uint32_t>(ack_off) : r_.u32();
    TcpSegment s = client_seg(port_of(sel), c, flags, c.next + static_cast<uint32_t>(off), ack);
    options(s.options);
    if (r_.u8() & 1) {
      s.options.sack_count = static_cast<uint8_t>(1 + r_.u8() % 4);
      for (uint8_t i = 0; i < s.options.sack_count; ++i) {
        s.options.sack[i].left = (c.our_isn ? *c.our_isn : 0) + r_.u16();
        s.options.sack[i].right = s.options.sack[i].left + r_.u16();
      }
    }
    s.payload = data;
    feed(s, false);
    if (off == 0 && !(flags & kTcpSyn)) c.next += static_cast<uint32_t>(data.size()) + ((flags & kTcpFin) ? 1 : 0);
  }

  // The backend (or the worker's kernel) answers one of the SYNs it got.
  void far_segment(bool any_flags) {
    if (fars_.empty()) return;
    Far& f = fars_[r_.u8() % fars_.size()];
    TcpSegment s;
    s.src_mac = f.exception ? kKernelMac : kBackendMac;
    s.dst_mac = f.engine_mac;
    s.flow.src = f.key.dst;
    s.flow.dst = f.key.src;
    s.flow.sport = f.key.dport;
    s.flow.dport = f.key.sport;
    s.window = r_.u16();
    const uint8_t kind = r_.u8();
    if (!any_flags && kind % 3 == 0) {
      s.flags = kTcpSyn | kTcpAck;
      s.seq = f.isn;
      s.ack = f.engine_isn + 1;
    } else {
      s.flags = any_flags ? r_.u8() : static_cast<uint8_t>(kTcpAck | ((kind & 4) ? kTcpPsh : 0) |
                                                           ((kind & 8) ? kTcpFin : 0) | ((kind & 16) ? kTcpRst : 0));
      s.seq = f.next + static_cast<uint32_t>(static_cast<int16_t>(any_flags ? r_.u16() : 0));
      s.ack = f.engine_isn + 1 + r_.u16();
    }
    options(s.options);
    if (kind & 32) {
      s.options.sack_count = static_cast<uint8_t>(1 + r_.u8() % 3);
      for (uint8_t i = 0; i < s.options.sack_count; ++i) {
        s.options.sack[i].left = f.engine_isn + r_.u16();
        s.options.sack[i].right = s.options.sack[i].left + r_.u16();
      }
    }
    auto data = (s.flags & kTcpSyn) ? std::span<const uint8_t>() : r_.bytes(1400);
    s.payload = data;
    feed(s, f.exception);
    if (!(s.flags & (kTcpSyn | kTcpRst))) f.next = s.seq + static_cast<uint32_t>(data.size()) + ((s.flags & kTcpFin) ? 1 : 0);
    if (s.flags & kTcpSyn) f.next = f.isn + 1;
  }

  // An ICMP "fragmentation needed" / "packet too big" about one of the
  // engine's segments: towards a backend (or the worker kernel) or towards a
  // client, its sequence number near what the engine sent.
  void too_big() {
    const uint8_t sel = r_.u8();
    IcmpTooBig m;
    m.dst_mac = kOurMac;
    m.mtu = r_.u16();
    m.quoted_length = r_.u16();
    const uint32_t off = r_.u16();
    bool exception = false;
    if ((sel & 1) && !fars_.empty()) {
      const Far& f = fars_[(sel >> 1) % fars_.size()];
      exception = f.exception;
      m.src_mac = f.exception ? kKernelMac : kBackendMac;
      m.dst_mac = f.engine_mac;
      m.from = f.key.dst;
      m.to = f.key.src;
      m.quoted = f.key;
      m.quoted_seq = f.engine_isn + off;
    } else {
      const uint16_t port = port_of(sel >> 1);
      const Client& c = client(sel >> 1);
      if (!c.our_isn) return;
      const TcpSegment s = client_seg(port, c, 0, 0, 0);
      m.src_mac = kClientMac;
      m.from = s.flow.src;
      m.to = s.flow.dst;
      m.quoted = FlowKey{s.flow.dst, s.flow.src, s.flow.dport, s.flow.sport};
      m.quoted_seq = *c.our_isn + off;
    }
    std::vector<uint8_t> frame(kMaxFrame);
    const size_t n = build_icmp_too_big(frame, m);
    if (n == 0) return;
    frame.resize(n);
    deliver(frame, exception);
  }

  void raw(bool exception) {
    auto b = r_.bytes(kMaxFrame);
    std::vector<uint8_t> frame(b.begin(), b.end());
    deliver(frame, exception);
  }

  void feed(const TcpSegment& s, bool exception) {
    std::vector<uint8_t> frame(kMaxFrame + 64);
    const size_t n = build_tcp(frame, s);
    if (n == 0) return;
    frame.resize(n);
    deliver(frame, exception);
  }

  // The shared configuration with a steering flag of this script's own
  // (EngineConfig::rss_disabled), so one input's mismatches do not carry
  // into the next, and series rows of its own: this lcore's and another
  // lcore's (nothing open there), summed for route p's max_connections.
  EngineConfig own_config() {
    EngineConfig c = setup().config;
    c.rss_disabled = std::make_shared<std::atomic<bool>>(false);
    c.route_series = routes_.data();
    c.backend_series = backends_.data();
    c.all_route_series = {routes_.data(), other_lcore_.data()};
    return c;
  }

  // The NIC's hash of a wire frame, as the lcore loop passes it: in turn
  // ours (agrees) and four of the frame's bytes (mostly disagrees). Nothing
  // is read from the script, so the seeds keep their meaning.
  void check_nic_hash(std::span<const uint8_t> frame) {
    const std::optional<FlowKey> k = rss_tcp_tuple(frame);
    if (k) {
      const Packet p = parse_frame(frame, false);
      if (p.ok() && p.l4 == L4::kTcp) FUZZ_CHECK(p.flow() == *k);
    }
    uint32_t h = 0;
    if (++wire_frames_ % 2 == 0 && k) {
      h = setup().config.rss->hash(*k);
    } else if (frame.size() >= 4) {
      std::memcpy(&h, frame.data() + frame.size() - 4, 4);
    }
    engine_.check_nic_hash(frame, h);
    const FrontStats& s = engine_.stats();
    FUZZ_CHECK(s.rss_hash_mismatches <= s.rss_hash_checked);
    FUZZ_CHECK(s.rss_hash_disabled == (s.rss_hash_mismatches >= FlowEngine::kNicHashMismatches ? 1u : 0u));
  }

  void deliver(std::vector<uint8_t>& frame, bool exception) {
    if (!exception) check_nic_hash(frame);
    const bool verified = verified_ && parse_frame(frame).ok();
    // The lcore loop's prefetches come first: they read the frame's headers
    // (no byte past its end) and the flow table, and change nothing.
    engine_.prefetch_flow(frame);
    engine_.prefetch_flow_links(frame);
    if (wire_.in_place) {
      if (exception) {
        engine_.on_exception_frame_in_place(frame, now_, wire_, verified);
      } else {
        engine_.on_frame_in_place(frame, now_, wire_, verified);
      }
    } else if (exception) {
      engine_.on_exception_frame(frame, now_, wire_);
    } else {
      engine_.on_frame(frame, now_, wire_);
    }
    FUZZ_CHECK(engine_.flows() <= setup().config.max_flows);
    FUZZ_CHECK(routes_[setup().p_slot].active.load() <= kRouteCap);
  }

  // Every frame out parses, checksums verified; the script learns from them.
  void drain() {
    learn(wire_, false);
    learn(exc_, true);
  }

  void learn(Sink& sink, bool exception) {
    std::vector<std::vector<uint8_t>> frames;
    frames.swap(sink.frames);
    for (const auto& fr : frames) {
      const Packet p = parse_frame(fr);
      FUZZ_CHECK(p.ok());
      FUZZ_CHECK(fr.size() <= kMaxFrame);
      if (p.l3 == L3::kArp && p.arp.op == 1) {
        // Answer ARP for the backend / the worker kernel (not every time).
        if (pending_arp_answers_++ % 5 == 4) continue;
        std::vector<uint8_t> reply(64);
        const size_t n = build_arp_reply(reply, p, exception ? kKernelMac : kBackendMac, p.arp.target_ip);
        if (n > 0) {
          reply.resize(n);
          arp_replies_.push_back({std::move(reply), exception});
        }
        continue;
      }
      if (p.l4 != L4::kTcp) continue;
      if (p.flags == (kTcpSyn | kTcpAck) && p.dport >= 40000 && p.dport < 40006) {
        Client& c = clients_[p.dport];
        c.our_isn = p.seq;
        continue;
      }
      if (p.flags & kTcpSyn && !(p.flags & kTcpAck)) {
        Far f;
        f.key = p.flow();
        f.engine_mac = p.src_mac;
        f.exception = exception;
        f.engine_isn = p.seq;
        f.isn = 0x10000000u * static_cast<uint32_t>(fars_.size() + 1) + 0xfff0u;
        f.next = f.isn + 1;
        bool known = false;
        for (Far& g : fars_) {
          if (g.key == f.key) {
            g = f;
            known = true;
          }
        }
        if (!known) {
          if (fars_.size() >= 8) fars_.erase(fars_.begin());
          fars_.push_back(f);
        }
      }
    }
    // ARP answers go in after the frames that asked (they may send SYNs).
    auto replies = std::move(arp_replies_);
    arp_replies_.clear();
    for (auto& [frame, exc] : replies) {
      deliver(frame, exc);
      learn(wire_, false);
      learn(exc_, true);
    }
  }

  // Before engine_: its configuration points at them.
  std::array<lode::stats::RouteSeries, kSeriesRows> routes_{}, other_lcore_{};
  std::array<lode::stats::BackendSeries, kSeriesRows> backends_{};
  Reader& r_;
  FlowEngine engine_;
  Sink wire_, exc_;
  uint64_t now_ = 1'000'000'000;
  bool verified_ = false;
  uint64_t wire_frames_ = 0;
  std::map<uint16_t, Client> clients_;
  std::vector<Far> fars_;
  std::vector<std::pair<std::vector<uint8_t>, bool>> arp_replies_;
  unsigned pending_arp_answers_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader r(data, size);
  Script(r).run();
  return 0;
}

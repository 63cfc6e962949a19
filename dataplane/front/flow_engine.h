// One lcore's share of the dpdk front, as pure logic: frames in, frames out,
// no DPDK, no clock, no allocation per packet. The DPDK glue (dpdk_front.cc)
// feeds it what its RX queue got and sends what it writes; the packet-fixture
// tests feed it crafted frames and compare what comes out.
//
// What it does with a frame:
// - ARP requests and IPv6 neighbour solicitations for a VIP: answered;
//   ARP replies and neighbour advertisements: taken only when they answer
//   our own request for a backend's next hop (flow_engine_neighbor.cc);
//   ICMP / ICMPv6 echo to a VIP: answered. ICMP fragmentation needed /
//   ICMPv6 packet too big about a segment of a spliced flow: passed on to
//   the end that sent its bytes, in that end's terms (flow_engine_icmp.cc).
//   IP fragments to a VIP: dropped and counted. Anything else not for a
//   VIP: dropped and counted.
// - A SYN to a VIP's port: a SYN-ACK whose ISN is a SYN cookie (no state),
//   with an open window (the client must be able to send its hello), MSS,
//   and window scale / SACK-permitted / timestamps when the SYN offered them.
// - An ACK that completes a cookie: a flow is created (an invalid cookie is
//   dropped silently: a RST would reflect floods); its data, and the data of
//   later segments in any order, is collected (HelloCollector) and
//   acknowledged, and parsed with the shared ClientHello parser.
// - A parsed hello is routed through the listener's route table:
//   reject -> the TLS alert (unrecognized_name) and FIN, or a RST when the
//   route says so; a malformed hello -> its alert and FIN; not TLS -> a RST (an
//   HTTP request gets a short 400 first); passthrough -> spliced to a backend
//   (flow_engine_splice.cc); terminate -> handed to a TLS worker through the
//   exception port (handoff.h), or reset and counted in `action_unsupported`
//   when no exception port is configured.
// - Frames from the exception port (on_exception_frame): ARP for our address
//   on that link, and the workers' side of handed-off flows.
// - FIN or RST while collecting, the hello timeout: the flow ends (a RST for
//   the timeout). After our answer and FIN the flow waits closing_ms for the
//   client's FIN (a segment that did not get our FIN gets it again), then
//   resets.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "dataplane/front/flow_key.h"
#include "dataplane/front/handoff.h"
#include "dataplane/front/hello_collector.h"
#include "dataplane/front/huge_page_allocator.h"
#include "dataplane/front/packet.h"
#include "dataplane/front/syn_cookie.h"
#include "dataplane/front/toeplitz.h"
#include "dataplane/tls/client_hello_parser.h"
#include "dataplane/worker/runtime.h"
#include "lodestone/stats_layout.h"

namespace lode::front {

// One lcore's counters: LODE_FRONT_COUNTERS in include/lodestone/stats_layout.h
// (the control plane reads them from the shared stats segment).
struct FrontStats {
#define LODE_FRONT_DECLARE(name, help) uint64_t name = 0;
  LODE_FRONT_COUNTERS(LODE_FRONT_DECLARE)
#undef LODE_FRONT_DECLARE
};

// Where the engine writes frames: one buffer at a time.
class FrameSink {
 public:
  virtual ~FrameSink() = default;
  // A buffer for the next frame (at least kMaxFrame bytes), or empty when
  // none is available (the frame is then dropped and counted).
  virtual std::span<uint8_t> buffer() noexcept = 0;
  // Sends the first `len` bytes of the last buffer().
  virtual void send(size_t len) noexcept = 0;
  // Sends the received frame itself, rewritten in place (no copy); false when
  // this sink cannot (the engine then builds a copy).
  virtual bool send_in_place(std::span<uint8_t> frame) noexcept {
    (void)frame;
    return false;
  }
  // The sink of the exception port (towards the workers' kernel), when there
  // is one; the engine always gets the wire's sink and finds this one here.
  virtual FrameSink* exception_sink() noexcept { return nullptr; }
  // Several polling lcores (EngineConfig::lcores > 1): the received frame,
  // unchanged, handed to the engine of lcore `lcore` (kEveryLcore: a copy to
  // every other lcore, the frame stays here too), which takes it with
  // on_redirected_frame_in_place(). The DPDK glue moves the mbuf into a
  // single-producer/single-consumer ring per (from, to) pair. false when it
  // could not (a full ring, no buffer, a sink without lcores): the engine
  // drops the frame and counts redirect_drops.
  static constexpr uint32_t kEveryLcore = UINT32_MAX;
  virtual bool redirect(uint32_t lcore, std::span<const uint8_t> frame) noexcept {
    (void)lcore;
    (void)frame;
    return false;
  }
};
inline constexpr size_t kMaxFrame = 1518 + 4;

struct Vip {
  IpAddr addr;
  uint16_t port = 0;       // 0: the address answers ARP/ND/ping only
  uint32_t listener = 0;   // index into Runtime::listeners
};

// The VIPs of a runtime: every listener address (IPv4 or IPv6 literal, not
// a wildcard), with its port and listener index.
std::vector<Vip> vips_of(const worker::Runtime& rt);

// An address prefix (a network on the port's link).
struct IpPrefix {
  IpAddr addr;  // host bits zero
  uint8_t len = 0;
  bool contains(const IpAddr& a) const noexcept {
    if (a.family != addr.family) return false;
    for (uint8_t i = 0; i < len / 8; ++i) {
      if (a.bytes[i] != addr.bytes[i]) return false;
    }
    const uint8_t rest = len % 8;
    return rest == 0 || ((a.bytes[len / 8] ^ addr.bytes[len / 8]) & (0xff00 >> rest)) == 0;
  }
};

// Where the backends are ([dpdk] networks, gateway, gateway6). Without any
// of them (routed = false) every backend is on the link. Otherwise a backend
// inside one of `networks` is resolved directly (ARP or neighbour
// discovery), any other one through the gateway of its family (frames to the
// gateway's MAC, the IP destination the backend's); one with no gateway of
// its family is reset and counted (backend_no_route).
struct NextHops {
  bool routed = false;
  std::vector<IpPrefix> networks;
  IpAddr gateway, gateway6;  // family 0: none
  // The 802.1Q VLAN of the backends' link ([dpdk] backend_vlan; 0:
  // untagged): every frame to a passthrough backend or gateway carries it,
  // and only answers on it resolve their MACs. Clients are answered on the
  // VLAN they came from, whatever it is.
  uint16_t vlan = 0;
};

struct EngineConfig {
  MacAddr mac{};
  std::vector<Vip> vips;
  uint32_t max_flows = 65536;         // flows collecting or closing, per lcore
  uint16_t mss = 1460;                // ours, in the SYN-ACK
  uint8_t wscale = 7;                 // ours, when the client offered scaling
  uint32_t closing_ms = 2000;         // after our FIN: wait this long for the client's
  // The master secret of the SYN cookies. The key in use is derived from it
  // and the time (a new one every kCookieKeyPeriodMs), so every lcore (and
  // every node given the same secret) uses the same key without talking; a
  // cookie made under the previous key stays valid for its slot.
  std::array<uint8_t, 16> cookie_key{};
  // The wall clock minus the clock of the now_ms the engine is given (the
  // DPDK glue's is CLOCK_MONOTONIC, which counts from each host's boot):
  // cookie slots and key epochs are counted in wall-clock time, so nodes
  // sharing cookie_secret_file agree on them (their clocks synchronised, by
  // NTP: a cookie is valid in its 64 s slot and the next); timers stay on
  // now_ms. Fixed at start: a step of the wall clock does not move it.
  int64_t cookie_clock_offset_ms = 0;
  // Terminate: where the workers listen behind the exception port.
  HandoffConfig handoff;
  // This engine is lcore `lcore` of `lcores` polling lcores (one RX queue
  // each, one engine each, no shared flow state). The local ports it takes
  // for backend-side keys (passthrough and hand-off) are those with
  // port % lcores == lcore, so a backend's or a worker's segment that the
  // NIC's RSS or the kernel's tap queue choice put on another lcore's queue
  // names the lcore that holds its flow, and is redirected there
  // (FrameSink::redirect); ARP replies and neighbour advertisements are
  // copied to every lcore (any of them may have asked).
  uint32_t lcore = 0;
  uint32_t lcores = 1;
  // The RSS of the wire port (passthrough legs) and of the exception port
  // (hand-off legs) when the NIC hashes TCP by Toeplitz with a key and RETA
  // we know (queue i = lcore i). With it, and several lcores, the engine
  // takes for that side local ports in kFirstLocalPort..kLastRssPort whose
  // return segments hash to its own queue, so the NIC delivers them to it and
  // nothing is redirected; a port of that range is owned by the lcore its
  // return 4-tuple hashes to. When no such port is free (or the RETA never
  // names this queue) it falls back to the rule above on the ports
  // kLastRssPort + 1..kLastLocalPort (counted in rss_port_fallbacks), whose
  // segments are redirected as before. None: the rule above on every local
  // port (net_tap, whose queue is the kernel's flow hash, not Toeplitz).
  std::optional<RssHash> rss, exception_rss;
  // Set once, by the first lcore whose NIC reported RSS hashes that disagree
  // with `rss` (FlowEngine::check_nic_hash): from then on every engine made
  // from a copy of this configuration takes the local ports of new
  // passthrough legs by the rule above on kLastRssPort + 1..kLastLocalPort,
  // as with no port free (counted in rss_port_fallbacks). Hand-off legs
  // (exception_rss, another port, whose hash is not checked) are left as
  // they are. Legs that already hold a port chosen by hash keep it: their
  // segments still find their lcore (owner_of). One flag per configuration,
  // shared by its copies; lcores read it (relaxed) only when they choose a
  // port.
  std::shared_ptr<std::atomic<bool>> rss_disabled = std::make_shared<std::atomic<bool>>(false);
  // Passthrough: the backends' next hops, and how long a learned MAC is
  // trusted before it is asked again (the flows keep using it meanwhile).
  NextHops next_hops;
  uint32_t neighbor_ttl_ms = 60'000;
  // ICMP errors this engine sends (too-big errors passed on to a flow's
  // other end, flow_engine_icmp.cc): a token bucket of icmp_burst tokens
  // refilled at icmp_per_second (Linux's icmp_msgs_per_sec / icmp_msgs_burst
  // defaults), per lcore.
  uint32_t icmp_per_second = 1000;
  uint32_t icmp_burst = 50;
  // This lcore's row of the per-route and per-backend series (the stats
  // segment's, indexed by the runtime's slots; null: not counted): the
  // flows the engine routes itself, passthrough and reject. Terminate flows
  // are counted by the worker that takes them.
  stats::RouteSeries* route_series = nullptr;
  stats::BackendSeries* backend_series = nullptr;
  // Every polling lcore's row (this one's included), read to enforce a
  // passthrough route's max_connections over the lcores: the sum of their
  // open gauges (relaxed loads; each row still written by its own lcore
  // only: lcores admitting at the same instant may pass the cap by one
  // each). Empty: the cap counts this lcore's flows alone. Without
  // route_series nothing is counted and no cap applies (`lodestone run`
  // always has a stats segment).
  std::vector<const stats::RouteSeries*> all_route_series;
};

class FlowEngine {
 public:
  FlowEngine(EngineConfig cfg, std::shared_ptr<const worker::Runtime> rt);
  ~FlowEngine();
  FlowEngine(const FlowEngine&) = delete;
  FlowEngine& operator=(const FlowEngine&) = delete;

  // A new routing generation (listeners must be the same: reloads that change
  // them are refused before they get here). Flows keep the one they began with.
  void set_runtime(std::shared_ptr<const worker::Runtime> rt) noexcept;
  static constexpr uint64_t kCookieKeyPeriodMs = 600'000;
  // A new master secret for the SYN cookies (a reload that found another
  // [dpdk] cookie_secret_file): cookies made from now on use it; those made
  // under the previous one stay valid for a cookie's whole life
  // (2 * SynCookies::kSlotSeconds). The same secret again changes nothing.
  void set_cookie_secret(const std::array<uint8_t, 16>& secret, uint64_t now_ms) noexcept;
  // The local ports of backend-side keys (clear of the usual ephemeral range
  // of the backends' hosts); with several lcores, lcore i takes those with
  // port % lcores == i.
  static constexpr uint16_t kFirstLocalPort = 20000, kLastLocalPort = 60999;
  // With RSS (EngineConfig::rss): the ports chosen by their hash, the rest
  // of the local ports those of the fallback.
  static constexpr uint16_t kLastRssPort = 52999;
  // Ports whose hash is tried per leg before the fallback: with n queues
  // spread evenly over the RETA a port maps to ours with odds 1/n.
  static constexpr uint32_t kRssPortAttempts = 4096;

  void on_frame(std::span<const uint8_t> frame, uint64_t now_ms, FrameSink& out) noexcept;
  // The same, for a frame the engine may rewrite and hand back to the sink
  // (FrameSink::send_in_place): spliced segments are then forwarded without
  // a copy and without reading their payload.
  // l4_verified: the NIC checked the TCP/UDP checksum (RX offload), so the
  // parser does not read the payload again.
  // A segment of a spliced flow in the common shape takes a fast path
  // (flow_engine_forward.cc) that ends in the same bytes and the same state.
  void on_frame_in_place(std::span<uint8_t> frame, uint64_t now_ms, FrameSink& out,
                         bool l4_verified = false) noexcept {
    if (forward_spliced(frame, now_ms, out, l4_verified, false)) return;
    inplace_ = frame;
    l4_verified_ = l4_verified;
    on_frame(std::span<const uint8_t>(frame), now_ms, out);
    inplace_ = {};
    l4_verified_ = false;
  }
  // The burst loop's prefetches (flow_engine_forward.cc), two looks at a
  // received frame as it comes closer: prefetch_flow for frame i + K while
  // frame i is handled, prefetch_flow_links for frame i + K / 2. For a frame
  // of the fast path's shape (Ethernet, at most one 802.1Q tag, IPv4
  // without options, not a fragment, TCP; anything else is ignored):
  // prefetch_flow, the slots of both flow indexes its 4-tuple hashes to and
  // the flows they name (the part the fast path reads); prefetch_flow_links,
  // once those are in, the flow found as the lookup finds it and the
  // neighbours in its timeout list that handling the frame relinks. They
  // write nothing, count nothing and change no output.
  void prefetch_flow(std::span<const uint8_t> frame) const noexcept;
  void prefetch_flow_links(std::span<const uint8_t> frame) const noexcept;
  // A frame the exception port received (the kernel the workers run on).
  // `out` is still the wire's sink: answers on the exception link go to
  // out.exception_sink(), the workers' segments to their clients go to `out`.
  void on_exception_frame(std::span<const uint8_t> frame, uint64_t now_ms, FrameSink& out) noexcept;
  void on_exception_frame_in_place(std::span<uint8_t> frame, uint64_t now_ms, FrameSink& out,
                                   bool l4_verified = false) noexcept {
    if (forward_spliced(frame, now_ms, out, l4_verified, true)) return;
    inplace_ = frame;
    l4_verified_ = l4_verified;
    on_exception_frame(std::span<const uint8_t>(frame), now_ms, out);
    inplace_ = {};
    l4_verified_ = false;
  }
  // A frame another lcore's engine redirected here (FrameSink::redirect):
  // handled as if this lcore had received it (from the exception port when
  // from_exception), never redirected again; counted in redirected_in, not in
  // rx_frames / exception_rx (the lcore that received it counted it there).
  void on_redirected_frame_in_place(std::span<uint8_t> frame, uint64_t now_ms, FrameSink& out, bool from_exception,
                                    bool l4_verified = false) noexcept;
  // The lcore that holds the flow of a backend-side segment to local port
  // `port` (see EngineConfig::lcore), or this lcore's own index for a port
  // that is not a local one, or one the port alone does not name (a port of
  // the RSS range, EngineConfig::rss).
  uint32_t owner_of_local_port(uint16_t port) const noexcept;
  // The same for a backend-side segment as received (its src, dst, sport,
  // dport: the backend's or, from_exception, the worker's side), by the rule
  // that chose its port: with RSS on that side, the queue its 4-tuple hashes
  // to for a port of the RSS range.
  uint32_t owner_of(const FlowKey& segment, bool from_exception) const noexcept;
  // The NIC's RSS hash of a frame received from the wire port
  // (RTE_MBUF_F_RX_RSS_HASH, mbuf hash.rss), checked against ours: with
  // EngineConfig::rss, a sample of the TCP segments (rss_tcp_tuple) is
  // hashed in software and compared (rss_hash_checked,
  // rss_hash_mismatches). kNicHashMismatches mismatches on one lcore turn
  // port choice by hash off for every lcore (EngineConfig::rss_disabled,
  // rss_hash_disabled). Call it before the frame is handled (which may
  // rewrite it in place). Every frame is checked until kNicHashFirstChecks
  // have been, then one call in kNicHashSample: a counter and a branch.
  static constexpr uint64_t kNicHashFirstChecks = 64;
  static constexpr uint64_t kNicHashSample = 1024;  // a power of two
  // Two, not one: a NIC that hashes otherwise (another function, key or
  // input) disagrees on nearly every segment, so the second check trips it
  // as surely as the first, while one odd frame (a descriptor or driver
  // slip, a shape the NIC reads differently from rss_tcp_tuple) does not
  // turn off steering for good. Off is safe either way: the port rule
  // needs nothing from the NIC's hash.
  static constexpr uint64_t kNicHashMismatches = 2;
  void check_nic_hash(std::span<const uint8_t> frame, uint32_t nic_hash) noexcept {
    if (!cfg_.rss) return;
    if (stats_.rss_hash_checked >= kNicHashFirstChecks && (++nic_hash_calls_ & (kNicHashSample - 1)) != 0) return;
    verify_nic_hash(frame, nic_hash);
  }
  // Timeouts; call every few milliseconds.
  void on_tick(uint64_t now_ms, FrameSink& out) noexcept;

  const FrontStats& stats() const noexcept { return stats_; }
  size_t flows() const noexcept { return live_; }

  // The timeout lists: each holds flows with one timeout, so it stays in
  // deadline order.
  enum class Wait : uint8_t { kHello, kClosing, kConnect, kReplay, kIdle, kTimeWait, kCount };
  struct Flow;

 private:
  const Vip* find_vip(const IpAddr& a, uint16_t port) const noexcept;
  bool is_vip_address(const IpAddr& a) const noexcept;
  void on_tcp(const Packet& p, const Vip& vip, uint64_t now_ms, FrameSink& out) noexcept;
  // ICMP fragmentation needed / ICMPv6 packet too big to a VIP
  // (flow_engine_icmp.cc): when it quotes one of our segments of a spliced
  // flow inside its unacknowledged window (RFC 5927 4.1), the end that sent
  // the bytes hears it about its own segment, in its own addresses and
  // sequence space, with the MTU moved by the difference of the two legs' IP
  // headers; anything else is dropped and counted.
  void on_icmp_too_big(const Packet& p, std::span<const uint8_t> frame, FrameSink& out) noexcept;
  // A token of the ICMP rate limit (EngineConfig::icmp_per_second), or false
  // (counted in icmp_rate_limited).
  bool take_icmp_token() noexcept;
  // A client leg's error that this lcore holds no flow for: RSS put the
  // client's segments where their 4-tuple hashes, the router's error (other
  // addresses, no ports) maybe elsewhere. Handed to the lcore the client's
  // 4-tuple hashes to when the NIC's Toeplitz hash is known and trusted,
  // else a copy to every other lcore within the ICMP rate (true); false
  // when there is no other lcore to ask.
  bool pass_client_leg_error(const FlowKey& client, std::span<const uint8_t> frame, FrameSink& out) noexcept;
  // Whether a client's segments reach the queue its 4-tuple hashes to by
  // our Toeplitz key and RETA (the NIC's hashes have not disagreed).
  bool client_queue_known() const noexcept {
    return cfg_.rss && !cfg_.rss_disabled->load(std::memory_order_relaxed);
  }
  // The SYN cookies' clock (key epochs, 64 s slots): wall-clock time, so that
  // nodes sharing a secret agree (EngineConfig::cookie_clock_offset_ms).
  uint64_t cookie_ms(uint64_t now_ms) const noexcept {
    return now_ms + static_cast<uint64_t>(cfg_.cookie_clock_offset_ms);
  }
  void rotate_cookie_key(uint64_t now_ms) noexcept {
    // Within the current key's period: nothing to do (no division per frame).
    const uint64_t t = cookie_ms(now_ms);
    if (t - key_epoch_start_ < kCookieKeyPeriodMs && key_epoch_ != UINT64_MAX) return;
    rotate_cookie_key_slow(t);
  }
  void rotate_cookie_key_slow(uint64_t now_ms) noexcept;
  std::array<uint8_t, 16> cookie_key_for(uint64_t epoch) const noexcept;
  void on_syn(const Packet& p, uint64_t now_ms, FrameSink& out) noexcept;
  void on_cookie_ack(const Packet& p, const Vip& vip, uint64_t now_ms, FrameSink& out) noexcept;
  void on_flow_segment(Flow& f, const Packet& p, uint64_t now_ms, FrameSink& out) noexcept;
  void try_parse(Flow& f, FrameSink& out) noexcept;
  void decide(Flow& f, FrameSink& out) noexcept;
  void answer_and_close(Flow& f, std::span<const uint8_t> data, FrameSink& out) noexcept;
  // ack: what to acknowledge; by default everything held in order.
  void send_segment(const Flow& f, uint32_t seq, uint8_t flags, std::span<const uint8_t> data, FrameSink& out,
                    std::optional<uint32_t> ack = std::nullopt) noexcept;
  void send_reset_for(const Packet& p, FrameSink& out, const MacAddr& our_mac) noexcept;
  void reset_flow(Flow& f, FrameSink& out) noexcept;
  void emit(FrameSink& out, const TcpSegment& s) noexcept;
  // Builds one frame into the sink's next buffer (build(buffer) -> length,
  // 0 = nothing to send) and sends it; counts tx_frames or tx_no_buffer.
  template <typename Build>
  bool send_built(FrameSink& out, Build&& build) noexcept {
    const std::span<uint8_t> buf = out.buffer();
    if (buf.empty()) {
      ++stats_.tx_no_buffer;
      return false;
    }
    const size_t n = build(buf);
    if (n == 0) return false;
    out.send(n);
    ++stats_.tx_frames;
    return true;
  }

  // hash: flow_hash(k) (flow_engine_flow.h), computed once per frame.
  Flow* lookup(const FlowKey& k, uint64_t hash) noexcept;
  Flow* insert(const FlowKey& k) noexcept;
  void erase(Flow& f) noexcept;
  void link_tail(Flow& f, Wait w) noexcept;
  void unlink(Flow& f) noexcept;
  uint64_t timeout_of(Wait w) const noexcept;

  // The fast path of the *_in_place calls (flow_engine_forward.cc): true
  // when the frame was a segment of a spliced flow in the common shape and
  // went out rewritten; false when it did nothing (no write, no counter) and
  // the full path must take the frame.
  bool forward_spliced(std::span<uint8_t> frame, uint64_t now_ms, FrameSink& out, bool l4_verified,
                       bool from_exception) noexcept;

  // Passthrough (flow_engine_splice.cc).
  void start_passthrough(Flow& f, FrameSink& out) noexcept;
  void connect_backend(Flow& f, FrameSink& out) noexcept;
  void open_backend(Flow& f, FlowKey bk, FrameSink& out) noexcept;
  void send_backend_syn(Flow& f, FrameSink& out) noexcept;
  void send_replay(Flow& f, FrameSink& out) noexcept;
  void on_backend_segment(Flow& f, const Packet& p, FrameSink& out) noexcept;
  void splice_to_backend(Flow& f, const Packet& p, FrameSink& out) noexcept;
  // What a segment forwarded one way changes in the flow (flags as sent,
  // end: the sequence number after it, in the receiver's space).
  void after_to_client(Flow& f, uint8_t flags, uint32_t end) noexcept;
  void after_to_backend(Flow& f, uint8_t flags, uint32_t end) noexcept;
  void relink_spliced(Flow& f) noexcept;
  void fail_backend(Flow& f, FrameSink& out) noexcept;
  void reset_both(Flow& f, FrameSink& out) noexcept;
  void on_wait_expired(Flow& f, FrameSink& out) noexcept;
  Flow* lookup_backend(const FlowKey& k, uint64_t hash) noexcept;
  bool index_backend(Flow& f) noexcept;
  void erase_backend_key(Flow& f) noexcept;
  // Next hops' MAC addresses (IPv4 by ARP, IPv6 by neighbour discovery), a
  // small table: an entry is made when we ask, filled by the answer.
  struct Neighbor {
    IpAddr ip;
    IpAddr from;             // our address we ask from (a VIP, or the exception link's)
    MacAddr mac{};
    bool known = false;      // mac holds the answer
    bool asking = false;     // a request is out and its answer is awaited
    bool exception = false;  // on the exception link
    uint64_t seen_ms = 0;    // when the answer came
    uint64_t asked_ms = 0;   // the latest request
    uint64_t asking_since = 0;  // the first request not answered yet
  };
  static constexpr size_t kMaxNeighbors = 256;
  static constexpr uint64_t kNeighborProbeMs = 3000;     // asked again this long without an answer: forgotten
  static constexpr uint64_t kNeighborRequestGapMs = 200;  // at most one request per entry this often

  // Next hops and their MACs (flow_engine_neighbor.cc).
  // The next hop of a passthrough backend (itself, or its gateway), or none
  // when it is off the link and no gateway of its family is configured.
  std::optional<IpAddr> next_hop_of(const IpAddr& backend) const noexcept;
  // The flow's next hop: the kernel of the exception link for a hand-off.
  IpAddr next_hop(const Flow& f) const noexcept;
  // Asks the flow's next hop for its MAC (ARP, or a neighbour solicitation)
  // and waits for it (Wait::kConnect).
  void send_arp_for(Flow& f, FrameSink& out) noexcept;
  // A request for n.ip from n.from (ARP, or a neighbour solicitation), on
  // the wire or the exception link; marks the entry as asked.
  void solicit(Neighbor& n, FrameSink& out) noexcept;
  Neighbor* find_neighbor(const IpAddr& ip, bool exception) noexcept;
  Neighbor& neighbor_entry(const IpAddr& ip, const IpAddr& from, bool exception) noexcept;
  // An ARP reply or neighbour advertisement: taken only for an address we
  // asked for (anything else is counted and ignored: no entry is ever made
  // from a reply nobody asked for); the flows waiting for it go on.
  void on_arp_reply(const Packet& p, bool exception, FrameSink& out) noexcept;
  void on_neighbor_advert(const Packet& p, FrameSink& out) noexcept;
  void learn_neighbor(Neighbor& n, const MacAddr& mac, FrameSink& out) noexcept;
  // An entry older than neighbor_ttl_ms is asked again when a new flow uses
  // it (the flow does not wait: it goes on with the MAC it has); on_tick
  // asks again every second while no answer came, and forgets an entry that
  // stayed unanswered for kNeighborProbeMs.
  void refresh_neighbors(FrameSink& out) noexcept;
  // A free local port for the backend side `bk` (its dport to be chosen)
  // whose return segments the NIC hashes to this lcore's queue, or 0 when
  // there is no RSS on that side or none was found (counted in
  // rss_port_fallbacks).
  uint16_t rss_local_port(const FlowKey& bk, bool handoff) noexcept;
  // The comparison of check_nic_hash, for a frame it samples.
  void verify_nic_hash(std::span<const uint8_t> frame, uint32_t nic_hash) noexcept;
  // The next port of this lcore's by the port rule (port % lcores == lcore),
  // among all local ports, or only those past kLastRssPort when that side
  // has RSS.
  uint16_t next_local_port(bool handoff) noexcept;
  // A frame of no flow here whose owner (owner_of(segment, from_exception))
  // is another lcore: handed to it (true), or dropped and counted when the
  // hand-over failed (true); false when this lcore owns it (the caller goes
  // on as before).
  bool redirect_to_owner(const FlowKey& segment, bool from_exception, std::span<const uint8_t> frame,
                         FrameSink& out) noexcept;
  // A copy of an ARP reply or neighbour advertisement for every other lcore.
  void share_with_lcores(std::span<const uint8_t> frame, FrameSink& out) noexcept;
  bool refresh_pools() noexcept;
  static bool has_v6_backend(const worker::Runtime& rt) noexcept;
  enum class ResetVerdict : uint8_t { kDrop, kEnds, kPassOn };
  ResetVerdict judge_reset(uint32_t seq, uint32_t una, uint32_t window) noexcept;
  // An ACK to the client as the backend's last segment would carry it (its
  // acknowledgement, window and clock): RFC 5961's challenge ACK.
  void send_challenge_ack(const Flow& f, FrameSink& out) noexcept;
  // The passive state of a flow's pool, where this lcore keeps it: none for
  // a flow routed by another generation than the pools' (a reload since:
  // its pool index may name another pool, or none).
  route::PoolState* pool_state(const Flow& f) noexcept;
  // The verdict of a flow of an older generation (whose pool state went with
  // it), told to the same-named pool in service (BackendPool::carry_verdict).
  void carry_verdict(const Flow& f, route::BackendPool::Verdict v) noexcept;
  // A flow's hello buffer back to the spares when it is of the size new
  // flows get (a reload that raised max_hello_bytes made them larger).
  void give_back_buffer(Flow& f) noexcept;
  // The series (EngineConfig::route_series / backend_series): the route a
  // flow was routed to, the backend picked for it, the end of either.
  void count_route(Flow& f, uint32_t route) noexcept;
  // A passthrough route at its max_connections: its open flows over the
  // lcores (this one counted already) above the cap.
  bool route_full(const Flow& f, uint32_t route) const noexcept;
  void count_backend_pick(Flow& f, uint32_t backend) noexcept;
  void count_backend_failed(Flow& f) noexcept;
  void uncount(Flow& f) noexcept;
  TcpSegment to_backend(Flow& f) noexcept;
  // A flow's backend MAC after a next hop's changed (flow_engine_neighbor.cc):
  // mac_epoch_ counts the changes, each flow the count it has seen.
  void follow_neighbor(Flow& f) noexcept;
  void refresh_backend_mac(Flow& f) noexcept;
  TcpSegment to_client(const Flow& f) const noexcept;

  // Terminate (flow_engine_splice.cc): the same splice, the worker as backend.
  void start_handoff(Flow& f, bool steer_by_client, FrameSink& out) noexcept;
  // Where a flow's backend-side frames go: the wire, or the exception port.
  FrameSink& toward_backend(const Flow& f, FrameSink& out) noexcept;
  // The VLAN of a flow's backend-side frames: the backends' link's, none on
  // the exception link.
  uint16_t backend_vlan(const Flow& f) const noexcept;
  // The ISN of our SYN to the backend: the client's, moved back by what we
  // put in front of its bytes (the PROXY header of a hand-off).
  uint32_t backend_syn_seq(const Flow& f) const noexcept;
  EngineConfig cfg_;
  std::shared_ptr<const worker::Runtime> rt_;
  SynCookies cookies_;
  uint64_t key_epoch_ = UINT64_MAX;
  uint64_t key_epoch_start_ = 0;  // key_epoch_ * kCookieKeyPeriodMs
  std::span<uint8_t> inplace_;  // the frame being handled, when it may be rewritten
  bool l4_verified_ = false;
  // The cookies of the master secret before set_cookie_secret(), accepted
  // until prev_cookies_until_ms_.
  std::optional<SynCookies> prev_cookies_;
  uint64_t prev_cookies_until_ms_ = 0;
  // icmp_burst tokens refilled at icmp_per_second, in thousandths of a
  // token: one for the errors this lcore sends, one for the client-leg
  // errors it copies to the other lcores.
  struct TokenBucket {
    uint64_t millitokens = 0;
    uint64_t refilled_ms = 0;
    bool started = false;
    bool take(uint64_t now_ms, uint32_t per_second, uint32_t burst) noexcept;
  };
  TokenBucket icmp_bucket_, icmp_share_bucket_;
  bool redirected_ = false;  // the frame being handled came from another lcore
  uint32_t mac_epoch_ = 0;   // next-hop MAC changes seen (see follow_neighbor)
  FrontStats stats_;
  // Flows: fixed slots, an open-addressing index (linear probing, backward
  // shift deletion), a FIFO per timeout. The slots and indexes on huge pages
  // where the kernel gives them (huge_page_allocator.h).
  using FlowIndex = std::vector<uint32_t, HugePageAllocator<uint32_t>>;
  std::vector<Flow, HugePageAllocator<Flow>> flows_;
  std::vector<uint32_t> free_;
  FlowIndex index_;   // slot+1, 0 = empty
  FlowIndex bindex_;  // backend-side keys of passthrough flows, same layout
  size_t live_ = 0;
  uint32_t head_[static_cast<size_t>(Wait::kCount)];  // per timeout list, oldest first
  uint32_t tail_[static_cast<size_t>(Wait::kCount)];
  // The pools' passive state for rt_ (Maglev needs none; round robin and
  // least-conn do), carried over reloads like the workers'.
  std::shared_ptr<const worker::Runtime> pools_rt_;
  std::vector<route::PoolState> pools_;
  // Next hops' MACs (see Neighbor).
  std::vector<Neighbor> neighbors_;
  uint64_t neighbors_checked_ms_ = 0;
  uint16_t port_cursor_ = 0;
  uint32_t rss_cursor_ = 0;  // where the next RSS port search starts, in the RSS range
  uint64_t nic_hash_calls_ = 0;  // check_nic_hash calls past the first checks (the sample)
  // Some RETA entry of cfg_.rss / cfg_.exception_rss is this lcore's queue.
  bool rss_names_us_ = false, exception_rss_names_us_ = false;
  // A sink with no buffers: hand-off frames when no exception sink is given
  // (counted in tx_no_buffer).
  struct NoSink : FrameSink {
    std::span<uint8_t> buffer() noexcept override { return {}; }
    void send(size_t) noexcept override {}
  } no_sink_;
  std::vector<std::unique_ptr<uint8_t[]>> spare_buffers_;  // hello buffers: kLeadRoom + hello_cap_ bytes
  size_t hello_cap_ = 0;
  bool v6_backends_ = false;  // a pool has an IPv6 backend: IPv4 clients get 20 bytes less MSS
  uint64_t now_ms_ = 0;
};

}  // namespace lode::front

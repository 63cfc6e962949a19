// One lcore's share of the dpdk front, as pure logic: frames in, frames out,
// no DPDK, no clock, no allocation per packet. The DPDK glue (dpdk_front.cc)
// feeds it what its RX queue got and sends what it writes; the packet-fixture
// tests feed it crafted frames and compare what comes out.
//
// What it does with a frame:
// - ARP requests and IPv6 neighbour solicitations for a VIP: answered;
//   ICMP / ICMPv6 echo to a VIP: answered. IP fragments to a VIP: dropped
//   and counted. Anything else not for a VIP: dropped and counted.
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
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "dataplane/front/flow_key.h"
#include "dataplane/front/handoff.h"
#include "dataplane/front/hello_collector.h"
#include "dataplane/front/packet.h"
#include "dataplane/front/syn_cookie.h"
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
  // Terminate: where the workers listen behind the exception port.
  HandoffConfig handoff;
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
  void rotate_cookie_key(uint64_t now_ms) noexcept {
    // Within the current key's period: nothing to do (no division per frame).
    if (now_ms - key_epoch_start_ < kCookieKeyPeriodMs && key_epoch_ != UINT64_MAX) return;
    rotate_cookie_key_slow(now_ms);
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
  uint64_t timeout_of(const Flow& f, Wait w) const noexcept;

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
  void on_arp_reply(const Packet& p, FrameSink& out) noexcept;
  void fail_backend(Flow& f, FrameSink& out) noexcept;
  void reset_both(Flow& f, FrameSink& out) noexcept;
  void on_wait_expired(Flow& f, FrameSink& out) noexcept;
  Flow* lookup_backend(const FlowKey& k, uint64_t hash) noexcept;
  bool index_backend(Flow& f) noexcept;
  void erase_backend_key(Flow& f) noexcept;
  void send_arp_for(Flow& f, FrameSink& out) noexcept;
  uint16_t next_local_port() noexcept;
  bool refresh_pools() noexcept;
  TcpSegment to_backend(const Flow& f) const noexcept;
  TcpSegment to_client(const Flow& f) const noexcept;

  // Terminate (flow_engine_splice.cc): the same splice, the worker as backend.
  void start_handoff(Flow& f, bool steer_by_client, FrameSink& out) noexcept;
  // Where a flow's backend-side frames go: the wire, or the exception port.
  FrameSink& toward_backend(const Flow& f, FrameSink& out) noexcept;
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
  FrontStats stats_;
  // Flows: fixed slots, an open-addressing index (linear probing, backward
  // shift deletion), a FIFO per timeout.
  std::vector<Flow> flows_;
  std::vector<uint32_t> free_;
  std::vector<uint32_t> index_;  // slot+1, 0 = empty
  std::vector<uint32_t> bindex_;  // backend-side keys of passthrough flows, same layout
  size_t live_ = 0;
  uint32_t head_[static_cast<size_t>(Wait::kCount)];  // per timeout list, oldest first
  uint32_t tail_[static_cast<size_t>(Wait::kCount)];
  // The pools' passive state for rt_ (Maglev needs none; round robin and
  // least-conn do), carried over reloads like the workers'.
  std::shared_ptr<const worker::Runtime> pools_rt_;
  std::vector<route::PoolState> pools_;
  // Backends' MAC addresses (IPv4, ARP), a small table.
  struct Neighbor {
    uint32_t ip = 0;
    MacAddr mac{};
    uint64_t seen_ms = 0;
  };
  std::vector<Neighbor> neighbors_;
  uint16_t port_cursor_ = 0;
  // A sink with no buffers: hand-off frames when no exception sink is given
  // (counted in tx_no_buffer).
  struct NoSink : FrameSink {
    std::span<uint8_t> buffer() noexcept override { return {}; }
    void send(size_t) noexcept override {}
  } no_sink_;
  std::vector<std::unique_ptr<uint8_t[]>> spare_buffers_;  // hello buffers: kLeadRoom + hello_cap_ bytes
  size_t hello_cap_ = 0;
  uint64_t now_ms_ = 0;
};

}  // namespace lode::front

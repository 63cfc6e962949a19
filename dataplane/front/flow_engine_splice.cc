// Passthrough in the dataplane (FullNAT): after the hello, a backend is
// picked from the route's pool, opened with a SYN that carries the client's
// ISN and options from the VIP and a local port, the collected bytes are
// replayed to it, and from then on every segment is translated both ways:
//
//   client -> backend: source VIP:lport, sequence unchanged (our SYN used the
//     client's ISN), acknowledgement - delta, SACK blocks - delta, TSecr -
//     ts_delta; the window passes as is (the backend got the client's scale);
//   backend -> client: source VIP:port, sequence + delta, acknowledgement
//     unchanged, TSval + ts_delta, the window rescaled from the backend's
//     scale to the one we gave the client.
//
// delta = our ISN towards the client (the cookie) - the backend's ISN;
// ts_delta = our clock when the backend's SYN-ACK came - its TSval (our
// TSvals are that clock, in ms, so the client sees them grow). FIN and RST pass through;
// a flow ends after both FINs (a short time-wait), a RST, or the idle timeout
// (a RST both ways). Backends are IPv4 or IPv6, on the port's link or behind
// a gateway (flow_engine_neighbor.cc resolves the next hop's MAC). The
// backend sees the VIP the client connected to; a backend of the other
// family sees the first VIP of its own family, and the flow is reset
// (backend_no_route) when there is none, or when the backend is off the link
// with no gateway of its family.
//
// Terminate's hand-off (handoff.h) is the same splice: the backend is the
// chosen worker's listener on the kernel side of the exception port, our
// side of it is HandoffConfig::address (not the VIP), its frames go through
// the exception sink, and the SYN's ISN is moved back by the PROXY v2
// header's length (`lead`), which goes out just before the hello.
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <string_view>

#include "dataplane/front/flow_engine_flow.h"
#include "dataplane/front/tcp_rewrite.h"

namespace lode::front {
namespace {

bool seq_geq(uint32_t a, uint32_t b) noexcept { return static_cast<int32_t>(a - b) >= 0; }
bool seq_lt(uint32_t a, uint32_t b) noexcept { return !seq_geq(a, b); }

// The most the backend's receive window can offer the client's bytes, and
// the client's the backend's: the largest window their shifts allow. Not
// the last window field: taken from segments anyone can forge, it let one
// segment shrink it (and every later real segment be judged beyond it, the
// flow's state frozen) or grow it (2^-9 of a blind guess at shift 7 is the
// bound either way).
uint32_t backend_room(const FlowEngine::Flow& f) noexcept { return max_window(f.backend_wscale); }
uint32_t client_room(const FlowEngine::Flow& f) noexcept { return max_window(f.syn.wscale); }


// The sequence number after a segment that starts at `seq` with `len`
// bytes (its FIN counts one).
uint32_t segment_end(uint32_t seq, size_t len, uint8_t flags) noexcept {
  return seq + static_cast<uint32_t>(len) + ((flags & kTcpFin) ? 1 : 0);
}
uint32_t segment_end(uint32_t seq, const Packet& p) noexcept { return segment_end(seq, p.payload.size(), p.flags); }

SocketAddress to_socket_address(const IpAddr& a, uint16_t port) noexcept {
  SocketAddress s;
  if (a.family == 4) {
    auto* in = reinterpret_cast<sockaddr_in*>(&s.storage);
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    std::memcpy(&in->sin_addr, a.bytes, 4);
    s.len = sizeof(sockaddr_in);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&s.storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    std::memcpy(&in6->sin6_addr, a.bytes, 16);
    s.len = sizeof(sockaddr_in6);
  }
  return s;
}

}  // namespace

// A segment of the flow from us to its backend (VIP:lport -> backend) and
// to its client (VIP:port -> client).
TcpSegment FlowEngine::to_backend(Flow& f) noexcept {
  follow_neighbor(f);
  TcpSegment s;
  s.src_mac = f.handoff ? cfg_.handoff.mac : cfg_.mac;
  s.dst_mac = f.backend_mac;
  s.vlan = backend_vlan(f);
  s.flow = FlowKey{f.bkey.dst, f.bkey.src, f.bkey.dport, f.bkey.sport};
  return s;
}

TcpSegment FlowEngine::to_client(const Flow& f) const noexcept {
  TcpSegment s;
  s.src_mac = cfg_.mac;
  s.dst_mac = f.peer_mac;
  s.vlan = f.vlan;
  s.flow = FlowKey{f.key.dst, f.key.src, f.key.dport, f.key.sport};
  return s;
}

route::PoolState* FlowEngine::pool_state(const Flow& f) noexcept {
  return f.rt == pools_rt_ && f.pool < pools_.size() ? &pools_[f.pool] : nullptr;
}

void FlowEngine::carry_verdict(const Flow& f, route::BackendPool::Verdict v) noexcept {
  if (!pools_rt_ || f.rt == pools_rt_) return;
  const worker::PoolRuntime& from = f.rt->pools[f.pool];
  for (size_t i = 0; i < pools_rt_->pools.size() && i < pools_.size(); ++i) {
    const worker::PoolRuntime& to = pools_rt_->pools[i];
    if (to.name == from.name) to.pool->carry_verdict(pools_[i], *from.pool, f.backend, v, f.tried, now_ms_);
  }
}

bool FlowEngine::refresh_pools() noexcept {
  if (pools_rt_ == rt_) return true;
  std::vector<route::PoolState> next;
  next.reserve(rt_->pools.size());
  for (const auto& p : rt_->pools) {
    const worker::PoolRuntime* prev = nullptr;
    size_t prev_i = 0;
    for (size_t i = 0; pools_rt_ && i < pools_rt_->pools.size(); ++i) {
      if (pools_rt_->pools[i].name == p.name) {
        prev = &pools_rt_->pools[i];
        prev_i = i;
      }
    }
    if (prev != nullptr) {
      next.emplace_back(*p.pool, *prev->pool, pools_[prev_i]);
    } else {
      next.emplace_back(*p.pool);
    }
  }
  pools_ = std::move(next);
  pools_rt_ = rt_;
  return true;
}

uint16_t FlowEngine::next_local_port(bool handoff) noexcept {
  // kFirstLocalPort..kLastLocalPort (past kLastRssPort when that side has
  // RSS: the range before is chosen by hash, rss_local_port), only those of
  // this lcore (port % lcores == lcore: the port names the lcore that holds
  // the flow, see flow_engine_lcores.cc), never a VIP's port (a backend's
  // segment to it would be taken for a client's).
  const uint32_t n = std::max<uint32_t>(cfg_.lcores, 1);
  const uint32_t lcore = cfg_.lcore % n;
  const bool rss = n > 1 && (handoff ? cfg_.exception_rss : cfg_.rss).has_value();
  const uint32_t low = rss ? uint32_t{kLastRssPort} + 1 : kFirstLocalPort;
  const uint32_t first = low + (lcore + n - low % n) % n;
  const uint32_t count = (uint32_t{kLastLocalPort} - first) / n + 1;
  for (size_t tries = 0;; ++tries) {
    port_cursor_ = static_cast<uint16_t>((port_cursor_ + 1) % count);
    const auto port = static_cast<uint16_t>(first + port_cursor_ * n);
    const bool vip_port =
        std::any_of(cfg_.vips.begin(), cfg_.vips.end(), [&](const Vip& v) { return v.port == port; });
    if (!vip_port || tries > cfg_.vips.size()) return port;
  }
}

void FlowEngine::start_passthrough(Flow& f, FrameSink& out) noexcept {
  refresh_pools();
  ++stats_.passthrough_flows;
  f.state = Flow::State::kConnecting;
  f.tried = route::TriedSet{};
  connect_backend(f, out);
}

void FlowEngine::connect_backend(Flow& f, FrameSink& out) noexcept {
  const worker::PoolRuntime& pr = f.rt->pools[f.pool];
  const SocketAddress client = to_socket_address(f.key.src, f.key.sport);
  route::PickContext ctx;
  ctx.client = &client;
  if (f.parser && f.parser->info().has_sni) ctx.sni = f.parser->info().sni();
  ctx.now_ms = now_ms_;
  // A flow routed by an older generation picks without the pool's passive
  // state (it is rare: a reload while its hello was on its way).
  route::PoolState* own = pool_state(f);
  const bool own_state = own != nullptr;
  std::optional<route::PoolState> scratch;
  if (!own_state) scratch.emplace(*pr.pool);
  route::PoolState& st = own_state ? *own : *scratch;
  const auto pick = pr.pool->pick(st, ctx, f.tried);
  const SocketAddress* addr = pick ? &pr.pool->backend(*pick).address : nullptr;
  if (addr == nullptr || (addr->family() != AF_INET && addr->family() != AF_INET6)) {
    ++stats_.backend_no_pick;
    if (f.series != nullptr) series_add(f.series->refused);
    if (pick && own_state) pr.pool->on_connect_fail(st, *pick, now_ms_);
    reset_flow(f, out);
    return;
  }
  f.backend = *pick;
  f.picked = own_state;
  count_backend_pick(f, *pick);
  FlowKey bk;
  if (addr->family() == AF_INET) {
    bk.src = IpAddr::v4(ntohl(reinterpret_cast<const sockaddr_in*>(&addr->storage)->sin_addr.s_addr));
  } else {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr->storage);
    bk.src = IpAddr::v6(std::span<const uint8_t, 16>(in6->sin6_addr.s6_addr, 16));
  }
  bk.sport = addr->port();
  // FullNAT from the VIP the client connected to, or the first VIP of the
  // backend's family.
  bk.dst = f.key.dst;
  if (bk.dst.family != bk.src.family) {
    const auto v = std::find_if(cfg_.vips.begin(), cfg_.vips.end(),
                                [&](const Vip& x) { return x.addr.family == bk.src.family; });
    bk.dst = v != cfg_.vips.end() ? v->addr : IpAddr{};
  }
  if (bk.dst.family == 0 || !next_hop_of(bk.src)) {
    // Nothing to send from, or nowhere to send to: not the backend's fault.
    ++stats_.backend_no_route;
    reset_flow(f, out);
    return;
  }
  open_backend(f, bk, out);
}

// Takes a local port for the backend side (bk.dport): one whose return
// segments the NIC hashes to this lcore's queue when that side has RSS,
// else (or when none is free) by the port rule; then the next hop's MAC
// (asked for when not known yet) and our SYN.
void FlowEngine::open_backend(Flow& f, FlowKey bk, FrameSink& out) noexcept {
  bool indexed = false;
  if (const uint16_t port = rss_local_port(bk, f.handoff); port != 0) {
    bk.dport = port;  // free: rss_local_port looked
    if (f.bindexed) erase_backend_key(f);
    f.bkey = bk;
    indexed = index_backend(f);
  }
  for (int i = 0; i < 16 && !indexed; ++i) {
    bk.dport = next_local_port(f.handoff);
    if (lookup_backend(bk, flow_hash(bk)) == nullptr) {
      if (f.bindexed) erase_backend_key(f);
      f.bkey = bk;
      indexed = index_backend(f);
    }
  }
  if (!indexed) {
    ++(f.handoff ? stats_.handoff_failures : stats_.backend_no_pick);
    reset_flow(f, out);
    return;
  }
  f.tries = 0;
  f.backend_mac_known = false;
  Neighbor* n = find_neighbor(next_hop(f), f.handoff);
  if (n != nullptr && n->known) {
    f.backend_mac = n->mac;
    f.mac_epoch = mac_epoch_;
    f.backend_mac_known = true;
    // Old: asked again, the flow goes on with it meanwhile.
    if (!n->asking && now_ms_ - n->seen_ms >= cfg_.neighbor_ttl_ms) solicit(*n, out);
    send_backend_syn(f, out);
    return;
  }
  send_arp_for(f, out);
}

// ---------------------------------------------------------------- hand-off

FrameSink& FlowEngine::toward_backend(const Flow& f, FrameSink& out) noexcept {
  if (!f.handoff) return out;
  FrameSink* x = out.exception_sink();
  return x != nullptr ? *x : no_sink_;
}

uint16_t FlowEngine::backend_vlan(const Flow& f) const noexcept { return f.handoff ? 0 : cfg_.next_hops.vlan; }

uint32_t FlowEngine::backend_syn_seq(const Flow& f) const noexcept { return f.hello.start() - 1 - f.lead; }

void FlowEngine::start_handoff(Flow& f, bool steer_by_client, FrameSink& out) noexcept {
  const HandoffConfig& h = cfg_.handoff;
  const tls::ClientHelloInfo& info = f.parser->info();
  const std::string_view sni = info.has_sni ? info.sni() : std::string_view();
  // One name, one worker (its caches stay warm); no name, or a route that
  // steers by client (one busy name over every worker): by the client's port.
  const uint32_t workers = std::max<uint32_t>(h.workers, 1);
  const uint32_t worker = !sni.empty() && !steer_by_client ? steer_by_name(sni, workers) : f.key.sport % workers;
  const uint16_t port = handoff_port(h.first_port, f.listener, worker, workers);
  uint8_t header[kHandoffHeaderMax];
  const size_t n = write_handoff_header(header, f.key, sni);
  if (port == 0 || n == 0 || !f.buffer) {
    ++stats_.handoff_failures;
    reset_flow(f, out);
    return;
  }
  // The header goes just before the hello in the flow's buffer: one stream.
  std::memcpy(f.buffer.get() + kLeadRoom - n, header, n);
  f.lead = static_cast<uint16_t>(n);
  f.handoff = true;
  ++stats_.handoff_flows;
  f.state = Flow::State::kConnecting;
  FlowKey bk;
  bk.src = IpAddr::v4(h.kernel);
  bk.sport = port;
  bk.dst = IpAddr::v4(h.address);
  open_backend(f, bk, out);
}

// Our SYN to the backend: from VIP:lport, with the client's ISN and options,
// so the client's sequence numbers need no translation.
void FlowEngine::send_backend_syn(Flow& f, FrameSink& out) noexcept {
  TcpSegment s = to_backend(f);
  s.seq = backend_syn_seq(f);
  s.flags = kTcpSyn;
  s.window = 65535;
  s.options.mss = f.syn.mss;
  s.options.wscale = f.syn.wscale;
  s.options.sack_ok = f.syn.sack_ok;
  if (f.timestamps) {
    s.options.has_timestamps = true;
    s.options.ts_val = f.ts_recent;
  }
  ++f.tries;
  emit(toward_backend(f, out), s);
  link_tail(f, Wait::kConnect);
}

// ACK of the backend's SYN-ACK with the bytes collected from the client
// (exactly those that were parsed; a hand-off's PROXY header first), in
// segments of the backend's MSS.
void FlowEngine::send_replay(Flow& f, FrameSink& out) noexcept {
  if (!f.buffer) return;
  const auto hello = f.hello.contiguous();
  const std::span<const uint8_t> bytes(hello.data() - f.lead, f.lead + hello.size());
  const uint32_t first = f.hello.start() - f.lead;
  FrameSink& to = toward_backend(f, out);
  const size_t mss = std::clamp<size_t>(f.backend_mss, 64, 1460);
  size_t at = 0;
  do {
    const size_t n = std::min(mss, bytes.size() - at);
    TcpSegment s = to_backend(f);
    s.seq = first + static_cast<uint32_t>(at);
    s.ack = f.backend_isn + 1;
    s.flags = kTcpAck | (at + n == bytes.size() ? kTcpPsh : 0);
    s.window = unscaled_window(f.client_window, f.client_window_shift);
    if (f.backend_ts) {
      s.options.has_timestamps = true;
      s.options.ts_val = f.ts_recent;
      s.options.ts_ecr = f.backend_ts_recent;
    }
    s.payload = bytes.subspan(at, n);
    emit(to, s);
    at += n;
  } while (at < bytes.size());
}

void FlowEngine::on_backend_segment(Flow& f, const Packet& p, FrameSink& out) noexcept {
  // The backend's latest TSval (what our challenge ACKs carry to the client
  // as its clock), from its segments near what the client acknowledged only
  // (near_una): a forged one far off sets nothing.
  if (p.options.has_timestamps && (f.state != Flow::State::kSpliced || near_una(p.seq + f.delta, f.client_una, f.syn.wscale))) {
    f.backend_ts_recent = p.options.ts_val;
  }
  if (f.state == Flow::State::kConnecting) {
    const uint32_t syn_next = backend_syn_seq(f) + 1;
    if ((p.flags & kTcpRst) && (p.flags & kTcpAck) && p.ack == syn_next) {
      if (!f.handoff) ++stats_.backend_connect_failures;  // refused (a hand-off's counts in fail_backend)
      fail_backend(f, out);
      return;
    }
    if ((p.flags & (kTcpSyn | kTcpAck | kTcpRst)) != (kTcpSyn | kTcpAck) || p.ack != syn_next) return;
    if (f.picked) {
      if (route::PoolState* st = pool_state(f)) {
        f.rt->pools[f.pool].pool->on_connect_ok(*st, f.backend);
      } else {
        carry_verdict(f, route::BackendPool::Verdict::kUp);
      }
    }
    if (f.bseries != nullptr) series_add(f.bseries->connects);
    // The hello, replayed to the backend now, came from the client.
    if (f.series != nullptr) series_add(f.series->bytes_in, f.hello.contiguous().size());
    f.backend_isn = p.seq;
    f.delta = (f.snd_nxt - 1) - f.backend_isn;
    f.backend_wscale = f.syn.wscale >= 0 ? std::min<int8_t>(std::max<int8_t>(p.options.wscale, 0), 14) : -1;
    f.client_window_shift = 0;
    if (f.syn.wscale >= 0 && p.options.wscale < 0) {  // the backend does not scale
      f.backend_wscale = 0;
      f.client_window_shift = static_cast<uint8_t>(std::min<int8_t>(f.syn.wscale, 14));
    }
    f.backend_mss = p.options.mss != 0 ? p.options.mss : 536;
    f.backend_window = static_cast<uint16_t>(p.window >> std::max<int8_t>(f.backend_wscale, 0));  // a SYN's is not scaled
    f.backend_ts = f.timestamps && p.options.has_timestamps;
    // The backend's SYN-ACK TSval becomes our clock now, not our SYN-ACK's
    // TSval: the ACKs we sent the client while collecting the hello carried
    // later values, and a translated TSval below them fails the client's
    // PAWS check (RFC 7323 5.3: the segment is dropped, the client answers
    // with a duplicate ACK and the flow waits for a retransmission).
    f.ts_delta = static_cast<uint32_t>(now_ms_) - p.options.ts_val;
    f.replay_end = f.hello.next_seq();
    f.to_backend_nxt = f.replay_end;
    f.backend_una = syn_next;  // the replay's first byte
    f.client_una = f.snd_nxt;
    f.state = Flow::State::kSpliced;
    f.tries = 0;
    if (f.hello.contiguous().empty() && f.lead == 0) {
      // Nothing to replay (the buffer held means "replay unacknowledged").
      give_back_buffer(f);
      link_tail(f, Wait::kIdle);
      return;
    }
    send_replay(f, out);
    link_tail(f, Wait::kReplay);
    return;
  }
  if (p.flags & kTcpSyn) {
    // The backend's SYN-ACK again: our replay was lost.
    if (f.wait == Wait::kReplay) send_replay(f, out);
    return;
  }
  uint8_t flags = p.flags;
  ResetVerdict verdict = ResetVerdict::kEnds;
  if (flags & kTcpRst) {
    verdict = judge_reset(p.seq + f.delta, f.client_una, client_room(f));
    if (verdict == ResetVerdict::kDrop) return;
    if (verdict != ResetVerdict::kEnds) flags &= static_cast<uint8_t>(~kTcpRst);  // for after_to_client
  } else if (near_una(p.seq + f.delta, f.client_una, f.syn.wscale)) {
    f.backend_window = p.window;  // for our challenge ACKs
  }
  if (p.flags & kTcpAck) note_ack(f.backend_una, p.ack, f.to_backend_nxt);
  // Not beyond what was sent (a forged acknowledgement far ahead must not
  // end the replay's protection while a replay frame is lost).
  if (f.buffer && (p.flags & kTcpAck) && seq_geq(p.ack, f.replay_end) && seq_geq(f.to_backend_nxt, p.ack)) {
    // The backend has every replayed byte: the buffer goes back to the pool.
    give_back_buffer(f);
    f.hello.reset(f.replay_end, {});
  }
  TcpSegment s = to_client(f);
  s.seq = p.seq + f.delta;
  s.ack = p.ack;
  s.flags = p.flags;
  // The backend's window in the scale we gave the client.
  s.window = rescale_window(p.window, f.backend_wscale, cfg_.wscale);
  const bool ts = f.backend_ts && p.options.has_timestamps;
  if (!inplace_.empty() && (ts || !p.options.has_timestamps)) {
    const TcpRewrite rw{s.src_mac, s.dst_mac, s.flow, s.seq, s.ack, s.window, ts,
                        p.options.ts_val + f.ts_delta, p.options.ts_ecr, 0, s.vlan};
    if (rewrite_tcp(inplace_, p, rw) && out.send_in_place(inplace_)) {
      ++stats_.forwarded_in_place;
      ++stats_.tx_frames;
      after_to_client(f, flags, (p.flags & kTcpRst) ? f.snd_nxt : segment_end(s.seq, p));
      return;
    }
  }
  s.options.sack_count = p.options.sack_count;  // in the client's sequence space already
  std::copy(std::begin(p.options.sack), std::end(p.options.sack), std::begin(s.options.sack));
  if (f.backend_ts && p.options.has_timestamps) {
    s.options.has_timestamps = true;
    s.options.ts_val = p.options.ts_val + f.ts_delta;
    s.options.ts_ecr = p.options.ts_ecr;
  }
  s.payload = p.payload;
  emit(out, s);
  after_to_client(f, flags, (p.flags & kTcpRst) ? f.snd_nxt : segment_end(s.seq, p));
}

// What a segment sent to the client (copied or in place) changes in the flow.
void FlowEngine::after_to_client(Flow& f, uint8_t flags, uint32_t end) noexcept {
  ++stats_.spliced_to_client;
  const bool beyond = !seq_geq(f.client_una + client_room(f) + 1, end);  // as in after_to_backend
  if (beyond) {
    ++stats_.segments_out_of_window;
    flags &= static_cast<uint8_t>(~kTcpFin);
  } else if (seq_geq(end, f.snd_nxt)) {
    if (f.series != nullptr) series_add(f.series->bytes_out, new_bytes(end, f.snd_nxt, flags));
    f.snd_nxt = end;
  }
  if (flags & kTcpRst) {
    erase(f);
    return;
  }
  if (flags & kTcpFin) f.fin_from_backend = true;
  relink_spliced(f);
}

// After a spliced segment: while the replay is unacknowledged its timer
// runs on (Wait::kReplay: sent again, the range kept from the client), even
// when both FINs have passed; then time-wait once both have, idle before.
// A flow in time-wait is open no more in its series (as a worker's
// connection once its socket is closed): max_connections counts it no more.
void FlowEngine::relink_spliced(Flow& f) noexcept {
  if (f.buffer) return;
  if (f.fin_from_client && f.fin_from_backend) {
    uncount(f);
    link_tail(f, Wait::kTimeWait);
    return;
  }
  link_tail(f, Wait::kIdle);
}

// A reset on a spliced leg whose receiver acknowledged up to `una` (its
// largest window `window`): outside the window, dropped (a blind reset:
// nothing passed on or ended); in it, passed on for the receiver to judge
// (RFC 5961: it takes one at its RCV.NXT, answers others with a challenge
// ACK). It ends the flow only at `una`, a number a blind sender must guess
// exactly (and the sender's next one when nothing is unacknowledged); one
// at the sender's next number with bytes unacknowledged (a forged segment
// can have moved it) is passed on and the flow stays until the receiver's
// own reset or the idle timeout ends it.
FlowEngine::ResetVerdict FlowEngine::judge_reset(uint32_t seq, uint32_t una, uint32_t window) noexcept {
  if (seq == una) return ResetVerdict::kEnds;
  if (!seq_within(seq, una, window)) {
    ++stats_.rst_out_of_window;
    return ResetVerdict::kDrop;
  }
  ++stats_.rst_in_window;
  return ResetVerdict::kPassOn;
}

void FlowEngine::send_challenge_ack(const Flow& f, FrameSink& out) noexcept {
  TcpSegment s = to_client(f);
  s.seq = f.snd_nxt;
  s.ack = f.backend_una;  // what the backend has: never bytes it may still lose
  s.flags = kTcpAck;
  s.window = rescale_window(f.backend_window, f.backend_wscale, cfg_.wscale);
  if (f.backend_ts) {
    s.options.has_timestamps = true;
    s.options.ts_val = f.backend_ts_recent + f.ts_delta;  // the backend's clock, as every segment it sends
    s.options.ts_ecr = f.ts_recent;
  }
  emit(out, s);
}

void FlowEngine::splice_to_backend(Flow& f, const Packet& p, FrameSink& out) noexcept {
  uint8_t flags = p.flags;
  ResetVerdict verdict = ResetVerdict::kEnds;
  if (flags & kTcpRst) {
    verdict = judge_reset(p.seq, f.backend_una, backend_room(f));
    if (verdict == ResetVerdict::kDrop) return;
    if (verdict != ResetVerdict::kEnds) flags &= static_cast<uint8_t>(~kTcpRst);  // for after_to_backend
  }
  // Until the backend has acknowledged the whole replay, the client's bytes
  // in its range are not passed on: they were parsed and routed already,
  // and the replay (sent again while unacknowledged) is what the backend
  // must take there. A retransmission with other bytes (a client that
  // never saw our ACK, or a forgery) would otherwise fill a range whose
  // replay frame was lost: the backend would read a hello that was never
  // routed. Such a segment goes on from the replay's end (a FIN inside the
  // range, which contradicts what we hold, is dropped with those bytes).
  // Segments that do not meet the range (wholly before it: old, or a blind
  // guess far off) go on as they are, for the backend to judge; one wholly
  // inside it (no FIN after it) is dropped.
  uint32_t seq = p.seq;
  std::span<const uint8_t> payload = p.payload;
  bool trimmed = false;
  if (f.buffer && !(p.flags & kTcpRst) && (!payload.empty() || (p.flags & kTcpFin))) {
    const uint32_t lo = f.hello.start() - f.lead;  // the replay's first byte
    const auto len = static_cast<uint32_t>(payload.size());
    const bool meets = seq_lt(seq, f.replay_end) && (len > 0 ? seq_lt(lo, seq + len) : seq_geq(seq, lo));
    if (meets) {
      ++stats_.replay_overlaps;
      const uint32_t ahead = f.replay_end - seq;  // of its bytes, those the replay carries
      if (ahead > len) flags &= static_cast<uint8_t>(~kTcpFin);  // a FIN inside the range contradicts what we hold
      payload = payload.subspan(std::min(ahead, len));
      if (payload.empty() && !(flags & kTcpFin)) return;
      seq = f.replay_end;
      trimmed = true;
    }
  }
  // A reset moves no sequence number.
  const uint32_t end = (p.flags & kTcpRst) ? f.to_backend_nxt : segment_end(seq, payload.size(), flags);
  if (p.options.has_timestamps && updates_ts_recent(p.seq, f.backend_una, f.backend_wscale)) {
    f.ts_recent = p.options.ts_val;
  }
  if (!(p.flags & kTcpRst)) f.client_window = p.window;
  if (p.flags & kTcpAck) note_ack(f.client_una, p.ack, f.snd_nxt);
  FrameSink& to = toward_backend(f, out);
  TcpSegment s = to_backend(f);
  s.seq = seq;
  s.ack = (p.flags & kTcpAck) ? p.ack - f.delta : 0;
  s.flags = trimmed ? flags : p.flags;
  s.window = unscaled_window(p.window, f.client_window_shift);
  const bool ts = f.backend_ts && p.options.has_timestamps;
  if (!trimmed && !inplace_.empty() && (ts || !p.options.has_timestamps)) {
    const TcpRewrite rw{s.src_mac, s.dst_mac, s.flow, s.seq, (p.flags & kTcpAck) ? s.ack : p.ack, s.window, ts,
                        p.options.ts_val, p.options.ts_ecr - f.ts_delta, p.options.sack_count > 0 ? 0 - f.delta : 0,
                        s.vlan};
    if (rewrite_tcp(inplace_, p, rw) && to.send_in_place(inplace_)) {
      ++stats_.forwarded_in_place;
      ++stats_.tx_frames;
      after_to_backend(f, flags, end);
      return;
    }
  }
  s.options.sack_count = p.options.sack_count;
  for (uint8_t i = 0; i < p.options.sack_count && i < 4; ++i) {
    s.options.sack[i] = SackBlock{p.options.sack[i].left - f.delta, p.options.sack[i].right - f.delta};
  }
  if (f.backend_ts && p.options.has_timestamps) {
    s.options.has_timestamps = true;
    s.options.ts_val = p.options.ts_val;
    s.options.ts_ecr = p.options.ts_ecr - f.ts_delta;
  }
  s.payload = payload;
  emit(to, s);
  after_to_backend(f, flags, end);
}

void FlowEngine::after_to_backend(Flow& f, uint8_t flags, uint32_t end) noexcept {
  ++stats_.spliced_to_backend;
  // Beyond the largest window the backend can have given (its FIN may take
  // one more): the backend drops it; a forged segment must move nothing the
  // flow expects (resets, ICMP checks, the FINs). One at or below what was
  // sent moves nothing either way.
  const bool beyond = !seq_geq(f.backend_una + backend_room(f) + 1, end);
  if (beyond) {
    ++stats_.segments_out_of_window;
    flags &= static_cast<uint8_t>(~kTcpFin);
  } else if (seq_geq(end, f.to_backend_nxt)) {
    if (f.series != nullptr) series_add(f.series->bytes_in, new_bytes(end, f.to_backend_nxt, flags));
    f.to_backend_nxt = end;
  }
  if (flags & kTcpRst) {
    erase(f);
    return;
  }
  if (flags & kTcpFin) f.fin_from_client = true;
  relink_spliced(f);
}

// The backend refused or never answered: the next one, while the pool and
// the retry budget allow; else the client is reset.
void FlowEngine::fail_backend(Flow& f, FrameSink& out) noexcept {
  if (f.handoff) {
    // The worker's listener refused or never answered: there is no other
    // (a worker is down only when the whole process is).
    ++stats_.handoff_failures;
    reset_flow(f, out);
    return;
  }
  const worker::PoolRuntime& pr = f.rt->pools[f.pool];
  if (f.picked) {
    if (route::PoolState* st = pool_state(f)) {
      pr.pool->on_connect_fail(*st, f.backend, now_ms_);
    } else {
      carry_verdict(f, route::BackendPool::Verdict::kFailed);
    }
    f.picked = false;
  }
  count_backend_failed(f);
  if (f.tried.attempts() <= f.rt->limits.connect_retries && f.tried.attempts() < pr.pool->size()) {
    connect_backend(f, out);
    return;
  }
  reset_flow(f, out);
}

// Both ends are told the flow is gone (idle timeout, a replay that never
// got through).
void FlowEngine::reset_both(Flow& f, FrameSink& out) noexcept {
  TcpSegment s = to_backend(f);
  s.seq = f.to_backend_nxt;
  s.flags = kTcpRst;
  emit(toward_backend(f, out), s);
  reset_flow(f, out);  // the client's RST at our next sequence number; the flow goes
}

void FlowEngine::on_wait_expired(Flow& f, FrameSink& out) noexcept {
  switch (f.wait) {
    case Wait::kHello:
      ++stats_.hello_timeouts;
      reset_flow(f, out);
      return;
    case Wait::kClosing:
      reset_flow(f, out);  // a client that never closed is told so
      return;
    case Wait::kConnect:
      if (f.tries < 3) {
        if (f.backend_mac_known) {
          send_backend_syn(f, out);
        } else {
          send_arp_for(f, out);
        }
        return;
      }
      if (!f.handoff) ++stats_.backend_connect_failures;
      fail_backend(f, out);
      return;
    case Wait::kReplay:
      if (f.tries < 5) {
        ++f.tries;
        ++stats_.replay_retransmits;
        send_replay(f, out);
        link_tail(f, Wait::kReplay);
        return;
      }
      reset_both(f, out);
      return;
    case Wait::kIdle:
      ++stats_.idle_timeouts;
      reset_both(f, out);
      return;
    case Wait::kTimeWait:
    case Wait::kCount:
      erase(f);
      return;
  }
}

}  // namespace lode::front

// Path MTU discovery through the splice: ICMP "fragmentation needed"
// (type 3 code 4, RFC 1191) and ICMPv6 "packet too big" (type 2, RFC 8201)
// for the segments the front forwards.
//
// A router that cannot forward one of our segments tells us, its source (a
// VIP): the segment was ours only in its addresses, its bytes are the
// client's (towards the backend) or the backend's (towards the client), and
// only that end can send smaller ones. So the error is passed on to it,
// rewritten into its own view of the flow:
//
//   quote VIP:lport -> backend (the backend leg): to the client, from the VIP,
//     quoting client -> VIP:port, the sequence number as it is (our SYN to
//     the backend used the client's ISN);
//   quote VIP:port -> client (the client leg): to the backend (a hand-off's:
//     the workers' kernel, through the exception port), from our side of
//     that leg, quoting backend -> VIP:lport, the sequence number moved back
//     into the backend's space (- delta).
//
// The MTU moves by the difference of the legs' IP headers (an IPv6 client
// of an IPv4 backend sends 20 bytes more per segment than arrive), and an
// IPv6 one never goes below 1280 (RFC 8201 4).
//
// Checks, after RFC 5927 (ICMP attacks against TCP): the quote must be a TCP
// segment from the address the error came to, of a spliced flow, with its
// sequence number in that leg's window of bytes sent and not yet
// acknowledged (SND.UNA <= SEG.SEQ < SND.NXT, 4.1); the MTU must be one a
// link can have (IPv4 68, IPv6 1280 at least) and below the quoted packet's
// length (the packet did not fit). A flow still collecting its hello (our
// own ACKs and alerts, a few bytes) or connecting has nothing to pass on.
// What fails is dropped and counted; what passes is sent within the
// per-lcore ICMP rate limit (a token bucket; RFC 1812 4.3.2.8, RFC 4443
// 2.4(f)).
//
// One of our own hello replay segments to the backend (the bytes we collected)
// that was too big: the replay is cut again to fit (never below an MSS of
// 536, IPv6 1220), and sent again.
//
// Known limits: the backend (or the workers' kernel) keeps path MTUs per
// destination, and every flow it has through the front has the same one (the
// VIP, or the exception link's address): one client's small path (or a
// client forging errors about its own flow, which pass every check) lowers the
// segments that backend sends every client for as long as its kernel keeps
// the value (Linux: net.ipv4.route.mtu_expires, 10 minutes); hence client-leg
// errors tell the backend 1280 at the least (kClientLegMtuFloor).
//
// Several lcores: RSS spreads ICMP by its addresses (the router's and ours),
// not by the quoted ports, so an error may reach an lcore that does not
// hold its flow. A backend-leg error goes to the owner of its return
// 4-tuple (owner_of). A client-leg one goes to the lcore the client's
// 4-tuple hashes to when the NIC's Toeplitz key and RETA are ours and its
// hashes agree with ours; otherwise (the tap's queue choice, a NIC that
// disagreed) every other lcore gets a copy, at most icmp_per_second of them
// a second per lcore (pass_client_leg_error).
#include <algorithm>

#include "dataplane/front/flow_engine_flow.h"

namespace lode::front {
namespace {

constexpr uint32_t kMinMtu4 = 68;    // RFC 791
constexpr uint32_t kMinMtu6 = 1280;  // RFC 8200 5
// What an error from the client's path may tell a backend (or the workers'
// kernel) at least: they keep the figure per destination, the VIP address
// every client comes from, so one client (or a router on its path) must not
// shrink every client's segments below the IPv6 minimum. A client whose
// path is narrower than this keeps the black hole it had without the relay.
constexpr uint32_t kClientLegMtuFloor = 1280;
// The smallest MSS a replay is cut to (RFC 9293's default MSS for IPv4; IPv6:
// its minimum MTU less the headers): one error cannot make a hello into
// hundreds of tiny segments.
constexpr uint32_t kMinReplayMss4 = 536, kMinReplayMss6 = 1220;

uint32_t ip_header_len(uint8_t family) noexcept {
  return family == 6 ? 40 : 20;
}

// SND.UNA <= seq < SND.NXT, modulo 2^32.
bool in_flight(uint32_t seq, uint32_t una, uint32_t nxt) noexcept {
  return seq - una < nxt - una;
}

// The MTU of the other leg for an MTU `mtu` on a leg of family `from`: the
// same TCP segment with the other leg's IP header; 0 when it is below what
// a link of that family can have.
uint32_t other_leg_mtu(uint32_t mtu, uint8_t from, uint8_t to) noexcept {
  const uint32_t m = mtu + ip_header_len(to) - ip_header_len(from);
  if (to == 6) return std::max(m, kMinMtu6);
  return m >= kMinMtu4 ? m : 0;
}

}  // namespace

bool FlowEngine::TokenBucket::take(uint64_t now_ms, uint32_t per_second, uint32_t burst) noexcept {
  const uint64_t cap = uint64_t{burst} * 1000;
  if (!started) {
    started = true;
    millitokens = cap;
    refilled_ms = now_ms;
  }
  if (now_ms > refilled_ms) {
    // per_second tokens a second: that many thousandths a millisecond.
    const uint64_t elapsed = std::min<uint64_t>(now_ms - refilled_ms, 3'600'000);
    millitokens = std::min(cap, millitokens + elapsed * per_second);
    refilled_ms = now_ms;
  }
  if (millitokens < 1000) return false;
  millitokens -= 1000;
  return true;
}

bool FlowEngine::take_icmp_token() noexcept {
  if (icmp_bucket_.take(now_ms_, cfg_.icmp_per_second, cfg_.icmp_burst)) return true;
  ++stats_.icmp_rate_limited;
  return false;
}

bool FlowEngine::pass_client_leg_error(const FlowKey& client, std::span<const uint8_t> frame,
                                       FrameSink& out) noexcept {
  if (cfg_.lcores <= 1 || redirected_) return false;
  if (client_queue_known()) {
    // The NIC put the client's segments on the queue their 4-tuple hashes to.
    const uint16_t q = cfg_.rss->queue_of(client);
    if (q >= cfg_.lcores || q == cfg_.lcore) return false;
    if (out.redirect(q, frame)) {
      ++stats_.redirected_out;
    } else {
      ++stats_.redirect_drops;
    }
    return true;
  }
  // No hash we know (the tap's, or a NIC whose hash disagreed with ours):
  // every other lcore looks, within the ICMP rate (a flood of errors about
  // made-up clients costs the other lcores no more than that).
  if (!icmp_share_bucket_.take(now_ms_, cfg_.icmp_per_second, cfg_.icmp_burst)) {
    ++stats_.icmp_rate_limited;
    return true;
  }
  ++stats_.icmp_too_big_shared;
  share_with_lcores(frame, out);
  return true;
}

void FlowEngine::on_icmp_too_big(const Packet& p, std::span<const uint8_t> frame,
                                 FrameSink& out) noexcept {
  const IcmpQuote& q = p.icmp.quote;
  if (q.status == IcmpQuote::Status::kMalformed) {
    ++stats_.icmp_too_big_bad;
    return;
  }
  // Not a TCP segment, or not one we sent (its source is not the address
  // the error came to): no flow of ours.
  if (q.status != IcmpQuote::Status::kTcp || !(q.src == p.dst)) {
    ++stats_.icmp_too_big_no_flow;
    return;
  }
  const uint8_t family = p.l3 == L3::kIpv6 ? 6 : 4;
  const uint32_t mtu = p.icmp.next_hop_mtu;
  if (mtu < (family == 6 ? kMinMtu6 : kMinMtu4) || mtu >= q.length) {
    ++stats_.icmp_too_big_bad;
    return;
  }
  // The flow, from the quote's 4-tuple turned around (the keys are as the
  // peers' segments carry them): the backend leg first, like on_frame.
  const FlowKey rev{q.dst, q.src, q.dport, q.sport};
  const uint64_t h = flow_hash(rev);
  if (Flow* f = lookup_backend(rev, h); f != nullptr && !f->handoff) {
    if (f->state != Flow::State::kSpliced) {
      ++stats_.icmp_too_big_no_flow;  // our SYN: nothing the client sent yet
      return;
    }
    if (!in_flight(q.seq, f->backend_una, f->to_backend_nxt)) {
      ++stats_.icmp_too_big_bad_seq;
      return;
    }
    if (f->wait == Wait::kReplay && f->buffer && static_cast<int32_t>(q.seq - f->replay_end) < 0) {
      // One of our replay segments: the replay again, cut to fit.
      const uint32_t mss = std::max<uint32_t>(mtu - ip_header_len(family) - 20 - (f->backend_ts ? 12 : 0),
                                              family == 6 ? kMinReplayMss6 : kMinReplayMss4);
      if (mss < f->backend_mss) {
        if (!take_icmp_token()) return;
        f->backend_mss = static_cast<uint16_t>(mss);
        send_replay(*f, out);
      }
      ++stats_.icmp_too_big;
      return;
    }
    const uint32_t client_mtu = other_leg_mtu(mtu, family, f->key.src.family);
    if (client_mtu == 0) {
      ++stats_.icmp_too_big_bad;
      return;
    }
    if (!take_icmp_token()) return;
    IcmpTooBig m;
    m.src_mac = cfg_.mac;
    m.dst_mac = f->peer_mac;
    m.vlan = f->vlan;
    m.from = f->key.dst;
    m.to = f->key.src;
    m.mtu = client_mtu;
    m.quoted = f->key;  // client -> VIP:port, as the client sends it
    m.quoted_seq = q.seq;
    m.quoted_length = q.length + ip_header_len(f->key.src.family) - ip_header_len(family);
    if (send_built(out, [&](std::span<uint8_t> b) { return build_icmp_too_big(b, m); }))
      ++stats_.icmp_too_big;
    return;
  }
  Flow* f = lookup(rev, h);
  if (f == nullptr) {
    if (find_vip(q.src, q.sport) == nullptr) {
      // A backend leg another lcore owns (by its return 4-tuple: with
      // Toeplitz RSS the port alone does not name the owner): its error goes
      // there.
      if (redirect_to_owner(rev, false, frame, out)) return;
    } else {
      // A client leg: the lcore the client's segments reach holds it.
      if (pass_client_leg_error(rev, frame, out)) return;
      // A copy shared with every lcore: the one holding the flow counts it,
      // the others say nothing (icmp_too_big_shared counted it once).
      if (redirected_ && !client_queue_known()) return;
    }
    ++stats_.icmp_too_big_no_flow;
    return;
  }
  if (f->state != Flow::State::kSpliced) {
    ++stats_.icmp_too_big_no_flow;  // our ACKs or alert while at the hello: nothing to pass on
    return;
  }
  if (!in_flight(q.seq, f->client_una, f->snd_nxt)) {
    ++stats_.icmp_too_big_bad_seq;
    return;
  }
  const uint32_t backend_mtu = std::max(other_leg_mtu(mtu, family, f->bkey.src.family), kClientLegMtuFloor);
  if (backend_mtu >= q.length + ip_header_len(f->bkey.src.family) - ip_header_len(family)) {
    ++stats_.icmp_too_big_bad;
    return;
  }
  if (!take_icmp_token()) return;
  IcmpTooBig m;
  m.src_mac = f->handoff ? cfg_.handoff.mac : cfg_.mac;
  follow_neighbor(*f);
  m.dst_mac = f->backend_mac;
  m.vlan = backend_vlan(*f);
  m.from = f->bkey.dst;
  m.to = f->bkey.src;
  m.mtu = backend_mtu;
  m.quoted =
      f->bkey;  // backend -> VIP:lport (or the exception link's address), as the backend sends it
  m.quoted_seq = q.seq - f->delta;
  m.quoted_length = q.length + ip_header_len(f->bkey.src.family) - ip_header_len(family);
  if (send_built(toward_backend(*f, out),
                 [&](std::span<uint8_t> b) { return build_icmp_too_big(b, m); })) {
    ++stats_.icmp_too_big;
  }
}

}  // namespace lode::front

#include "dataplane/front/flow_engine.h"

#include "dataplane/front/flow_engine_flow.h"

#include <netinet/in.h>

#include <algorithm>

#include "lodestone/tls_alert.h"

namespace lode::front {
namespace {

// Room for record headers beyond the handshake message the parser caps (a
// hello split into many small records).
constexpr size_t kRecordSlack = 4096;

}  // namespace

std::vector<Vip> vips_of(const worker::Runtime& rt) {
  std::vector<Vip> out;
  for (uint32_t li = 0; li < rt.listeners.size(); ++li) {
    for (const SocketAddress& a : rt.listeners[li].addresses) {
      Vip v;
      v.port = a.port();
      v.listener = li;
      if (a.family() == AF_INET) {
        v.addr = IpAddr::v4(ntohl(reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr.s_addr));
      } else if (a.family() == AF_INET6) {
        const auto* s6 = reinterpret_cast<const sockaddr_in6*>(&a.storage);
        v.addr = IpAddr::v6(std::span<const uint8_t, 16>(s6->sin6_addr.s6_addr, 16));
      } else {
        continue;
      }
      out.push_back(v);
    }
  }
  return out;
}

FlowEngine::FlowEngine(EngineConfig cfg, std::shared_ptr<const worker::Runtime> rt)
    : cfg_(std::move(cfg)), rt_(std::move(rt)), cookies_(cfg_.cookie_key) {
  const uint32_t n = std::max<uint32_t>(cfg_.max_flows, 1);
  flows_.resize(n);
  free_.reserve(n);
  neighbors_.reserve(kMaxNeighbors);  // no allocation when a frame adds one
  for (uint32_t i = n; i > 0; --i) free_.push_back(i - 1);
  size_t cap = 1;
  while (cap < 2 * size_t{n}) cap <<= 1;
  index_.assign(cap, 0);
  bindex_.assign(cap, 0);
  std::fill(std::begin(head_), std::end(head_), kNil);
  std::fill(std::begin(tail_), std::end(tail_), kNil);
  for (const auto& l : rt_->listeners) hello_cap_ = std::max<size_t>(hello_cap_, l.max_hello_bytes + kRecordSlack);
  v6_backends_ = has_v6_backend(*rt_);
  const auto names_us = [&](const std::optional<RssHash>& r) {
    return r && std::find(r->reta().begin(), r->reta().end(), cfg_.lcore) != r->reta().end();
  };
  rss_names_us_ = names_us(cfg_.rss);
  exception_rss_names_us_ = names_us(cfg_.exception_rss);
  if (!cfg_.rss_disabled) cfg_.rss_disabled = std::make_shared<std::atomic<bool>>(false);  // a config that dropped it
}

FlowEngine::~FlowEngine() = default;

bool FlowEngine::has_v6_backend(const worker::Runtime& rt) noexcept {
  for (const auto& p : rt.pools) {
    for (uint32_t b = 0; p.pool && b < p.pool->size(); ++b) {
      if (p.pool->backend(b).address.family() == AF_INET6) return true;
    }
  }
  return false;
}

void FlowEngine::set_runtime(std::shared_ptr<const worker::Runtime> rt) noexcept {
  v6_backends_ = has_v6_backend(*rt);
  for (const auto& l : rt->listeners) {
    if (l.max_hello_bytes + kRecordSlack > hello_cap_) {
      // Buffers made for the old cap are too small: new flows get new ones.
      hello_cap_ = l.max_hello_bytes + kRecordSlack;
      spare_buffers_.clear();
    }
  }
  rt_ = std::move(rt);
}

// ------------------------------------------------------------------ index

FlowEngine::Flow* FlowEngine::lookup(const FlowKey& k, uint64_t hash) noexcept {
  const size_t mask = index_.size() - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const uint32_t v = index_[i];
    if (v == 0) return nullptr;
    if (flows_[v - 1].key == k) return &flows_[v - 1];
  }
}

FlowEngine::Flow* FlowEngine::insert(const FlowKey& k) noexcept {
  if (free_.empty()) return nullptr;
  const uint32_t slot = free_.back();
  free_.pop_back();
  const size_t mask = index_.size() - 1;
  size_t i = flow_hash(k) & mask;
  while (index_[i] != 0) i = (i + 1) & mask;
  index_[i] = slot + 1;
  Flow& f = flows_[slot];
  f.key = k;
  ++live_;
  return &f;
}

namespace {

// Removes slot+1 from an index whose entries hash by key_of(flow).
template <typename Index, typename KeyOf>
void remove_from(Index& index, uint32_t slot, const FlowKey& k, KeyOf key_of) noexcept {
  const size_t mask = index.size() - 1;
  size_t i = flow_hash(k) & mask;
  while (index[i] != slot + 1) i = (i + 1) & mask;
  // Backward-shift deletion: later entries of the probe run move up.
  for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
    const uint32_t v = index[j];
    if (v == 0) break;
    const size_t home = flow_hash(key_of(v - 1)) & mask;
    // Entry j may fill the hole at i if its home is not in (i, j].
    if (((j - home) & mask) >= ((j - i) & mask)) {
      index[i] = v;
      i = j;
    }
  }
  index[i] = 0;
}

}  // namespace

FlowEngine::Flow* FlowEngine::lookup_backend(const FlowKey& k, uint64_t hash) noexcept {
  const size_t mask = bindex_.size() - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const uint32_t v = bindex_[i];
    if (v == 0) return nullptr;
    if (flows_[v - 1].bkey == k) return &flows_[v - 1];
  }
}

bool FlowEngine::index_backend(Flow& f) noexcept {
  if (lookup_backend(f.bkey, flow_hash(f.bkey)) != nullptr) return false;
  const size_t mask = bindex_.size() - 1;
  size_t i = flow_hash(f.bkey) & mask;
  while (bindex_[i] != 0) i = (i + 1) & mask;
  bindex_[i] = static_cast<uint32_t>(&f - flows_.data()) + 1;
  f.bindexed = true;
  return true;
}

void FlowEngine::erase_backend_key(Flow& f) noexcept {
  if (!f.bindexed) return;
  remove_from(bindex_, static_cast<uint32_t>(&f - flows_.data()), f.bkey,
              [&](uint32_t s) -> const FlowKey& { return flows_[s].bkey; });
  f.bindexed = false;
}

void FlowEngine::erase(Flow& f) noexcept {
  unlink(f);
  const uint32_t slot = static_cast<uint32_t>(&f - flows_.data());
  remove_from(index_, slot, f.key, [&](uint32_t s) -> const FlowKey& { return flows_[s].key; });
  erase_backend_key(f);
  if (f.picked) {
    if (route::PoolState* st = pool_state(f)) {
      // Spliced: its SYN-ACK was the verdict (on_connect_ok).
      if (f.state == Flow::State::kSpliced) {
        f.rt->pools[f.pool].pool->on_close(*st, f.backend);
      } else {
        f.rt->pools[f.pool].pool->on_abandon(*st, f.backend, f.tried);
      }
    } else if (f.state != Flow::State::kSpliced) {
      carry_verdict(f, route::BackendPool::Verdict::kAbandoned);
    }
    f.picked = false;
  }
  uncount(f);
  f.backend_mac_known = false;
  f.tried = route::TriedSet{};
  f.fin_from_client = f.fin_from_backend = false;
  f.handoff = false;
  f.lead = 0;
  give_back_buffer(f);
  f.rt.reset();
  f.state = Flow::State::kFree;
  free_.push_back(slot);
  --live_;
  ++stats_.flows_ended;
}

void FlowEngine::give_back_buffer(Flow& f) noexcept {
  if (f.buffer && f.buffer_cap == hello_cap_ && spare_buffers_.size() < 256) spare_buffers_.push_back(std::move(f.buffer));
  f.buffer.reset();
}

void FlowEngine::link_tail(Flow& f, Wait w) noexcept {
  // Already in that list since this millisecond (another segment of the
  // flow): the list's order holds as it is.
  if (f.linked && f.wait == w && f.linked_ms == now_ms_) return;
  unlink(f);
  const uint32_t i = static_cast<uint32_t>(&f - flows_.data());
  const auto l = static_cast<size_t>(w);
  f.wait = w;
  f.linked = true;
  f.linked_ms = now_ms_;
  f.prev = tail_[l];
  f.next = kNil;
  if (tail_[l] != kNil) flows_[tail_[l]].next = i; else head_[l] = i;
  tail_[l] = i;
}

void FlowEngine::unlink(Flow& f) noexcept {
  if (!f.linked) return;
  const auto l = static_cast<size_t>(f.wait);
  if (f.prev != kNil) flows_[f.prev].next = f.next; else head_[l] = f.next;
  if (f.next != kNil) flows_[f.next].prev = f.prev; else tail_[l] = f.prev;
  f.prev = f.next = kNil;
  f.linked = false;
}

// The timeouts in service (rt_'s), the same for every flow of a list:
// each list is in the order its flows were put at its tail (linked_ms), so
// it is in the order they expire too, and on_tick stops at the first that
// has not. A reload's timeouts apply to the flows already waiting (as the
// workers' do): with each flow's own generation's timeouts, a reload that
// lowered one left the flows behind an older one unexpired.
uint64_t FlowEngine::timeout_of(Wait w) const noexcept {
  const worker::Timeouts& t = rt_->timeouts;
  switch (w) {
    case Wait::kHello: return t.hello_ms;
    case Wait::kClosing: return cfg_.closing_ms;
    case Wait::kConnect: return std::min<uint64_t>(t.connect_ms, 1000);  // per SYN; a few are tried
    case Wait::kReplay: return 200;
    case Wait::kIdle: return t.idle_ms;
    case Wait::kTimeWait: return 2000;
    case Wait::kCount: break;
  }
  return 1000;
}

// ------------------------------------------------------------------ frames

const Vip* FlowEngine::find_vip(const IpAddr& a, uint16_t port) const noexcept {
  for (const Vip& v : cfg_.vips) {
    if (v.port != 0 && v.port == port && v.addr == a) return &v;
  }
  return nullptr;
}

bool FlowEngine::is_vip_address(const IpAddr& a) const noexcept {
  return std::any_of(cfg_.vips.begin(), cfg_.vips.end(), [&](const Vip& v) { return v.addr == a; });
}

std::array<uint8_t, 16> FlowEngine::cookie_key_for(uint64_t epoch) const noexcept {
  // SipHash of (label, epoch, half) under the master secret: 2 x 64 bits.
  std::array<uint8_t, 16> key{};
  uint8_t msg[17] = {'l', 'o', 'd', 'e', 'c', 'o', 'o', 'k'};
  for (int i = 0; i < 8; ++i) msg[8 + i] = static_cast<uint8_t>(epoch >> (56 - 8 * i));
  for (uint8_t half = 0; half < 2; ++half) {
    msg[16] = half;
    const uint64_t h = siphash24(cfg_.cookie_key, msg);
    for (int i = 0; i < 8; ++i) key[half * 8 + i] = static_cast<uint8_t>(h >> (56 - 8 * i));
  }
  return key;
}

void FlowEngine::rotate_cookie_key_slow(uint64_t now_ms) noexcept {
  const uint64_t epoch = now_ms / kCookieKeyPeriodMs;
  key_epoch_start_ = epoch * kCookieKeyPeriodMs;
  if (epoch == key_epoch_) return;
  if (key_epoch_ != UINT64_MAX && epoch == key_epoch_ + 1) {
    cookies_.rotate(cookie_key_for(epoch), key_epoch_start_ / 1000);  // the previous key stays valid
  } else {
    cookies_ = SynCookies(cookie_key_for(epoch - (epoch > 0 ? 1 : 0)));
    if (epoch > 0) cookies_.rotate(cookie_key_for(epoch), key_epoch_start_ / 1000);
  }
  key_epoch_ = epoch;
}

void FlowEngine::set_cookie_secret(const std::array<uint8_t, 16>& secret, uint64_t now_ms) noexcept {
  if (secret == cfg_.cookie_key) return;
  rotate_cookie_key(now_ms);
  prev_cookies_ = cookies_;  // the keys in use now, the previous epoch's included
  prev_cookies_until_ms_ = now_ms + 2 * SynCookies::kSlotSeconds * 1000;
  cfg_.cookie_key = secret;
  key_epoch_ = UINT64_MAX;  // the keys derived again, from the new secret
  rotate_cookie_key(now_ms);
}

void FlowEngine::on_frame(std::span<const uint8_t> frame, uint64_t now_ms, FrameSink& out) noexcept {
  now_ms_ = now_ms;
  rotate_cookie_key(now_ms);
  ++stats_.rx_frames;
  const Packet p = parse_frame(frame, !l4_verified_);
  if (p.error == PacketError::kFragment && is_vip_address(p.dst)) {
    ++stats_.rx_fragments;
    return;
  }
  if (!p.ok()) {
    ++stats_.rx_bad;
    return;
  }
  // An answer to a neighbour request: any lcore may have asked.
  // Only one addressed to us (a VIP asked): anything else on the link would
  // cost every lcore a copy and fill the rings the redirected segments use.
  if (cfg_.lcores > 1 &&
      ((p.l3 == L3::kArp && p.arp.op == 2 && p.arp.target_mac == cfg_.mac &&
        is_vip_address(IpAddr::v4(p.arp.target_ip))) ||
       (p.l4 == L4::kIcmpv6 && p.icmp.type == 136 && p.icmp.nd_solicited && is_vip_address(p.dst)))) {
    share_with_lcores(frame, out);
  }
  switch (p.l3) {
    case L3::kArp:
      if (p.arp.op == 2) {
        // The exception link's kernel is learned on that link only.
        if (!cfg_.handoff.enabled || p.arp.sender_ip != cfg_.handoff.kernel) on_arp_reply(p, false, out);
        return;
      }
      if (p.arp.op == 1 && is_vip_address(IpAddr::v4(p.arp.target_ip))) {
        if (send_built(out, [&](std::span<uint8_t> b) { return build_arp_reply(b, p, cfg_.mac, p.arp.target_ip); })) {
          ++stats_.arp_replies;
        }
        return;
      }
      ++stats_.rx_not_vip;
      return;
    case L3::kIpv4:
    case L3::kIpv6:
      break;
    default:
      ++stats_.rx_not_vip;
      return;
  }
  if (p.l4 == L4::kIcmpv6 && p.icmp.type == 136) {
    on_neighbor_advert(p, out);  // a backend's next hop answering us, or ignored
    return;
  }
  if (p.l4 == L4::kIcmpv6 && p.icmp.type == 135 && is_vip_address(p.icmp.nd_target)) {
    if (send_built(out, [&](std::span<uint8_t> b) { return build_neighbor_advert(b, p, cfg_.mac, p.icmp.nd_target); })) {
      ++stats_.nd_adverts;
    }
    return;
  }
  if (!is_vip_address(p.dst)) {
    ++stats_.rx_not_vip;
    return;
  }
  if ((p.l4 == L4::kIcmp && p.icmp.type == 3 && p.icmp.code == 4) || (p.l4 == L4::kIcmpv6 && p.icmp.type == 2)) {
    on_icmp_too_big(p, frame, out);  // flow_engine_icmp.cc
    return;
  }
  if ((p.l4 == L4::kIcmp && p.icmp.type == 8) || (p.l4 == L4::kIcmpv6 && p.icmp.type == 128)) {
    if (send_built(out, [&](std::span<uint8_t> b) { return build_echo_reply(b, p, cfg_.mac); })) ++stats_.echo_replies;
    return;
  }
  if (p.l4 != L4::kTcp) {
    ++stats_.rx_not_vip;
    return;
  }
  if (Flow* f = lookup_backend(p.flow(), flow_hash(p.flow())); f != nullptr && !f->handoff) {
    on_backend_segment(*f, p, out);
    return;
  }
  const Vip* vip = find_vip(p.dst, p.dport);
  if (vip == nullptr) {
    // The backend's side of a flow another lcore holds (its local port, or
    // its 4-tuple's RSS hash, says which).
    if (redirect_to_owner(p.flow(), false, frame, out)) return;
    // A VIP address, a port nobody listens on: what a closed port answers.
    ++stats_.rx_not_vip;
    if (!(p.flags & kTcpRst)) send_reset_for(p, out, cfg_.mac);
    return;
  }
  on_tcp(p, *vip, now_ms, out);
}

// The exception link carries only our address and the kernel's: ARP for
// ours, and the workers' segments of handed-off flows. A TCP segment of no
// flow (the worker's side of one we already ended) gets a RST, so the
// worker's socket does not wait for its timeouts: no reflection to fear on
// a link only the local kernel speaks on. Frames on it never reach the VIP
// logic, and frames from the wire never reach a hand-off flow.
void FlowEngine::on_exception_frame(std::span<const uint8_t> frame, uint64_t now_ms, FrameSink& out) noexcept {
  now_ms_ = now_ms;
  ++stats_.exception_rx;
  const Packet p = parse_frame(frame, !l4_verified_);
  if (!p.ok()) {
    ++stats_.rx_bad;
    return;
  }
  FrameSink* x = out.exception_sink();
  FrameSink& link = x != nullptr ? *x : no_sink_;
  if (!cfg_.handoff.enabled) {
    ++stats_.exception_stray;
    return;
  }
  if (p.l3 == L3::kArp) {
    if (p.arp.op == 2 && cfg_.lcores > 1 && p.arp.sender_ip == cfg_.handoff.kernel &&
        p.arp.target_ip == cfg_.handoff.address && p.arp.target_mac == cfg_.handoff.mac) {
      share_with_lcores(frame, out);
    }
    if (p.arp.op == 2 && p.arp.sender_ip == cfg_.handoff.kernel) {
      on_arp_reply(p, true, out);
      return;
    }
    if (p.arp.op == 1 && p.arp.target_ip == cfg_.handoff.address) {
      if (send_built(link, [&](std::span<uint8_t> b) {
            return build_arp_reply(b, p, cfg_.handoff.mac, cfg_.handoff.address);
          })) {
        ++stats_.arp_replies;
      }
      return;
    }
    ++stats_.exception_stray;
    return;
  }
  if (p.l4 != L4::kTcp || !(p.dst == IpAddr::v4(cfg_.handoff.address))) {
    ++stats_.exception_stray;
    return;
  }
  if (Flow* f = lookup_backend(p.flow(), flow_hash(p.flow())); f != nullptr && f->handoff) {
    on_backend_segment(*f, p, out);
    return;
  }
  // A worker's segment of a flow another lcore holds (its local port says which).
  if (redirect_to_owner(p.flow(), true, frame, out)) return;
  ++stats_.exception_stray;
  if (!(p.flags & kTcpRst)) send_reset_for(p, link, cfg_.handoff.mac);
}

void FlowEngine::on_tcp(const Packet& p, const Vip& vip, uint64_t now_ms, FrameSink& out) noexcept {
  if (Flow* f = lookup(p.flow(), flow_hash(p.flow()))) {
    on_flow_segment(*f, p, now_ms, out);
    return;
  }
  const uint8_t fl = p.flags;
  if ((fl & (kTcpSyn | kTcpAck | kTcpRst | kTcpFin)) == kTcpSyn) {
    on_syn(p, now_ms, out);
    return;
  }
  if ((fl & (kTcpSyn | kTcpAck | kTcpRst)) == kTcpAck) {
    on_cookie_ack(p, vip, now_ms, out);
    return;
  }
  // A RST, a SYN-ACK, a stray FIN: no state to reset, nothing to answer (a
  // RST here would be a reflection).
  ++stats_.stray_segments;
}

void FlowEngine::on_syn(const Packet& p, uint64_t now_ms, FrameSink& out) noexcept {
  SynOptions offered;
  offered.mss = p.options.mss != 0 ? p.options.mss : 536;
  offered.wscale = p.options.wscale;
  offered.sack_ok = p.options.sack_ok;
  const uint32_t isn = cookies_.make(p.flow(), p.seq, offered, cookie_ms(now_ms) / 1000);
  TcpSegment s;
  s.src_mac = cfg_.mac;
  s.dst_mac = p.src_mac;
  s.vlan = p.vlan;
  s.flow = FlowKey{p.dst, p.src, p.dport, p.sport};
  s.seq = isn;
  s.ack = p.seq + 1;
  s.flags = kTcpSyn | kTcpAck;
  s.window = 65535;  // open: the client's hello must fit (never SYNPROXY's zero window)
  // An IPv4 client's segments grow by 20 bytes towards an IPv6 backend:
  // where one may be, the MSS offered leaves room for it (the route is not
  // known before the hello; a client's stack clamps to its own path only).
  s.options.mss = static_cast<uint16_t>(cfg_.mss - (v6_backends_ && p.src.family == 4 ? 20 : 0));
  if (p.options.wscale >= 0) s.options.wscale = static_cast<int8_t>(cfg_.wscale);
  s.options.sack_ok = p.options.sack_ok;
  if (p.options.has_timestamps) {
    s.options.has_timestamps = true;
    s.options.ts_val = static_cast<uint32_t>(now_ms);
    s.options.ts_ecr = p.options.ts_val;
  }
  ++stats_.syn_cookies;
  emit(out, s);
}

void FlowEngine::on_cookie_ack(const Packet& p, const Vip& vip, uint64_t now_ms, FrameSink& out) noexcept {
  auto syn = cookies_.check(p.flow(), p.seq - 1, p.ack - 1, cookie_ms(now_ms) / 1000);
  if (!syn && prev_cookies_ && now_ms < prev_cookies_until_ms_) {
    syn = prev_cookies_->check(p.flow(), p.seq - 1, p.ack - 1, cookie_ms(now_ms) / 1000);  // made before a new secret
  }
  if (!syn) {
    // Forged, expired, or a segment of a flow we no longer hold: silence.
    ++stats_.cookie_invalid;
    return;
  }
  Flow* f = insert(p.flow());
  if (f == nullptr) {
    ++stats_.flows_table_full;
    return;
  }
  ++stats_.flows_created;
  f->state = Flow::State::kCollecting;
  f->peer_mac = p.src_mac;
  f->vlan = p.vlan;
  f->listener = vip.listener;
  f->snd_nxt = p.ack;
  f->syn = *syn;
  f->timestamps = p.options.has_timestamps;
  f->ts_recent = p.options.ts_val;
  f->client_window = p.window;
  f->rt = rt_;
  if (!spare_buffers_.empty()) {
    f->buffer = std::move(spare_buffers_.back());
    spare_buffers_.pop_back();
  } else {
    f->buffer = std::make_unique<uint8_t[]>(kLeadRoom + hello_cap_);
  }
  f->buffer_cap = hello_cap_;  // spares are all of the current size
  const size_t cap = f->rt->listeners[vip.listener].max_hello_bytes + kRecordSlack;
  f->hello.reset(p.seq, {f->buffer.get() + kLeadRoom, std::min(cap, f->buffer_cap)});
  if (!f->parser || f->parser->limits().max_hello_len != f->rt->listeners[vip.listener].max_hello_bytes) {
    f->parser = std::make_unique<tls::ClientHelloParser>(
        tls::ParserLimits{f->rt->listeners[vip.listener].max_hello_bytes});
  } else {
    f->parser->reset();
  }
  link_tail(*f, Wait::kHello);
  if (!p.payload.empty() || (p.flags & kTcpFin)) on_flow_segment(*f, p, now_ms, out);
}

void FlowEngine::on_flow_segment(Flow& f, const Packet& p, uint64_t now_ms, FrameSink& out) noexcept {
  if (f.state == Flow::State::kSpliced) {
    if ((p.flags & (kTcpSyn | kTcpAck | kTcpRst)) == kTcpSyn) {
      // A new connection from the same address and port. After both FINs
      // (time-wait) the old flow gives way and the SYN gets its cookie, as
      // a kernel's TIME-WAIT socket lets a new SYN in; while the flow lives,
      // a challenge ACK (RFC 5961 4): a client that lost the old
      // connection answers it with a reset at our number, which ends the
      // flow, and its next SYN starts a new one. Passed on, it reached the
      // backend untranslated and could open a connection no hello routed.
      ++stats_.stray_segments;
      if (f.wait == Wait::kTimeWait) {
        erase(f);
        on_syn(p, now_ms, out);
      } else {
        send_challenge_ack(f, out);
      }
      return;
    }
    splice_to_backend(f, p, out);
    return;
  }
  // RCV.NXT: the end of the hello bytes held in order.
  const uint32_t rcv_nxt = f.hello.next_seq();
  if (p.flags & kTcpRst) {
    // RFC 5961 3.2: exactly at RCV.NXT the client gave up; elsewhere in the
    // window a challenge ACK (a real reset follows at its number); outside,
    // dropped. A blind reset ends nothing.
    if (p.seq == rcv_nxt) {
      if (f.state == Flow::State::kCollecting) ++stats_.client_aborts;
      erase(f);
    } else if (seq_within(p.seq, rcv_nxt, static_cast<uint32_t>(f.hello.capacity()))) {
      ++stats_.rst_in_window;
      send_segment(f, f.snd_nxt, kTcpAck, {}, out);
    } else {
      ++stats_.rst_out_of_window;
    }
    return;
  }
  if (f.state == Flow::State::kConnecting) {
    // The backend is not there yet: the client's FIN or data waits for its
    // retransmission (nothing beyond the hello was acknowledged).
    return;
  }
  // TS.Recent moves only with a segment at or below RCV.NXT (RFC 7323 4.3):
  // a blind segment far ahead must not put its TSval in our SYN to the
  // backend, whose PAWS check would then drop the client's real segments.
  if (p.options.has_timestamps && seq_within(p.seq, rcv_nxt - static_cast<uint32_t>(f.hello.contiguous().size()),
                                             static_cast<uint32_t>(f.hello.contiguous().size()))) {
    f.ts_recent = p.options.ts_val;
  }
  if (f.state == Flow::State::kClosing) {
    // Our answer and FIN are out. The client's FIN gets its ACK and ends the
    // flow; a segment that does not acknowledge our FIN gets it again.
    if (p.flags & kTcpFin) {
      send_segment(f, f.snd_nxt, kTcpAck, {}, out, p.seq + static_cast<uint32_t>(p.payload.size()) + 1);
      erase(f);
    } else if ((p.flags & kTcpAck) && p.ack != f.snd_nxt) {
      send_segment(f, f.snd_nxt - f.answer_len - 1, kTcpAck | kTcpPsh | kTcpFin, {f.answer, f.answer_len}, out);
    }
    return;
  }
  if (p.flags & kTcpSyn) {
    ++stats_.stray_segments;  // a SYN on an established flow: ignore
    return;
  }
  if (!p.payload.empty()) {
    switch (f.hello.add(p.seq, p.payload)) {
      case HelloCollector::Add::kAdded:
        if (f.hello.has_gap()) ++stats_.hello_out_of_order;
        break;
      case HelloCollector::Add::kDuplicate:
        break;
      case HelloCollector::Add::kBeyondCap:
        // Past the window we offered (the hello's room): a blind segment,
        // or one the client had no right to send. Dropped, the ACK below
        // says what is held (RFC 9293 3.10.7.4); it ended the flow before,
        // so one forged segment far ahead reset any hello in progress. A
        // hello too large is decided by its length, or by the room running
        // out (try_parse).
        ++stats_.segments_out_of_window;
        break;
      case HelloCollector::Add::kTooManyGaps:
        ++stats_.hello_gap_drops;
        break;
    }
    try_parse(f, out);
    if (f.state != Flow::State::kCollecting && f.state != Flow::State::kConnecting) return;
    // Acknowledge what is held in order (a duplicate ACK tells the client
    // about a gap).
    send_segment(f, f.snd_nxt, kTcpAck, {}, out);
  } else if (!(p.flags & kTcpFin) && static_cast<int32_t>(p.seq - f.hello.next_seq()) < 0) {
    // No data, below RCV.NXT: a keep-alive (at SND.NXT - 1) or an old
    // duplicate. RFC 9293 3.10.7.4: answered with an ACK of what is held.
    send_segment(f, f.snd_nxt, kTcpAck, {}, out);
  }
  if ((p.flags & kTcpFin) && f.state == Flow::State::kCollecting) {
    // Only a FIN within the room (at or after what was collected so far,
    // not past what we offered): a forged one far ahead ends nothing.
    const uint32_t fin_at = p.seq + static_cast<uint32_t>(p.payload.size());
    if (!seq_within(fin_at, f.hello.start(), static_cast<uint32_t>(f.hello.capacity()))) {
      ++stats_.segments_out_of_window;
      return;
    }
    ++stats_.client_aborts;
    reset_flow(f, out);
  }
}

void FlowEngine::try_parse(Flow& f, FrameSink& out) noexcept {
  const auto bytes = f.hello.contiguous();
  if (bytes.empty()) return;
  const ParseStatus st = f.parser->parse(bytes);
  if (st == ParseStatus::kNeedMore) {
    if (bytes.size() < f.hello.capacity()) return;
    // The room is full and the hello wants more (its records' headers took
    // the slack: many small records): too large, as the length would say.
    ++stats_.hello_too_large;
    const AlertRecord a = fatal_alert_record(TlsAlert::kRecordOverflow);
    answer_and_close(f, a.bytes, out);
    return;
  }
  if (st == ParseStatus::kError) {
    const tls::HelloParseError& e = f.parser->error();
    if (tls::is_not_tls(e.code)) {
      ++stats_.hello_not_tls;
      if (e.code == tls::HelloError::kHttpRequest) {
        static constexpr std::string_view kResp =
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 41\r\nConnection: close\r\n\r\n"
            "This port speaks TLS: use https:// here.\n";
        answer_and_close(f, {reinterpret_cast<const uint8_t*>(kResp.data()), kResp.size()}, out);
        return;
      }
      reset_flow(f, out);
      return;
    }
    ++stats_.hello_errors;
    const AlertRecord a = fatal_alert_record(e.alert);
    answer_and_close(f, a.bytes, out);
    return;
  }
  ++stats_.hello_done;
  decide(f, out);
}

void FlowEngine::decide(Flow& f, FrameSink& out) noexcept {
  // The hello is routed by the configuration in service when it is parsed
  // (as the workers do), not the one of the cookie's ACK; the flow keeps
  // it from here (pool indexes, timeouts of its own). Listeners are the
  // same in every generation.
  f.rt = rt_;
  const tls::ClientHelloInfo& h = f.parser->info();
  const route::RouteTableView& table = f.rt->listeners[f.listener].table;
  const route::Match m = h.has_sni ? table.find(h.sni()) : table.find_default();
  if (!m.found()) {
    ++stats_.no_route;
    ++stats_.rejects;
    const AlertRecord a = fatal_alert_record(TlsAlert::kUnrecognizedName);
    answer_and_close(f, a.bytes, out);
    return;
  }
  const route::RouteView rv = table.route(m.route);
  if (rv.action != route::Action::kTerminate) count_route(f, m.route);
  if (rv.action == route::Action::kReject) {
    if (f.series != nullptr) series_add(f.series->refused);
    if (rv.reject_with_reset()) {
      ++stats_.rejects_reset;
      reset_flow(f, out);
      return;
    }
    ++stats_.rejects;
    const AlertRecord a = fatal_alert_record(TlsAlert::kUnrecognizedName);
    answer_and_close(f, a.bytes, out);
    return;
  }
  if (rv.action == route::Action::kPassthrough) {
    if (route_full(f, m.route)) {
      // As the workers do for the routes they serve: reset after the hello.
      ++stats_.refused_route_full;
      series_add(f.series->refused);
      reset_flow(f, out);
      return;
    }
    f.pool = rv.pool;
    start_passthrough(f, out);
    return;
  }
  if (cfg_.handoff.enabled) {
    start_handoff(f, rv.steer_by_client(), out);
    return;
  }
  ++stats_.action_unsupported;
  reset_flow(f, out);
}

void FlowEngine::count_route(Flow& f, uint32_t route) noexcept {
  const std::vector<uint32_t>& slots = f.rt->listeners[f.listener].route_slots;
  if (cfg_.route_series == nullptr || route >= slots.size()) return;
  f.series = &cfg_.route_series[slots[route]];
  series_add(f.series->connections);
  series_add(f.series->active);
}

bool FlowEngine::route_full(const Flow& f, uint32_t route) const noexcept {
  const worker::ListenerRuntime& l = f.rt->listeners[f.listener];
  const uint32_t cap = route < l.route_caps.size() ? l.route_caps[route] : 0;
  if (cap == 0 || f.series == nullptr) return false;
  if (cfg_.all_route_series.empty()) return f.series->active.load(std::memory_order_relaxed) > cap;
  const uint32_t slot = l.route_slots[route];  // f.series is set: the slot exists
  uint64_t open = 0;
  for (const stats::RouteSeries* row : cfg_.all_route_series) open += row[slot].active.load(std::memory_order_relaxed);
  return open > cap;
}

void FlowEngine::count_backend_pick(Flow& f, uint32_t backend) noexcept {
  const std::vector<uint32_t>& slots = f.rt->pools[f.pool].backend_slots;
  if (cfg_.backend_series == nullptr || backend >= slots.size()) return;
  f.bseries = &cfg_.backend_series[slots[backend]];
  series_add(f.bseries->picks);
  series_add(f.bseries->active);
}

void FlowEngine::count_backend_failed(Flow& f) noexcept {
  if (f.bseries == nullptr) return;
  series_add(f.bseries->connect_failures);
  series_sub(f.bseries->active);
  f.bseries = nullptr;
}

void FlowEngine::uncount(Flow& f) noexcept {
  if (f.series != nullptr) series_sub(f.series->active);
  if (f.bseries != nullptr) series_sub(f.bseries->active);
  f.series = nullptr;
  f.bseries = nullptr;
}

// Sends `data` and our FIN, acknowledging everything the client sent, and
// waits (closing_ms at most) for the client's FIN.
void FlowEngine::answer_and_close(Flow& f, std::span<const uint8_t> data, FrameSink& out) noexcept {
  data = data.first(std::min(data.size(), sizeof f.answer));
  std::copy(data.begin(), data.end(), f.answer);
  f.answer_len = static_cast<uint8_t>(data.size());
  send_segment(f, f.snd_nxt, kTcpAck | kTcpPsh | kTcpFin, data, out);
  f.snd_nxt += static_cast<uint32_t>(data.size()) + 1;
  f.state = Flow::State::kClosing;
  link_tail(f, Wait::kClosing);
}

void FlowEngine::reset_flow(Flow& f, FrameSink& out) noexcept {
  send_segment(f, f.snd_nxt, kTcpRst | kTcpAck, {}, out);
  erase(f);
}

void FlowEngine::send_segment(const Flow& f, uint32_t seq, uint8_t flags, std::span<const uint8_t> data,
                              FrameSink& out, std::optional<uint32_t> ack) noexcept {
  TcpSegment s = to_client(f);
  s.seq = seq;
  s.ack = ack.value_or(f.hello.next_seq());
  s.flags = flags;
  // The window left for the hello (its listener's cap), in our scale when
  // scaling is on.
  const size_t cap = f.hello.capacity();
  const size_t room = f.hello.contiguous().size() < cap ? cap - f.hello.contiguous().size() : 0;
  const size_t scaled = f.syn.wscale >= 0 ? room >> cfg_.wscale : room;
  s.window = static_cast<uint16_t>(std::min<size_t>(scaled, 65535));
  if (f.timestamps) {
    s.options.has_timestamps = true;
    s.options.ts_val = static_cast<uint32_t>(now_ms_);
    s.options.ts_ecr = f.ts_recent;
  }
  s.payload = data;
  emit(out, s);
}

// The answer to a segment for a port nobody listens on (RFC 793: the RST
// takes its sequence number from the segment's ACK, or acknowledges it).
void FlowEngine::send_reset_for(const Packet& p, FrameSink& out, const MacAddr& our_mac) noexcept {
  TcpSegment s;
  s.src_mac = our_mac;
  s.dst_mac = p.src_mac;
  s.vlan = p.vlan;
  s.flow = FlowKey{p.dst, p.src, p.dport, p.sport};
  if (p.flags & kTcpAck) {
    s.seq = p.ack;
    s.flags = kTcpRst;
  } else {
    s.seq = 0;
    s.ack = p.seq + static_cast<uint32_t>(p.payload.size()) + ((p.flags & kTcpSyn) ? 1 : 0) +
            ((p.flags & kTcpFin) ? 1 : 0);
    s.flags = kTcpRst | kTcpAck;
  }
  emit(out, s);
}

void FlowEngine::emit(FrameSink& out, const TcpSegment& s) noexcept {
  send_built(out, [&](std::span<uint8_t> b) { return build_tcp(b, s); });
}

void FlowEngine::on_tick(uint64_t now_ms, FrameSink& out) noexcept {
  now_ms_ = now_ms;
  rotate_cookie_key(now_ms);
  for (size_t l = 0; l < static_cast<size_t>(Wait::kCount); ++l) {
    while (head_[l] != kNil) {
      Flow& f = flows_[head_[l]];
      if (f.linked_ms + timeout_of(static_cast<Wait>(l)) > now_ms) break;
      on_wait_expired(f, out);
    }
  }
  refresh_neighbors(out);
}

}  // namespace lode::front

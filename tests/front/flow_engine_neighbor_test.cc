// The dpdk front's next hops on packet fixtures: IPv6 backends reached
// through neighbour discovery, backends behind a gateway ([dpdk] networks /
// gateway / gateway6), answers nobody asked for, aging, and the config keys.
// Crafted frames in, the frames the engine sends parsed and compared (their
// checksums verified by the parser).
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "controlplane/config.h"
#include "dataplane/front/flow_engine.h"
#include "support/flow_engine_fixture.h"
#include "support/hello_builder.h"

namespace lode::front {
namespace {

using namespace fixture;

constexpr MacAddr kGatewayMac = {0x02, 0, 0, 0, 0, 0xfe};
constexpr MacAddr kEvilMac = {0x02, 0xee, 0, 0, 0, 0xee};
constexpr uint64_t kT0 = 1'000'000;

IpAddr v6(std::initializer_list<uint8_t> tail) {
  // fd00::<tail>, the tail right-aligned.
  uint8_t b[16] = {0xfd};
  size_t i = 16 - tail.size();
  for (uint8_t x : tail) b[i++] = x;
  return IpAddr::v6(std::span<const uint8_t, 16>(b, 16));
}
IpAddr v6_of(const char* text) {
  IpAddr a;
  a.family = 6;
  EXPECT_EQ(inet_pton(AF_INET6, text, a.bytes), 1) << text;
  return a;
}

const IpAddr kVip4 = IpAddr::v4(0x0a000001);      // 10.0.0.1
const IpAddr kClient4 = IpAddr::v4(0x0a000002);   // 10.0.0.2
const IpAddr kBackend4 = IpAddr::v4(0x0a000009);  // 10.0.0.9
const IpAddr kGateway4 = IpAddr::v4(0x0a0000fe);  // 10.0.0.254
const IpAddr kVip6 = v6({1});                      // fd00::1
const IpAddr kClient6 = v6({2});                   // fd00::2
const IpAddr kBackend6 = v6({9});                  // fd00::9
const IpAddr kGateway6 = v6({0xfe});               // fd00::fe

using VectorSink = RecordingSink;

using app::next_hops_of;  // the engine's view of [dpdk] networks / gateway / gateway6, as main.cc hands it over

// A neighbour advertisement, crafted field by field (the hostile variants
// too): from `src` to `dst` for `target`, with a target link-layer address
// option when `mac` is given.
std::vector<uint8_t> advert(const IpAddr& src, const IpAddr& dst, const IpAddr& target,
                            std::optional<MacAddr> mac, uint8_t hop_limit = 255, uint8_t flags = 0x60,
                            const MacAddr& eth_src = kBackendMac, bool good_checksum = true) {
  const size_t l4_len = 24 + (mac ? 8 : 0);
  std::vector<uint8_t> f(14 + 40 + l4_len, 0);
  std::memcpy(&f[0], kOurMac.data(), 6);
  std::memcpy(&f[6], eth_src.data(), 6);
  f[12] = 0x86;
  f[13] = 0xdd;
  uint8_t* ip = &f[14];
  ip[0] = 0x60;
  ip[4] = 0;
  ip[5] = static_cast<uint8_t>(l4_len);
  ip[6] = 58;
  ip[7] = hop_limit;
  std::memcpy(ip + 8, src.bytes, 16);
  std::memcpy(ip + 24, dst.bytes, 16);
  uint8_t* m = ip + 40;
  m[0] = 136;
  m[4] = flags;
  std::memcpy(m + 8, target.bytes, 16);
  if (mac) {
    m[24] = 2;
    m[25] = 1;
    std::memcpy(m + 26, mac->data(), 6);
  }
  const uint16_t sum = l4_checksum(src, dst, 58, {m, l4_len});
  m[2] = static_cast<uint8_t>(sum >> 8);
  m[3] = static_cast<uint8_t>(sum ^ (good_checksum ? 0 : 0x5a));
  return f;
}

std::vector<uint8_t> arp_reply(uint32_t sender_ip, const MacAddr& sender_mac, uint32_t target_ip) {
  // A request from the would-be sender, answered as build_arp_reply does.
  std::vector<uint8_t> req(64), out(64);
  EXPECT_GT(build_arp_request(req, kOurMac, target_ip, sender_ip), 0u);
  const Packet p = parse_frame(req);
  const size_t n = build_arp_reply(out, p, sender_mac, sender_ip);
  EXPECT_GT(n, 0u);
  out.resize(n);
  return out;
}

class NeighborTest : public ::testing::Test {
 protected:
  // listen / backends: TOML list items; dpdk: lines of a [dpdk] table.
  void make_engine(const std::string& listen, const std::string& backends, const std::string& dpdk = "") {
    std::string toml = "[[listener]]\nname = \"vip\"\nlisten = [" + listen + "]\n" +
                       "[[pool]]\nname = \"p\"\nbackends = [" + backends + "]\n" +
                       "[[route]]\nname = \"p\"\nnames = [\"p.test\"]\naction = \"passthrough\"\npool = \"p\"\n";
    if (!dpdk.empty()) toml += "[dpdk]\n" + dpdk + "\n";
    auto cfg = config::load_config_string(toml, "neighbor_test.toml");
    ASSERT_TRUE(cfg.has_value()) << cfg.error()[0].to_string();
    const auto runtime = runtime_of(*cfg);
    ASSERT_NE(runtime, nullptr);
    EngineConfig ec = engine_config(*runtime);
    ec.cookie_key = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    ec.next_hops = next_hops_of(cfg->dpdk);
    engine_ = std::make_unique<FlowEngine>(ec, runtime);
  }

  struct Client {
    bool v6 = false;
    uint16_t sport = 40000;
    uint32_t isn = 0;       // the client's
    uint32_t our_isn = 0;   // the cookie
    Packet backend_syn;
  };
  TcpSegment seg(const Client& c, uint8_t flags, uint32_t seq, uint32_t ack, std::span<const uint8_t> payload = {}) {
    TcpSegment s;
    s.src_mac = kClientMac;
    s.dst_mac = kOurMac;
    s.flow.src = c.v6 ? kClient6 : kClient4;
    s.flow.dst = c.v6 ? kVip6 : kVip4;
    s.flow.sport = c.sport;
    s.flow.dport = 443;
    s.seq = seq;
    s.ack = ack;
    s.flags = flags;
    s.window = 64240;
    s.options.has_timestamps = true;
    s.options.ts_val = 1000;
    s.payload = payload;
    return s;
  }
  std::vector<Packet> in(const TcpSegment& s, uint64_t now = kT0) {
    return in_raw(frame_of(s), now);
  }
  std::vector<Packet> in_raw(std::vector<uint8_t> frame, uint64_t now = kT0) {
    stored_.push_back(std::move(frame));
    sink_.frames.clear();
    if (sink_.in_place) {
      engine_->on_frame_in_place(stored_.back(), now, sink_);
    } else {
      engine_->on_frame(stored_.back(), now, sink_);
    }
    return parsed_out();
  }
  std::vector<Packet> tick(uint64_t now) {
    sink_.frames.clear();
    engine_->on_tick(now, sink_);
    return parsed_out();
  }
  std::vector<Packet> parsed_out() {
    std::vector<Packet> out;
    for (auto& f : sink_.frames) {
      out_frames_.push_back(f);
      out.push_back(parse_frame(out_frames_.back()));  // checksums verified
      EXPECT_TRUE(out.back().ok()) << to_string(out.back().error);
    }
    return out;
  }
  // SYN, cookie ACK, the hello for p.test: returns what the hello brought
  // out besides the ACK of the hello (a neighbour request, our SYN, a RST).
  std::vector<Packet> open(Client& c, uint64_t now = kT0) {
    c.isn = 1000u * c.sport;
    TcpSegment syn = seg(c, kTcpSyn, c.isn, 0);
    syn.options.mss = 1440;
    syn.options.wscale = 7;
    syn.options.sack_ok = true;
    auto sa = in(syn, now);
    EXPECT_EQ(sa.size(), 1u);
    if (sa.empty()) return {};
    c.our_isn = sa[0].seq;
    EXPECT_TRUE(in(seg(c, kTcpAck, c.isn + 1, c.our_isn + 1), now).empty());
    hello_ = test::HelloBuilder().sni("p.test").records();
    auto out = in(seg(c, kTcpAck | kTcpPsh, c.isn + 1, c.our_isn + 1, hello_), now);
    std::vector<Packet> rest;
    for (const Packet& p : out) {
      const bool hello_ack = p.l4 == L4::kTcp && p.flags == kTcpAck && p.dport == c.sport;
      if (!hello_ack) rest.push_back(p);
    }
    for (const Packet& p : rest) {
      if (p.l4 == L4::kTcp && p.flags == kTcpSyn) c.backend_syn = p;
    }
    return rest;
  }
  static bool is_ns(const Packet& p) { return p.l4 == L4::kIcmpv6 && p.icmp.type == 135; }
  static bool is_arp_request(const Packet& p) { return p.l3 == L3::kArp && p.arp.op == 1; }
  static bool is_syn(const Packet& p) { return p.l4 == L4::kTcp && p.flags == kTcpSyn; }
  // The answer a host at `mac` gives our solicitation `ns`.
  std::vector<uint8_t> answer(const Packet& ns, const MacAddr& mac) {
    std::vector<uint8_t> out(kMaxFrame);
    const size_t n = build_neighbor_advert(out, ns, mac, ns.icmp.nd_target);
    EXPECT_GT(n, 0u);
    out.resize(n);
    std::memcpy(&out[6], mac.data(), 6);
    return out;
  }
  TcpSegment from_backend(const Client& c, uint8_t flags, uint32_t seq, uint32_t ack,
                          std::span<const uint8_t> payload = {}) {
    TcpSegment s;
    s.src_mac = kBackendMac;
    s.dst_mac = kOurMac;
    s.flow.src = c.backend_syn.dst;
    s.flow.dst = c.backend_syn.src;
    s.flow.sport = c.backend_syn.dport;
    s.flow.dport = c.backend_syn.sport;
    s.seq = seq;
    s.ack = ack;
    s.flags = flags;
    s.window = 1000;
    s.options.has_timestamps = true;
    s.options.ts_val = 5000;
    s.options.ts_ecr = 1000;
    s.payload = payload;
    return s;
  }
  const FrontStats& stats() const { return engine_->stats(); }

  std::unique_ptr<FlowEngine> engine_;
  VectorSink sink_;
  std::vector<std::vector<uint8_t>> stored_, out_frames_;
  test::Bytes hello_;
};

// ------------------------------------------------------------ IPv6 backends

TEST_F(NeighborTest, Ipv6BackendThroughNeighbourDiscoveryIsSplicedBothWays) {
  make_engine("\"10.0.0.1:443\", \"[fd00::1]:443\"", "\"[fd00::9]:8443\"");
  Client c{.v6 = true};
  auto out = open(c);
  ASSERT_EQ(out.size(), 1u);
  const Packet& ns = out[0];
  ASSERT_TRUE(is_ns(ns));
  EXPECT_EQ(ns.icmp.nd_target, kBackend6);
  EXPECT_EQ(ns.src, kVip6) << "asked from the VIP";
  EXPECT_EQ(ns.dst, v6_of("ff02::1:ff00:9")) << "the solicited-node multicast address";
  EXPECT_EQ(ns.dst_mac, (MacAddr{0x33, 0x33, 0xff, 0, 0, 9}));
  EXPECT_EQ(ns.src_mac, kOurMac);
  EXPECT_EQ(ns.ttl, 255);
  ASSERT_TRUE(ns.icmp.has_nd_mac);
  EXPECT_EQ(ns.icmp.nd_mac, kOurMac) << "our link-layer address option";
  EXPECT_EQ(stats().backend_nd_solicits, 1u);

  out = in_raw(answer(ns, kBackendMac));
  ASSERT_EQ(out.size(), 1u);
  const Packet syn = out[0];
  c.backend_syn = syn;
  EXPECT_EQ(syn.l3, L3::kIpv6);
  EXPECT_EQ(syn.flags, kTcpSyn);
  EXPECT_EQ(syn.src, kVip6);
  EXPECT_EQ(syn.dst, kBackend6);
  EXPECT_EQ(syn.dport, 8443);
  EXPECT_EQ(syn.dst_mac, kBackendMac);
  EXPECT_EQ(syn.seq, c.isn);
  EXPECT_EQ(syn.options.mss, 1440);

  // The SYN-ACK: the hello is replayed, over IPv6.
  const uint32_t b = 0x50000000;
  out = in(from_backend(c, kTcpSyn | kTcpAck, b, c.isn + 1));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].l3, L3::kIpv6);
  EXPECT_EQ(out[0].dst, kBackend6);
  EXPECT_EQ(out[0].ack, b + 1);
  EXPECT_EQ(std::vector<uint8_t>(out[0].payload.begin(), out[0].payload.end()), hello_);

  // Both ways, copied then rewritten in place: every frame parses with its
  // checksums (pseudo-header over the 128-bit addresses).
  const uint32_t hello_end = c.isn + 1 + static_cast<uint32_t>(hello_.size());
  for (bool in_place : {false, true}) {
    sink_.in_place = in_place;
    const std::string answer_text = in_place ? "second answer" : "first answer, copied";
    const uint32_t at = in_place ? 1 + 20 : 1;  // "first answer, copied" is 20 bytes
    auto d = from_backend(c, kTcpAck | kTcpPsh, b + at, hello_end,
                          {reinterpret_cast<const uint8_t*>(answer_text.data()), answer_text.size()});
    out = in(d);
    ASSERT_EQ(out.size(), 1u) << in_place;
    EXPECT_EQ(out[0].l3, L3::kIpv6);
    EXPECT_EQ(out[0].src, kVip6);
    EXPECT_EQ(out[0].sport, 443);
    EXPECT_EQ(out[0].dst, kClient6);
    EXPECT_EQ(out[0].dport, c.sport);
    EXPECT_EQ(out[0].dst_mac, kClientMac);
    EXPECT_EQ(out[0].seq, c.our_isn + at);
    EXPECT_EQ(std::string(out[0].payload.begin(), out[0].payload.end()), answer_text);

    out = in(seg(c, kTcpAck, hello_end, c.our_isn + at + static_cast<uint32_t>(answer_text.size())));
    ASSERT_EQ(out.size(), 1u) << in_place;
    EXPECT_EQ(out[0].l3, L3::kIpv6);
    EXPECT_EQ(out[0].src, kVip6);
    EXPECT_EQ(out[0].dst, kBackend6);
    EXPECT_EQ(out[0].dst_mac, kBackendMac);
    EXPECT_EQ(out[0].sport, syn.sport);
    EXPECT_EQ(out[0].ack, b + at + answer_text.size()) << "in the backend's sequence space";
  }
  EXPECT_EQ(stats().spliced_to_client, 2u);
  EXPECT_EQ(stats().spliced_to_backend, 2u);

  // A second flow finds the MAC known: our SYN at once.
  Client c2{.v6 = true, .sport = 40001};
  out = open(c2);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(is_syn(out[0]));
  EXPECT_EQ(out[0].dst_mac, kBackendMac);
  EXPECT_EQ(stats().backend_nd_solicits, 1u);
}

// [dpdk] backend_vlan: the solicitation goes out on the backends' VLAN, an
// advertisement on any other VLAN (or untagged) resolves nothing, the
// backend's frames carry the tag.
TEST_F(NeighborTest, BackendsOnAVlanAreSolicitedAndReachedOnIt) {
  make_engine("\"[fd00::1]:443\"", "\"[fd00::9]:8443\"", "backend_vlan = 7");
  Client c{.v6 = true};
  auto out = open(c);
  ASSERT_EQ(out.size(), 1u);
  const Packet ns = out[0];
  ASSERT_TRUE(is_ns(ns));
  EXPECT_EQ(ns.vlan, 7);
  Packet untagged = ns;
  untagged.vlan = 0;
  EXPECT_TRUE(in_raw(answer(untagged, kBackendMac)).empty());
  Packet other = ns;
  other.vlan = 8;
  EXPECT_TRUE(in_raw(answer(other, kBackendMac)).empty());
  EXPECT_EQ(stats().neighbor_ignored, 2u);
  out = in_raw(answer(ns, kBackendMac));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, kTcpSyn);
  EXPECT_EQ(out[0].vlan, 7);
  EXPECT_EQ(out[0].dst_mac, kBackendMac);
}

TEST_F(NeighborTest, AdvertWithWrongTargetHopLimitChecksumOrNoAddressIsIgnored) {
  make_engine("\"[fd00::1]:443\"", "\"[fd00::9]:443\"");
  Client c{.v6 = true};
  auto out = open(c);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(is_ns(out[0]));
  // Another target (an address we did not ask for).
  EXPECT_TRUE(in_raw(advert(kBackend6, kVip6, v6({8}), kEvilMac)).empty());
  // The address we asked for, but not from the link (hop limit 64).
  EXPECT_TRUE(in_raw(advert(kBackend6, kVip6, kBackend6, kEvilMac, 64)).empty());
  EXPECT_EQ(stats().rx_bad, 1u);
  // A bad checksum.
  EXPECT_TRUE(in_raw(advert(kBackend6, kVip6, kBackend6, kEvilMac, 255, 0x60, kEvilMac, false)).empty());
  EXPECT_EQ(stats().rx_bad, 2u);
  // No target link-layer address.
  EXPECT_TRUE(in_raw(advert(kBackend6, kVip6, kBackend6, std::nullopt)).empty());
  // Solicited, yet to a multicast address (RFC 4861 7.1.2).
  EXPECT_TRUE(in_raw(advert(kBackend6, v6_of("ff02::1"), kBackend6, kEvilMac)).empty());
  EXPECT_EQ(stats().rx_bad, 3u);
  // Not to the address that asked.
  EXPECT_TRUE(in_raw(advert(kBackend6, v6({0x33}), kBackend6, kEvilMac)).empty());
  EXPECT_EQ(stats().neighbor_ignored, 3u);
  EXPECT_EQ(engine_->flows(), 1u) << "the flow still waits";
  // The right one: our SYN, to the MAC it names.
  out = in_raw(advert(kBackend6, kVip6, kBackend6, kBackendMac));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(is_syn(out[0]));
  EXPECT_EQ(out[0].dst_mac, kBackendMac);
}

TEST_F(NeighborTest, UnansweredSolicitationIsRepeatedThenTheBackendFails) {
  make_engine("\"[fd00::1]:443\"", "\"[fd00::9]:443\"");
  Client c{.v6 = true};
  ASSERT_EQ(open(c).size(), 1u);
  auto out = tick(kT0 + 1'100);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(is_ns(out[0]));
  out = tick(kT0 + 2'200);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(is_ns(out[0]));
  out = tick(kT0 + 3'300);
  ASSERT_EQ(out.size(), 1u);  // one backend in the pool: the client is reset
  EXPECT_EQ(out[0].dst, kClient6);
  EXPECT_TRUE(out[0].flags & kTcpRst);
  EXPECT_EQ(stats().backend_nd_solicits, 3u);
  EXPECT_EQ(stats().backend_connect_failures, 1u);
  EXPECT_EQ(engine_->flows(), 0u);
  // A late answer makes nothing: the request was forgotten.
  EXPECT_TRUE(in_raw(advert(kBackend6, kVip6, kBackend6, kBackendMac), kT0 + 8'000).empty());
  EXPECT_EQ(stats().neighbor_ignored, 1u);
}

// ------------------------------------------------------ answers not asked for

TEST_F(NeighborTest, UnsolicitedArpReplyCreatesNoEntryAndChangesNone) {
  make_engine("\"10.0.0.1:443\"", "\"10.0.0.9:443\"");
  // Before anyone asked: ignored.
  EXPECT_TRUE(in_raw(arp_reply(0x0a000009, kEvilMac, 0x0a000001)).empty());
  EXPECT_EQ(stats().neighbor_ignored, 1u);
  Client c;
  auto out = open(c);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(is_arp_request(out[0])) << "no entry was made: the engine asks";
  EXPECT_EQ(out[0].arp.target_ip, 0x0a000009u);
  EXPECT_EQ(out[0].arp.sender_ip, 0x0a000001u);
  // A reply to another address than the one that asked.
  EXPECT_TRUE(in_raw(arp_reply(0x0a000009, kEvilMac, 0x0a000077)).empty());
  EXPECT_EQ(stats().neighbor_ignored, 2u);
  out = in_raw(arp_reply(0x0a000009, kBackendMac, 0x0a000001));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(is_syn(out[0]));
  EXPECT_EQ(out[0].dst_mac, kBackendMac);
  // Answered: another reply, unasked, changes nothing.
  EXPECT_TRUE(in_raw(arp_reply(0x0a000009, kEvilMac, 0x0a000001)).empty());
  EXPECT_EQ(stats().neighbor_ignored, 3u);
  Client c2{.sport = 40001};
  out = open(c2);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(is_syn(out[0]));
  EXPECT_EQ(out[0].dst_mac, kBackendMac);
}

TEST_F(NeighborTest, UnsolicitedAdvertCreatesNoEntry) {
  make_engine("\"[fd00::1]:443\"", "\"[fd00::9]:443\"");
  // Unsolicited (S = 0, to all nodes) and "solicited" to the VIP: both unasked.
  EXPECT_TRUE(in_raw(advert(kBackend6, v6_of("ff02::1"), kBackend6, kEvilMac, 255, 0x20)).empty());
  EXPECT_TRUE(in_raw(advert(kBackend6, kVip6, kBackend6, kEvilMac)).empty());
  EXPECT_EQ(stats().neighbor_ignored, 2u);
  Client c{.v6 = true};
  auto out = open(c);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(is_ns(out[0])) << "no entry was made: the engine asks";
}

// ----------------------------------------------------------------- gateways

TEST_F(NeighborTest, OffLinkIpv4BackendGoesToTheGatewaysMac) {
  make_engine("\"10.0.0.1:443\"", "\"192.168.5.5:443\"",
              "networks = [\"10.0.0.0/24\"]\ngateway = \"10.0.0.254\"");
  Client c;
  auto out = open(c);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(is_arp_request(out[0]));
  EXPECT_EQ(out[0].arp.target_ip, 0x0a0000feu) << "the gateway is asked, not the backend";
  out = in_raw(arp_reply(0x0a0000fe, kGatewayMac, 0x0a000001));
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(is_syn(out[0]));
  EXPECT_EQ(out[0].dst_mac, kGatewayMac);
  EXPECT_EQ(out[0].dst, IpAddr::v4(0xc0a80505)) << "the IP destination stays the backend";
  EXPECT_EQ(out[0].src, kVip4);
}

TEST_F(NeighborTest, OffLinkIpv6BackendGoesToTheGatewaysMacOnLinkOneDirectly) {
  make_engine("\"[fd00::1]:443\"", "\"[2001:db8::5]:443\", \"[fd00::9]:443\"",
              "networks = [\"10.0.0.0/24\", \"fd00::/64\"]\ngateway6 = \"fd00::fe\"");
  // Round robin: the first flow to 2001:db8::5 (off the link), the second to fd00::9.
  Client c{.v6 = true};
  auto out = open(c);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(is_ns(out[0]));
  EXPECT_EQ(out[0].icmp.nd_target, kGateway6);
  out = in_raw(answer(out[0], kGatewayMac));
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(is_syn(out[0]));
  EXPECT_EQ(out[0].dst_mac, kGatewayMac);
  EXPECT_EQ(out[0].dst, v6_of("2001:db8::5"));
  Client c2{.v6 = true, .sport = 40001};
  out = open(c2);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(is_ns(out[0]));
  EXPECT_EQ(out[0].icmp.nd_target, kBackend6) << "inside networks: asked directly";
}

TEST_F(NeighborTest, OffLinkBackendWithoutAGatewayIsResetAndCounted) {
  make_engine("\"10.0.0.1:443\"", "\"192.168.5.5:443\"", "networks = [\"10.0.0.0/24\"]\ngateway6 = \"fd00::fe\"");
  Client c;
  auto out = open(c);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].dst, kClient4);
  EXPECT_TRUE(out[0].flags & kTcpRst);
  EXPECT_EQ(stats().backend_no_route, 1u);
  EXPECT_EQ(stats().backend_arp_requests, 0u);
  EXPECT_EQ(engine_->flows(), 0u);
  // The same backend without any of the keys: on the link, as before them.
  make_engine("\"10.0.0.1:443\"", "\"192.168.5.5:443\"");
  out = open(c);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(is_arp_request(out[0]));
  EXPECT_EQ(out[0].arp.target_ip, 0xc0a80505u);
}

// ------------------------------------------------------------ other family

TEST_F(NeighborTest, BackendOfTheOtherFamilySeesTheFirstVipOfItsFamily) {
  make_engine("\"10.0.0.1:443\", \"[fd00::1]:443\"", "\"[fd00::9]:443\"");
  Client c;  // over IPv4
  auto out = open(c);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(is_ns(out[0]));
  EXPECT_EQ(out[0].src, kVip6);
  out = in_raw(answer(out[0], kBackendMac));
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(is_syn(out[0]));
  c.backend_syn = out[0];
  EXPECT_EQ(out[0].src, kVip6);
  EXPECT_EQ(out[0].dst, kBackend6);
  const uint32_t b = 9000;
  ASSERT_EQ(in(from_backend(c, kTcpSyn | kTcpAck, b, c.isn + 1)).size(), 1u);
  const std::string text = "over the other family";
  sink_.in_place = true;  // cannot be rewritten in place: built anew
  out = in(from_backend(c, kTcpAck | kTcpPsh, b + 1, c.isn + 1 + static_cast<uint32_t>(hello_.size()),
                        {reinterpret_cast<const uint8_t*>(text.data()), text.size()}));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].l3, L3::kIpv4);
  EXPECT_EQ(out[0].src, kVip4);
  EXPECT_EQ(out[0].dst, kClient4);
  EXPECT_EQ(std::string(out[0].payload.begin(), out[0].payload.end()), text);
}

TEST_F(NeighborTest, BackendOfAFamilyNoVipHasIsResetAndCounted) {
  make_engine("\"10.0.0.1:443\"", "\"[fd00::9]:443\"");
  Client c;
  auto out = open(c);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].flags & kTcpRst);
  EXPECT_EQ(stats().backend_no_route, 1u);
  EXPECT_EQ(stats().backend_nd_solicits, 0u);
  EXPECT_EQ(engine_->flows(), 0u);
}

// ------------------------------------------------------------------- aging

TEST_F(NeighborTest, OldEntryIsAskedAgainWithoutStallingAndForgottenWhenSilent) {
  make_engine("\"10.0.0.1:443\"", "\"10.0.0.9:443\"");
  Client c;
  auto out = open(c);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(in_raw(arp_reply(0x0a000009, kBackendMac, 0x0a000001)).size(), 1u);
  // Within the TTL: no request.
  Client c2{.sport = 40001};
  out = open(c2, kT0 + 30'000);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(is_syn(out[0]));
  // Past it: our SYN at once, and a request beside it.
  Client c3{.sport = 40002};
  out = open(c3, kT0 + 61'000);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(is_arp_request(out[0]) || is_arp_request(out[1]));
  EXPECT_TRUE(is_syn(out[0]) || is_syn(out[1]));
  EXPECT_EQ(stats().backend_arp_requests, 2u);
  // The backend moved: the answer names another MAC, the flows follow it.
  constexpr MacAddr kMoved = {0x02, 0, 0, 0, 0, 0x99};
  EXPECT_TRUE(in_raw(arp_reply(0x0a000009, kMoved, 0x0a000001), kT0 + 61'010).empty());
  c3.backend_syn = is_syn(out[0]) ? out[0] : out[1];
  out = tick(kT0 + 62'000);  // c3's SYN is sent again: to the new MAC
  bool resent = false;
  for (const Packet& p : out) {
    if (is_syn(p) && p.sport == c3.backend_syn.sport) {
      resent = true;
      EXPECT_EQ(p.dst_mac, kMoved);
    }
  }
  EXPECT_TRUE(resent);
  // Old again, and the host is silent: asked every second, forgotten after
  // three; the next flow waits for an answer.
  Client c4{.sport = 40003};
  out = open(c4, kT0 + 130'000);
  ASSERT_EQ(out.size(), 2u);
  (void)tick(kT0 + 131'050);
  (void)tick(kT0 + 132'100);
  (void)tick(kT0 + 133'150);
  Client c5{.sport = 40004};
  out = open(c5, kT0 + 133'200);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(is_arp_request(out[0]));
}

// A failover: the backend's address answers from another MAC. A spliced
// flow's next segment towards the backend goes to the new MAC, rewritten in
// place on the fast path as before, and a flow that was connecting when the
// MAC changed follows it too; no scan of the flow table at the answer.
TEST_F(NeighborTest, SplicedFlowsFollowAMovedBackendAtTheirNextSegment) {
  make_engine("\"10.0.0.1:443\"", "\"10.0.0.9:443\"");
  Client c1;
  auto out = open(c1);
  ASSERT_EQ(out.size(), 1u);
  out = in_raw(arp_reply(0x0a000009, kBackendMac, 0x0a000001));
  ASSERT_EQ(out.size(), 1u);
  c1.backend_syn = out[0];
  const uint32_t b = 0x50000000;
  ASSERT_EQ(in(from_backend(c1, kTcpSyn | kTcpAck, b, c1.isn + 1)).size(), 1u);  // the replay
  const uint32_t hello_end = c1.isn + 1 + static_cast<uint32_t>(hello_.size());
  ASSERT_EQ(in(from_backend(c1, kTcpAck, b + 1, hello_end)).size(), 1u);  // to the client
  // The entry is old: the next flow's SYN goes to the MAC known, a request beside it.
  Client c2{.sport = 40001};
  out = open(c2, kT0 + 61'000);
  ASSERT_EQ(out.size(), 2u);
  ASSERT_EQ(c2.backend_syn.dst_mac, kBackendMac);
  constexpr MacAddr kMoved = {0x02, 0, 0, 0, 0, 0x77};
  EXPECT_TRUE(in_raw(arp_reply(0x0a000009, kMoved, 0x0a000001), kT0 + 61'010).empty());
  // c1's data: in place, to the new MAC.
  sink_.in_place = true;
  const std::string data = "after the failover";
  const uint64_t in_place = stats().forwarded_in_place;
  out = in(seg(c1, kTcpAck | kTcpPsh, hello_end, c1.our_isn + 1,
               {reinterpret_cast<const uint8_t*>(data.data()), data.size()}),
           kT0 + 61'020);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].dst, kBackend4);
  EXPECT_EQ(out[0].dst_mac, kMoved);
  EXPECT_EQ(stats().forwarded_in_place, in_place + 1) << "the fast path";
  // c2 (its SYN went to the old MAC): its replay goes to the new one.
  out = in(from_backend(c2, kTcpSyn | kTcpAck, b, c2.isn + 1), kT0 + 61'030);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].dst_mac, kMoved);
}

// The backend's address falls silent long enough to be forgotten, then
// answers again from another MAC (a replaced host): the flows spliced to it
// before take the new MAC too.
TEST_F(NeighborTest, AForgottenBackendLearnedAgainFromAnotherMacIsFollowed) {
  make_engine("\"10.0.0.1:443\"", "\"10.0.0.9:443\"");
  Client c1;
  ASSERT_EQ(open(c1).size(), 1u);
  auto out = in_raw(arp_reply(0x0a000009, kBackendMac, 0x0a000001));
  ASSERT_EQ(out.size(), 1u);
  c1.backend_syn = out[0];
  const uint32_t b = 0x50000000;
  ASSERT_EQ(in(from_backend(c1, kTcpSyn | kTcpAck, b, c1.isn + 1)).size(), 1u);
  const uint32_t hello_end = c1.isn + 1 + static_cast<uint32_t>(hello_.size());
  ASSERT_EQ(in(from_backend(c1, kTcpAck, b + 1, hello_end)).size(), 1u);
  // Old: asked again beside the next flow's SYN, never answered, forgotten.
  Client c2{.sport = 40001};
  ASSERT_EQ(open(c2, kT0 + 61'000).size(), 2u);
  for (uint64_t t = kT0 + 62'050; t <= kT0 + 64'200; t += 1'050) (void)tick(t);
  Client c3{.sport = 40002};
  out = open(c3, kT0 + 64'300);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(is_arp_request(out[0])) << "a new entry: the flow waits for the answer";
  constexpr MacAddr kReplaced = {0x02, 0, 0, 0, 0, 0x55};
  out = in_raw(arp_reply(0x0a000009, kReplaced, 0x0a000001), kT0 + 64'310);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].dst_mac, kReplaced) << "c3's SYN";
  const std::string data = "to the replaced host";
  out = in(seg(c1, kTcpAck | kTcpPsh, hello_end, c1.our_isn + 1,
               {reinterpret_cast<const uint8_t*>(data.data()), data.size()}),
           kT0 + 64'320);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].dst_mac, kReplaced) << "c1, spliced before, follows";
}

// ------------------------------------------------------------------ packets

TEST(NeighborPacket, SolicitationIsBuiltOnlyForAUnicastIpv6Target) {
  std::vector<uint8_t> out(kMaxFrame);
  EXPECT_EQ(build_neighbor_solicit(out, kOurMac, kVip6, v6_of("ff02::1")), 0u);
  EXPECT_EQ(build_neighbor_solicit(out, kOurMac, kVip6, v6_of("::")), 0u);
  EXPECT_EQ(build_neighbor_solicit(out, kOurMac, kVip4, kBackend6), 0u);
  EXPECT_EQ(build_neighbor_solicit(out, kOurMac, kVip6, kBackend4), 0u);
  EXPECT_EQ(build_neighbor_solicit(std::span<uint8_t>(out).first(40), kOurMac, kVip6, kBackend6), 0u);
  const size_t n = build_neighbor_solicit(out, kOurMac, kVip6, v6_of("fd00::12:3456:789a"));
  ASSERT_GT(n, 0u);
  const Packet p = parse_frame(std::span<const uint8_t>(out).first(n));
  ASSERT_TRUE(p.ok()) << to_string(p.error);
  EXPECT_EQ(p.dst, v6_of("ff02::1:ff56:789a"));
  EXPECT_EQ(p.dst_mac, (MacAddr{0x33, 0x33, 0xff, 0x56, 0x78, 0x9a}));
  EXPECT_EQ(p.icmp.nd_target, v6_of("fd00::12:3456:789a"));
}

TEST(NeighborPacket, HostileAdvertsAreErrorsNeverReadPastTheFrame) {
  auto good = advert(kBackend6, kVip6, kBackend6, kBackendMac);
  Packet p = parse_frame(good);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p.icmp.has_nd_mac);
  EXPECT_EQ(p.icmp.nd_mac, kBackendMac);
  EXPECT_TRUE(p.icmp.nd_solicited);
  EXPECT_TRUE(p.icmp.nd_override);
  // Each variant with its checksum made right, so the check under test is the one that fails.
  auto resum = [](std::vector<uint8_t> f) {
    uint8_t* m = &f[14 + 40];
    const size_t len = f.size() - 54;
    m[2] = m[3] = 0;
    const uint16_t sum = l4_checksum(kBackend6, kVip6, 58, {m, len});
    m[2] = static_cast<uint8_t>(sum >> 8);
    m[3] = static_cast<uint8_t>(sum);
    return f;
  };
  auto zero_len = good;
  zero_len[14 + 40 + 25] = 0;  // an option of length 0
  EXPECT_EQ(parse_frame(resum(zero_len)).error, PacketError::kBadIcmp);
  auto long_opt = good;
  long_opt[14 + 40 + 25] = 2;  // 16 bytes: past the message
  EXPECT_EQ(parse_frame(resum(long_opt)).error, PacketError::kBadIcmp);
  auto multicast_target = good;
  multicast_target[14 + 40 + 8] = 0xff;
  EXPECT_EQ(parse_frame(resum(multicast_target)).error, PacketError::kBadIcmp);
  auto code = good;
  code[14 + 40 + 1] = 1;
  EXPECT_EQ(parse_frame(resum(code)).error, PacketError::kBadIcmp);
  // Shorter than the 24 bytes of an advertisement (IPv6 length cut to 16).
  auto short_na = good;
  short_na.resize(14 + 40 + 16);
  short_na[14 + 5] = 16;
  EXPECT_EQ(parse_frame(resum(short_na)).error, PacketError::kBadIcmp);
}

// ------------------------------------------------------------ configuration

config::ConfigErrors config_errors(const std::string& dpdk) {
  const std::string toml = "[[listener]]\nlisten = [\"10.0.0.1:443\"]\n[[pool]]\nname = \"p\"\nbackends = [\"10.0.0.9:443\"]\n"
                           "[[route]]\nname = \"r\"\nnames = [\"a.test\"]\naction = \"passthrough\"\npool = \"p\"\n"
                           "[dpdk]\n" + dpdk + "\n";
  auto cfg = config::load_config_string(toml, "t.toml");
  return cfg ? config::ConfigErrors{} : cfg.error();
}

TEST(DpdkNextHopsConfig, GoodValuesAreParsed) {
  const std::string toml = "[[listener]]\nlisten = [\"10.0.0.1:443\"]\n[[pool]]\nname = \"p\"\nbackends = [\"10.0.0.9:443\"]\n"
                           "[[route]]\nname = \"r\"\nnames = [\"a.test\"]\naction = \"passthrough\"\npool = \"p\"\n"
                           "[dpdk]\nnetworks = [\"10.0.0.0/24\", \"fd00::/64\", \"192.0.2.7\"]\n"
                           "gateway = \"10.0.0.254\"\ngateway6 = \"fd00::fe\"\nbackend_vlan = 4094\n";
  auto cfg = config::load_config_string(toml, "t.toml");
  ASSERT_TRUE(cfg.has_value()) << cfg.error()[0].to_string();
  const NextHops nh = next_hops_of(cfg->dpdk);
  EXPECT_TRUE(nh.routed);
  EXPECT_EQ(nh.vlan, 4094);
  ASSERT_EQ(nh.networks.size(), 3u);
  EXPECT_EQ(nh.networks[0].addr, IpAddr::v4(0x0a000000));
  EXPECT_EQ(nh.networks[0].len, 24);
  EXPECT_EQ(nh.networks[1].addr, v6_of("fd00::"));
  EXPECT_EQ(nh.networks[1].len, 64);
  EXPECT_EQ(nh.networks[2].len, 32);
  EXPECT_EQ(nh.gateway, kGateway4);
  EXPECT_EQ(nh.gateway6, kGateway6);
  EXPECT_TRUE(nh.networks[0].contains(IpAddr::v4(0x0a0000ff)));
  EXPECT_FALSE(nh.networks[0].contains(IpAddr::v4(0x0a000100)));
  EXPECT_TRUE(nh.networks[1].contains(v6_of("fd00::1:2:3:4")));
  EXPECT_FALSE(nh.networks[1].contains(v6_of("fd00:0:0:1::1")));
  EXPECT_FALSE(nh.networks[1].contains(IpAddr::v4(0x0a000001))) << "another family";
  // None of the keys: not routed (every backend on the link).
  EXPECT_TRUE(config_errors("port = 0").empty());
  auto plain = config::load_config_string(
      "[[listener]]\nlisten = [\"10.0.0.1:443\"]\n[[pool]]\nname = \"p\"\nbackends = [\"10.0.0.9:443\"]\n"
      "[[route]]\nname = \"r\"\nnames = [\"a.test\"]\naction = \"passthrough\"\npool = \"p\"\n",
      "t.toml");
  ASSERT_TRUE(plain.has_value());
  EXPECT_FALSE(plain->dpdk.routed);
  EXPECT_EQ(next_hops_of(plain->dpdk).vlan, 0) << "backends untagged by default";
}

TEST(DpdkNextHopsConfig, BadValuesNameTheKey) {
  const std::pair<std::string, std::string> cases[] = {
      {"gateway = \"fd00::1\"", "dpdk.gateway"},          // the other family
      {"gateway = \"10.0.0\"", "dpdk.gateway"},
      {"gateway = \"224.0.0.1\"", "dpdk.gateway"},        // multicast
      {"gateway = \"0.0.0.0\"", "dpdk.gateway"},
      {"gateway = 5", "dpdk.gateway"},
      {"gateway6 = \"10.0.0.1\"", "dpdk.gateway6"},
      {"gateway6 = \"ff02::1\"", "dpdk.gateway6"},
      {"gateway6 = \"::\"", "dpdk.gateway6"},
      {"networks = \"10.0.0.0/24\"", "dpdk.networks"},    // not a list
      {"networks = [\"10.0.0.1/24\"]", "dpdk.networks[0]"},  // host bits set
      {"networks = [\"10.0.0.0/24\", \"fd00::/129\"]", "dpdk.networks[1]"},
      {"networks = [\"nonsense\"]", "dpdk.networks[0]"},
      {"networks = [24]", "dpdk.networks[0]"},
      {"gateways = \"10.0.0.1\"", "dpdk.gateways"},        // unknown key
      {"backend_vlan = 4095", "dpdk.backend_vlan"},        // reserved
      {"backend_vlan = -1", "dpdk.backend_vlan"},
      {"backend_vlan = \"12\"", "dpdk.backend_vlan"},
  };
  for (const auto& [text, key] : cases) {
    const auto errors = config_errors(text);
    ASSERT_EQ(errors.size(), 1u) << text;
    EXPECT_EQ(errors[0].key, key) << text << ": " << errors[0].to_string();
  }
}

}  // namespace
}  // namespace lode::front

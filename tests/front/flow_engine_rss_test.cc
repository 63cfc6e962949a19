// Several lcores on a NIC whose RSS is Toeplitz with a key and RETA the
// engines know (EngineConfig::rss / exception_rss): the local port of every
// backend leg and hand-off leg is one whose return segments hash to the
// lcore's own queue, so they need no redirect; every lcore agrees on who
// owns a segment; when no port hashes to a queue the leg falls back to the
// port rule (counted) and is redirected as before. The NIC's own hash of
// received segments is checked against ours (check_nic_hash): when they
// disagree, new legs take the port rule on every lcore and old legs go on.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "dataplane/front/flow_engine.h"
#include "dataplane/front/toeplitz.h"
#include "support/flow_engine_fixture.h"
#include "support/hello_builder.h"

namespace lode::front {
namespace {

using namespace fixture;

constexpr uint8_t kKey[40] = {0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67,
                              0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb,
                              0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
                              0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa};
constexpr uint16_t kVipPortInRange = 20002;  // a VIP port among the RSS-chosen local ports

IpAddr v6(const char* text) {
  IpAddr a;
  a.family = 6;
  EXPECT_EQ(inet_pton(AF_INET6, text, a.bytes), 1) << text;
  return a;
}
const IpAddr kVip6 = v6("fd00::1");
const IpAddr kClient6 = v6("fd00::2");

std::vector<uint16_t> round_robin(size_t size, uint32_t queues) {
  std::vector<uint16_t> reta(size);
  for (size_t i = 0; i < size; ++i) reta[i] = static_cast<uint16_t>(i % queues);
  return reta;
}

using Lcore = TestLcore;
using Out = LcoreOut;

// A flow up to our SYN towards its backend or worker.
struct Leg {
  Packet syn;
  bool handoff = false;
  uint32_t isn = 0;  // our (cookie) ISN towards the client
  // The 4-tuple of the backend's (worker's) segments to us, as the NIC reads it.
  FlowKey back() const { return FlowKey{syn.dst, syn.src, syn.dport, syn.sport}; }
};

class FlowEngineRssTest : public ::testing::Test {
 protected:
  // n engines (lcore i of n), both ports hashing by kKey and `reta`.
  void make(uint32_t n, std::vector<uint16_t> reta) {
    const std::string toml =
        "[[listener]]\nname = \"vip\"\nlisten = [\"10.0.0.1:443\", \"10.0.0.1:" + std::to_string(kVipPortInRange) +
        "\", \"[fd00::1]:443\"]\n"
        "[[pool]]\nname = \"p\"\nbackends = [\"10.0.0.9:443\"]\n"
        "[[pool]]\nname = \"p6\"\nbackends = [\"[fd00::9]:443\"]\n"
        "[[pool]]\nname = \"app\"\nbackends = [\"127.0.0.1:9000\"]\n"
        "[[certificate]]\nname = \"t\"\ncert = \"t.pem\"\nkey = \"t.key\"\n"
        "[[route]]\nname = \"p\"\nnames = [\"p.test\"]\naction = \"passthrough\"\npool = \"p\"\n"
        "[[route]]\nname = \"p6\"\nnames = [\"p6.test\"]\naction = \"passthrough\"\npool = \"p6\"\n"
        "[[route]]\nname = \"t\"\nnames = [\"t.test\"]\naction = \"terminate\"\npool = \"app\"\n"
        "certificate = \"t\"\n";
    const auto runtime = runtime_from(toml, "rss.toml");
    ASSERT_NE(runtime, nullptr);
    runtime_ = runtime;
    rss_ = RssHash::make(kKey, std::move(reta));
    ASSERT_TRUE(rss_.has_value());
    EngineConfig ec = engine_config(*runtime);
    ec.max_flows = 1024;
    ec.cookie_key = {2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4, 5, 9, 0, 4, 5};
    enable_handoff(ec, 2);
    ec.lcores = n;
    ec.rss = rss_;
    ec.exception_rss = rss_;
    lc_ = std::vector<Lcore>(n);
    for (uint32_t i = 0; i < n; ++i) {
      ec.lcore = i;
      lc_[i].engine = std::make_unique<FlowEngine>(ec, runtime);
      lc_[i].wire.exception = &lc_[i].exc;
    }
  }

  Out feed(uint32_t i, std::vector<uint8_t> frame, bool exception = false, bool redirected = false) {
    return feeder_.feed(lc_[i], std::move(frame), exception, redirected);
  }

  // A client flow on lcore i (IPv6 for p6.test) up to our SYN to its backend
  // or worker, the next hop's ARP or neighbour solicitation answered.
  Leg open(uint32_t i, uint16_t sport, const std::string& sni) {
    Leg leg;
    leg.handoff = sni == "t.test";
    const bool six = sni == "p6.test";
    const FlowKey ck{six ? kClient6 : kClient, six ? kVip6 : kVip, sport, 443};
    auto sa = feed(i, frame_of(segment(kClientMac, kOurMac, ck, kTcpSyn, 1000, 0, 64240, {})));
    EXPECT_EQ(sa.wire.size(), 1u);
    if (sa.wire.empty()) return leg;
    const uint32_t isn = sa.wire[0].seq;
    leg.isn = isn;
    feed(i, frame_of(segment(kClientMac, kOurMac, ck, kTcpAck, 1001, isn + 1, 64240, {})));
    hello_ = test::HelloBuilder().sni(sni).records();
    Out o = feed(i, frame_of(segment(kClientMac, kOurMac, ck, kTcpAck | kTcpPsh, 1001, isn + 1, 64240, hello_)));
    for (int round = 0; round < 2; ++round) {
      const std::vector<Packet> toward = leg.handoff ? o.exc : o.wire;
      for (const Packet& p : toward) {
        if (p.l4 == L4::kTcp && (p.flags & kTcpSyn)) {
          leg.syn = p;
          return leg;
        }
      }
      for (const Packet& p : toward) {
        std::vector<uint8_t> reply(kMaxFrame);
        if (p.l3 == L3::kArp && p.arp.op == 1) {
          reply.resize(build_arp_reply(reply, p, leg.handoff ? kKernelMac : kBackendMac, p.arp.target_ip));
        } else if (p.l4 == L4::kIcmpv6 && p.icmp.type == 135) {
          reply.resize(build_neighbor_advert(reply, p, kBackendMac, p.icmp.nd_target));
          std::memcpy(&reply[6], kBackendMac.data(), 6);
        } else {
          continue;
        }
        o = feed(i, reply, leg.handoff);
        break;
      }
    }
    ADD_FAILURE() << "no SYN from lcore " << i << " for " << sni;
    return leg;
  }

  // The backend's (worker's) SYN-ACK to our SYN.
  static std::vector<uint8_t> synack(const Leg& leg) {
    return frame_of(segment(leg.handoff ? kKernelMac : kBackendMac, leg.handoff ? kExcMac : kOurMac, leg.back(),
                            kTcpSyn | kTcpAck, 0x70000000, leg.syn.seq + 1, 1000, {}));
  }

  // A backend's segment to us (10.0.0.9:443 or [fd00::9]:443 -> a VIP, local
  // port `port`) and the 4-tuple the NIC hashes for it. 16 bytes of data, so
  // no frame is padded to the Ethernet minimum (its IP length then ends at
  // the frame's end).
  static std::vector<uint8_t> backend_segment(bool six, uint16_t port, uint16_t vlan = 0) {
    static constexpr uint8_t kData[16] = {'b', 'a', 'c', 'k', 'e', 'n', 'd'};
    TcpSegment s = segment(kBackendMac, kOurMac, back_key(six, port), kTcpAck, 5, 6, 1000, kData);
    s.vlan = vlan;
    return frame_of(s);
  }
  static FlowKey back_key(bool six, uint16_t port) {
    return six ? FlowKey{v6("fd00::9"), kVip6, 443, port} : FlowKey{IpAddr::v4(0x0a000009), kVip, 443, port};
  }
  // check_nic_hash on lcore i with the hash the NIC gave `frame`.
  void nic(uint32_t i, const std::vector<uint8_t>& frame, uint32_t hash) {
    lc_[i].engine->check_nic_hash(frame, hash);
  }

  std::optional<RssHash> rss_;
  std::shared_ptr<worker::Runtime> runtime_;
  std::vector<Lcore> lc_;
  LcoreFeeder feeder_;
  test::Bytes hello_;
};

TEST_F(FlowEngineRssTest, EveryLegsReturnTupleHashesToItsLcoresQueueBothFamiliesAndHandOffs) {
  constexpr uint32_t kLcores = 4;
  make(kLcores, round_robin(128, kLcores));
  const char* snis[] = {"p.test", "p6.test", "t.test"};
  for (uint32_t i = 0; i < kLcores; ++i) {
    std::set<uint16_t> ports[3];
    for (uint16_t k = 0; k < 60; ++k) {
      const Leg leg = open(i, static_cast<uint16_t>(40000 + 100 * i + k), snis[k % 3]);
      ASSERT_EQ(leg.syn.l4, L4::kTcp) << "lcore " << i << " flow " << k;
      const uint16_t port = leg.syn.sport;
      EXPECT_GE(port, FlowEngine::kFirstLocalPort);
      EXPECT_LE(port, FlowEngine::kLastRssPort) << "chosen by hash, not the fallback";
      EXPECT_NE(port, kVipPortInRange) << "a VIP's port is never a local port";
      EXPECT_TRUE(ports[k % 3].insert(port).second) << "one port per leg to one peer";
      EXPECT_EQ(rss_->queue_of(leg.back()), i) << snis[k % 3] << " on lcore " << i << ", port " << port;
      for (uint32_t j = 0; j < kLcores; ++j) {
        EXPECT_EQ(lc_[j].engine->owner_of(leg.back(), leg.handoff), i) << "lcore " << j << " agrees";
      }
      // Where the NIC puts the answer: on lcore i, taken there, nothing redirected.
      Out o = feed(i, synack(leg), leg.handoff);
      EXPECT_TRUE(o.redirects.empty());
      const std::vector<Packet>& toward = leg.handoff ? o.exc : o.wire;
      ASSERT_FALSE(toward.empty()) << "the hello replayed to the " << (leg.handoff ? "worker" : "backend");
      EXPECT_EQ(toward[0].sport, port);
      EXPECT_EQ(toward[0].ack, 0x70000001u);
    }
    EXPECT_EQ(lc_[i].engine->flows(), 60u);
  }
  for (uint32_t i = 0; i < kLcores; ++i) {
    const FrontStats& s = lc_[i].engine->stats();
    EXPECT_EQ(s.rss_port_fallbacks, 0u) << "lcore " << i;
    // Nothing but the copies of its three neighbour answers (the backend's
    // ARP reply and neighbour advertisement, the kernel's ARP reply).
    EXPECT_EQ(s.redirected_out, 3u * (kLcores - 1)) << "lcore " << i;
    EXPECT_EQ(s.redirected_in, 0u) << "lcore " << i;
    EXPECT_EQ(s.exception_stray, 0u) << "lcore " << i;
  }
}

TEST_F(FlowEngineRssTest, ALcoreTheRetaNeverNamesFallsBackToThePortRuleAndIsRedirectedTo) {
  make(2, std::vector<uint16_t>(128, 0));  // every entry queue 0
  for (uint16_t k = 0; k < 6; ++k) {
    const Leg leg = open(1, static_cast<uint16_t>(41000 + k), k % 2 == 0 ? "p.test" : "t.test");
    ASSERT_EQ(leg.syn.l4, L4::kTcp);
    const uint16_t port = leg.syn.sport;
    EXPECT_GT(port, FlowEngine::kLastRssPort) << "the fallback's own range";
    EXPECT_LE(port, FlowEngine::kLastLocalPort);
    EXPECT_EQ(port % 2, 1) << "the port rule: port % lcores == lcore";
    EXPECT_EQ(lc_[0].engine->owner_of(leg.back(), leg.handoff), 1u);
    EXPECT_EQ(lc_[1].engine->owner_of(leg.back(), leg.handoff), 1u);
    EXPECT_EQ(lc_[0].engine->owner_of_local_port(port), 1u);
    // The NIC puts the answer on queue 0: lcore 0 hands it to lcore 1.
    ASSERT_EQ(rss_->queue_of(leg.back()), 0u);
    Out o = feed(0, synack(leg), leg.handoff);
    EXPECT_TRUE(o.wire.empty());
    EXPECT_TRUE(o.exc.empty());
    ASSERT_EQ(o.redirects.size(), 1u);
    EXPECT_EQ(o.redirects[0].lcore, 1u);
    o = feed(1, o.redirects[0].frame, leg.handoff, true);
    EXPECT_FALSE((leg.handoff ? o.exc : o.wire).empty()) << "lcore 1 goes on with its flow";
  }
  EXPECT_EQ(lc_[1].engine->stats().rss_port_fallbacks, 6u) << "one per leg";
  EXPECT_EQ(lc_[0].engine->stats().redirected_out, 6u);
  // Lcore 0, which the RETA names, still takes ports by hash.
  const Leg leg = open(0, 42000, "p.test");
  ASSERT_EQ(leg.syn.l4, L4::kTcp);
  EXPECT_LE(leg.syn.sport, FlowEngine::kLastRssPort);
  EXPECT_EQ(lc_[0].engine->stats().rss_port_fallbacks, 0u);
}

TEST_F(FlowEngineRssTest, ASegmentTheNicPutOnAnotherQueueFindsItsOwnerByTheHash) {
  make(2, round_robin(64, 2));
  const Leg leg = open(0, 43000, "p.test");
  ASSERT_EQ(leg.syn.l4, L4::kTcp);
  ASSERT_EQ(rss_->queue_of(leg.back()), 0u);
  // Lcore 1 gets it anyway (a NIC that hashed otherwise): handed to lcore 0.
  Out o = feed(1, synack(leg));
  EXPECT_TRUE(o.wire.empty()) << "no RST from the lcore that does not hold the flow";
  ASSERT_EQ(o.redirects.size(), 1u);
  EXPECT_EQ(o.redirects[0].lcore, 0u);
  o = feed(0, o.redirects[0].frame, false, true);
  ASSERT_EQ(o.wire.size(), 1u);
  EXPECT_EQ(o.wire[0].dport, 443);
  EXPECT_EQ(std::vector<uint8_t>(o.wire[0].payload.begin(), o.wire[0].payload.end()), hello_);
}

TEST_F(FlowEngineRssTest, AnIcmpErrorAboutABackendLegGoesToTheLcoreItsReturnTupleHashesTo) {
  make(2, round_robin(64, 2));
  const Leg leg = open(0, 43100, "p.test");
  ASSERT_EQ(leg.syn.l4, L4::kTcp);
  ASSERT_EQ(rss_->queue_of(leg.back()), 0u);
  // A router's frag-needed about our segment to the backend: the NIC hashes
  // an ICMP error by its addresses alone, so it may land on lcore 1. The
  // port alone names no owner in the RSS range: the quote's return 4-tuple does.
  IcmpTooBig m;
  m.src_mac = kBackendMac;
  m.dst_mac = kOurMac;
  m.from = IpAddr::v4(0x0a0000fe);
  m.to = leg.syn.src;
  m.mtu = 1200;
  m.quoted = FlowKey{leg.syn.src, leg.syn.dst, leg.syn.sport, leg.syn.dport};
  m.quoted_seq = leg.syn.seq;
  m.quoted_length = 1500;
  std::vector<uint8_t> err(kMaxFrame);
  err.resize(build_icmp_too_big(err, m));
  ASSERT_FALSE(err.empty());
  const Out o = feed(1, err);
  ASSERT_EQ(o.redirects.size(), 1u) << "handed to the flow's lcore, not dropped as of no flow";
  EXPECT_EQ(o.redirects[0].lcore, 0u);
  EXPECT_EQ(lc_[1].engine->stats().icmp_too_big_no_flow, 0u);
}

// An error from the client's path reaches an lcore by the router's address
// and ours; the lcore the client's 4-tuple hashes to holds the flow, and
// with the NIC's hash known it alone gets the error. Once the NIC's hash
// has disagreed with ours, every lcore gets a copy instead.
TEST_F(FlowEngineRssTest, AClientLegErrorGoesToTheLcoreTheClientsTupleHashesTo) {
  make(2, round_robin(64, 2));
  uint16_t sport = 43200;
  while (rss_->queue_of(FlowKey{kClient, kVip, sport, 443}) != 0) ++sport;
  const Leg leg = open(0, sport, "p.test");
  ASSERT_EQ(leg.syn.l4, L4::kTcp);
  const uint32_t b = 0x70000000;
  const Packet to_client = feeder_.splice_and_send_down(lc_[0], leg.syn, hello_.size(), b, 1300);
  ASSERT_EQ(to_client.dst, kClient);

  const std::vector<uint8_t> err = router_too_big(to_client, 1000);
  Out o = feed(1, err);
  EXPECT_TRUE(o.wire.empty());
  ASSERT_EQ(o.redirects.size(), 1u);
  EXPECT_EQ(o.redirects[0].lcore, 0u) << "to the client's lcore alone, no copies";
  EXPECT_EQ(lc_[1].engine->stats().icmp_too_big_shared, 0u);
  o = feed(0, o.redirects[0].frame, false, true);
  ASSERT_EQ(o.wire.size(), 1u);
  EXPECT_EQ(o.wire[0].l4, L4::kIcmp);
  EXPECT_EQ(o.wire[0].dst, IpAddr::v4(0x0a000009));
  EXPECT_EQ(o.wire[0].icmp.quote.seq, b + 1);
  EXPECT_EQ(lc_[0].engine->stats().icmp_too_big, 1u);

  // About a client whose tuple hashes to lcore 1, on lcore 1: no flow, said
  // there; handed to lcore 1 from lcore 0 and not found: said there too.
  Packet stranger = to_client;
  stranger.dport = sport + 1;
  while (rss_->queue_of(FlowKey{kClient, kVip, stranger.dport, 443}) != 1) ++stranger.dport;
  o = feed(1, router_too_big(stranger, 1000));
  EXPECT_TRUE(o.redirects.empty());
  EXPECT_EQ(lc_[1].engine->stats().icmp_too_big_no_flow, 1u);
  o = feed(0, router_too_big(stranger, 1000));
  ASSERT_EQ(o.redirects.size(), 1u);
  EXPECT_EQ(o.redirects[0].lcore, 1u);
  feed(1, o.redirects[0].frame, false, true);
  EXPECT_EQ(lc_[1].engine->stats().icmp_too_big_no_flow, 2u);

  // The NIC's hash disagreed with ours: its queue choice is unknown, so the
  // error goes to every lcore.
  const std::vector<uint8_t> seg = backend_segment(false, 20000);
  nic(1, seg, rss_->hash(back_key(false, 20000)) ^ 1);
  nic(1, seg, rss_->hash(back_key(false, 20000)) ^ 1);
  ASSERT_EQ(lc_[1].engine->stats().rss_hash_disabled, 1u);
  o = feed(1, err);
  ASSERT_EQ(o.redirects.size(), 1u);
  EXPECT_EQ(o.redirects[0].lcore, FrameSink::kEveryLcore);
  EXPECT_EQ(lc_[1].engine->stats().icmp_too_big_shared, 1u);
}

TEST_F(FlowEngineRssTest, AStaleSegmentOnItsOwnQueueIsAnsweredThereNotRedirected) {
  make(2, round_robin(64, 2));
  // A backend's segment to an RSS-chosen port that no flow holds (long gone):
  // the lcore the hash names answers it as one lcore does, with a RST. An
  // even port, so that the port rule would have named the other lcore.
  FlowKey k{IpAddr::v4(0x0a000009), kVip, 443, 0};
  for (uint16_t p = FlowEngine::kFirstLocalPort; k.dport == 0; p += 2) {
    const FlowKey t{k.src, k.dst, k.sport, p};
    if (p != kVipPortInRange && rss_->queue_of(t) == 1) k.dport = p;
  }
  const std::vector<uint8_t> seg = frame_of(segment(kBackendMac, kOurMac, k, kTcpAck, 5, 6, 1000, {}));
  Out o = feed(1, seg);
  EXPECT_TRUE(o.redirects.empty());
  ASSERT_EQ(o.wire.size(), 1u);
  EXPECT_EQ(o.wire[0].flags & kTcpRst, kTcpRst);
  o = feed(0, seg);
  EXPECT_TRUE(o.wire.empty());
  ASSERT_EQ(o.redirects.size(), 1u);
  EXPECT_EQ(o.redirects[0].lcore, 1u) << "by the hash, not by port % lcores";
}

TEST_F(FlowEngineRssTest, OwnersOfPortsOutsideTheLocalRangeAndOfTheFallbackRange) {
  make(4, round_robin(128, 4));
  const FlowKey not_local{IpAddr::v4(0x0a000009), kVip, 443, 8080};
  for (uint32_t i = 0; i < 4; ++i) {
    EXPECT_EQ(lc_[i].engine->owner_of(not_local, false), i) << "no owner but the lcore asked";
    FlowKey fb = not_local;
    fb.dport = 60001;  // the fallback range: the port rule
    EXPECT_EQ(lc_[i].engine->owner_of(fb, false), 60001u % 4);
    EXPECT_EQ(lc_[i].engine->owner_of_local_port(60001), 60001u % 4);
    EXPECT_EQ(lc_[i].engine->owner_of_local_port(30000), i) << "the RSS range: the port alone names no lcore";
  }
}

TEST_F(FlowEngineRssTest, WithoutRssEveryLocalPortFollowsThePortRule) {
  make(2, round_robin(64, 2));
  EngineConfig ec = engine_config(*runtime_);
  ec.lcores = 2;
  ec.lcore = 1;
  FlowEngine plain(ec, runtime_);
  const FlowKey k{IpAddr::v4(0x0a000009), kVip, 443, 30000};
  EXPECT_EQ(plain.owner_of(k, false), 0u);
  EXPECT_EQ(plain.owner_of_local_port(30001), 1u);
}

// The NIC's hash of received segments agrees with ours (IPv4, IPv6, a
// VLAN tag): each is counted checked, none mismatched, and legs keep taking
// ports by hash on every lcore.
TEST_F(FlowEngineRssTest, NicHashesThatAgreeWithOursAreCheckedAndSteeringStaysToeplitz) {
  make(2, round_robin(64, 2));
  for (uint32_t i = 0; i < 2; ++i) {
    for (uint16_t k = 0; k < 20; ++k) {
      const bool six = k % 2 == 1;
      const uint16_t port = static_cast<uint16_t>(30000 + k);
      nic(i, backend_segment(six, port, k % 4 == 0 ? 7 : 0), rss_->hash(back_key(six, port)));
    }
    const FrontStats& s = lc_[i].engine->stats();
    EXPECT_EQ(s.rss_hash_checked, 20u) << "lcore " << i;
    EXPECT_EQ(s.rss_hash_mismatches, 0u) << "lcore " << i;
    EXPECT_EQ(s.rss_hash_disabled, 0u) << "lcore " << i;
  }
  for (uint32_t i = 0; i < 2; ++i) {
    for (uint16_t k = 0; k < 4; ++k) {
      const Leg leg = open(i, static_cast<uint16_t>(44000 + 10 * i + k), k % 2 == 0 ? "p.test" : "p6.test");
      ASSERT_EQ(leg.syn.l4, L4::kTcp);
      EXPECT_GE(leg.syn.sport, FlowEngine::kFirstLocalPort);
      EXPECT_LE(leg.syn.sport, FlowEngine::kLastRssPort) << "still chosen by hash";
      EXPECT_EQ(rss_->queue_of(leg.back()), i);
    }
    EXPECT_EQ(lc_[i].engine->stats().rss_port_fallbacks, 0u);
  }
}

// Two segments whose NIC hash is not ours, on one lcore: every lcore takes
// the port rule for its new legs (counted), and the legs opened before go on
// both ways, their segments redirected to the lcore that holds them.
TEST_F(FlowEngineRssTest, TwoWrongNicHashesTurnHashSteeringOffOnEveryLcoreAndOldLegsGoOn) {
  make(2, round_robin(64, 2));
  const Leg old = open(0, 45000, "p.test");
  ASSERT_EQ(old.syn.l4, L4::kTcp);
  ASSERT_LE(old.syn.sport, FlowEngine::kLastRssPort);
  ASSERT_EQ(rss_->queue_of(old.back()), 0u);
  const auto old_hello = static_cast<uint32_t>(hello_.size());

  // One wrong hash is not enough: a leg still gets a port by hash.
  const std::vector<uint8_t> seg = backend_segment(false, 31000);
  const uint32_t ours = rss_->hash(back_key(false, 31000));
  nic(1, seg, ours ^ 0x5a5a5a5a);
  EXPECT_EQ(lc_[1].engine->stats().rss_hash_mismatches, 1u);
  EXPECT_EQ(lc_[1].engine->stats().rss_hash_disabled, 0u);
  const Leg before = open(0, 45001, "p.test");
  ASSERT_EQ(before.syn.l4, L4::kTcp);
  EXPECT_LE(before.syn.sport, FlowEngine::kLastRssPort) << "one mismatch does not turn steering off";

  // The second one does, for every lcore (lcore 0 saw nothing wrong itself).
  nic(1, seg, ours ^ 1);
  EXPECT_EQ(lc_[1].engine->stats().rss_hash_checked, 2u);
  EXPECT_EQ(lc_[1].engine->stats().rss_hash_mismatches, 2u);
  EXPECT_EQ(lc_[1].engine->stats().rss_hash_disabled, 1u) << "the lcore that turned it off says so";
  EXPECT_EQ(lc_[0].engine->stats().rss_hash_disabled, 0u) << "summed over lcores: 1";
  nic(1, seg, ours ^ 2);
  EXPECT_EQ(lc_[1].engine->stats().rss_hash_disabled, 1u) << "set once";
  for (uint32_t i = 0; i < 2; ++i) {
    const uint64_t fallbacks = lc_[i].engine->stats().rss_port_fallbacks;
    for (uint16_t k = 0; k < 4; ++k) {
      const Leg leg = open(i, static_cast<uint16_t>(46000 + 10 * i + k), k % 2 == 0 ? "p.test" : "p6.test");
      ASSERT_EQ(leg.syn.l4, L4::kTcp);
      const uint16_t port = leg.syn.sport;
      EXPECT_GT(port, FlowEngine::kLastRssPort) << "lcore " << i << ": the port rule's own range";
      EXPECT_LE(port, FlowEngine::kLastLocalPort);
      EXPECT_EQ(port % 2, i) << "port % lcores == lcore";
      EXPECT_EQ(lc_[0].engine->owner_of(leg.back(), false), i);
      EXPECT_EQ(lc_[1].engine->owner_of(leg.back(), false), i);
    }
    EXPECT_EQ(lc_[i].engine->stats().rss_port_fallbacks, fallbacks + 4) << "lcore " << i << ": one per leg";
  }

  // The old leg: the NIC (hashing otherwise) puts its backend's segments on
  // lcore 1, which hands them to lcore 0 by our hash.
  const uint32_t b = 0x70000000;
  Out o = feed(1, synack(old));
  ASSERT_EQ(o.redirects.size(), 1u);
  EXPECT_EQ(o.redirects[0].lcore, 0u);
  o = feed(0, o.redirects[0].frame, false, true);
  ASSERT_EQ(o.wire.size(), 1u) << "the hello replayed to the backend";
  EXPECT_EQ(o.wire[0].sport, old.syn.sport);
  EXPECT_EQ(o.wire[0].ack, b + 1);
  const std::string down = "backend to client";
  o = feed(1, frame_of(segment(kBackendMac, kOurMac, old.back(), kTcpAck | kTcpPsh, b + 1,
                               old.syn.seq + 1 + old_hello, 1000,
                               {reinterpret_cast<const uint8_t*>(down.data()), down.size()})));
  ASSERT_EQ(o.redirects.size(), 1u);
  EXPECT_EQ(o.redirects[0].lcore, 0u);
  o = feed(0, o.redirects[0].frame, false, true);
  ASSERT_EQ(o.wire.size(), 1u);
  EXPECT_EQ(o.wire[0].dst, kClient);
  EXPECT_EQ(o.wire[0].dport, 45000);
  EXPECT_EQ(std::string(o.wire[0].payload.begin(), o.wire[0].payload.end()), down);
  // And the client's bytes, on lcore 0, to the backend from the old port.
  const std::string up = "client to backend";
  o = feed(0, frame_of(segment(kClientMac, kOurMac, FlowKey{kClient, kVip, 45000, 443}, kTcpAck | kTcpPsh,
                               1001 + old_hello,
                               old.isn + 1 + static_cast<uint32_t>(down.size()), 64240,
                               {reinterpret_cast<const uint8_t*>(up.data()), up.size()})));
  ASSERT_EQ(o.wire.size(), 1u);
  EXPECT_EQ(o.wire[0].dst, IpAddr::v4(0x0a000009));
  EXPECT_EQ(o.wire[0].sport, old.syn.sport);
  EXPECT_EQ(std::string(o.wire[0].payload.begin(), o.wire[0].payload.end()), up);
  EXPECT_EQ(lc_[0].engine->stats().spliced_to_client, 1u);
  EXPECT_EQ(lc_[0].engine->stats().spliced_to_backend, 1u);
}

// Every frame is checked until 64 have been, then one call in 1,024.
TEST_F(FlowEngineRssTest, AfterTheFirst64ChecksOnlyOneFrameIn1024IsChecked) {
  make(2, round_robin(64, 2));
  const std::vector<uint8_t> seg = backend_segment(false, 32000);
  const uint32_t ours = rss_->hash(back_key(false, 32000));
  std::vector<uint8_t> arp(kMaxFrame);
  arp.resize(build_arp_request(arp, kBackendMac, 0x0a000009, 0x0a000001));
  for (int k = 0; k < 10; ++k) nic(0, arp, 0);  // not hashed by the 4-tuple: no check, none used up
  const FrontStats& s = lc_[0].engine->stats();
  EXPECT_EQ(s.rss_hash_checked, 0u);
  for (uint64_t k = 0; k < FlowEngine::kNicHashFirstChecks; ++k) nic(0, seg, ours);
  EXPECT_EQ(s.rss_hash_checked, 64u);
  for (uint64_t k = 0; k < 4096; ++k) nic(0, seg, ours);
  EXPECT_EQ(s.rss_hash_checked, 64u + 4u);
  EXPECT_EQ(s.rss_hash_mismatches, 0u);
  // The sample still finds a NIC that disagrees: two more sampled checks.
  for (uint64_t k = 0; k < 2048; ++k) nic(0, seg, ours ^ 0x80000000u);
  EXPECT_EQ(s.rss_hash_checked, 64u + 6u);
  EXPECT_EQ(s.rss_hash_mismatches, 2u);
  EXPECT_EQ(s.rss_hash_disabled, 1u);
}

// Frames the NIC does not hash by the TCP 4-tuple, or that are cut short,
// are not compared (a wrong hash with them trips nothing), and nothing past
// a frame's end is read (each prefix is a buffer of its own size: ASan).
// Without EngineConfig::rss nothing is checked at all.
TEST_F(FlowEngineRssTest, FramesNotHashedByTheTcpTupleAndShortFramesAreIgnored) {
  make(2, round_robin(64, 2));
  const FrontStats& s = lc_[0].engine->stats();
  auto wrong = [&](std::vector<uint8_t> f) { nic(0, f, 0xdeadbeef); };
  const std::vector<uint8_t> v4 = backend_segment(false, 33000), v6f = backend_segment(true, 33000),
                             tagged = backend_segment(false, 33000, 9);
  constexpr size_t kIp = 14;
  for (const auto& whole : {v4, v6f, tagged}) {
    // The IP length says more than the frame holds for every prefix that
    // still has the ports; shorter ones lack the headers.
    for (size_t n = 0; n < whole.size(); ++n) wrong(std::vector<uint8_t>(whole.begin(), whole.begin() + n));
  }
  auto mutated = [&](const std::vector<uint8_t>& f, size_t at, uint8_t v) {
    std::vector<uint8_t> m = f;
    m[at] = v;
    return m;
  };
  wrong(mutated(v4, kIp + 0, 0x46));             // IPv4 options
  wrong(mutated(v4, kIp + 0, 0x55));             // not version 4
  wrong(mutated(v4, kIp + 6, 0x20));             // more fragments
  wrong(mutated(v4, kIp + 7, 0x10));             // a fragment offset
  wrong(mutated(v4, kIp + 9, 17));               // UDP
  wrong(mutated(v4, kIp + 9, 1));                // ICMP
  wrong(mutated(v4, kIp + 3, 39));               // a total length shorter than IP + TCP headers
  wrong(mutated(v6f, kIp + 6, 0));               // an IPv6 hop-by-hop header
  wrong(mutated(v6f, kIp + 6, 44));              // an IPv6 fragment header
  wrong(mutated(v6f, kIp + 0, 0x40));            // not version 6
  wrong(mutated(v6f, kIp + 4, 0xff));            // a payload length past the frame
  wrong(mutated(v4, 12, 0x88));                  // another EtherType (0x8800)
  wrong(mutated(tagged, 16, 0x81));              // two VLAN tags (inner type 0x8100)
  std::vector<uint8_t> arp(kMaxFrame);
  arp.resize(build_arp_request(arp, kBackendMac, 0x0a000009, 0x0a000001));
  wrong(arp);
  EXPECT_EQ(s.rss_hash_checked, 0u);
  EXPECT_EQ(s.rss_hash_mismatches, 0u);
  // The whole frames are checked: the cases above were refused for their shape.
  wrong(v4);
  wrong(v6f);
  EXPECT_EQ(s.rss_hash_checked, 2u);
  EXPECT_EQ(s.rss_hash_mismatches, 2u);

  EngineConfig ec = engine_config(*runtime_);
  ec.lcores = 2;
  FlowEngine plain(ec, runtime_);
  plain.check_nic_hash(v4, 0xdeadbeef);
  plain.check_nic_hash(v4, 0xdeadbeef);
  EXPECT_EQ(plain.stats().rss_hash_checked, 0u) << "no Toeplitz steering: nothing to check";
  EXPECT_EQ(plain.stats().rss_hash_disabled, 0u);
}

// The tuple the NIC hashes, as received: the sender's address and port first.
TEST(RssTcpTuple, IsTheSegmentsOwnFourTupleForBothFamiliesAndATag) {
  const FlowKey k4{IpAddr::v4(0x0a000009), kVip, 443, 40001};
  TcpSegment s = segment(kBackendMac, kOurMac, k4, kTcpAck, 1, 2, 1000, {});
  auto t = rss_tcp_tuple(frame_of(s));
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(*t, k4);
  s.vlan = 100;
  t = rss_tcp_tuple(frame_of(s));
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(*t, k4);
  const FlowKey k6{kClient6, kVip6, 50000, 443};
  t = rss_tcp_tuple(frame_of(segment(kClientMac, kOurMac, k6, kTcpSyn, 1, 0, 1000, {})));
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(*t, k6);
  EXPECT_FALSE(rss_tcp_tuple({}).has_value());
}

}  // namespace
}  // namespace lode::front

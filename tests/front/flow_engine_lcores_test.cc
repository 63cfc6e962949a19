// The dpdk front with several polling lcores, as pure logic: two engines
// built from one configuration (lcore 0 and lcore 1 of 2), each with its own
// sinks; a frame one of them redirects (FrameSink::redirect) is recorded and
// fed to the other with on_redirected_frame_in_place, as the rings of
// dpdk_front.cc do. The rings themselves run in e2e.dpdk_lcores.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "controlplane/config.h"
#include "dataplane/front/flow_engine.h"
#include "support/flow_engine_fixture.h"
#include "support/hello_builder.h"

namespace lode::front {
namespace {

using namespace fixture;

const IpAddr kBackend = IpAddr::v4(0x0a000009);  // 10.0.0.9
constexpr uint16_t kVipPortInRange = 20002;      // a VIP port among the local ports

using Sink = RedirectSink;
using Lcore = TestLcore;
using Out = LcoreOut;

class FlowEngineLcoresTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string toml =
        "[[listener]]\nname = \"vip\"\nlisten = [\"10.0.0.1:443\", \"10.0.0.1:" +
        std::to_string(kVipPortInRange) +
        "\"]\n"
        "[[pool]]\nname = \"p\"\nbackends = [\"10.0.0.9:443\"]\n"
        "[[pool]]\nname = \"app\"\nbackends = [\"127.0.0.1:9000\"]\n"
        "[[certificate]]\nname = \"t\"\ncert = \"t.pem\"\nkey = \"t.key\"\n"
        "[[route]]\nname = \"p\"\nnames = [\"p.test\"]\naction = \"passthrough\"\npool = \"p\"\n"
        "[[route]]\nname = \"t\"\nnames = [\"t.test\"]\naction = \"terminate\"\npool = \"app\"\n"
        "certificate = \"t\"\n";
    const auto runtime = runtime_from(toml, "lcores.toml");
    ASSERT_NE(runtime, nullptr);
    EngineConfig ec = engine_config(*runtime);
    ec.max_flows = 1024;
    ec.cookie_key = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3};
    enable_handoff(ec, 2);
    ec.lcores = 2;
    for (uint32_t i = 0; i < 2; ++i) {
      ec.lcore = i;
      lc_[i].engine = std::make_unique<FlowEngine>(ec, runtime);
      lc_[i].wire.exception = &lc_[i].exc;
    }
  }

  static std::vector<uint8_t> build(const TcpSegment& s) { return frame_of(s); }
  TcpSegment client(uint16_t sport, uint8_t flags, uint32_t seq, uint32_t ack,
                    std::span<const uint8_t> payload = {}) const {
    return segment(kClientMac, kOurMac,
                   FlowKey{kClient, kVip, sport, 443},
                   flags, seq, ack, 64240, payload);
  }
  // What a backend (or, with exception, a worker) sends to our local port.
  static TcpSegment backend(const Packet& our_syn, uint8_t flags, uint32_t seq, uint32_t ack,
                            std::span<const uint8_t> payload = {}, bool exception = false) {
    return segment(exception ? kKernelMac : kBackendMac, exception ? kExcMac : kOurMac,
                   FlowKey{our_syn.dst, our_syn.src, our_syn.dport, our_syn.sport},
                   flags, seq, ack, 1000, payload);
  }

  // A frame into lcore i (LcoreFeeder::feed).
  Out feed(uint32_t i, std::vector<uint8_t> frame, bool exception = false, bool redirected = false) {
    return feeder_.feed(lc_[i], std::move(frame), exception, redirected);
  }

  // A client flow on lcore i up to our SYN to its backend (passthrough,
  // p.test) or to a worker (t.test): the neighbour's ARP answered when it is
  // asked. Returns our SYN; sets isn (our cookie ISN towards the client).
  Packet open(uint32_t i, uint16_t sport, const std::string& sni, uint32_t& isn) {
    const bool handoff = sni == "t.test";
    auto sa = feed(i, build(client(sport, kTcpSyn, 1000, 0)));
    EXPECT_EQ(sa.wire.size(), 1u);
    if (sa.wire.empty()) return {};
    isn = sa.wire[0].seq;
    EXPECT_TRUE(feed(i, build(client(sport, kTcpAck, 1001, isn + 1))).wire.empty());
    hello_ = test::HelloBuilder().sni(sni).records();
    Out o = feed(i, build(client(sport, kTcpAck | kTcpPsh, 1001, isn + 1, hello_)));
    const std::vector<Packet>& toward = handoff ? o.exc : o.wire;
    for (const Packet& p : toward) {
      if (p.l4 == L4::kTcp && (p.flags & kTcpSyn)) return p;
    }
    for (const Packet& p : toward) {
      if (p.l3 != L3::kArp) continue;
      std::vector<uint8_t> reply(64);
      reply.resize(build_arp_reply(reply, p, handoff ? kKernelMac : kBackendMac, p.arp.target_ip));
      o = feed(i, reply, handoff);
      // The answer went to every other lcore too (any may have asked).
      EXPECT_EQ(o.redirects.size(), 1u);
      if (!o.redirects.empty()) EXPECT_EQ(o.redirects[0].lcore, FrameSink::kEveryLcore);
      for (const Packet& q : handoff ? o.exc : o.wire) {
        if (q.l4 == L4::kTcp && (q.flags & kTcpSyn)) return q;
      }
    }
    ADD_FAILURE() << "no SYN towards the " << (handoff ? "worker" : "backend");
    return {};
  }

  Lcore lc_[2];
  LcoreFeeder feeder_;
  test::Bytes hello_;
};

TEST_F(FlowEngineLcoresTest, EachLcoreTakesOnlyItsOwnLocalPortsAndNeverAVipPort) {
  for (uint32_t i = 0; i < 2; ++i) {
    for (uint16_t k = 0; k < 40; ++k) {
      uint32_t isn = 0;
      const std::string sni = k % 2 == 0 ? "p.test" : "t.test";
      const Packet syn = open(i, static_cast<uint16_t>(41000 + k), sni, isn);
      ASSERT_EQ(syn.l4, L4::kTcp) << "lcore " << i << " flow " << k;
      EXPECT_EQ(syn.sport % 2, i) << "lcore " << i << " took local port " << syn.sport;
      EXPECT_GE(syn.sport, FlowEngine::kFirstLocalPort);
      EXPECT_LE(syn.sport, FlowEngine::kLastLocalPort);
      EXPECT_NE(syn.sport, kVipPortInRange) << "a VIP's port is never a local port";
      EXPECT_EQ(lc_[i].engine->owner_of_local_port(syn.sport), i);
      EXPECT_EQ(lc_[1 - i].engine->owner_of_local_port(syn.sport), i);
    }
  }
  EXPECT_EQ(lc_[0].engine->flows(), 40u);
  EXPECT_EQ(lc_[1].engine->flows(), 40u);
}

TEST_F(FlowEngineLcoresTest, PassthroughReturnTrafficOnTheWrongLcoreIsRedirectedAndForwarded) {
  uint32_t isn = 0;
  const Packet syn = open(0, 40000, "p.test", isn);
  ASSERT_EQ(syn.l4, L4::kTcp);
  ASSERT_EQ(syn.sport % 2, 0);
  const uint32_t b = 0x70000000;
  // The backend's SYN-ACK lands on lcore 1's queue: not dropped, no RST,
  // handed to lcore 0 as it came.
  const std::vector<uint8_t> synack = build(backend(syn, kTcpSyn | kTcpAck, b, syn.seq + 1));
  Out o = feed(1, synack);
  EXPECT_TRUE(o.wire.empty()) << "nothing sent by the lcore that does not hold the flow";
  EXPECT_TRUE(o.exc.empty());
  ASSERT_EQ(o.redirects.size(), 1u);
  EXPECT_EQ(o.redirects[0].lcore, 0u);
  EXPECT_EQ(o.redirects[0].frame, synack) << "the frame unchanged";
  EXPECT_EQ(lc_[1].engine->stats().redirected_out, 1u);
  EXPECT_EQ(lc_[1].engine->stats().rx_not_vip, 0u);
  // Lcore 0 takes it: the replay of the hello goes to the backend.
  const uint64_t rx0 = lc_[0].engine->stats().rx_frames;
  o = feed(0, o.redirects[0].frame, false, true);
  ASSERT_EQ(o.wire.size(), 1u);
  EXPECT_EQ(o.wire[0].dst, kBackend);
  EXPECT_EQ(o.wire[0].sport, syn.sport);
  EXPECT_EQ(o.wire[0].ack, b + 1);
  EXPECT_EQ(std::vector<uint8_t>(o.wire[0].payload.begin(), o.wire[0].payload.end()), hello_);
  EXPECT_TRUE(o.redirects.empty());
  EXPECT_EQ(lc_[0].engine->stats().redirected_in, 1u);
  EXPECT_EQ(lc_[0].engine->stats().rx_frames, rx0) << "counted where it was received";
  // The backend's data, on lcore 1 again: redirected, then translated by
  // lcore 0 towards the client.
  const std::string data = "the backend's first bytes";
  const std::vector<uint8_t> seg =
      build(backend(syn, kTcpAck | kTcpPsh, b + 1, syn.seq + 1 + u32(hello_.size()),
                    {reinterpret_cast<const uint8_t*>(data.data()), data.size()}));
  o = feed(1, seg);
  EXPECT_TRUE(o.wire.empty());
  ASSERT_EQ(o.redirects.size(), 1u);
  EXPECT_EQ(o.redirects[0].lcore, 0u);
  o = feed(0, o.redirects[0].frame, false, true);
  ASSERT_EQ(o.wire.size(), 1u);
  const Packet& c = o.wire[0];
  EXPECT_EQ(c.src, kVip);
  EXPECT_EQ(c.dst, kClient);
  EXPECT_EQ(c.sport, 443);
  EXPECT_EQ(c.dport, 40000);
  EXPECT_EQ(c.dst_mac, kClientMac);
  EXPECT_EQ(c.seq, isn + 1) << "the backend's sequence moved into ours";
  EXPECT_EQ(std::string(c.payload.begin(), c.payload.end()), data);
  EXPECT_EQ(lc_[0].engine->stats().spliced_to_client, 1u);
  EXPECT_EQ(lc_[0].engine->stats().redirected_in, 2u);
  EXPECT_EQ(lc_[1].engine->stats().redirected_out, 2u);
  EXPECT_EQ(lc_[1].engine->stats().spliced_to_client, 0u);
  EXPECT_EQ(lc_[1].engine->flows(), 0u);
}

TEST_F(FlowEngineLcoresTest, AWorkersSegmentOnTheWrongLcoreIsRedirectedThroughTheExceptionPath) {
  uint32_t isn = 0;
  const Packet syn = open(1, 40001, "t.test", isn);
  ASSERT_EQ(syn.l4, L4::kTcp);
  ASSERT_EQ(syn.sport % 2, 1) << "the hand-off's port on the exception link is lcore 1's too";
  const uint32_t w = 0x12345678;
  const std::vector<uint8_t> synack =
      build(backend(syn, kTcpSyn | kTcpAck, w, syn.seq + 1, {}, true));
  Out o = feed(0, synack, true);
  EXPECT_TRUE(o.exc.empty()) << "no RST to the worker from the lcore that does not hold the flow";
  EXPECT_TRUE(o.wire.empty());
  ASSERT_EQ(o.redirects.size(), 1u);
  EXPECT_EQ(o.redirects[0].lcore, 1u);
  EXPECT_EQ(lc_[0].engine->stats().exception_stray, 0u);
  o = feed(1, o.redirects[0].frame, true, true);
  ASSERT_GE(o.exc.size(), 1u) << "the PROXY header and the hello to the worker";
  EXPECT_EQ(o.exc[0].dst, IpAddr::v4(kKernelAddr));
  EXPECT_EQ(o.exc[0].ack, w + 1);
  EXPECT_EQ(lc_[1].engine->stats().redirected_in, 1u);
}

TEST_F(FlowEngineLcoresTest, APortOfNoFlowThatMapsToItsOwnLcoreGetsWhatOneLcoreAnswers) {
  // To the VIP at local port 20001 (lcore 1's), no flow: lcore 1 answers as
  // a single lcore does (a RST), lcore 0 hands it to lcore 1.
  TcpSegment s;
  s.src_mac = kBackendMac;
  s.dst_mac = kOurMac;
  s.flow = FlowKey{kBackend, kVip, 443, 20001};
  s.seq = 5;
  s.ack = 6;
  s.flags = kTcpAck;
  Out o = feed(1, build(s));
  ASSERT_EQ(o.wire.size(), 1u);
  EXPECT_EQ(o.wire[0].flags & kTcpRst, kTcpRst);
  EXPECT_TRUE(o.redirects.empty());
  EXPECT_EQ(lc_[1].engine->stats().rx_not_vip, 1u);
  o = feed(0, build(s));
  EXPECT_TRUE(o.wire.empty());
  ASSERT_EQ(o.redirects.size(), 1u);
  EXPECT_EQ(o.redirects[0].lcore, 1u);
  // Redirected to lcore 0 anyway (never by our rule): answered there, never
  // sent on again (a frame crosses at most once).
  o = feed(0, build(s), false, true);
  ASSERT_EQ(o.wire.size(), 1u);
  EXPECT_EQ(o.wire[0].flags & kTcpRst, kTcpRst);
  EXPECT_TRUE(o.redirects.empty());
  // A port outside the local range, no VIP on it: no owner but this lcore.
  s.flow.dport = 8080;
  o = feed(0, build(s));
  EXPECT_TRUE(o.redirects.empty());
  ASSERT_EQ(o.wire.size(), 1u);
  // The worker's segment of a flow nobody holds, on its owner: RST on the link.
  s.src_mac = kKernelMac;
  s.dst_mac = kExcMac;
  s.flow = FlowKey{IpAddr::v4(kKernelAddr), IpAddr::v4(kExcAddr), 20443, 20001};
  o = feed(1, build(s), true);
  ASSERT_EQ(o.exc.size(), 1u);
  EXPECT_EQ(o.exc[0].flags & kTcpRst, kTcpRst);
  EXPECT_EQ(lc_[1].engine->stats().exception_stray, 1u);
}

TEST_F(FlowEngineLcoresTest, AFullRingDropsAndCountsWithoutAnswering) {
  uint32_t isn = 0;
  const Packet syn = open(0, 40002, "p.test", isn);
  ASSERT_EQ(syn.l4, L4::kTcp);
  lc_[1].wire.accept_redirects = false;
  Out o = feed(1, build(backend(syn, kTcpSyn | kTcpAck, 1, syn.seq + 1)));
  EXPECT_TRUE(o.wire.empty()) << "no RST for the flow another lcore holds";
  EXPECT_EQ(lc_[1].engine->stats().redirect_drops, 1u);
  EXPECT_EQ(lc_[1].engine->stats().redirected_out, 0u);
  EXPECT_EQ(lc_[0].engine->flows(), 1u)
      << "the flow lives on (the backend sends its SYN-ACK again)";
}

TEST_F(FlowEngineLcoresTest, ACookieMadeOnOneLcoreCompletesOnTheOther) {
  auto sa = feed(0, build(client(40003, kTcpSyn, 5000, 0)));
  ASSERT_EQ(sa.wire.size(), 1u);
  const uint32_t isn = sa.wire[0].seq;
  EXPECT_TRUE(feed(1, build(client(40003, kTcpAck, 5001, isn + 1))).wire.empty());
  EXPECT_EQ(lc_[1].engine->stats().flows_created, 1u);
  EXPECT_EQ(lc_[1].engine->stats().cookie_invalid, 0u);
  EXPECT_EQ(lc_[1].engine->flows(), 1u);
  EXPECT_EQ(lc_[0].engine->flows(), 0u);
}

TEST_F(FlowEngineLcoresTest, AnArpAnswerToOneLcoresRequestReachesItFromTheOther) {
  // Lcore 1 asks for the backend's MAC; the answer lands on lcore 0, which
  // copies it to every lcore; lcore 1 takes its copy and sends its SYN.
  const std::vector<uint8_t> h = test::HelloBuilder().sni("p.test").records();
  auto sa = feed(1, build(client(40004, kTcpSyn, 1000, 0)));
  ASSERT_EQ(sa.wire.size(), 1u);
  const uint32_t isn = sa.wire[0].seq;
  feed(1, build(client(40004, kTcpAck, 1001, isn + 1)));
  Out o = feed(1, build(client(40004, kTcpAck | kTcpPsh, 1001, isn + 1, h)));
  const Packet* arp = nullptr;
  for (const Packet& p : o.wire) {
    if (p.l3 == L3::kArp) arp = &p;
  }
  ASSERT_NE(arp, nullptr);
  std::vector<uint8_t> reply(64);
  reply.resize(build_arp_reply(reply, *arp, kBackendMac, arp->arp.target_ip));
  o = feed(0, reply);
  ASSERT_EQ(o.redirects.size(), 1u);
  EXPECT_EQ(o.redirects[0].lcore, FrameSink::kEveryLcore);
  EXPECT_EQ(lc_[0].engine->stats().redirected_out, 1u);
  o = feed(1, o.redirects[0].frame, false, true);
  ASSERT_EQ(o.wire.size(), 1u);
  EXPECT_EQ(o.wire[0].flags, kTcpSyn);
  EXPECT_EQ(o.wire[0].dst, kBackend);
  EXPECT_EQ(o.wire[0].dst_mac, kBackendMac);
  EXPECT_TRUE(o.redirects.empty()) << "a copy is not copied again";
}

// A router on the client's path cannot pass the backend's bytes on. Its
// error carries the router's address and ours, no ports of the flow, so the
// queue it lands on says nothing of the flow's lcore; without an RSS hash we
// know (the tap's queue choice) the lcore that holds no flow copies it to
// every other lcore, and only the holder answers.
TEST_F(FlowEngineLcoresTest, AClientLegErrorOnAnotherLcoreIsCopiedToEveryLcoreAndRelayedByTheHolder) {
  uint32_t isn = 0;
  const Packet syn = open(0, 40005, "p.test", isn);
  ASSERT_EQ(syn.l4, L4::kTcp);
  const uint32_t b = 0x70000000;
  const Packet to_client = feeder_.splice_and_send_down(lc_[0], syn, hello_.size(), b, 1300);
  ASSERT_EQ(to_client.dst, kClient);

  const std::vector<uint8_t> err = router_too_big(to_client, 1000);
  Out o = feed(1, err);
  EXPECT_TRUE(o.wire.empty()) << "the lcore without the flow answers nothing";
  ASSERT_EQ(o.redirects.size(), 1u);
  EXPECT_EQ(o.redirects[0].lcore, FrameSink::kEveryLcore);
  EXPECT_EQ(o.redirects[0].frame, err);
  EXPECT_EQ(lc_[1].engine->stats().icmp_too_big_shared, 1u);
  EXPECT_EQ(lc_[1].engine->stats().icmp_too_big_no_flow, 0u);
  // The holder relays it to the backend, in the backend's terms.
  o = feed(0, o.redirects[0].frame, false, true);
  ASSERT_EQ(o.wire.size(), 1u);
  const Packet& e = o.wire[0];
  EXPECT_EQ(e.l4, L4::kIcmp);
  EXPECT_EQ(e.dst, kBackend);
  EXPECT_EQ(e.icmp.next_hop_mtu, 1280u) << "a client path's error tells a backend 1280 at least";
  ASSERT_EQ(e.icmp.quote.status, IcmpQuote::Status::kTcp);
  EXPECT_EQ(e.icmp.quote.src, kBackend);
  EXPECT_EQ(e.icmp.quote.dport, syn.sport);
  EXPECT_EQ(e.icmp.quote.seq, b + 1);
  EXPECT_TRUE(o.redirects.empty()) << "a copy is not copied again";
  EXPECT_EQ(lc_[0].engine->stats().icmp_too_big, 1u);

  // An error about no client of either lcore: copied, and the copy found
  // nothing, which only the copier counted (as shared).
  Packet stranger = to_client;
  stranger.dport = 40999;
  o = feed(1, router_too_big(stranger, 1000));
  ASSERT_EQ(o.redirects.size(), 1u);
  o = feed(0, o.redirects[0].frame, false, true);
  EXPECT_TRUE(o.wire.empty());
  EXPECT_EQ(lc_[0].engine->stats().icmp_too_big_no_flow, 0u);
  EXPECT_EQ(lc_[1].engine->stats().icmp_too_big_no_flow, 0u);
  EXPECT_EQ(lc_[1].engine->stats().icmp_too_big_shared, 2u);

  // A flood of them costs the other lcores at most the ICMP rate: the
  // bucket's burst (50, none refilled at one instant), then nothing.
  size_t copied = 0;
  for (int i = 0; i < 100; ++i) copied += feed(1, router_too_big(stranger, 1000)).redirects.size();
  EXPECT_EQ(copied, 48u) << "50 in the burst, 2 taken above";
  EXPECT_EQ(lc_[1].engine->stats().icmp_rate_limited, 52u);
}

TEST_F(FlowEngineLcoresTest, ALocalPortNamesItsLcoreOtherPortsNameTheOneAsked) {
  EXPECT_EQ(lc_[1].engine->owner_of_local_port(20000), 0u);
  EXPECT_EQ(lc_[0].engine->owner_of_local_port(20001), 1u);
  EXPECT_EQ(lc_[0].engine->owner_of_local_port(60999), 1u);
  EXPECT_EQ(lc_[0].engine->owner_of_local_port(19999), 0u);
  EXPECT_EQ(lc_[1].engine->owner_of_local_port(19999), 1u)
      << "below the local ports: the lcore's own";
  EXPECT_EQ(lc_[1].engine->owner_of_local_port(61000), 1u) << "above them too";
}

}  // namespace
}  // namespace lode::front

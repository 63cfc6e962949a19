// The dpdk front's flow engine on packet fixtures, the cases issue 6 lists:
// crafted frames into the real engine, what comes out parsed and compared.
//
// Every frame here goes through three engines built alike: one takes it by
// the copy path (on_frame / on_exception_frame, a sink that never sends in
// place), one by the in-place path (on_frame_in_place: the fast path of
// flow_engine_forward.cc or the full path's rewrite_tcp), one by the
// in-place path with the NIC's L4 checksum flag set. Every frame they send
// must be the same, byte for byte (seq, ack, SACK, timestamps, window,
// checksums), and so must their counters (forwarded_in_place aside) and flow
// counts: each splice case below is also a copy-vs-in-place check.
//
// Index: issue 6's packet-fixture list -> the tests that cover it.
//   SYN retransmit, across the cookie slot boundary
//       FlowEngineFixtureTest.SynRetransmitSameCookieInASlotAndEitherCookieAcrossTheBoundary
//       FlowEngineTest.CookieFromARetransmittedSynAcrossTheSlotBoundary (flow_engine_test.cc)
//       SynCookieTest.SynRetransmitAcrossTheSlotBoundary (syn_cookie_test.cc)
//   SYN without MSS; options absent
//       FlowEngineFixtureTest.SynWithoutAnyOptionSplicesWithDefaults
//   wscale > 14
//       FlowEngineFixtureTest.WindowScaleAbove14IsUsedAs14BothWays
//       SynCookieTest.WindowScaleAbove14IsCappedAt14
//   forged-ACK flood dropped
//       FlowEngineFixtureTest.ForgedAckFloodCreatesNothingOnAnyPath
//       FlowEngineTest.ForgedAcksAreDroppedSilentlyAndCreateNothing, SynCookieTest.ForgedAckFloodAcceptsAlmostNone
//   pure ACK then data
//       FlowEngineFixtureTest.PureAckThenDataAndDataOnTheCookieAck
//   keep-alive at SND.NXT-1
//       FlowEngineFixtureTest.KeepAliveWhileCollectingGetsAnAck
//       FlowEngineFixtureTest.KeepAlivesOfASplicedFlowPassBothWays
//   hello over 2+ segments and 2+ records; record header split across segments
//       FlowEngineFixtureTest.HelloInRecordsAndSegmentsSplitInARecordHeaderIsReplayedExactly
//   out-of-order and duplicate segments
//       FlowEngineFixtureTest.HelloInRecordsAndSegmentsSplitInARecordHeaderIsReplayedExactly (reversed, repeated)
//       FlowEngineTest.HelloInThreeSegmentsOutOfOrderAndDuplicated, CollectorTest.*
//   overlapping retransmit with other bytes (first win; the replay = the parsed bytes)
//       FlowEngineFixtureTest.OverlappingRetransmitFirstBytesWinAndAreReplayed
//       FlowEngineTest.OverlappingRetransmitWithOtherBytesDoesNotChangeTheHello
//   data after the hello
//       FlowEngineFixtureTest.DataAfterTheHelloIsReplayedWithIt
//   FIN or RST while collecting
//       FlowEngineFixtureTest.FinWithDataOrRstWhileCollecting, FlowEngineTest.ClientFinOrRstWhileCollecting
//   hello timeout
//       FlowEngineFixtureTest.HelloTimeoutResetsAndLeavesNoFlow, FlowEngineTest.HelloTimeoutResets
//   SSLv2 / non-TLS first byte
//       FlowEngineFixtureTest.NonTlsFirstBytesEndTheFlowNeverSpliced
//       FlowEngineTest.PlainHttpGets400AndOtherNonTlsAReset
//   backend SYN lost (retransmitted)
//       FlowEngineFixtureTest.LostBackendSynIsSentAgainThenSplices
//       PassthroughTest.LostReplayIsSentAgainAndALostSynToo, HandoffTest.LostReplayGoesAgainWithTheHeader
//   backend RST
//       FlowEngineFixtureTest.BackendRstWhileSplicedResetsTheClient
//       PassthroughTest.RefusedBackendResetsTheClientAndRstsPassBoth, HandoffTest.WorkerRstResetsTheClientAndEndsTheFlow
//   window-scale mismatch with rescale rounding
//       FlowEngineFixtureTest.WindowRescaleRoundsDownButNeverToZero
//       FlowEngineFixtureTest.WindowScaleAbove14IsUsedAs14BothWays
//   SACK / D-SACK translation; sequence wrap at 2^32
//       FlowEngineFixtureTest.SackDsackTimestampsAndSequencesWrapBothWays
//       FlowEngineTest.SequenceNumbersWrapAroundZero (collecting), HandoffTest.SequenceSpacesBothWaysWithSack
//   PROXY header offset (hand-off)
//       FlowEngineFixtureTest.HandoffProxyHeaderOffsetBothWaysInPlaceAndCopied
//       HandoffTest.ReplayIsTheProxyHeaderThenExactlyTheHello, HandoffTest.SequenceSpacesBothWaysWithSack
//   malformed TCP option lists
//       FlowEngineFixtureTest.MalformedOptionListsAreDroppedOnEveryPath, PacketTcpOptionsTest.MalformedLists
//   bad RX checksum never "repaired"
//       FlowEngineFixtureTest.BadChecksumIsNeverRepaired
//       FlowEngineTest.BadChecksumIsDroppedNeverRepaired, PassthroughTest.FastPathWritesWhatRewriteTcpWrites
//   ARP for the VIP
//       FlowEngineFixtureTest.ArpForTheVipOnEveryPath, FlowEngineTest.ArpForTheVipIsAnsweredOthersAreNot
//   flows created = flows ended, nothing held (the flows_ended counter)
//       FlowEngineFixtureTest.ManyPassthroughFlowsEndWithNoneLeft, and every test that calls expect_no_flows_left()
//   copy path vs in-place path: every test in this file (see above); 802.1Q-tagged flows
//       FlowEngineFixtureTest.VlanTaggedFlowKeepsItsTagBothWays
//   wrong-lcore return traffic: helper H3's tests, not here
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "controlplane/config.h"
#include "dataplane/front/flow_engine.h"
#include "support/flow_engine_fixture.h"
#include "support/hello_builder.h"

namespace lode::front {
namespace {

using namespace fixture;

constexpr uint32_t kBackendIp = 0x0a000009;  // 10.0.0.9
constexpr uint8_t kOurWscale = 7;            // EngineConfig's default

using Bytes = std::vector<uint8_t>;
std::span<const uint8_t> as_bytes(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }
std::span<const uint8_t> as_bytes(std::string&&) = delete;  // a view of a temporary would dangle
// A string literal's bytes (its NUL left out).
template <size_t N>
std::span<const uint8_t> as_bytes(const char (&s)[N]) {
  return {reinterpret_cast<const uint8_t*>(s), N - 1};
}
using Sink = RecordingSink;

// How a lane's engine takes its frames.
enum class Path { kCopy, kInPlace, kInPlaceL4Verified };
const char* name_of(Path p) {
  return p == Path::kCopy ? "copy" : p == Path::kInPlace ? "in place" : "in place, L4 verified";
}

struct Lane {
  Path path = Path::kCopy;
  std::unique_ptr<FlowEngine> engine;
  Sink wire, exc;
  std::deque<Bytes> rx;  // received frames (in place: what the engine rewrote)
};

// A frame's TCP fields, for a readable failure.
std::string describe(const Bytes& f) {
  const Packet p = parse_frame(f, false);
  if (!p.ok()) return "unparsed (" + std::string(to_string(p.error)) + ")";
  if (p.l4 != L4::kTcp) return "not TCP";
  char b[256];
  std::snprintf(b, sizeof b, "seq %u ack %u flags %02x win %u ts %d/%u/%u sack %u len %zu", p.seq, p.ack, p.flags,
                p.window, p.options.has_timestamps, p.options.ts_val, p.options.ts_ecr, p.options.sack_count,
                p.payload.size());
  std::string s = b;
  for (uint8_t i = 0; i < p.options.sack_count && i < 4; ++i) {
    s += " [" + std::to_string(p.options.sack[i].left) + "," + std::to_string(p.options.sack[i].right) + ")";
  }
  return s;
}

void expect_same_stats(const FrontStats& a, const FrontStats& b, const char* lane) {
#define LODE_FRONT_COMPARE(name, help)                                               \
  if (std::string_view(#name) != "forwarded_in_place") {                             \
    EXPECT_EQ(a.name, b.name) << #name << " on the " << lane << " lane";            \
  }
  LODE_FRONT_COUNTERS(LODE_FRONT_COMPARE)
#undef LODE_FRONT_COMPARE
}

// The TCP checksum of a v4 frame without a VLAN tag, recomputed.
void fix_tcp_checksum(Bytes& f) {
  const size_t ip = 14, tcp = ip + 20;
  const size_t total = size_t{f[ip + 2]} << 8 | f[ip + 3];
  f[tcp + 16] = f[tcp + 17] = 0;
  const uint16_t ck = l4_checksum(IpAddr::v4(uint32_t{f[ip + 12]} << 24 | uint32_t{f[ip + 13]} << 16 |
                                             uint32_t{f[ip + 14]} << 8 | f[ip + 15]),
                                  IpAddr::v4(uint32_t{f[ip + 16]} << 24 | uint32_t{f[ip + 17]} << 16 |
                                             uint32_t{f[ip + 18]} << 8 | f[ip + 19]),
                                  6, std::span<const uint8_t>(&f[tcp], total - 20));
  f[tcp + 16] = static_cast<uint8_t>(ck >> 8);
  f[tcp + 17] = static_cast<uint8_t>(ck);
}

class FlowEngineFixtureTest : public ::testing::Test {
 protected:
  void SetUp() override { make(); }

  void make(uint32_t hello_ms = 5000) {
    const std::string toml =
        "[[listener]]\nname = \"vip\"\nlisten = [\"10.0.0.1:443\"]\n"
        "[[pool]]\nname = \"p\"\nbackends = [\"10.0.0.9:443\"]\n"
        "[[pool]]\nname = \"app\"\nbackends = [\"127.0.0.1:9000\"]\n"
        "[[certificate]]\nname = \"t\"\ncert = \"t.pem\"\nkey = \"t.key\"\n"
        "[[route]]\nname = \"r\"\nnames = [\"r.test\"]\naction = \"reject\"\n"
        "[[route]]\nname = \"p\"\nnames = [\"p.test\"]\naction = \"passthrough\"\npool = \"p\"\n"
        "[[route]]\nname = \"t\"\nnames = [\"t.test\"]\naction = \"terminate\"\npool = \"app\"\n"
        "certificate = \"t\"\n"
        "[timeouts]\nhello_ms = " +
        std::to_string(hello_ms) + "\n";
    const auto runtime = runtime_from(toml, "fixtures.toml");
    ASSERT_NE(runtime, nullptr);
    EngineConfig ec = engine_config(*runtime);
    ec.max_flows = 256;
    ec.cookie_key = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    enable_handoff(ec, 1);
    ec.next_hops.vlan = backend_vlan_;
    for (size_t i = 0; i < lanes_.size(); ++i) {
      Lane& l = lanes_[i];
      l.path = static_cast<Path>(i);
      l.engine = std::make_unique<FlowEngine>(ec, runtime);
      l.wire.exception = &l.exc;
      l.wire.in_place = l.exc.in_place = l.path != Path::kCopy;
    }
  }

  struct Out {
    std::vector<Packet> wire, exc;
  };

  // The same frame into every lane (each its own copy of it). `compare`:
  // every lane must send what the copy lane sent, byte for byte.
  Out feed(const Bytes& frame, uint64_t now, bool from_exception, bool compare = true) {
    for (Lane& l : lanes_) {
      l.wire.frames.clear();
      l.exc.frames.clear();
      l.rx.push_back(frame);
      std::span<uint8_t> f = l.rx.back();
      const bool verified = l.path == Path::kInPlaceL4Verified;
      if (l.path == Path::kCopy) {
        if (from_exception) {
          l.engine->on_exception_frame(f, now, l.wire);
        } else {
          l.engine->on_frame(f, now, l.wire);
        }
      } else if (from_exception) {
        l.engine->on_exception_frame_in_place(f, now, l.wire, verified);
      } else {
        l.engine->on_frame_in_place(f, now, l.wire, verified);
      }
    }
    if (compare) compare_lanes();
    return collect(lanes_[0]);
  }
  Out tick(uint64_t now) {
    for (Lane& l : lanes_) {
      l.wire.frames.clear();
      l.exc.frames.clear();
      l.engine->on_tick(now, l.wire);
    }
    compare_lanes();
    return collect(lanes_[0]);
  }
  void compare_lanes() {
    const Lane& c = lanes_[0];
    for (size_t i = 1; i < lanes_.size(); ++i) {
      const Lane& l = lanes_[i];
      SCOPED_TRACE(name_of(l.path));
      for (auto [got, want] : {std::pair{&l.wire.frames, &c.wire.frames}, std::pair{&l.exc.frames, &c.exc.frames}}) {
        EXPECT_EQ(got->size(), want->size());
        for (size_t k = 0; k < std::min(got->size(), want->size()); ++k) {
          EXPECT_TRUE((*got)[k] == (*want)[k]) << "frame " << k << "\n  " << name_of(l.path) << ": "
                                               << describe((*got)[k]) << "\n  copy: " << describe((*want)[k]);
        }
      }
      expect_same_stats(l.engine->stats(), c.engine->stats(), name_of(l.path));
      EXPECT_EQ(l.engine->flows(), c.engine->flows());
    }
  }
  Out collect(const Lane& l) {
    Out o;
    for (const auto& f : l.wire.frames) o.wire.push_back(parse_frame(keep(f)));
    for (const auto& f : l.exc.frames) o.exc.push_back(parse_frame(keep(f)));
    for (auto* v : {&o.wire, &o.exc}) {
      for (const Packet& p : *v) EXPECT_TRUE(p.ok()) << to_string(p.error);
    }
    // Every frame on the VLAN of the end it goes to.
    for (const Packet& p : o.exc) EXPECT_EQ(p.vlan, 0) << "the exception link is untagged";
    for (const Packet& p : o.wire) {
      if (p.dst_mac == kClientMac) EXPECT_EQ(p.vlan, vlan_) << "the client's VLAN";
      if (p.dst_mac == kBackendMac) EXPECT_EQ(p.vlan, backend_vlan_) << "the backends' VLAN";
    }
    return o;
  }
  std::span<const uint8_t> keep(const Bytes& f) {
    outs_.push_back(f);
    return outs_.back();
  }
  static Bytes frame_of(const TcpSegment& s) { return fixture::frame_of(s, kMaxFrame + 9000); }
  Out wire(const TcpSegment& s, uint64_t now = kT) { return feed(frame_of(s), now, false); }
  Out exc(const TcpSegment& s, uint64_t now = kT) { return feed(frame_of(s), now, true); }

  TcpSegment client(uint8_t flags, uint32_t seq, uint32_t ack, std::span<const uint8_t> payload = {}) const {
    TcpSegment s = segment(kClientMac, kOurMac,
                           FlowKey{kClient, kVip, sport_, 443},
                           flags, seq, ack, 502, payload);
    s.vlan = vlan_;
    if (client_ts_) {
      s.options.has_timestamps = true;
      s.options.ts_val = client_tsval_;
      s.options.ts_ecr = tsecr_;
    }
    return s;
  }
  TcpSegment backend(uint8_t flags, uint32_t seq, uint32_t ack, std::span<const uint8_t> payload = {}) const {
    TcpSegment s = segment(kBackendMac, kOurMac,
                           FlowKey{IpAddr::v4(kBackendIp), kVip, 443, backend_syn_.sport},
                           flags, seq, ack, 1000, payload);
    s.vlan = backend_vlan_;
    return s;
  }
  TcpSegment worker(uint8_t flags, uint32_t seq, uint32_t ack, std::span<const uint8_t> payload = {}) const {
    TcpSegment s = backend(flags, seq, ack, payload);
    s.src_mac = kKernelMac;
    s.dst_mac = kExcMac;
    s.vlan = 0;  // the exception link is untagged
    s.flow = FlowKey{IpAddr::v4(kKernelAddr), IpAddr::v4(kExcAddr), backend_syn_.dport, backend_syn_.sport};
    return s;
  }

  uint64_t vlan_round_trip(uint16_t client_vlan, uint16_t backends);

  // The client's SYN (its options in `syn`), the SYN-ACK (isn_), the cookie's ACK.
  Packet handshake(TcpOptions syn, uint64_t now = kT) {
    TcpSegment s = client(kTcpSyn, client_isn_, 0);
    s.options = syn;
    client_ts_ = syn.has_timestamps;
    client_tsval_ = syn.ts_val;
    auto sa = wire(s, now);
    EXPECT_EQ(sa.wire.size(), 1u);
    if (sa.wire.empty()) return {};
    isn_ = sa.wire[0].seq;
    tsecr_ = sa.wire[0].options.ts_val;
    ++client_tsval_;
    EXPECT_TRUE(wire(client(kTcpAck, client_isn_ + 1, isn_ + 1), now).wire.empty());
    return sa.wire[0];
  }
  static TcpOptions full_options() {
    TcpOptions o;
    o.mss = 1460;
    o.wscale = 7;
    o.sack_ok = true;
    o.has_timestamps = true;
    o.ts_val = 1000;
    return o;
  }
  // The hello (the whole of hello_) in one segment, then the backend's ARP
  // exchange when the engine asks: our SYN to the backend in backend_syn_.
  void send_hello_and_reach_backend(uint64_t now = kT) {
    auto out = wire(client(kTcpAck | kTcpPsh, client_isn_ + 1, isn_ + 1, hello_), now);
    ASSERT_EQ(out.wire.size(), 2u) << "the hello's ACK and the ARP request (or our SYN)";
    EXPECT_EQ(to_client_in(out.wire).ack, u32(client_isn_ + 1 + hello_.size()));
    reach_backend(asked_in(out.wire), now);
  }
  // Of the two frames a hello for a passthrough route brings: our ACK to the
  // client, and the ARP request for the backend (or our SYN to it).
  static const Packet& to_client_in(const std::vector<Packet>& two) {
    return two[0].l3 != L3::kArp && two[0].dst == kClient ? two[0] : two[1];
  }
  static const Packet& asked_in(const std::vector<Packet>& two) {
    return &to_client_in(two) == &two[0] ? two[1] : two[0];
  }
  // `asked`: the ARP request or the SYN the hello brought.
  void reach_backend(const Packet& asked, uint64_t now = kT) {
    if (asked.l3 != L3::kArp) {
      backend_syn_ = asked;
      return;
    }
    EXPECT_EQ(asked.arp.target_ip, kBackendIp);
    Bytes reply(64);
    reply.resize(build_arp_reply(reply, asked, kBackendMac, kBackendIp));
    auto out = feed(reply, now, false);
    ASSERT_EQ(out.wire.size(), 1u);
    backend_syn_ = out.wire[0];
    EXPECT_EQ(backend_syn_.flags, kTcpSyn);
  }
  // The backend's SYN-ACK (its options in `o`): the replay comes back.
  std::vector<Packet> backend_accepts(TcpOptions o, uint64_t now = kT) {
    TcpSegment sa = backend(kTcpSyn | kTcpAck, backend_isn_, backend_syn_.seq + 1);
    sa.options = o;
    backend_ts_ = o.has_timestamps;
    backend_tsval_ = o.ts_val;
    auto out = wire(sa, now);
    for (const Packet& p : out.wire) EXPECT_EQ(p.dst, IpAddr::v4(kBackendIp));
    return out.wire;
  }
  // A flow brought to the spliced state, idle: the client's SYN with full
  // options, the hello, the backend's SYN-ACK with `o`, its ACK of the
  // replay. Returns the client's next sequence number.
  uint32_t spliced(TcpOptions o) {
    handshake(full_options());
    send_hello_and_reach_backend();
    EXPECT_EQ(backend_accepts(o).size(), 1u);
    backend_acks_replay(hello_.size());
    return client_isn_ + 1 + u32(hello_.size());
  }
  static TcpOptions full_options_ts(uint32_t ts_val) {
    TcpOptions o = full_options();
    o.ts_val = ts_val;
    return o;
  }
  // The backend acknowledges `n` bytes of the replay: the flow is spliced,
  // idle; the ACK goes on to the client (at our sequence numbers).
  void backend_acks_replay(size_t n, uint64_t now = kT) {
    TcpSegment a = backend(kTcpAck, backend_isn_ + 1, client_isn_ + 1 + u32(n));
    with_backend_ts(a);
    auto out = wire(a, now);
    ASSERT_EQ(out.wire.size(), 1u);
    EXPECT_EQ(out.wire[0].dst, kClient);
    EXPECT_EQ(out.wire[0].seq, isn_ + 1);
    EXPECT_EQ(out.wire[0].ack, client_isn_ + 1 + u32(n));
  }
  void with_backend_ts(TcpSegment& s) {
    if (!backend_ts_) return;
    s.options.has_timestamps = true;
    s.options.ts_val = ++backend_tsval_;
    s.options.ts_ecr = client_tsval_;
  }
  static Bytes replayed(const std::vector<Packet>& out) {
    Bytes b;
    for (const Packet& p : out) b.insert(b.end(), p.payload.begin(), p.payload.end());
    return b;
  }
  const FlowEngine& engine() const { return *lanes_[0].engine; }
  const FrontStats& stats() const { return lanes_[0].engine->stats(); }
  // Created = ended on every lane, and nothing held.
  void expect_no_flows_left() {
    for (const Lane& l : lanes_) {
      EXPECT_EQ(l.engine->flows(), 0u) << name_of(l.path);
      EXPECT_EQ(l.engine->stats().flows_created, l.engine->stats().flows_ended) << name_of(l.path);
    }
  }

  std::array<Lane, 3> lanes_;
  std::deque<Bytes> outs_;
  uint16_t sport_ = 40000;
  uint16_t vlan_ = 0;          // the 802.1Q VID of the client's frames
  uint16_t backend_vlan_ = 0;  // [dpdk] backend_vlan: the backends' (make() gives it the engines)
  uint32_t client_isn_ = 777;
  uint32_t backend_isn_ = 0x70000000;
  uint32_t isn_ = 0;
  bool client_ts_ = false, backend_ts_ = false;
  uint32_t client_tsval_ = 0, tsecr_ = 0, backend_tsval_ = 0;
  test::Bytes hello_ = test::HelloBuilder().sni("p.test").records();
  Packet backend_syn_;
};

// --------------------------------------------------------------- handshake

TEST_F(FlowEngineFixtureTest, ArpForTheVipOnEveryPath) {
  Bytes f(64);
  f.resize(build_arp_request(f, kClientMac, 0x0a000002, 0x0a000001));
  auto out = feed(f, kT, false);
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].arp.op, 2);
  EXPECT_EQ(out.wire[0].arp.sender_mac, kOurMac);
  EXPECT_EQ(out.wire[0].arp.sender_ip, 0x0a000001u);
  EXPECT_EQ(out.wire[0].dst_mac, kClientMac);
  // For the exception port's address, from the wire: not ours there.
  f.assign(64, 0);
  f.resize(build_arp_request(f, kClientMac, 0x0a000002, kExcAddr));
  EXPECT_TRUE(feed(f, kT, false).wire.empty());
  EXPECT_EQ(stats().arp_replies, 1u);
}

TEST_F(FlowEngineFixtureTest, SynRetransmitSameCookieInASlotAndEitherCookieAcrossTheBoundary) {
  // Within one slot the SYN again gets the same cookie.
  TcpSegment syn = client(kTcpSyn, 100, 0);
  syn.options = full_options();
  auto a = wire(syn, kT);
  auto b = wire(syn, kT + 900);
  ASSERT_EQ(a.wire.size(), 1u);
  ASSERT_EQ(b.wire.size(), 1u);
  EXPECT_EQ(a.wire[0].seq, b.wire[0].seq);
  EXPECT_EQ(engine().flows(), 0u);
  // Across the boundary of a 64 s slot: another cookie, and an ACK of the
  // second SYN-ACK opens the flow (flow_engine_test.cc checks the first's).
  const uint64_t t0 = 1'023'800;  // 200 ms before a slot boundary (1024 s)
  sport_ = 40001;
  auto first = wire(client(kTcpSyn, 500, 0), t0);
  auto second = wire(client(kTcpSyn, 500, 0), t0 + 1000);
  ASSERT_EQ(first.wire.size(), 1u);
  ASSERT_EQ(second.wire.size(), 1u);
  EXPECT_NE(first.wire[0].seq, second.wire[0].seq);
  EXPECT_TRUE(wire(client(kTcpAck, 501, second.wire[0].seq + 1), t0 + 1500).wire.empty());
  EXPECT_EQ(engine().flows(), 1u);
  // The ACK of the first SYN-ACK arriving late: a segment of that flow now,
  // never a second flow.
  EXPECT_TRUE(wire(client(kTcpAck, 501, first.wire[0].seq + 1), t0 + 1600).wire.empty());
  EXPECT_EQ(stats().flows_created, 1u);
  EXPECT_EQ(stats().cookie_invalid, 0u);
  // The hello answers on the flow made from the second cookie.
  auto out = wire(client(kTcpAck, 501, second.wire[0].seq + 1, test::HelloBuilder().sni("r.test").records()),
                  t0 + 1700);
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].seq, second.wire[0].seq + 1);
  EXPECT_EQ(out.wire[0].payload.size(), 7u);
}

TEST_F(FlowEngineFixtureTest, ForgedAckFloodCreatesNothingOnAnyPath) {
  std::mt19937 rng(11);
  for (int i = 0; i < 300; ++i) {
    sport_ = static_cast<uint16_t>(1024 + i);
    TcpSegment s = client(kTcpAck | (i % 3 == 0 ? kTcpPsh : 0), rng(), rng(), i % 3 == 0 ? as_bytes("xx") : std::span<const uint8_t>());
    EXPECT_TRUE(wire(s).wire.empty());
  }
  EXPECT_EQ(stats().cookie_invalid, 300u);
  EXPECT_EQ(stats().tx_frames, 0u);
  expect_no_flows_left();
}

TEST_F(FlowEngineFixtureTest, PureAckThenDataAndDataOnTheCookieAck) {
  handshake({});
  EXPECT_EQ(engine().flows(), 1u) << "the pure ACK made the flow";
  const auto h = test::HelloBuilder().sni("r.test").records();
  auto out = wire(client(kTcpAck, client_isn_ + 1, isn_ + 1, h));
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].payload.size(), 7u);
  EXPECT_EQ(out.wire[0].ack, u32(client_isn_ + 1 + h.size()));
  // No pure ACK: the cookie's ACK carries the hello itself.
  sport_ = 40001;
  auto sa = wire(client(kTcpSyn, 9000, 0));
  ASSERT_EQ(sa.wire.size(), 1u);
  out = wire(client(kTcpAck | kTcpPsh, 9001, sa.wire[0].seq + 1, h));
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].seq, sa.wire[0].seq + 1);
  EXPECT_EQ(out.wire[0].ack, u32(9001 + h.size()));
  ASSERT_EQ(out.wire[0].payload.size(), 7u);
  EXPECT_EQ(out.wire[0].payload[6], 112);
  EXPECT_EQ(stats().flows_created, 2u);
  EXPECT_EQ(stats().rejects, 2u);
}

// RFC 1122 4.2.3.6 / RFC 9293 3.10.7.4: a segment below RCV.NXT (a
// keep-alive at SND.NXT - 1, with no byte or one) is answered with an ACK of
// RCV.NXT; its byte is not taken into the hello.
TEST_F(FlowEngineFixtureTest, KeepAliveWhileCollectingGetsAnAck) {
  handshake(full_options());
  const auto h = test::HelloBuilder().sni("r.test").records();
  const uint32_t next = client_isn_ + 1;
  auto out = wire(client(kTcpAck, next - 1, isn_ + 1));
  ASSERT_EQ(out.wire.size(), 1u) << "an empty keep-alive gets an ACK";
  EXPECT_EQ(out.wire[0].flags, kTcpAck);
  EXPECT_EQ(out.wire[0].ack, next);
  EXPECT_EQ(out.wire[0].seq, isn_ + 1);
  const uint8_t junk = 0x99;
  out = wire(client(kTcpAck, next - 1, isn_ + 1, {&junk, 1}));
  ASSERT_EQ(out.wire.size(), 1u) << "a one-byte keep-alive too";
  EXPECT_EQ(out.wire[0].ack, next);
  // Half the hello, a keep-alive at its end - 1, the rest: the hello is intact.
  const size_t half = h.size() / 2;
  ASSERT_EQ(wire(client(kTcpAck, next, isn_ + 1, {h.data(), half})).wire.size(), 1u);
  EXPECT_TRUE(wire(client(kTcpAck, next + u32(half), isn_ + 1)).wire.empty()) << "a pure ACK at RCV.NXT: no answer";
  out = wire(client(kTcpAck, next + u32(half) - 1, isn_ + 1, {&junk, 1}));
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].ack, next + u32(half));
  out = wire(client(kTcpAck, next + u32(half), isn_ + 1, {h.data() + half, h.size() - half}));
  ASSERT_EQ(out.wire.size(), 1u);
  ASSERT_EQ(out.wire[0].payload.size(), 7u);
  EXPECT_EQ(out.wire[0].payload[6], 112) << "r.test parsed: the keep-alive byte changed nothing";
  EXPECT_EQ(stats().hello_errors, 0u);
}

// ------------------------------------------------------------ the hello

TEST_F(FlowEngineFixtureTest, HelloInRecordsAndSegmentsSplitInARecordHeaderIsReplayedExactly) {
  // A browser-like hello in 100-byte records; segments cut inside the
  // second record's header, in a record body, and at a record boundary;
  // sent last first, one of them twice.
  hello_ = test::HelloBuilder::typical("p.test").padding(300).records(100);
  ASSERT_GE(hello_.size(), 5u * 105);
  handshake(full_options());
  const std::vector<size_t> cuts = {0, 107, 160, 315, 420, hello_.size()};  // 107: inside record 2's header
  const uint32_t next = client_isn_ + 1;
  std::vector<Packet> last;
  for (size_t i = cuts.size() - 1; i-- > 0;) {
    const TcpSegment s = client(kTcpAck, next + u32(cuts[i]), isn_ + 1,
                                {hello_.data() + cuts[i], cuts[i + 1] - cuts[i]});
    if (i == 2) {
      auto dup = wire(s);
      ASSERT_EQ(dup.wire.size(), 1u);
      EXPECT_EQ(dup.wire[0].ack, next) << "a duplicate ACK for the gap";
    }
    last = wire(s).wire;
    if (i > 0) {
      ASSERT_EQ(last.size(), 1u);
      EXPECT_EQ(last[0].ack, next);
    }
  }
  ASSERT_EQ(last.size(), 2u) << "the ACK of the whole hello, then ARP for the backend";
  EXPECT_EQ(to_client_in(last).ack, next + u32(hello_.size()));
  EXPECT_GE(stats().hello_out_of_order, 1u);
  reach_backend(asked_in(last));
  TcpOptions o = full_options();
  o.mss = 536;
  o.ts_val = 70;
  const auto replay = backend_accepts(o);
  ASSERT_EQ(replay.size(), (hello_.size() + 535) / 536) << "in segments of the backend's MSS";
  EXPECT_EQ(replayed(replay), hello_) << "exactly the bytes parsed";
  uint32_t seq = next;
  for (const Packet& p : replay) {
    EXPECT_EQ(p.seq, seq);
    EXPECT_EQ(p.ack, backend_isn_ + 1);
    seq += u32(p.payload.size());
  }
}

TEST_F(FlowEngineFixtureTest, OverlappingRetransmitFirstBytesWinAndAreReplayed) {
  hello_ = test::HelloBuilder::typical("p.test").records();  // the name early, well before the cut
  handshake(full_options());
  const uint32_t next = client_isn_ + 1;
  const size_t cut = hello_.size() - 30;
  ASSERT_EQ(wire(client(kTcpAck, next, isn_ + 1, {hello_.data(), cut})).wire.size(), 1u);
  // A "retransmit" overlapping both sides of the cut, its bytes rewritten
  // (the SNI made r.test's twin, the random changed).
  // Only bytes already held differ: the new ones it brings are the hello's.
  Bytes forged = hello_;
  size_t names = 0;
  for (size_t i = 0; i + 6 <= cut; ++i) {
    if (std::memcmp(&forged[i], "p.test", 6) == 0) forged[i] = 'r', ++names;
  }
  ASSERT_EQ(names, 1u) << "the name lies before the cut";
  for (size_t i = 11; i < 43; ++i) forged[i] ^= 0x5a;
  ASSERT_EQ(wire(client(kTcpAck, next + 8, isn_ + 1, {forged.data() + 8, cut + 10 - 8})).wire.size(), 1u);
  auto out = wire(client(kTcpAck, next + u32(cut), isn_ + 1, {hello_.data() + cut, 30}));
  ASSERT_EQ(out.wire.size(), 2u);
  EXPECT_EQ(stats().passthrough_flows, 1u) << "p.test parsed: the first bytes won";
  EXPECT_EQ(stats().rejects, 0u);
  reach_backend(asked_in(out.wire));
  TcpOptions o = full_options();
  o.ts_val = 5;
  EXPECT_EQ(replayed(backend_accepts(o)), hello_) << "the replay carries the bytes parsed, not the forgery";
}

TEST_F(FlowEngineFixtureTest, DataAfterTheHelloIsReplayedWithIt) {
  handshake(full_options());
  const uint32_t next = client_isn_ + 1;
  Bytes both = hello_;
  const std::string extra(300, 'E');  // e.g. early data, the next record
  both.insert(both.end(), extra.begin(), extra.end());
  auto out = wire(client(kTcpAck | kTcpPsh, next, isn_ + 1, both));
  ASSERT_EQ(out.wire.size(), 2u);
  EXPECT_EQ(to_client_in(out.wire).ack, next + u32(both.size())) << "every byte held is acknowledged";
  reach_backend(asked_in(out.wire));
  // More data before the backend answers: not acknowledged, not forwarded
  // (the client sends it again).
  const std::string more = "more";
  EXPECT_TRUE(wire(client(kTcpAck | kTcpPsh, next + u32(both.size()), isn_ + 1, as_bytes(more))).wire.empty());
  TcpOptions o = full_options();
  o.ts_val = 40;
  EXPECT_EQ(replayed(backend_accepts(o)), both);
  backend_acks_replay(both.size());
  // Its retransmission now passes, translated.
  out = wire(client(kTcpAck | kTcpPsh, next + u32(both.size()), isn_ + 1, as_bytes(more)));
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].dst, IpAddr::v4(kBackendIp));
  EXPECT_EQ(out.wire[0].seq, next + u32(both.size()));
  EXPECT_EQ(out.wire[0].ack, backend_isn_ + 1);
  EXPECT_EQ(std::string(out.wire[0].payload.begin(), out.wire[0].payload.end()), more);
}

TEST_F(FlowEngineFixtureTest, FinWithDataOrRstWhileCollecting) {
  handshake(full_options());
  const auto h = test::HelloBuilder().sni("r.test").records();
  // Part of the hello with a FIN: the client is reset, the flow gone.
  auto out = wire(client(kTcpAck | kTcpFin, client_isn_ + 1, isn_ + 1, {h.data(), 20}));
  ASSERT_EQ(out.wire.size(), 2u);
  EXPECT_EQ(out.wire[0].flags, kTcpAck);
  EXPECT_TRUE(out.wire[1].flags & kTcpRst);
  EXPECT_EQ(out.wire[1].seq, isn_ + 1);
  // A RST after part of the hello: silence, the flow gone.
  sport_ = 40001;
  handshake(full_options());
  ASSERT_EQ(wire(client(kTcpAck, client_isn_ + 1, isn_ + 1, {h.data(), 20})).wire.size(), 1u);
  EXPECT_TRUE(wire(client(kTcpRst, client_isn_ + 21, 0)).wire.empty());
  EXPECT_EQ(stats().client_aborts, 2u);
  expect_no_flows_left();
}

TEST_F(FlowEngineFixtureTest, HelloTimeoutResetsAndLeavesNoFlow) {
  make(3000);
  handshake(full_options());
  ASSERT_EQ(wire(client(kTcpAck, client_isn_ + 1, isn_ + 1, {hello_.data(), 10})).wire.size(), 1u);
  EXPECT_TRUE(tick(kT + 2999).wire.empty());
  auto out = tick(kT + 3001);
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_TRUE(out.wire[0].flags & kTcpRst);
  EXPECT_EQ(out.wire[0].seq, isn_ + 1);
  EXPECT_EQ(stats().hello_timeouts, 1u);
  expect_no_flows_left();
}

TEST_F(FlowEngineFixtureTest, NonTlsFirstBytesEndTheFlowNeverSpliced) {
  const std::vector<Bytes> firsts = {
      {0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10},  // SSLv2 CLIENT-HELLO
      {0x00, 0x00, 0x00, 0x00, 0x00, 0x00},
      {0x17, 0x03, 0x03, 0x00, 0x05, 1, 2, 3, 4, 5},  // application data first
      {0x15, 0x03, 0x03, 0x00, 0x02, 2, 40},          // an alert first
      {'S', 'S', 'H', '-', '2', '.', '0', '-', 'x', '\r', '\n'},
      {0xff, 0xff, 0xff, 0xff},
      {0x16, 0x03, 0x01, 0xff, 0xff, 0x01},  // a record longer than any hello
      {0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00},  // not a ClientHello message
  };
  for (size_t i = 0; i < firsts.size(); ++i) {
    SCOPED_TRACE(i);
    sport_ = static_cast<uint16_t>(41000 + i);
    handshake(full_options());
    auto out = wire(client(kTcpAck | kTcpPsh, client_isn_ + 1, isn_ + 1, firsts[i]));
    ASSERT_EQ(out.wire.size(), 1u);
    const Packet& p = out.wire[0];
    const bool rst = p.flags & kTcpRst;
    const bool alert = (p.flags & kTcpFin) && p.payload.size() == 7 && p.payload[0] == 21;
    EXPECT_TRUE(rst || alert) << "flags " << int{p.flags} << " payload " << p.payload.size();
    if (alert) {
      // The client's FIN ends it.
      (void)wire(client(kTcpAck | kTcpFin, client_isn_ + 1 + u32(firsts[i].size()), p.seq + 8));
    }
  }
  EXPECT_EQ(stats().passthrough_flows, 0u);
  EXPECT_EQ(stats().handoff_flows, 0u);
  EXPECT_EQ(stats().hello_not_tls + stats().hello_errors + stats().hello_too_large, firsts.size());
  expect_no_flows_left();
}

// ------------------------------------------------------------- the splice

TEST_F(FlowEngineFixtureTest, SynWithoutAnyOptionSplicesWithDefaults) {
  const Packet sa = handshake({});
  EXPECT_EQ(sa.options.mss, 1460) << "ours";
  EXPECT_EQ(sa.options.wscale, -1);
  EXPECT_FALSE(sa.options.sack_ok);
  EXPECT_FALSE(sa.options.has_timestamps);
  send_hello_and_reach_backend();
  const Packet& s = backend_syn_;
  EXPECT_EQ(s.options.mss, 536) << "RFC 9293 3.7.1: no MSS option means 536";
  EXPECT_EQ(s.options.wscale, -1);
  EXPECT_FALSE(s.options.sack_ok);
  EXPECT_FALSE(s.options.has_timestamps);
  // The backend offers everything; the flow uses none of it.
  TcpOptions o = full_options();
  o.wscale = 9;
  o.ts_val = 3;
  const auto replay = backend_accepts(o);
  ASSERT_EQ(replay.size(), 1u);
  EXPECT_FALSE(replay[0].options.has_timestamps);
  backend_acks_replay(hello_.size());
  const uint32_t cnext = client_isn_ + 1 + u32(hello_.size());
  const std::string answer(900, 'a');
  TcpSegment d = backend(kTcpAck | kTcpPsh, backend_isn_ + 1, cnext, as_bytes(answer));
  d.window = 777;
  d.options.has_timestamps = true;  // the client never agreed: stripped
  d.options.ts_val = 4;
  auto out = wire(d);
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].seq, isn_ + 1);
  EXPECT_EQ(out.wire[0].window, 777) << "no scaling on the client's side: the window as is";
  EXPECT_FALSE(out.wire[0].options.has_timestamps);
  d.options = {};
  d.seq += u32(answer.size());
  d.payload = {};
  out = wire(d);
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].seq, isn_ + 1 + u32(answer.size()));
  out = wire(client(kTcpAck, cnext, isn_ + 1 + u32(answer.size())));
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].ack, backend_isn_ + 1 + u32(answer.size()));
  EXPECT_EQ(out.wire[0].window, 502);
  EXPECT_GE(lanes_[1].engine->stats().forwarded_in_place, 2u) << "the in-place lane took the fast path";
}

TEST_F(FlowEngineFixtureTest, WindowScaleAbove14IsUsedAs14BothWays) {
  TcpOptions syn = full_options();
  syn.wscale = 15;
  const Packet sa = handshake(syn);
  EXPECT_EQ(sa.options.wscale, kOurWscale);
  send_hello_and_reach_backend();
  EXPECT_EQ(backend_syn_.options.wscale, 14) << "RFC 7323 2.3: a shift above 14 is 14";
  TcpOptions o = full_options();
  o.wscale = 15;
  o.ts_val = 9;
  ASSERT_EQ(backend_accepts(o).size(), 1u);
  backend_acks_replay(hello_.size());
  const uint32_t cnext = client_isn_ + 1 + u32(hello_.size());
  TcpSegment d = backend(kTcpAck, backend_isn_ + 1, cnext);
  with_backend_ts(d);
  d.window = 1;
  auto out = wire(d);
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].window, (1u << 14) >> kOurWscale) << "the backend's shift used as 14, not 15";
  d.window = 65535;
  with_backend_ts(d);
  out = wire(d);
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].window, 65535) << "beyond what 16 bits hold in our scale: the largest";
  // The client's window goes to the backend as is (it got the client's shift).
  TcpSegment c = client(kTcpAck, cnext, isn_ + 1);
  c.window = 3;
  out = wire(c);
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].window, 3);
}

// The backend's window in the client's scale: rounded down (never more than
// the backend offered), but a window that is open never becomes a zero
// window (the client would stop and probe while the backend waits).
TEST_F(FlowEngineFixtureTest, WindowRescaleRoundsDownButNeverToZero) {
  TcpOptions o = full_options_ts(100);
  o.wscale = -1;  // the backend does not scale: its windows are bytes
  const uint32_t cnext = spliced(o);
  if (HasFailure()) return;
  struct Case {
    uint16_t backend, client;
  };
  for (const Case c : {Case{65535, 511}, Case{1280, 10}, Case{200, 1}, Case{128, 1}, Case{127, 1}, Case{1, 1},
                       Case{0, 0}}) {
    SCOPED_TRACE(c.backend);
    TcpSegment d = backend(kTcpAck, backend_isn_ + 1, cnext);
    with_backend_ts(d);
    d.window = c.backend;
    auto out = wire(d);
    ASSERT_EQ(out.wire.size(), 1u);
    EXPECT_EQ(out.wire[0].window, c.client);
  }
  // The other way: scaling is off for the backend both ways (RFC 7323), so
  // the client's windows (its shift 7) reach it in bytes, at most 65535;
  // before, 502 (64,256 bytes) went on as 502 bytes, a flow at a crawl.
  for (const Case c : {Case{64256, 502}, Case{65535, 600}, Case{65535, 65535}, Case{128, 1}, Case{0, 0}}) {
    SCOPED_TRACE(c.client);
    TcpSegment a = client(kTcpAck, cnext, isn_ + 1);
    a.window = c.client;
    auto out = wire(a);
    ASSERT_EQ(out.wire.size(), 1u);
    EXPECT_EQ(out.wire[0].window, c.backend);
  }
}

TEST_F(FlowEngineFixtureTest, LostBackendSynIsSentAgainThenSplices) {
  handshake(full_options());
  send_hello_and_reach_backend();
  auto out = tick(kT + 1'001);
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].flags, kTcpSyn);
  EXPECT_EQ(out.wire[0].seq, backend_syn_.seq);
  EXPECT_EQ(out.wire[0].sport, backend_syn_.sport) << "the same local port";
  TcpOptions o = full_options();
  o.ts_val = 1;
  EXPECT_EQ(replayed(backend_accepts(o, kT + 1'100)), hello_);
  backend_acks_replay(hello_.size(), kT + 1'100);
  EXPECT_EQ(stats().backend_connect_failures, 0u);
  EXPECT_EQ(engine().flows(), 1u);
}

TEST_F(FlowEngineFixtureTest, BackendRstWhileSplicedResetsTheClient) {
  const uint32_t cnext = spliced(full_options_ts(50));
  if (HasFailure()) return;
  const std::string answer(100, 'b');
  TcpSegment d = backend(kTcpAck | kTcpPsh, backend_isn_ + 1, cnext, as_bytes(answer));
  with_backend_ts(d);
  ASSERT_EQ(wire(d).wire.size(), 1u);
  TcpSegment r = backend(kTcpRst | kTcpAck, backend_isn_ + 1 + u32(answer.size()), cnext);
  r.window = 0;
  auto out = wire(r);
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].dst, kClient);
  EXPECT_TRUE(out.wire[0].flags & kTcpRst);
  EXPECT_EQ(out.wire[0].seq, isn_ + 1 + u32(answer.size()));
  // At the backend's next number with its answer unacknowledged (a number
  // a forged segment could have moved: judge_reset): the flow stays until
  // the idle timeout. Acknowledged, the same reset ends it at once (below).
  EXPECT_EQ(engine().flows(), 1u);
  (void)tick(kT + 300'001);
  expect_no_flows_left();
  // What the client sends after: no flow, dropped silently.
  EXPECT_TRUE(wire(client(kTcpAck, cnext, isn_ + 1)).wire.empty());
}

// Resets and segments an off-path sender can forge knowing the 4-tuple
// alone (RFC 5961). "The window" is the largest the receiver's shift allows
// (8 MiB at shift 7; not its last window field, which anyone can forge). A
// reset outside it is dropped; a data segment beyond it is passed on (the
// receiver drops it) but moves nothing, so a reset at its end is still
// outside; a reset in it is passed on (the receiver judges it: a challenge
// ACK) and the flow stays, even at the sender's next number when bytes are
// unacknowledged (a forged segment 5 MB ahead, inside the window, moved that
// number: with it a reset there ended the flow); only a reset at the
// number the receiver acknowledged ends the flow at once.
TEST_F(FlowEngineFixtureTest, BlindResetsAndSegmentsEndNoSplicedFlow) {
  const uint32_t cnext = spliced(full_options_ts(50));
  if (HasFailure()) return;

  EXPECT_TRUE(wire(client(kTcpRst, cnext + 0x10000000, 0)).wire.empty());
  TcpSegment brst = backend(kTcpRst, backend_isn_ + 1 + 0x20000000, 0);
  with_backend_ts(brst);
  EXPECT_TRUE(wire(brst).wire.empty());
  EXPECT_EQ(stats().rst_out_of_window, 2u);
  EXPECT_EQ(engine().flows(), 1u);

  const uint8_t one = 'x';
  auto out = wire(client(kTcpAck | kTcpPsh, cnext + 0x40000000, isn_ + 1, std::span(&one, 1)));
  ASSERT_EQ(out.wire.size(), 1u) << "passed on: the backend drops it";
  EXPECT_EQ(stats().segments_out_of_window, 1u);
  EXPECT_TRUE(wire(client(kTcpRst, cnext + 0x40000001, 0)).wire.empty()) << "its end is not what the flow expects";
  EXPECT_EQ(stats().rst_out_of_window, 3u);
  out = wire(client(kTcpAck | kTcpPsh, cnext + 5'000'000, isn_ + 1, std::span(&one, 1)));
  ASSERT_EQ(out.wire.size(), 1u);
  out = wire(client(kTcpRst, cnext + 5'000'001, 0));
  ASSERT_EQ(out.wire.size(), 1u) << "in the window: passed on, the backend judges it";
  EXPECT_EQ(engine().flows(), 1u) << "a reset at a number a forged segment moved ends nothing";

  out = wire(client(kTcpRst, cnext + 100, 0));
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].dst, IpAddr::v4(kBackendIp));
  EXPECT_TRUE(out.wire[0].flags & kTcpRst);
  TcpSegment bmid = backend(kTcpRst, backend_isn_ + 1 + 100, 0);
  with_backend_ts(bmid);
  out = wire(bmid);
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].dst, kClient);
  EXPECT_EQ(stats().rst_in_window, 3u);
  EXPECT_EQ(engine().flows(), 1u) << "the receivers judge an in-window reset";

  // At what the backend acknowledged: ends at once.
  out = wire(client(kTcpRst, cnext, 0));
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_TRUE(out.wire[0].flags & kTcpRst);
  expect_no_flows_left();
}

// Window fields and TSvals of segments anyone can forge judge nothing: a
// client segment far out of order with window 0 (it shrank "the window" the
// checks used, every real segment after it judged beyond and the flow's
// state frozen, its FINs unmarked), and a backend segment far out of order
// with a huge TSval (it became the TSval of our challenge ACKs, which the
// client takes: its PAWS check then drops the backend's real segments).
TEST_F(FlowEngineFixtureTest, ForgedWindowsAndTimestampsJudgeNothing) {
  const uint32_t cnext = spliced(full_options_ts(60));
  if (HasFailure()) return;
  TcpSegment shut = client(kTcpAck, cnext + 0x20000000, isn_ + 1);
  shut.window = 0;
  (void)wire(shut);
  // 70,000 bytes down before the client acknowledges any (more than the
  // 64 KiB a window of 0 left "the window" at).
  const std::string piece(1400, 'd');
  uint32_t sent = 0;
  for (int i = 0; i < 50; ++i, sent += u32(piece.size())) {
    TcpSegment d = backend(kTcpAck | kTcpPsh, backend_isn_ + 1 + sent, cnext, as_bytes(piece));
    with_backend_ts(d);
    ASSERT_EQ(wire(d).wire.size(), 1u);
  }
  ASSERT_EQ(wire(client(kTcpAck, cnext, isn_ + 1 + sent)).wire.size(), 1u);
  const uint32_t real_tsval = backend_tsval_;
  TcpSegment stamp = backend(kTcpAck, backend_isn_ + 1 + 0x30000000, cnext);
  with_backend_ts(stamp);
  stamp.options.ts_val = 0x20000000;
  (void)wire(stamp);
  auto out = wire(client(kTcpSyn, 0x0badcafe, 0));
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].flags, kTcpAck) << "a challenge ACK";
  EXPECT_EQ(out.wire[0].ack, cnext);
  EXPECT_EQ(out.wire[0].seq, isn_ + 1 + sent);
  EXPECT_EQ(out.wire[0].options.ts_val, tsecr_ + (real_tsval - 60)) << "the backend's real clock";
  // Both FINs: marked, a time-wait, then gone.
  TcpSegment bf = backend(kTcpAck | kTcpFin, backend_isn_ + 1 + sent, cnext);
  with_backend_ts(bf);
  ASSERT_EQ(wire(bf).wire.size(), 1u);
  ASSERT_EQ(wire(client(kTcpAck | kTcpFin, cnext, isn_ + 2 + sent)).wire.size(), 1u);
  (void)tick(kT + 2'001);
  expect_no_flows_left();
}

// While the hello is collected: a reset outside the window is dropped, one
// in it but not at RCV.NXT gets a challenge ACK (RFC 5961 3.2), one at
// RCV.NXT ends the flow. TS.Recent moves only with segments at or below
// RCV.NXT (RFC 7323 4.3): the ACK of a piece ahead of a gap echoes the
// TSval of the last in-order one, not its own (nor a forged segment's).
TEST_F(FlowEngineFixtureTest, BlindResetsAndTimestampsWhileCollecting) {
  handshake(full_options());
  EXPECT_TRUE(wire(client(kTcpRst, client_isn_ + 1 + 0x30000000, 0)).wire.empty());
  EXPECT_EQ(stats().rst_out_of_window, 1u);
  auto out = wire(client(kTcpRst, client_isn_ + 1 + 100, 0));
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].flags, kTcpAck) << "a challenge ACK";
  EXPECT_EQ(out.wire[0].ack, client_isn_ + 1);
  EXPECT_EQ(stats().rst_in_window, 1u);
  EXPECT_EQ(engine().flows(), 1u);
  // A FIN far past the room ends nothing either.
  EXPECT_TRUE(wire(client(kTcpAck | kTcpFin, client_isn_ + 1 + 0x30000000, isn_ + 1)).wire.empty());
  EXPECT_EQ(engine().flows(), 1u);
  EXPECT_EQ(stats().client_aborts, 0u);

  const uint32_t in_order_tsval = client_tsval_;
  const size_t half = hello_.size() / 2;
  TcpSegment ahead = client(kTcpAck | kTcpPsh, client_isn_ + 1 + u32(half), isn_ + 1,
                            std::span(hello_).subspan(half));
  ahead.options.ts_val = in_order_tsval + 1000;
  out = wire(ahead);
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].ack, client_isn_ + 1) << "a duplicate ACK: the gap";
  EXPECT_EQ(out.wire[0].options.ts_ecr, in_order_tsval);
  client_tsval_ = in_order_tsval + 1001;
  out = wire(client(kTcpAck | kTcpPsh, client_isn_ + 1, isn_ + 1, std::span(hello_).subspan(0, half)));
  ASSERT_EQ(out.wire.size(), 2u) << "the hello's ACK and the ARP request";
  EXPECT_EQ(to_client_in(out.wire).options.ts_ecr, client_tsval_);
  reach_backend(asked_in(out.wire));
  EXPECT_EQ(backend_syn_.options.ts_val, client_tsval_);

  // Connecting: a reset at RCV.NXT (the hello's end) ends the flow.
  (void)wire(client(kTcpRst, client_isn_ + 1 + u32(hello_.size()), 0));
  expect_no_flows_left();
}

// A SYN on a spliced flow's 4-tuple never reaches the backend. While the
// flow lives: a challenge ACK to the client (RFC 5961 4), whose reset at our
// number ends the flow. After both FINs (time-wait): the old flow gives way
// and the SYN gets a cookie SYN-ACK, as a new connection.
TEST_F(FlowEngineFixtureTest, ASynOnASplicedFlowIsChallengedOrStartsANewFlowAfterBothFins) {
  const uint32_t cnext = spliced(full_options_ts(3));
  if (HasFailure()) return;
  // Bytes the backend has not acknowledged: the challenge ACK must not
  // acknowledge them (the client would free bytes the backend may lose).
  const std::string up(40, 'u');
  ASSERT_EQ(wire(client(kTcpAck | kTcpPsh, cnext, isn_ + 1, as_bytes(up))).wire.size(), 1u);
  TcpSegment again = client(kTcpSyn, 0x12345678, 0);
  again.options = full_options();
  TcpSegment bare = again;  // no options: the fast path's shape
  bare.options = TcpOptions{};
  for (const TcpSegment& syn : {again, bare}) {
    auto out = wire(syn);
    ASSERT_EQ(out.wire.size(), 1u);
    EXPECT_EQ(out.wire[0].dst, kClient);
    EXPECT_EQ(out.wire[0].flags, kTcpAck) << "a challenge ACK";
    EXPECT_EQ(out.wire[0].ack, cnext) << "what the backend acknowledged";
    EXPECT_EQ(out.wire[0].seq, isn_ + 1);
    EXPECT_EQ(out.wire[0].window, 1000) << "the backend's window (shift 7 both sides), as its segments carry it";
    EXPECT_EQ(out.wire[0].options.ts_val, tsecr_ + 1) << "the backend's clock, translated";
  }
  EXPECT_EQ(engine().flows(), 1u);
  TcpSegment ack = backend(kTcpAck, backend_isn_ + 1, cnext + u32(up.size()));
  with_backend_ts(ack);
  ASSERT_EQ(wire(ack).wire.size(), 1u);
  auto out = wire(client(kTcpRst, cnext + u32(up.size()), 0));
  ASSERT_EQ(out.wire.size(), 1u) << "the client's reset at our number, passed on";
  EXPECT_EQ(out.wire[0].dst, IpAddr::v4(kBackendIp));
  expect_no_flows_left();

  // Another flow, both FINs, then a SYN from the same port within time-wait.
  sport_ = 40001;
  const uint32_t cnext2 = spliced(full_options_ts(4));
  if (HasFailure()) return;
  TcpSegment bf = backend(kTcpAck | kTcpFin, backend_isn_ + 1, cnext2);
  with_backend_ts(bf);
  ASSERT_EQ(wire(bf).wire.size(), 1u);
  ASSERT_EQ(wire(client(kTcpAck | kTcpFin, cnext2, isn_ + 2)).wire.size(), 1u);
  EXPECT_EQ(engine().flows(), 1u) << "in time-wait";
  again = client(kTcpSyn, 0x12345678, 0);
  again.options = full_options();
  out = wire(again, kT + 500);
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].dst, kClient);
  EXPECT_EQ(out.wire[0].flags, kTcpSyn | kTcpAck) << "a cookie SYN-ACK: a new connection";
  EXPECT_EQ(out.wire[0].ack, 0x12345679u);
  expect_no_flows_left();
}

TEST_F(FlowEngineFixtureTest, KeepAlivesOfASplicedFlowPassBothWays) {
  const uint32_t cnext = spliced(full_options_ts(7));
  if (HasFailure()) return;
  const std::string answer(300, 'k');
  TcpSegment d = backend(kTcpAck | kTcpPsh, backend_isn_ + 1, cnext, as_bytes(answer));
  with_backend_ts(d);
  ASSERT_EQ(wire(d).wire.size(), 1u);
  const uint32_t bnext = backend_isn_ + 1 + u32(answer.size());
  // The client's keep-alive at SND.NXT - 1, then one with a byte.
  ++client_tsval_;
  auto out = wire(client(kTcpAck, cnext - 1, isn_ + 1 + u32(answer.size())));
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].seq, cnext - 1);
  EXPECT_EQ(out.wire[0].ack, bnext);
  const uint8_t junk = 0;
  out = wire(client(kTcpAck, cnext - 1, isn_ + 1 + u32(answer.size()), {&junk, 1}));
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].payload.size(), 1u);
  // The backend's keep-alive: translated, our SND.NXT not moved back.
  TcpSegment k = backend(kTcpAck, bnext - 1, cnext);
  with_backend_ts(k);
  out = wire(k);
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].seq, isn_ + answer.size());
  // The idle timeout resets both sides at their next sequence numbers.
  out = tick(kT + 300'001);
  ASSERT_EQ(out.wire.size(), 2u);
  const Packet& to_b = out.wire[0].dst == kClient ? out.wire[1] : out.wire[0];
  const Packet& to_c = out.wire[0].dst == kClient ? out.wire[0] : out.wire[1];
  EXPECT_TRUE(to_b.flags & kTcpRst);
  EXPECT_EQ(to_b.seq, cnext);
  EXPECT_TRUE(to_c.flags & kTcpRst);
  EXPECT_EQ(to_c.seq, isn_ + 1 + u32(answer.size())) << "not the keep-alive's - 1";
  expect_no_flows_left();
}

// Both sequence spaces cross 2^32, so do both timestamp clocks; SACK and
// D-SACK blocks straddle the wrap; FIN both ways, time-wait, no flow left.
TEST_F(FlowEngineFixtureTest, SackDsackTimestampsAndSequencesWrapBothWays) {
  client_isn_ = 0xffffff00;
  backend_isn_ = 0xfffffc00;
  TcpOptions syn = full_options();
  syn.ts_val = 0xfffffff0;
  handshake(syn);
  send_hello_and_reach_backend();
  TcpOptions o = full_options();
  o.wscale = 9;
  o.ts_val = 0xfffffffe;
  const auto replay = backend_accepts(o);
  ASSERT_EQ(replayed(replay), hello_);
  EXPECT_EQ(replay[0].options.ts_ecr, 0xfffffffeu);
  backend_acks_replay(hello_.size());
  const uint32_t cnext = client_isn_ + 1 + u32(hello_.size());
  const uint32_t ts_delta = static_cast<uint32_t>(kT) - 0xfffffffeu;

  // Backend -> client: 1400-byte segments across the backend's wrap.
  const std::string chunk(1400, 'z');
  uint32_t bseq = backend_isn_ + 1;
  for (int i = 0; i < 3; ++i) {
    TcpSegment d = backend(kTcpAck | kTcpPsh, bseq, cnext, as_bytes(chunk));
    with_backend_ts(d);
    auto out = wire(d);
    ASSERT_EQ(out.wire.size(), 1u);
    const Packet& c = out.wire[0];
    EXPECT_EQ(c.seq, isn_ + 1 + u32(i * chunk.size()));
    EXPECT_EQ(c.ack, cnext);
    EXPECT_EQ(c.window, (1000u << 9) >> kOurWscale);
    EXPECT_EQ(c.options.ts_val, backend_tsval_ + ts_delta);
    EXPECT_EQ(c.options.ts_val, static_cast<uint32_t>(kT) + (backend_tsval_ - 0xfffffffeu))
        << "the backend's clock, wrapped, in ours";
    tsecr_ = c.options.ts_val;
    bseq += u32(chunk.size());
  }
  EXPECT_LT(bseq, backend_isn_) << "the backend's sequence numbers wrapped";
  EXPECT_LT(backend_tsval_, 0xfffffffeu) << "so did its clock";
  // Client -> backend: data across the client's wrap.
  const std::string up(600, 'u');
  ++client_tsval_;
  auto out = wire(client(kTcpAck | kTcpPsh, cnext, isn_ + 1 + 1400, as_bytes(up)));
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].seq, cnext);
  EXPECT_EQ(out.wire[0].ack, backend_isn_ + 1 + 1400);
  EXPECT_EQ(out.wire[0].options.ts_ecr, backend_tsval_);
  EXPECT_EQ(out.wire[0].options.ts_val, client_tsval_);
  // The client got segments 1 and 3, not 2: an ACK of 1, a SACK of 3; then
  // segment 1 again: a D-SACK of it (below the ACK) and the SACK of 3.
  const uint32_t our1 = isn_ + 1, our2 = our1 + 1400, our3 = our2 + 1400, our_end = our3 + 1400;
  const uint32_t b1 = backend_isn_ + 1, b2 = b1 + 1400, b3 = b2 + 1400, b_end = b3 + 1400;
  TcpSegment ack = client(kTcpAck, cnext + u32(up.size()), our2);
  ack.options.sack_count = 1;
  ack.options.sack[0] = SackBlock{our3, our_end};
  out = wire(ack);
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].ack, b2);
  ASSERT_EQ(out.wire[0].options.sack_count, 1);
  EXPECT_EQ(out.wire[0].options.sack[0].left, b3);
  EXPECT_EQ(out.wire[0].options.sack[0].right, b_end);
  ack.options.sack_count = 2;
  ack.options.sack[0] = SackBlock{our1, our2};  // RFC 2883: the duplicate, below the ACK
  ack.options.sack[1] = SackBlock{our3, our_end};
  out = wire(ack);
  ASSERT_EQ(out.wire.size(), 1u);
  ASSERT_EQ(out.wire[0].options.sack_count, 2);
  EXPECT_EQ(out.wire[0].options.sack[0].left, b1);
  EXPECT_EQ(out.wire[0].options.sack[0].right, b2);
  EXPECT_EQ(out.wire[0].options.sack[1].left, b3);
  EXPECT_EQ(out.wire[0].options.sack[1].right, b_end);
  // Four blocks, the most the option holds without timestamps.
  TcpSegment four = client(kTcpAck, cnext + u32(up.size()), our2);
  four.options = {};
  four.options.sack_count = 4;
  for (uint32_t i = 0; i < 4; ++i) four.options.sack[i] = SackBlock{our2 + 100 * i + 10, our2 + 100 * i + 50};
  out = wire(four);
  ASSERT_EQ(out.wire.size(), 1u);
  ASSERT_EQ(out.wire[0].options.sack_count, 4);
  for (uint32_t i = 0; i < 4; ++i) {
    EXPECT_EQ(out.wire[0].options.sack[i].left, b2 + 100 * i + 10);
    EXPECT_EQ(out.wire[0].options.sack[i].right, b2 + 100 * i + 50);
  }
  // The backend's SACK of the client's data is in the client's space already.
  TcpSegment bs = backend(kTcpAck, b_end, cnext);
  with_backend_ts(bs);
  bs.options.sack_count = 1;
  bs.options.sack[0] = SackBlock{cnext + 100, cnext + 200};
  out = wire(bs);
  ASSERT_EQ(out.wire.size(), 1u);
  ASSERT_EQ(out.wire[0].options.sack_count, 1);
  EXPECT_EQ(out.wire[0].options.sack[0].left, cnext + 100);
  EXPECT_EQ(out.wire[0].options.sack[0].right, cnext + 200);
  // FIN both ways; time-wait; gone.
  TcpSegment bf = backend(kTcpAck | kTcpFin, b_end, cnext + u32(up.size()));
  with_backend_ts(bf);
  out = wire(bf);
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].seq, our_end);
  out = wire(client(kTcpAck | kTcpFin, cnext + u32(up.size()), our_end + 1));
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].ack, b_end + 1);
  EXPECT_EQ(engine().flows(), 1u) << "time-wait";
  (void)tick(kT + 2'001);
  expect_no_flows_left();
  EXPECT_GE(lanes_[1].engine->stats().forwarded_in_place, 8u);
  EXPECT_GE(lanes_[2].engine->stats().forwarded_in_place, 8u);
}

// A passthrough flow with its client on VLAN `client_vlan` and the backends on
// `backends` ([dpdk] backend_vlan; 0: untagged): the ARP request for the
// backend on the backends' VLAN (an answer on the client's, when that is
// another, resolves nothing), then 1,000 bytes each way, every lane sending
// the same bytes and collect() checking each frame's VLAN. The backend's
// data comes with priority 5 on its tag: our frames carry priority 0, as
// every frame we build. Returns how many frames the in-place lane rewrote
// where they lay.
uint64_t FlowEngineFixtureTest::vlan_round_trip(uint16_t client_vlan, uint16_t backends) {
  vlan_ = client_vlan;
  backend_vlan_ = backends;
  make();
  handshake(full_options());
  auto out = wire(client(kTcpAck | kTcpPsh, client_isn_ + 1, isn_ + 1, hello_));
  EXPECT_EQ(out.wire.size(), 2u);
  if (out.wire.size() != 2) return 0;
  const Packet arp = asked_in(out.wire);
  EXPECT_EQ(arp.l3, L3::kArp);
  EXPECT_EQ(arp.vlan, backends) << "asked on the backends' VLAN";
  if (client_vlan != backends) {
    Packet wrong = arp;
    wrong.vlan = client_vlan;
    Bytes reply(64);
    reply.resize(build_arp_reply(reply, wrong, kBackendMac, kBackendIp));
    EXPECT_TRUE(feed(reply, kT, false).wire.empty());
    EXPECT_EQ(stats().neighbor_ignored, 1u) << "an answer on the client's VLAN";
  }
  reach_backend(arp);
  TcpOptions o = full_options();
  o.ts_val = 8;
  EXPECT_EQ(backend_accepts(o).size(), 1u) << "the replay";
  backend_acks_replay(hello_.size());
  const uint32_t cnext = client_isn_ + 1 + u32(hello_.size());
  const std::string data(1000, 'v');
  TcpSegment d = backend(kTcpAck | kTcpPsh, backend_isn_ + 1, cnext, as_bytes(data));
  with_backend_ts(d);
  Bytes down = frame_of(d);
  if (backends != 0) down[14] |= 0xa0;
  out = feed(down, kT, false);
  EXPECT_EQ(out.wire.size(), 1u);
  if (out.wire.size() == 1) EXPECT_EQ(out.wire[0].seq, isn_ + 1);
  if (client_vlan != 0) EXPECT_EQ(outs_.back()[14] & 0xf0, 0) << "priority 0";
  ++client_tsval_;
  out = wire(client(kTcpAck | kTcpPsh, cnext, isn_ + 1 + 1000, as_bytes(data)));
  EXPECT_EQ(out.wire.size(), 1u);
  if (out.wire.size() == 1) EXPECT_EQ(out.wire[0].ack, backend_isn_ + 1 + 1000);
  EXPECT_EQ(lanes_[1].engine->stats().forwarded_in_place, lanes_[2].engine->stats().forwarded_in_place);
  return lanes_[1].engine->stats().forwarded_in_place;
}

// Client and backend on one VLAN ([dpdk] backend_vlan = the client's): the
// tag kept, frames rewritten in place.
TEST_F(FlowEngineFixtureTest, VlanTaggedFlowKeepsItsTagBothWays) { EXPECT_GE(vlan_round_trip(12, 12), 3u); }

// Clients on one VLAN, backends on another: the tag's VLAN id rewritten in
// place both ways.
TEST_F(FlowEngineFixtureTest, BackendsOnTheirOwnVlanClientsOnTheirs) { EXPECT_GE(vlan_round_trip(12, 34), 3u); }

// Tagged clients, untagged backends (backend_vlan = 0, the default), and
// the other way round: the tag comes off towards one end and goes on
// towards the other; the frame changes length, so none is rewritten in place.
TEST_F(FlowEngineFixtureTest, TagsComeOffAndGoOnBetweenTaggedAndUntaggedEnds) {
  EXPECT_EQ(vlan_round_trip(12, 0), 0u);
  EXPECT_EQ(vlan_round_trip(0, 34), 0u);
}

// ---------------------------------------------------------------- hand-off

class HandoffFixtureTest : public FlowEngineFixtureTest {
 protected:
  void proxy_header_both_ways();
};

TEST_F(HandoffFixtureTest, ProxyHeaderOffsetBothWaysInPlaceAndCopied) { proxy_header_both_ways(); }

// A client on a VLAN: the worker's side (the exception link) untagged, the
// client's tagged (collect() checks every frame's VLAN); the tag comes off
// and goes on, so nothing is rewritten in place.
TEST_F(HandoffFixtureTest, TaggedClientTheExceptionLinkUntagged) {
  vlan_ = 12;
  proxy_header_both_ways();
}

void HandoffFixtureTest::proxy_header_both_ways() {
  client_isn_ = 0xfffffff0;  // the PROXY header moves the worker's ISN back across the wrap
  hello_ = test::HelloBuilder().sni("t.test").records();
  handshake(full_options());
  auto out = wire(client(kTcpAck | kTcpPsh, client_isn_ + 1, isn_ + 1, hello_));
  ASSERT_EQ(out.wire.size(), 1u);
  ASSERT_EQ(out.exc.size(), 1u);
  ASSERT_EQ(out.exc[0].l3, L3::kArp);
  Bytes reply(64);
  reply.resize(build_arp_reply(reply, out.exc[0], kKernelMac, kKernelAddr));
  out = feed(reply, kT, true);
  ASSERT_EQ(out.exc.size(), 1u);
  backend_syn_ = out.exc[0];
  const uint32_t lead = client_isn_ - backend_syn_.seq;  // the PROXY header's length
  ASSERT_GE(lead, 16u);
  ASSERT_LE(lead, 300u);
  TcpSegment sa = worker(kTcpSyn | kTcpAck, backend_isn_, backend_syn_.seq + 1);
  sa.options = full_options();
  sa.options.ts_val = 33;
  backend_ts_ = true;
  backend_tsval_ = 33;
  out = exc(sa);
  ASSERT_GE(out.exc.size(), 1u);
  Bytes r = replayed(out.exc);
  ASSERT_EQ(r.size(), lead + hello_.size());
  EXPECT_EQ(Bytes(r.begin(), r.begin() + 12), Bytes({0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a}));
  EXPECT_EQ(Bytes(r.begin() + lead, r.end()), hello_);
  EXPECT_EQ(out.exc[0].seq, backend_syn_.seq + 1);
  TcpSegment a = worker(kTcpAck, backend_isn_ + 1, client_isn_ + 1 + u32(hello_.size()));
  with_backend_ts(a);
  EXPECT_EQ(exc(a).wire.size(), 1u) << "the worker's ACK of the replay, to the client";
  // The worker's data: to the client at our sequence numbers.
  const std::string answer(1000, 'w');
  TcpSegment d = worker(kTcpAck | kTcpPsh, backend_isn_ + 1, client_isn_ + 1 + u32(hello_.size()), as_bytes(answer));
  with_backend_ts(d);
  out = exc(d);
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_TRUE(out.exc.empty());
  EXPECT_EQ(out.wire[0].dst, kClient);
  EXPECT_EQ(out.wire[0].src, kVip);
  EXPECT_EQ(out.wire[0].seq, isn_ + 1);
  EXPECT_EQ(out.wire[0].ack, client_isn_ + 1 + u32(hello_.size()));
  // The client's: to the worker, the ACK and SACK moved into its space; the
  // sequence numbers are the client's (the header came before them).
  const uint32_t cnext = client_isn_ + 1 + u32(hello_.size());
  TcpSegment c = client(kTcpAck | kTcpPsh, cnext, isn_ + 1 + 500, as_bytes("GET /"));
  c.options.sack_count = 1;
  c.options.sack[0] = SackBlock{isn_ + 1 + 600, isn_ + 1 + 1000};
  out = wire(c);
  ASSERT_EQ(out.exc.size(), 1u);
  EXPECT_TRUE(out.wire.empty());
  EXPECT_EQ(out.exc[0].src, IpAddr::v4(kExcAddr));
  EXPECT_EQ(out.exc[0].seq, cnext);
  EXPECT_EQ(out.exc[0].ack, backend_isn_ + 1 + 500);
  EXPECT_EQ(out.exc[0].options.sack[0].left, backend_isn_ + 1 + 600);
  EXPECT_EQ(out.exc[0].options.sack[0].right, backend_isn_ + 1 + 1000);
  c.options.sack_count = 0;
  c.seq += 5;
  c.payload = {};
  out = wire(c);
  ASSERT_EQ(out.exc.size(), 1u);
  EXPECT_EQ(out.exc[0].seq, cnext + 5);
  if (vlan_ == 0) {
    EXPECT_GE(lanes_[1].engine->stats().forwarded_in_place, 2u);
  } else {
    EXPECT_EQ(lanes_[1].engine->stats().forwarded_in_place, 0u) << "a tag to take off or put on: built anew";
  }
  // The worker resets: the client is reset. The reset is at the worker's
  // next number with its answer unacknowledged (a number a forged segment
  // could have moved: judge_reset), so the flow stays until the idle
  // timeout ends it.
  TcpSegment rst = worker(kTcpRst | kTcpAck, backend_isn_ + 1 + u32(answer.size()), cnext + 5);
  out = exc(rst);
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_TRUE(out.wire[0].flags & kTcpRst);
  EXPECT_EQ(engine().flows(), 1u);
  (void)tick(kT + 300'001);
  expect_no_flows_left();
}

// ------------------------------------------------------------ bad input

// Option lists the parser refuses: on a SYN (no cookie), on a segment of a
// spliced flow (not forwarded, whichever path takes it, even with the NIC's
// checksum flag).
TEST_F(FlowEngineFixtureTest, MalformedOptionListsAreDroppedOnEveryPath) {
  const std::vector<Bytes> bad = {
      {2, 3, 5, 1, 1, 1, 1, 1, 1, 1, 1, 1},          // MSS of length 3
      {30, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},         // length 0
      {3, 4, 7, 0, 1, 1, 1, 1, 1, 1, 1, 1},          // window scale of length 4
      {1, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0},         // timestamps overrun the header
      {5, 14, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0},         // SACK of 1.5 blocks
      {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 30},         // a kind with no length byte
  };
  // A 12-byte option area (timestamps + two NOPs), overwritten.
  auto with_options = [](Bytes f, Bytes o) {
    o.resize(12, 1);
    EXPECT_EQ(f[14 + 20 + 12] >> 4, 8);
    std::memcpy(&f[14 + 20 + 20], o.data(), 12);
    fix_tcp_checksum(f);
    return f;
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    SCOPED_TRACE(i);
    TcpSegment syn = client(kTcpSyn, 1000 + u32(i), 0);
    syn.options.has_timestamps = true;
    const Bytes f = with_options(frame_of(syn), bad[i]);
    ASSERT_EQ(parse_frame(f).error, PacketError::kBadTcpOptions);
    EXPECT_TRUE(feed(f, kT, false).wire.empty());
  }
  EXPECT_EQ(stats().syn_cookies, 0u);
  EXPECT_EQ(stats().rx_bad, bad.size());
  // A spliced flow.
  const uint32_t cnext = spliced(full_options_ts(2));
  if (HasFailure()) return;
  const uint64_t spliced = stats().spliced_to_backend;
  for (size_t i = 0; i < bad.size(); ++i) {
    SCOPED_TRACE(i);
    ++client_tsval_;
    const Bytes f = with_options(frame_of(client(kTcpAck | kTcpPsh, cnext, isn_ + 1, as_bytes("data"))), bad[i]);
    auto out = feed(f, kT, false);
    EXPECT_TRUE(out.wire.empty());
    TcpSegment b = backend(kTcpAck, backend_isn_ + 1, cnext);
    b.options.has_timestamps = true;
    const Bytes g = with_options(frame_of(b), bad[i]);
    EXPECT_TRUE(feed(g, kT, false).wire.empty());
  }
  EXPECT_EQ(stats().spliced_to_backend, spliced);
  EXPECT_EQ(stats().rx_bad, 3 * bad.size());
  EXPECT_EQ(engine().flows(), 1u);
}

// A bad TCP checksum is never made good: the copy path and the in-place path
// drop it; when the NIC says the checksum was checked (so nothing reads the
// payload again), the incremental update keeps the error where it was, for
// the receiver to see.
TEST_F(FlowEngineFixtureTest, BadChecksumIsNeverRepaired) {
  const uint32_t cnext = spliced(full_options_ts(2));
  if (HasFailure()) return;
  const std::string data(500, 'd');
  for (const bool from_backend : {false, true}) {
    SCOPED_TRACE(from_backend ? "backend -> client" : "client -> backend");
    ++client_tsval_;
    TcpSegment s = from_backend ? backend(kTcpAck | kTcpPsh, backend_isn_ + 1, cnext, as_bytes(data))
                                : client(kTcpAck | kTcpPsh, cnext, isn_ + 1, as_bytes(data));
    if (from_backend) with_backend_ts(s);
    Bytes f = frame_of(s);
    f[f.size() - 100] ^= 0x04;  // a payload bit
    ASSERT_EQ(parse_frame(f).error, PacketError::kBadTcpChecksum);
    const uint64_t bad0 = stats().rx_bad;
    (void)feed(f, kT, false, false);
    EXPECT_TRUE(lanes_[0].wire.frames.empty()) << "copy: dropped";
    EXPECT_TRUE(lanes_[1].wire.frames.empty()) << "in place: dropped";
    EXPECT_EQ(stats().rx_bad, bad0 + 1);
    EXPECT_EQ(lanes_[1].engine->stats().rx_bad, bad0 + 1);
    ASSERT_EQ(lanes_[2].wire.frames.size(), 1u) << "NIC-verified: forwarded as it is";
    const Bytes& sent = lanes_[2].wire.frames[0];
    EXPECT_EQ(parse_frame(sent).error, PacketError::kBadTcpChecksum) << "still bad after the rewrite";
    const Packet p = parse_frame(sent, false);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p.dst, from_backend ? kClient : IpAddr::v4(kBackendIp));
  }
}

// A burst of new flows, each through a whole passthrough life, on every
// path: created = ended, nothing held, the in-place lanes' frames equal.
TEST_F(FlowEngineFixtureTest, ManyPassthroughFlowsEndWithNoneLeft) {
  for (uint16_t i = 0; i < 40; ++i) {
    SCOPED_TRACE(i);
    sport_ = static_cast<uint16_t>(30000 + i);
    client_isn_ = 0xfffff000u + i * 0x101u;
    backend_isn_ = 0x10000000u * (i % 16);
    handshake(full_options());
    auto out = wire(client(kTcpAck | kTcpPsh, client_isn_ + 1, isn_ + 1, hello_));
    ASSERT_FALSE(out.wire.empty());
    if (out.wire.size() == 2) {
      reach_backend(asked_in(out.wire));
    } else {
      FAIL() << "no SYN to the backend";
    }
    TcpOptions o = full_options();
    o.ts_val = 1000 + i;
    ASSERT_EQ(backend_accepts(o).size(), 1u);
    backend_acks_replay(hello_.size());
    const uint32_t cnext = client_isn_ + 1 + u32(hello_.size());
    TcpSegment f = backend(kTcpAck | kTcpFin | kTcpPsh, backend_isn_ + 1, cnext, as_bytes("bye"));
    with_backend_ts(f);
    ASSERT_EQ(wire(f).wire.size(), 1u);
    ++client_tsval_;
    ASSERT_EQ(wire(client(kTcpAck | kTcpFin, cnext, isn_ + 1 + 4)).wire.size(), 1u);
    TcpSegment last = backend(kTcpAck, backend_isn_ + 5, cnext + 1);
    with_backend_ts(last);
    ASSERT_EQ(wire(last).wire.size(), 1u);
  }
  EXPECT_EQ(engine().flows(), 40u) << "in time-wait";
  (void)tick(kT + 2'001);
  expect_no_flows_left();
  EXPECT_EQ(stats().passthrough_flows, 40u);
}

}  // namespace
}  // namespace lode::front

// The dpdk front's flow engine on packet fixtures (Katran's BpfTester way):
// crafted frames in, the frames it sends out parsed and compared. No DPDK:
// the same code runs under the lcores in dpdk_front.cc.
#include "dataplane/front/flow_engine.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "controlplane/config.h"
#include "dataplane/front/tcp_rewrite.h"
#include "support/flow_engine_fixture.h"
#include "support/hello_builder.h"
#include "support/test_pki.h"

namespace lode::front {
namespace {

using namespace fixture;

const uint8_t kVip6Bytes[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
const uint8_t kClient6Bytes[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};

using VectorSink = RecordingSink;

std::span<const uint8_t> as_bytes(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

class FlowEngineTest : public ::testing::Test {
 protected:
  void SetUp() override { make_engine(); }

  // The engine's configuration; `pools_before`: more [[pool]]s ahead of
  // pool p (which then has another index).
  static std::string engine_toml(uint32_t hello_ms, uint32_t max_hello, const std::string& pools_before = "",
                                 const std::string& timeouts = "", const std::string& route_p = "") {
    return "[[listener]]\nname = \"vip\"\nlisten = [\"10.0.0.1:443\", \"[fd00::1]:443\"]\n"
           "max_hello_bytes = " + std::to_string(max_hello) + "\n" + pools_before +
           "[[pool]]\nname = \"p\"\nbackends = [\"10.0.0.9:443\"]\n"
           "[[route]]\nname = \"r\"\nnames = [\"r.test\"]\naction = \"reject\"\n"
           "[[route]]\nname = \"rr\"\nnames = [\"rr.test\"]\naction = \"reject\"\nreject_with = \"reset\"\n"
           "[[route]]\nname = \"p\"\nnames = [\"p.test\"]\naction = \"passthrough\"\npool = \"p\"\n" + route_p +
           "[timeouts]\nhello_ms = " + std::to_string(hello_ms) + "\n" + timeouts;
  }
  void make_engine(uint32_t max_flows = 1024, uint32_t hello_ms = 5000, uint32_t max_hello = 16384) {
    const std::string toml = engine_toml(hello_ms, max_hello, pools_before_, timeouts_, route_p_);
    const std::string path = dir_.write("lode.toml", toml);
    auto cfg = config::load_config_file(path);
    ASSERT_TRUE(cfg.has_value()) << cfg.error()[0].to_string();
    const auto runtime = runtime_of(*cfg);
    ASSERT_NE(runtime, nullptr);
    EngineConfig ec = engine_config(*runtime);
    ec.max_flows = max_flows;
    ec.cookie_key = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    if (with_series_) {
      // Slots as assign_series gives them: route r of the listener in slot
      // r + 1, backend b of pool i in slot 1 + 4 * i + b; slot 0 is "(other)".
      for (auto& l : runtime->listeners) {
        l.route_slots.resize(l.table.route_count());
        for (uint32_t r = 0; r < l.route_slots.size(); ++r) l.route_slots[r] = r + 1;
      }
      for (uint32_t i = 0; i < runtime->pools.size(); ++i) {
        auto& pr = runtime->pools[i];
        pr.backend_slots.resize(pr.pool->size());
        for (uint32_t b = 0; b < pr.backend_slots.size(); ++b) pr.backend_slots[b] = 1 + 4 * i + b;
      }
      ec.route_series = route_rows_.data();
      ec.backend_series = backend_rows_.data();
      ec.all_route_series = all_route_rows_;
    }
    runtime_ = runtime;
    engine_ = std::make_unique<FlowEngine>(ec, runtime);
  }
  // Route `name`'s series (with_series_).
  const stats::RouteSeries& route_row(const std::string& name) const {
    const auto& table = runtime_->listeners[0].table;
    for (uint32_t r = 0; r < table.route_count(); ++r) {
      if (table.route(r).name == name) return route_rows_[r + 1];
    }
    ADD_FAILURE() << "no route " << name;
    return route_rows_[0];
  }

  TcpSegment seg(uint8_t flags, uint32_t seq, uint32_t ack, std::span<const uint8_t> payload = {},
                 uint16_t sport = 40000, bool v6 = false) {
    TcpSegment s;
    s.src_mac = kClientMac;
    s.dst_mac = kOurMac;
    s.flow.src = v6 ? IpAddr::v6(std::span<const uint8_t, 16>(kClient6Bytes, 16)) : kClient;
    s.flow.dst = v6 ? IpAddr::v6(std::span<const uint8_t, 16>(kVip6Bytes, 16)) : kVip;
    s.flow.sport = sport;
    s.flow.dport = 443;
    s.seq = seq;
    s.ack = ack;
    s.flags = flags;
    s.window = 64240;
    s.payload = payload;
    return s;
  }
  // Sends a frame at `now_ms`; returns what came out, parsed.
  std::vector<Packet> in(const TcpSegment& s, uint64_t now_ms = 1'000'000) {
    return in_raw(frame_of(s, kMaxFrame + 9000), now_ms);
  }
  std::vector<Packet> in_raw(std::vector<uint8_t> frame, uint64_t now_ms = 1'000'000) {
    stored_.push_back(std::move(frame));
    sink_.frames.clear();
    if (sink_.in_place) {
      engine_->on_frame_in_place(stored_.back(), now_ms, sink_);
    } else {
      engine_->on_frame(stored_.back(), now_ms, sink_);
    }
    return parsed_out();
  }
  std::vector<Packet> tick(uint64_t now_ms) {
    sink_.frames.clear();
    engine_->on_tick(now_ms, sink_);
    return parsed_out();
  }
  std::vector<Packet> parsed_out() {
    std::vector<Packet> out;
    for (auto& f : sink_.frames) {
      out_frames_.push_back(f);
      out.push_back(parse_frame(out_frames_.back()));
      EXPECT_TRUE(out.back().ok()) << to_string(out.back().error);
    }
    return out;
  }
  // SYN then the cookie's ACK; returns the client's next sequence number and
  // sets isn_ (ours).
  uint32_t connect(uint32_t client_isn = 777, uint16_t sport = 40000, uint64_t now = 1'000'000) {
    auto synack = in(seg(kTcpSyn, client_isn, 0, {}, sport), now);
    EXPECT_EQ(synack.size(), 1u);
    if (synack.empty()) return 0;
    isn_ = synack[0].seq;
    EXPECT_TRUE(in(seg(kTcpAck, client_isn + 1, isn_ + 1, {}, sport), now).empty());
    return client_isn + 1;
  }
  const FrontStats& stats() const { return engine_->stats(); }

  test::TempDir dir_;
  std::string pools_before_;  // engine_toml's
  std::string timeouts_;      // engine_toml's: more [timeouts] keys
  std::unique_ptr<FlowEngine> engine_;
  std::shared_ptr<worker::Runtime> runtime_;
  VectorSink sink_;
  std::vector<std::vector<uint8_t>> stored_, out_frames_;
  uint32_t isn_ = 0;
  bool with_series_ = false;  // make_engine gives the engine series rows
  std::string route_p_;  // more lines for route p (make_engine)
  std::vector<const stats::RouteSeries*> all_route_rows_;  // every lcore's rows (with_series_)
  std::array<stats::RouteSeries, 8> route_rows_{};
  std::array<stats::BackendSeries, 8> backend_rows_{};
};

test::Bytes hello(const std::string& sni) { return test::HelloBuilder().sni(sni).records(); }

TEST_F(FlowEngineTest, ArpForTheVipIsAnsweredOthersAreNot) {
  std::vector<uint8_t> frame(64);
  ASSERT_GT(build_arp_request(frame, kClientMac, 0x0a000002, 0x0a000001), 0u);
  auto out = in_raw(frame);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].l3, L3::kArp);
  EXPECT_EQ(out[0].arp.op, 2);
  EXPECT_EQ(out[0].arp.sender_mac, kOurMac);
  EXPECT_EQ(out[0].arp.sender_ip, 0x0a000001u);
  EXPECT_EQ(out[0].arp.target_ip, 0x0a000002u);
  ASSERT_GT(build_arp_request(frame, kClientMac, 0x0a000002, 0x0a000003), 0u);
  EXPECT_TRUE(in_raw(frame).empty());
  EXPECT_EQ(stats().arp_replies, 1u);
}

TEST_F(FlowEngineTest, SynGetsACookieWithAnOpenWindowAndTheOfferedOptions) {
  TcpSegment s = seg(kTcpSyn, 1000, 0);
  s.options.mss = 1460;
  s.options.wscale = 7;
  s.options.sack_ok = true;
  s.options.has_timestamps = true;
  s.options.ts_val = 4242;
  auto out = in(s);
  ASSERT_EQ(out.size(), 1u);
  const Packet& sa = out[0];
  EXPECT_EQ(sa.flags, kTcpSyn | kTcpAck);
  EXPECT_EQ(sa.ack, 1001u);
  EXPECT_EQ(sa.sport, 443);
  EXPECT_EQ(sa.dport, 40000);
  EXPECT_EQ(sa.src, kVip);
  EXPECT_EQ(sa.dst_mac, kClientMac);
  EXPECT_GT(sa.window, 0) << "a zero window would stop the client's hello";
  EXPECT_EQ(sa.options.mss, 1460);
  EXPECT_EQ(sa.options.wscale, 7);
  EXPECT_TRUE(sa.options.sack_ok);
  EXPECT_TRUE(sa.options.has_timestamps);
  EXPECT_EQ(sa.options.ts_ecr, 4242u);
  EXPECT_EQ(engine_->flows(), 0u) << "a SYN costs no state";
  // Without options: none back.
  out = in(seg(kTcpSyn, 5000, 0, {}, 40001));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].options.wscale, -1);
  EXPECT_FALSE(out[0].options.sack_ok);
  EXPECT_FALSE(out[0].options.has_timestamps);
}

TEST_F(FlowEngineTest, HelloForARejectedNameGetsAlert112AndFin) {
  const uint32_t seq = connect();
  EXPECT_EQ(engine_->flows(), 1u);
  const auto h = hello("r.test");
  auto out = in(seg(kTcpAck | kTcpPsh, seq, isn_ + 1, h));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags & (kTcpFin | kTcpAck), kTcpFin | kTcpAck);
  EXPECT_EQ(out[0].seq, isn_ + 1);
  EXPECT_EQ(out[0].ack, seq + h.size());
  ASSERT_EQ(out[0].payload.size(), 7u);
  EXPECT_EQ(out[0].payload[0], 21);
  EXPECT_EQ(out[0].payload[6], 112);
  EXPECT_EQ(stats().rejects, 1u);
  // The client's FIN: acknowledged, the flow is gone.
  out = in(seg(kTcpFin | kTcpAck, seq + static_cast<uint32_t>(h.size()), isn_ + 9));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, kTcpAck);
  EXPECT_EQ(out[0].ack, seq + h.size() + 1);
  EXPECT_EQ(engine_->flows(), 0u);
}

// A reload that raises max_hello_bytes: the buffers of the old size are no
// new flow's. Flow A holds one (collecting) across the reload and ends;
// flow B then collects a hello four times the old cap, its last piece
// first. Giving B A's buffer was a heap overflow (seen under ASan; a
// release build may not show it): B's hello is whole, parsed and routed.
TEST_F(FlowEngineTest, AReloadThatRaisesTheHelloCapGivesNewFlowsBuffersOfTheNewSize) {
  make_engine(1024, 5000, 4096);
  const uint32_t a = connect(100, 40000);
  const test::Bytes small = hello("p.test");
  in(seg(kTcpAck | kTcpPsh, a, isn_ + 1, std::span(small.data(), 10), 40000));
  auto bigger = runtime_from(engine_toml(5000, 65536), "bigger.toml");
  ASSERT_NE(bigger, nullptr);
  engine_->set_runtime(bigger);
  in(seg(kTcpRst | kTcpAck, a + 10, isn_ + 1, {}, 40000));
  EXPECT_EQ(stats().flows_ended, 1u);

  const uint32_t b = connect(200, 40001);
  const test::Bytes big = test::HelloBuilder().sni("p.test").padding(20000).records();
  ASSERT_GT(big.size(), 4u * 4096);
  const size_t piece = 1400;
  const size_t last = (big.size() - 1) / piece * piece;
  in(seg(kTcpAck | kTcpPsh, b + static_cast<uint32_t>(last), isn_ + 1, std::span(big).subspan(last), 40001));
  for (size_t at = 0; at < last; at += piece) {
    in(seg(kTcpAck | kTcpPsh, b + static_cast<uint32_t>(at), isn_ + 1, std::span(big).subspan(at, piece), 40001));
  }
  EXPECT_EQ(stats().hello_done, 1u);
  EXPECT_EQ(stats().hello_errors, 0u);
}

// A reload between the cookie's ACK and the hello: the hello is routed by
// the configuration in service when it is parsed (p.test became a reject
// route: an alert, nothing towards a backend), not by the one of the ACK.
TEST_F(FlowEngineTest, AHelloIsRoutedByTheConfigurationInServiceWhenItIsParsed) {
  const uint32_t seq = connect();
  std::string toml = engine_toml(5000, 16384);
  const std::string from = "name = \"p\"\nnames = [\"p.test\"]\naction = \"passthrough\"\npool = \"p\"\n";
  const size_t at = toml.find(from);
  ASSERT_NE(at, std::string::npos);
  toml.replace(at, from.size(), "name = \"p\"\nnames = [\"p.test\"]\naction = \"reject\"\n");
  auto rejecting = runtime_from(toml, "rejecting.toml");
  ASSERT_NE(rejecting, nullptr);
  engine_->set_runtime(rejecting);
  auto out = in(seg(kTcpAck | kTcpPsh, seq, isn_ + 1, hello("p.test")));
  ASSERT_EQ(out.size(), 1u) << "an alert and FIN, no ARP or SYN towards a backend";
  EXPECT_EQ(out[0].dst, kClient);
  ASSERT_EQ(out[0].payload.size(), 7u);
  EXPECT_EQ(out[0].payload[0], 21);
  EXPECT_EQ(stats().rejects, 1u);
}

// An IPv4 client's segments grow by 20 bytes on their way to an IPv6
// backend (1460 + 60 = 1520 over a 1500-byte path: an upload black-holed):
// where a pool has one, IPv4 clients are offered an MSS 20 bytes smaller;
// IPv6 clients, and every client without IPv6 backends, the full one.
TEST_F(FlowEngineTest, IpV4ClientsGetRoomForAnIpV6BackendsHeader) {
  auto syn_ack_mss = [&](bool v6, uint16_t sport) {
    auto out = in(seg(kTcpSyn, 100, 0, {}, sport, v6));
    return out.size() == 1 ? out[0].options.mss : 0;
  };
  EXPECT_EQ(syn_ack_mss(false, 41000), 1460);
  pools_before_ = "[[pool]]\nname = \"v6\"\nbackends = [\"[fd00::9]:443\"]\n";
  make_engine();
  EXPECT_EQ(syn_ack_mss(false, 41001), 1440);
  EXPECT_EQ(syn_ack_mss(true, 41002), 1460);
  // A reload that drops it: the full MSS again.
  auto v4_only = runtime_from(engine_toml(5000, 16384), "v4.toml");
  ASSERT_NE(v4_only, nullptr);
  engine_->set_runtime(v4_only);
  EXPECT_EQ(syn_ack_mss(false, 41003), 1460);
}

TEST_F(FlowEngineTest, AnswerIsSentAgainWhenTheClientDidNotGetIt) {
  const uint32_t seq = connect();
  const auto h = hello("r.test");
  ASSERT_EQ(in(seg(kTcpAck, seq, isn_ + 1, h)).size(), 1u);
  // The client acknowledges only up to before our answer: it lost it.
  auto out = in(seg(kTcpAck, seq + static_cast<uint32_t>(h.size()), isn_ + 1));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].seq, isn_ + 1);
  EXPECT_EQ(out[0].payload.size(), 7u);
  EXPECT_TRUE(out[0].flags & kTcpFin);
}

TEST_F(FlowEngineTest, HelloInThreeSegmentsOutOfOrderAndDuplicated) {
  const uint32_t seq = connect();
  const auto h = hello("r.test");
  const size_t a = 10, b = h.size() / 2;
  auto piece = [&](size_t lo, size_t hi) { return std::span<const uint8_t>(h.data() + lo, hi - lo); };
  auto out = in(seg(kTcpAck, seq + static_cast<uint32_t>(b), isn_ + 1, piece(b, h.size())));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].ack, seq) << "a duplicate ACK for the gap";
  out = in(seg(kTcpAck, seq + static_cast<uint32_t>(a), isn_ + 1, piece(a, b)));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].ack, seq);
  out = in(seg(kTcpAck, seq + static_cast<uint32_t>(a), isn_ + 1, piece(a, b)));  // again
  ASSERT_EQ(out.size(), 1u);
  out = in(seg(kTcpAck, seq, isn_ + 1, piece(0, a)));
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].payload.size(), 7u);
  EXPECT_EQ(out[0].payload[6], 112);
  EXPECT_GE(stats().hello_out_of_order, 1u);
}

TEST_F(FlowEngineTest, OverlappingRetransmitWithOtherBytesDoesNotChangeTheHello) {
  const uint32_t seq = connect();
  const auto h = hello("r.test");
  const size_t cut = h.size() - 20;
  // The first part, then a "retransmit" of it with the SNI rewritten, then the rest.
  ASSERT_EQ(in(seg(kTcpAck, seq, isn_ + 1, std::span<const uint8_t>(h.data(), cut))).size(), 1u);
  auto forged = h;
  for (size_t i = 0; i + 6 <= forged.size(); ++i) {
    if (std::string(forged.begin() + i, forged.begin() + i + 6) == "r.test") forged[i] = 'x';
  }
  ASSERT_NE(forged, h);
  ASSERT_EQ(in(seg(kTcpAck, seq, isn_ + 1, std::span<const uint8_t>(forged.data(), cut))).size(), 1u);
  auto out = in(seg(kTcpAck, seq + static_cast<uint32_t>(cut), isn_ + 1, std::span<const uint8_t>(h.data() + cut, 20)));
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].payload.size(), 7u);
  EXPECT_EQ(out[0].payload[6], 112);
  EXPECT_EQ(stats().rejects, 1u);
  EXPECT_EQ(stats().no_route, 0u) << "the name parsed was r.test, not x.test";
}

TEST_F(FlowEngineTest, ForgedAcksAreDroppedSilentlyAndCreateNothing) {
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    EXPECT_TRUE(in(seg(kTcpAck, rng(), rng(), {}, static_cast<uint16_t>(1024 + i))).empty());
  }
  EXPECT_EQ(engine_->flows(), 0u);
  EXPECT_EQ(stats().cookie_invalid, 2000u);
}

TEST_F(FlowEngineTest, CookieFromARetransmittedSynAcrossTheSlotBoundary) {
  const uint64_t t0 = 63'900;  // just before a 64 s boundary
  auto out = in(seg(kTcpSyn, 100, 0), t0);
  ASSERT_EQ(out.size(), 1u);
  const uint32_t first = out[0].seq;
  out = in(seg(kTcpSyn, 100, 0), t0 + 1000);  // the SYN again, in the next slot
  ASSERT_EQ(out.size(), 1u);
  // The client answers the first SYN-ACK, after the boundary.
  EXPECT_TRUE(in(seg(kTcpAck, 101, first + 1), t0 + 2000).empty());
  EXPECT_EQ(engine_->flows(), 1u);
  // Two slots later, a cookie is dead.
  auto late = in(seg(kTcpSyn, 300, 0, {}, 40002), 1'000'000);
  ASSERT_EQ(late.size(), 1u);
  EXPECT_TRUE(in(seg(kTcpAck, 301, late[0].seq + 1, {}, 40002), 1'000'000 + 130'000).empty());
  EXPECT_EQ(stats().cookie_invalid, 1u);
}

TEST_F(FlowEngineTest, CookieKeyRotatesOnScheduleAndTheLastOneStaysValid) {
  // A SYN just before a key change, its ACK just after: still good.
  const uint64_t change = 3 * FlowEngine::kCookieKeyPeriodMs;
  auto sa = in(seg(kTcpSyn, 100, 0), change - 100);
  ASSERT_EQ(sa.size(), 1u);
  EXPECT_TRUE(in(seg(kTcpAck, 101, sa[0].seq + 1), change + 100).empty());
  EXPECT_EQ(engine_->flows(), 1u);
  // The same SYN in the new period gets another cookie: the key changed.
  auto again = in(seg(kTcpSyn, 100, 0, {}, 40001), change - 100);
  auto later = in(seg(kTcpSyn, 100, 0, {}, 40001), change + 100);
  ASSERT_EQ(again.size(), 1u);
  ASSERT_EQ(later.size(), 1u);
  EXPECT_NE(again[0].seq, later[0].seq);
  EXPECT_EQ(stats().cookie_invalid, 0u);
}

TEST_F(FlowEngineTest, HelloTimeoutResets) {
  const uint32_t seq = connect();
  const auto h = hello("r.test");
  ASSERT_EQ(in(seg(kTcpAck, seq, isn_ + 1, std::span<const uint8_t>(h.data(), 20))).size(), 1u);
  EXPECT_TRUE(tick(1'000'000 + 4'000).empty());
  auto out = tick(1'000'000 + 5'001);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].flags & kTcpRst);
  EXPECT_EQ(stats().hello_timeouts, 1u);
  EXPECT_EQ(engine_->flows(), 0u);
}

TEST_F(FlowEngineTest, PlainHttpGets400AndOtherNonTlsAReset) {
  uint32_t seq = connect();
  const std::string get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  auto out = in(seg(kTcpAck, seq, isn_ + 1, as_bytes(get)));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(std::string(out[0].payload.begin(), out[0].payload.begin() + 12), "HTTP/1.1 400");
  EXPECT_TRUE(out[0].flags & kTcpFin);
  seq = connect(900, 40001);
  const uint8_t sslv2[] = {0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10};
  out = in(seg(kTcpAck, seq, isn_ + 1, sslv2, 40001));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].flags & kTcpRst);
  EXPECT_EQ(stats().hello_not_tls, 2u);
}

TEST_F(FlowEngineTest, MalformedHelloGetsItsAlert) {
  const uint32_t seq = connect();
  const auto bad = test::HelloBuilder().sni({"a.test", "b.test"}).records();  // two host_names: decode_error
  auto out = in(seg(kTcpAck, seq, isn_ + 1, bad));
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].payload.size(), 7u);
  EXPECT_EQ(out[0].payload[6], 50);
  EXPECT_EQ(stats().hello_errors, 1u);
}

TEST_F(FlowEngineTest, RejectWithResetResets) {
  const uint32_t seq = connect();
  auto out = in(seg(kTcpAck, seq, isn_ + 1, hello("rr.test")));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].flags & kTcpRst);
  EXPECT_EQ(out[0].seq, isn_ + 1);
  EXPECT_EQ(stats().rejects_reset, 1u);
  EXPECT_EQ(engine_->flows(), 0u);
}

// ------------------------------------------------------------ passthrough

const IpAddr kBackend = IpAddr::v4(0x0a000009);  // 10.0.0.9

class PassthroughTest : public FlowEngineTest {
 protected:
  // The client's SYN with options, the cookie ACK, the hello for p.test:
  // the engine asks ARP for the backend; the reply brings our SYN.
  void open_to_backend() {
    TcpSegment syn = seg(kTcpSyn, client_isn, 0);
    syn.options.mss = 1460;
    syn.options.wscale = 7;
    syn.options.sack_ok = true;
    syn.options.has_timestamps = true;
    syn.options.ts_val = 1000;
    auto sa = in(syn);
    ASSERT_EQ(sa.size(), 1u);
    isn_ = sa[0].seq;
    our_tsval = sa[0].options.ts_val;
    TcpSegment ack = seg(kTcpAck, client_isn + 1, isn_ + 1);
    ack.options.has_timestamps = true;
    ack.options.ts_val = 1001;
    ack.options.ts_ecr = our_tsval;
    EXPECT_TRUE(in(ack).empty());
    hello_bytes = hello("p.test");
    TcpSegment h = seg(kTcpAck | kTcpPsh, client_isn + 1, isn_ + 1, hello_bytes);
    h.options = ack.options;
    auto out = in(h);
    ASSERT_EQ(out.size(), 2u);  // the ACK of the hello, the ARP request
    const Packet* arp = out[0].l3 == L3::kArp ? &out[0] : &out[1];
    EXPECT_EQ(arp->arp.op, 1);
    EXPECT_EQ(arp->arp.target_ip, 0x0a000009u);
    EXPECT_EQ(arp->arp.sender_ip, 0x0a000001u);
    std::vector<uint8_t> reply(64);
    Packet req = *arp;
    req.src_mac = kBackendMac;
    req.arp.sender_mac = kBackendMac;
    req.arp.sender_ip = 0x0a000009;
    req.arp.target_ip = 0x0a000001;
    // The backend's ARP reply, built as the answer to a request from us.
    ASSERT_GT(build_arp_reply(reply, *arp, kBackendMac, 0x0a000009), 0u);
    out = in_raw(reply);
    ASSERT_EQ(out.size(), 1u);
    backend_syn = out[0];
  }
  TcpSegment from_backend(uint8_t flags, uint32_t seq, uint32_t ack, std::span<const uint8_t> payload = {}) {
    TcpSegment s;
    s.src_mac = kBackendMac;
    s.dst_mac = kOurMac;
    s.flow.src = kBackend;
    s.flow.dst = kVip;
    s.flow.sport = 443;
    s.flow.dport = backend_syn.sport;
    s.seq = seq;
    s.ack = ack;
    s.flags = flags;
    s.window = 1000;
    s.payload = payload;
    return s;
  }
  void translate_both_ways();
  uint32_t client_isn = 0xfffff000;  // wraps during the test
  uint32_t our_tsval = 0;
  test::Bytes hello_bytes;
  Packet backend_syn;
};

TEST_F(PassthroughTest, BackendSynCarriesTheClientsIsnAndOptions) {
  open_to_backend();
  const Packet& s = backend_syn;
  EXPECT_EQ(s.flags, kTcpSyn);
  EXPECT_EQ(s.src, kVip);
  EXPECT_EQ(s.dst, kBackend);
  EXPECT_EQ(s.dport, 443);
  EXPECT_GE(s.sport, 20000);
  EXPECT_EQ(s.dst_mac, kBackendMac);
  EXPECT_EQ(s.seq, client_isn);
  EXPECT_EQ(s.options.mss, 1460);
  EXPECT_EQ(s.options.wscale, 7);
  EXPECT_TRUE(s.options.sack_ok);
  EXPECT_TRUE(s.options.has_timestamps);
  EXPECT_EQ(s.options.ts_val, 1001u) << "the client's latest TSval";
}

// A flow routed to the second pool connects; a reload leaves one pool; a
// new flow makes the engine take the new pools' state; then the first
// flow's backend answers. Its pool index names no pool of the new
// generation (it read and wrote past the pools' state: seen under ASan):
// the flow goes on, its replay is sent, the new generation's pool state is
// not touched.
TEST_F(PassthroughTest, AFlowOfAnOlderGenerationTouchesNoPoolStateOfTheNewOne) {
  pools_before_ = "[[pool]]\nname = \"q\"\nbackends = [\"10.0.0.8:443\"]\n";
  make_engine();
  open_to_backend();
  ASSERT_EQ(backend_syn.dst, kBackend);
  auto fewer = runtime_from(engine_toml(5000, 16384), "fewer.toml");
  ASSERT_NE(fewer, nullptr);
  engine_->set_runtime(fewer);
  const uint32_t y = connect(5000, 40001);
  const test::Bytes h = hello("p.test");
  auto out = in(seg(kTcpAck | kTcpPsh, y, isn_ + 1, h, 40001));
  ASSERT_EQ(out.size(), 2u) << "the ACK of Y's hello and Y's SYN to the backend";
  out = in(from_backend(kTcpSyn | kTcpAck, 0x50000000, client_isn + 1));
  ASSERT_EQ(out.size(), 1u) << "the first flow's replay";
  EXPECT_EQ(out[0].payload.size(), hello_bytes.size());
  in(from_backend(kTcpRst | kTcpAck, 0x50000001, client_isn + 1 + static_cast<uint32_t>(hello_bytes.size())));
}

// A reload between a half-open trial's SYN and the backend's SYN-ACK: the
// trial's flow began in the older generation, whose pool state went with
// it; its verdict is carried to the same-named pool in service
// (BackendPool::carry_verdict): the backend is up there and the next flow
// goes to it. Before, the new generation kept the trial in flight until a
// cooldown passed: with when_all_down = "reject" every new flow was reset
// meanwhile.
TEST_F(PassthroughTest, ATrialsVerdictAfterAReloadReachesThePoolInService) {
  pools_before_ = "[[pool]]\nname = \"q\"\nbackends = [\"10.0.0.9:443\"]\nwhen_all_down = \"reject\"\n";
  route_p_ = "[[route]]\nname = \"q\"\nnames = [\"q.test\"]\naction = \"passthrough\"\npool = \"q\"\n";
  make_engine();
  open_to_backend();  // p.test: the backend's MAC learned
  const uint64_t t = 1'000'000;
  // A flow to q.test at `now`: the backend SYN it makes (flags 0: none).
  const auto flow_to_q = [&](uint16_t sport, uint64_t now) {
    const uint32_t y = connect(5000 + sport, sport, now);
    Packet none;
    none.flags = 0;
    for (const Packet& p : in(seg(kTcpAck | kTcpPsh, y, isn_ + 1, hello("q.test"), sport), now)) {
      if (p.flags == kTcpSyn && p.dst == kBackend) return p;
    }
    return none;
  };
  const auto answer = [&](const Packet& syn, uint8_t flags, uint64_t now) {
    TcpSegment s = from_backend(flags, 0x40000000, syn.seq + 1);
    s.flow.dport = syn.sport;
    return in(s, now);
  };
  for (uint16_t i = 0; i < 3; ++i) {  // three refused connects eject it (cooldown 10 s)
    const Packet syn = flow_to_q(41000 + i, t);
    ASSERT_EQ(syn.flags, kTcpSyn);
    (void)answer(syn, kTcpRst | kTcpAck, t);
  }
  EXPECT_EQ(flow_to_q(41010, t + 1).flags, 0) << "ejected: refused (when_all_down = reject)";
  const Packet trial = flow_to_q(42000, t + 10'000);
  ASSERT_EQ(trial.flags, kTcpSyn) << "the half-open trial";
  auto again = runtime_from(engine_toml(5000, 16384, pools_before_, timeouts_, route_p_), "again.toml");
  ASSERT_NE(again, nullptr);
  engine_->set_runtime(again);
  EXPECT_EQ(flow_to_q(42001, t + 10'001).flags, 0) << "the new generation carried the trial in flight";
  ASSERT_EQ(answer(trial, kTcpSyn | kTcpAck, t + 10'002).size(), 1u) << "the trial's replay";
  EXPECT_EQ(flow_to_q(42002, t + 10'003).flags, kTcpSyn) << "up in the pool in service: the next flow goes to it";
}

// A reload that lowers idle_ms: flow A waits idle under the old 300 s,
// flow B becomes idle after the reload. Each waited by its own
// generation's timeout, and A, at the head of the idle list, kept B from
// ever being looked at. The timeouts in service apply to every waiting
// flow (as in the workers): both are reset at 1 s.
TEST_F(PassthroughTest, AReloadsTimeoutsApplyToTheFlowsAlreadyWaiting) {
  timeouts_ = "idle_ms = 300000\n";
  make_engine();
  open_to_backend();
  const uint32_t hello_end = client_isn + 1 + static_cast<uint32_t>(hello_bytes.size());
  ASSERT_EQ(in(from_backend(kTcpSyn | kTcpAck, 0x50000000, client_isn + 1)).size(), 1u);
  ASSERT_EQ(in(from_backend(kTcpAck, 0x50000001, hello_end)).size(), 1u);
  auto lower = runtime_from(engine_toml(5000, 16384, "", "idle_ms = 1000\n"), "lower.toml");
  ASSERT_NE(lower, nullptr);
  engine_->set_runtime(lower);
  const uint32_t y = connect(5000, 40001);
  const test::Bytes h = hello("p.test");
  auto out = in(seg(kTcpAck | kTcpPsh, y, isn_ + 1, h, 40001));
  const auto syn = std::find_if(out.begin(), out.end(), [](const Packet& x) { return x.flags == kTcpSyn; });
  ASSERT_NE(syn, out.end());
  backend_syn = *syn;
  ASSERT_EQ(in(from_backend(kTcpSyn | kTcpAck, 0x60000000, y)).size(), 1u);
  ASSERT_EQ(in(from_backend(kTcpAck, 0x60000001, y + static_cast<uint32_t>(h.size()))).size(), 1u);
  EXPECT_EQ(engine_->flows(), 2u);
  (void)tick(1'000'000 + 999);
  EXPECT_EQ(engine_->flows(), 2u);
  (void)tick(1'000'000 + 1'001);
  EXPECT_EQ(engine_->flows(), 0u) << "both idle past the 1 s in service";
}

TEST_F(PassthroughTest, HelloIsReplayedThenSegmentsAreTranslatedBothWays) { translate_both_ways(); }

TEST_F(PassthroughTest, TranslatedInPlaceTheSame) {
  // The received frames rewritten where they are (RFC 1624 checksum
  // updates): every output parses with valid checksums and says the same.
  sink_.in_place = true;
  translate_both_ways();
  EXPECT_EQ(stats().forwarded_in_place, 4u);
  EXPECT_EQ(sink_.in_place_sent, 4u);
}

// Segments of a spliced flow in the common shape take the fast path
// (flow_engine_forward.cc): what comes out is, byte for byte, what
// rewrite_tcp makes of the same frame with the flow's translation. Shapes it
// does not take (SACK blocks, IPv4 options) still go out right through the
// full path; a bad checksum is dropped; a sink that refuses the frame gets
// a copy.
TEST_F(PassthroughTest, FastPathWritesWhatRewriteTcpWrites) {
  sink_.in_place = true;
  open_to_backend();
  const uint32_t b = 0x70000000;
  TcpSegment sa = from_backend(kTcpSyn | kTcpAck, b, client_isn + 1);
  sa.options.mss = 1400;
  sa.options.wscale = 9;
  sa.options.sack_ok = true;
  sa.options.has_timestamps = true;
  sa.options.ts_val = 5000;
  sa.options.ts_ecr = 1001;
  ASSERT_EQ(in(sa).size(), 1u);  // the replay
  const uint32_t cnext = client_isn + 1 + static_cast<uint32_t>(hello_bytes.size());
  TcpSegment acked = from_backend(kTcpAck, b + 1, cnext);
  acked.options.has_timestamps = true;
  acked.options.ts_val = 5001;
  acked.options.ts_ecr = 1001;
  ASSERT_EQ(in(acked).size(), 1u);  // the replay acknowledged: the flow is spliced and idle

  const uint32_t delta = isn_ - b;               // our sequence space towards the client - the backend's
  const uint32_t ts_delta = our_tsval - 5000;    // our TSval space - the backend's
  const FlowKey to_client{kVip, kClient, 443, 40000};
  const FlowKey to_backend{kVip, kBackend, backend_syn.sport, 443};
  auto rewritten = [](std::vector<uint8_t> frame, const TcpRewrite& r) {
    const Packet p = parse_frame(frame);
    EXPECT_TRUE(p.ok());
    EXPECT_EQ(rewrite_tcp(frame, p, r), p.vlan == r.vlan);
    return frame;
  };
  auto frame_of = [](const TcpSegment& s) {
    std::vector<uint8_t> f(kMaxFrame);
    f.resize(build_tcp(f, s));
    return f;
  };
  // Timestamps first then two NOPs (build_tcp) -> NOP, NOP, timestamps
  // (Linux): the same 16-bit words, so the same checksum.
  auto linux_layout = [](std::vector<uint8_t> f) {
    const size_t tcp = 14 + 20;
    EXPECT_EQ(f[tcp + 20], 8);
    std::memmove(&f[tcp + 22], &f[tcp + 20], 10);
    f[tcp + 20] = f[tcp + 21] = 1;
    return f;
  };
  const std::string data(700, 'x');
  size_t n = 0;
  auto check = [&](const std::vector<uint8_t>& frame, const std::vector<uint8_t>& expected, const char* what) {
    SCOPED_TRACE(what);
    const uint64_t before = stats().forwarded_in_place;
    (void)in_raw(frame);
    ASSERT_EQ(sink_.frames.size(), 1u);
    EXPECT_EQ(sink_.frames[0], expected);
    EXPECT_EQ(stats().forwarded_in_place, before + 1);
    ++n;
  };

  // Backend -> client: sequence numbers moved, window rescaled (9 -> 7), TSval moved.
  TcpSegment d = from_backend(kTcpAck | kTcpPsh, b + 1, cnext, as_bytes(data));
  d.options.has_timestamps = true;
  d.options.ts_val = 5010;
  d.options.ts_ecr = 1005;
  TcpRewrite rc{kOurMac, kClientMac, to_client, isn_ + 1, cnext, 4000, true, 5010 + ts_delta, 1005, 0};
  check(frame_of(d), rewritten(frame_of(d), rc), "backend -> client, timestamps");
  check(linux_layout(frame_of(d)), rewritten(linux_layout(frame_of(d)), rc), "backend -> client, NOP NOP timestamps");
  TcpSegment plain = d;
  plain.options = {};
  rc.timestamps = false;
  check(frame_of(plain), rewritten(frame_of(plain), rc), "backend -> client, no options");
  rc.timestamps = true;
  {
    // A tagged frame for an untagged client: the tag must come off, the
    // frame shrinks; not in place, by either path.
    TcpSegment tagged = d;
    tagged.vlan = 12;
    const uint64_t before = stats().forwarded_in_place;
    auto copy = rewritten(frame_of(tagged), rc);  // rewrite_tcp refuses too
    EXPECT_EQ(copy, frame_of(tagged));
    const auto sent = in_raw(frame_of(tagged));
    ASSERT_EQ(sent.size(), 1u);
    EXPECT_EQ(sent[0].vlan, 0);
    EXPECT_EQ(sent[0].seq, isn_ + 1);
    EXPECT_EQ(stats().forwarded_in_place, before);
  }

  // Client -> backend: the acknowledgement moved back, TSecr too.
  TcpSegment c = seg(kTcpAck | kTcpPsh, cnext, isn_ + 1 + 700, as_bytes(data));
  c.options.has_timestamps = true;
  c.options.ts_val = 1020;
  c.options.ts_ecr = 5010 + ts_delta;
  TcpRewrite rb{kOurMac, kBackendMac, to_backend, cnext, b + 1 + 700, 64240, true, 1020, 5010, 0};
  check(frame_of(c), rewritten(frame_of(c), rb), "client -> backend, timestamps");
  check(linux_layout(frame_of(c)), rewritten(linux_layout(frame_of(c)), rb), "client -> backend, NOP NOP timestamps");
  TcpSegment no_ack = c;
  no_ack.flags = kTcpPsh;
  no_ack.ack = 12345;
  TcpRewrite rb_no_ack = rb;
  rb_no_ack.ack = 12345;
  check(frame_of(no_ack), rewritten(frame_of(no_ack), rb_no_ack), "client -> backend, no ACK flag: untouched");
  // SACK blocks: the full path (its in-place rewrite moves them too).
  TcpSegment sack = c;
  sack.payload = {};
  sack.options.sack_count = 2;
  sack.options.sack[0] = SackBlock{isn_ + 1000, isn_ + 2000};
  sack.options.sack[1] = SackBlock{isn_ + 3000, isn_ + 4000};
  TcpRewrite rb_sack = rb;
  rb_sack.sack_shift = 0 - delta;
  check(frame_of(sack), rewritten(frame_of(sack), rb_sack), "client -> backend, SACK blocks");
  const Packet sp = parse_frame(sink_.frames[0]);
  EXPECT_EQ(sp.options.sack[1].right, b + 4000);
  // IPv4 options (a 4-byte NOP list, IHL 6): the full path.
  {
    std::vector<uint8_t> f = frame_of(c);
    f.insert(f.begin() + 34, {1, 1, 1, 0});
    f[14] = 0x46;
    f[17] = static_cast<uint8_t>(f[17] + 4);  // total length
    f[24] = f[25] = 0;
    const uint16_t ck = inet_checksum({&f[14], 24});
    f[24] = static_cast<uint8_t>(ck >> 8);
    f[25] = static_cast<uint8_t>(ck);
    ASSERT_TRUE(parse_frame(f).ok());
    check(f, rewritten(f, rb), "client -> backend, IPv4 options");
  }
  EXPECT_EQ(n, 8u);

  // A payload byte changed after the checksum: dropped, counted, nothing sent.
  {
    std::vector<uint8_t> f = frame_of(c);
    f[f.size() - 1] ^= 0x20;
    const uint64_t bad = stats().rx_bad;
    EXPECT_TRUE(in_raw(f).empty());
    EXPECT_EQ(stats().rx_bad, bad + 1);
  }
  // A sink that cannot send in place: the fast path puts the headers back,
  // the full path sends a copy.
  sink_.in_place = false;
  std::vector<uint8_t> frame = frame_of(d);
  sink_.frames.clear();
  engine_->on_frame_in_place(frame, 1'000'000, sink_);
  ASSERT_EQ(sink_.frames.size(), 1u);
  const Packet copied = parse_frame(sink_.frames[0]);
  ASSERT_TRUE(copied.ok());
  EXPECT_EQ(copied.seq, isn_ + 1);
  EXPECT_EQ(copied.options.ts_val, 5010 + ts_delta);
  EXPECT_EQ(engine_->flows(), 1u);
}

void PassthroughTest::translate_both_ways() {
  open_to_backend();
  const uint32_t b = 0x70000000;
  TcpSegment sa = from_backend(kTcpSyn | kTcpAck, b, client_isn + 1);
  sa.options.mss = 1400;
  sa.options.wscale = 9;
  sa.options.sack_ok = true;
  sa.options.has_timestamps = true;
  sa.options.ts_val = 5000;
  sa.options.ts_ecr = 1001;
  auto out = in(sa);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].seq, client_isn + 1);
  EXPECT_EQ(out[0].ack, b + 1);
  EXPECT_EQ(std::vector<uint8_t>(out[0].payload.begin(), out[0].payload.end()), hello_bytes)
      << "exactly the bytes that were parsed";
  EXPECT_EQ(out[0].options.ts_ecr, 5000u);

  // The backend answers: to the client at our sequence numbers, its window
  // rescaled from 9 to 7, its TSval moved into our space.
  const std::string answer = "hello from the backend";
  TcpSegment d = from_backend(kTcpAck | kTcpPsh, b + 1, client_isn + 1 + static_cast<uint32_t>(hello_bytes.size()),
                              as_bytes(answer));
  d.options.has_timestamps = true;
  d.options.ts_val = 5010;
  d.options.ts_ecr = 1001;
  out = in(d);
  ASSERT_EQ(out.size(), 1u);
  const Packet& c = out[0];
  EXPECT_EQ(c.src, kVip);
  EXPECT_EQ(c.sport, 443);
  EXPECT_EQ(c.dst, kClient);
  EXPECT_EQ(c.dst_mac, kClientMac);
  EXPECT_EQ(c.seq, isn_ + 1);
  EXPECT_EQ(c.ack, client_isn + 1 + hello_bytes.size());
  EXPECT_EQ(c.window, 1000 * 4);
  EXPECT_EQ(c.options.ts_val, our_tsval + 10);
  EXPECT_EQ(std::string(c.payload.begin(), c.payload.end()), answer);

  // The client acknowledges it, with a SACK block: translated to the backend's space.
  TcpSegment ca = seg(kTcpAck, client_isn + 1 + static_cast<uint32_t>(hello_bytes.size()),
                      isn_ + 1 + static_cast<uint32_t>(answer.size()));
  ca.options.has_timestamps = true;
  ca.options.ts_val = 1010;
  ca.options.ts_ecr = our_tsval + 10;
  ca.options.sack_count = 1;
  ca.options.sack[0] = SackBlock{isn_ + 100, isn_ + 200};
  out = in(ca);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].dst, kBackend);
  EXPECT_EQ(out[0].ack, b + 1 + answer.size());
  EXPECT_EQ(out[0].options.ts_ecr, 5010u);
  ASSERT_EQ(out[0].options.sack_count, 1);
  EXPECT_EQ(out[0].options.sack[0].left, b + 100);
  EXPECT_EQ(out[0].options.sack[0].right, b + 200);
  EXPECT_EQ(out[0].window, 64240);

  // FIN both ways: a short time-wait, then the flow is gone.
  EXPECT_EQ(in(from_backend(kTcpFin | kTcpAck, b + 1 + static_cast<uint32_t>(answer.size()), 0)).size(), 1u);
  EXPECT_EQ(in(seg(kTcpFin | kTcpAck, client_isn + 1 + static_cast<uint32_t>(hello_bytes.size()), 0)).size(), 1u);
  EXPECT_EQ(engine_->flows(), 1u);
  (void)tick(1'000'000 + 2'500);
  EXPECT_EQ(engine_->flows(), 0u);
  EXPECT_EQ(stats().passthrough_flows, 1u);
  EXPECT_EQ(stats().spliced_to_client, 2u);
}

TEST_F(PassthroughTest, LostReplayIsSentAgainAndALostSynToo) {
  open_to_backend();
  // No SYN-ACK: the SYN goes again after the connect timer.
  auto out = tick(1'000'000 + 1'100);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, kTcpSyn);
  EXPECT_EQ(out[0].seq, client_isn);
  const uint32_t b = 77;
  ASSERT_EQ(in(from_backend(kTcpSyn | kTcpAck, b, client_isn + 1), 1'000'000 + 1'200).size(), 1u);
  // The backend never acknowledges the replay: it goes again.
  out = tick(1'000'000 + 1'500);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].payload.size(), hello_bytes.size());
  EXPECT_EQ(stats().replay_retransmits, 1u);
}

// The replayed hello's range is the backend's from the replay only, until
// it has acknowledged the whole replay: a client retransmission there with
// other bytes (here the hello for another name, of the same length) would
// otherwise fill the range of a lost replay frame, and the backend would
// read a hello that was never routed. A segment wholly inside the range is
// dropped; one across its end goes on from the end; a FIN inside the range
// is dropped with those bytes (one at the end is kept); segments that do
// not meet the range pass as they are; never rewritten in place. The
// replay sent again is still the parsed hello; an acknowledgement beyond
// what was sent does not end the protection, nor do both FINs (the flow
// waits for the replay's acknowledgement before its time-wait); once
// acknowledged, segments pass as they are.
TEST_F(PassthroughTest, TheReplayedRangeIsNotPassedOnFromTheClientUntilAcknowledged) {
  for (const bool in_place : {true, false}) {
    SCOPED_TRACE(in_place ? "in place" : "copied");
    make_engine();
    sink_.in_place = in_place;
    open_to_backend();
    const uint32_t b = 0x70000000;
    ASSERT_EQ(in(from_backend(kTcpSyn | kTcpAck, b, client_isn + 1)).size(), 1u);  // the replay (lost)
    const uint32_t end = client_isn + 1 + static_cast<uint32_t>(hello_bytes.size());
    const test::Bytes other = hello("x.test");
    ASSERT_EQ(other.size(), hello_bytes.size());
    ASSERT_NE(other, hello_bytes);

    // The whole hello again, other bytes: dropped.
    EXPECT_TRUE(in(seg(kTcpAck | kTcpPsh, client_isn + 1, isn_ + 1, other)).empty());
    EXPECT_EQ(stats().replay_overlaps, 1u);
    // Its second half (a replay cut in two, its first frame lost): dropped.
    const std::vector<uint8_t> half(other.begin() + 50, other.end());
    EXPECT_TRUE(in(seg(kTcpAck | kTcpPsh, client_isn + 51, isn_ + 1, half)).empty());

    // Across the replay's end: only what follows it.
    std::vector<uint8_t> across(10, 'X');
    const std::string after(20, 'y');
    across.insert(across.end(), after.begin(), after.end());
    auto out = in(seg(kTcpAck | kTcpPsh, end - 10, isn_ + 1, across));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].dst, kBackend);
    EXPECT_EQ(out[0].seq, end);
    EXPECT_EQ(out[0].ack, b + 1);
    EXPECT_EQ(std::string(out[0].payload.begin(), out[0].payload.end()), after);

    // FINs inside the range, with bytes or bare: dropped, the flow goes on.
    const std::vector<uint8_t> few(8, 'Z');
    EXPECT_TRUE(in(seg(kTcpAck | kTcpFin, client_isn + 1, isn_ + 1, few)).empty());
    EXPECT_TRUE(in(seg(kTcpAck | kTcpFin, client_isn + 60, isn_ + 1)).empty());
    EXPECT_EQ(stats().replay_overlaps, 5u);
    // Old bytes wholly before the range, and a pure ACK: not touched.
    out = in(seg(kTcpAck | kTcpPsh, client_isn - 100, isn_ + 1, few));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].seq, client_isn - 100);
    EXPECT_EQ(out[0].payload.size(), few.size());
    out = in(seg(kTcpAck, client_isn + 1, isn_ + 1));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].seq, client_isn + 1);
    EXPECT_EQ(stats().replay_overlaps, 5u);

    // An acknowledgement beyond what was sent (the replay and the 20 bytes):
    // passed on, but the range stays protected.
    ASSERT_EQ(in(from_backend(kTcpAck, b + 1, end + 5000)).size(), 1u);
    EXPECT_TRUE(in(seg(kTcpAck | kTcpPsh, client_isn + 1, isn_ + 1, other)).empty());

    // Both FINs (the client's after its 20 bytes): still waiting for the
    // replay's acknowledgement, the range still protected.
    ASSERT_EQ(in(seg(kTcpAck | kTcpFin, end + 20, isn_ + 1)).size(), 1u);
    ASSERT_EQ(in(from_backend(kTcpAck | kTcpFin, b + 1, client_isn + 1)).size(), 1u);
    EXPECT_TRUE(in(seg(kTcpAck | kTcpPsh, client_isn + 1, isn_ + 1, other)).empty());
    EXPECT_EQ(stats().replay_overlaps, 7u);

    // The replay sent again is still the parsed hello.
    out = tick(1'000'000 + 1'500);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].seq, client_isn + 1);
    EXPECT_EQ(std::vector<uint8_t>(out[0].payload.begin(), out[0].payload.end()), hello_bytes);

    // Acknowledged, the client's FIN too: time-wait; what the client sends
    // passes as it is.
    ASSERT_EQ(in(from_backend(kTcpAck, b + 2, end + 21), 1'000'000 + 1'600).size(), 1u);
    out = in(seg(kTcpAck | kTcpPsh, client_isn + 1, isn_ + 1, other), 1'000'000 + 1'700);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].seq, client_isn + 1);
    EXPECT_EQ(out[0].payload.size(), other.size()) << "the backend has the range: it drops these";
    EXPECT_EQ(stats().replay_overlaps, 7u);
    EXPECT_EQ(engine_->flows(), 1u);
    (void)tick(1'000'000 + 1'700 + 2'100);
    EXPECT_EQ(engine_->flows(), 0u) << "time-wait over";
  }
}

TEST_F(PassthroughTest, RefusedBackendResetsTheClientAndRstsPassBoth) {
  open_to_backend();
  auto out = in(from_backend(kTcpRst | kTcpAck, 0, client_isn + 1));
  ASSERT_EQ(out.size(), 1u);  // one backend in the pool: the client is reset
  EXPECT_EQ(out[0].dst, kClient);
  EXPECT_TRUE(out[0].flags & kTcpRst);
  EXPECT_EQ(stats().backend_connect_failures, 1u);
  EXPECT_EQ(engine_->flows(), 0u);
}

TEST_F(PassthroughTest, IdleSplicedFlowIsResetBothWays) {
  open_to_backend();
  ASSERT_EQ(in(from_backend(kTcpSyn | kTcpAck, 5, client_isn + 1)).size(), 1u);
  (void)in(from_backend(kTcpAck, 6, client_isn + 1 + static_cast<uint32_t>(hello_bytes.size())));
  auto out = tick(1'000'000 + 301'000);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(out[0].flags & kTcpRst);
  EXPECT_TRUE(out[1].flags & kTcpRst);
  EXPECT_EQ(stats().idle_timeouts, 1u);
  EXPECT_EQ(engine_->flows(), 0u);
}

// [[route]] max_connections on a passthrough route of the dpdk front: its
// open flows summed over every lcore's row (here this lcore's and one more,
// holding one flow), as the workers sum theirs; above the cap the flow is
// reset after its hello (refused_route_full, the route's refused), and
// counts as open no more. Without the other rows the cap counts this
// lcore's flows alone.
TEST_F(PassthroughTest, ARoutesMaxConnectionsHoldsOverTheLcores) {
  std::array<stats::RouteSeries, 8> other{};
  with_series_ = true;
  route_p_ = "max_connections = 2\n";
  all_route_rows_ = {route_rows_.data(), other.data()};
  make_engine();
  const stats::RouteSeries& p = route_row("p");
  const size_t slot = static_cast<size_t>(&p - route_rows_.data());
  other[slot].active = 1;
  auto hello_on = [&](uint16_t port) {
    const uint32_t seq = connect(1000u * port, port);
    return in(seg(kTcpAck | kTcpPsh, seq, isn_ + 1, hello("p.test"), port));
  };
  auto reset_sent = [](const std::vector<Packet>& out) {
    return std::any_of(out.begin(), out.end(), [](const Packet& x) { return (x.flags & kTcpRst) != 0; });
  };
  EXPECT_FALSE(reset_sent(hello_on(40000))) << "1 here + 1 there: at the cap";
  EXPECT_EQ(p.active.load(), 1u);
  auto out = hello_on(40001);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].flags & kTcpRst);
  EXPECT_EQ(out[0].dst, kClient);
  EXPECT_EQ(stats().refused_route_full, 1u);
  EXPECT_EQ(stats().passthrough_flows, 1u);
  EXPECT_EQ(p.refused.load(), 1u);
  EXPECT_EQ(p.active.load(), 1u);
  EXPECT_EQ(engine_->flows(), 1u);
  other[slot].active = 0;  // the other lcore's flow ended
  EXPECT_FALSE(reset_sent(hello_on(40002)));
  EXPECT_EQ(p.active.load(), 2u);
  EXPECT_EQ(stats().refused_route_full, 1u);

  // This lcore's rows alone.
  all_route_rows_.clear();
  route_rows_[slot].active = 0;  // the first engine's flows went with it
  route_p_ = "max_connections = 1\n";
  make_engine();
  other[slot].active = 5;  // not read
  EXPECT_FALSE(reset_sent(hello_on(40000)));
  EXPECT_TRUE(reset_sent(hello_on(40001)));
  EXPECT_EQ(stats().refused_route_full, 1u);
  EXPECT_EQ(p.active.load(), 1u);
}

// The dpdk front's flows in the per-route and per-backend series (the
// lcore's row; /metrics and `lodectl backends list` sum the rows): a
// passthrough flow is a connection of its route and a pick and a connect of
// its backend, open while it lives, its bytes counted once each (the hello
// as it is replayed; retransmissions and FINs add nothing); a refused
// connect is a connect failure; a reject is a refused connection.
TEST_F(PassthroughTest, FlowsAreCountedInTheirRoutesAndBackendsSeries) {
  with_series_ = true;
  make_engine();
  open_to_backend();
  const stats::RouteSeries& p = route_row("p");
  const stats::BackendSeries& b0 = backend_rows_[1];
  EXPECT_EQ(p.connections.load(), 1u);
  EXPECT_EQ(p.active.load(), 1u);
  EXPECT_EQ(b0.picks.load(), 1u);
  EXPECT_EQ(b0.active.load(), 1u);
  EXPECT_EQ(b0.connects.load(), 0u) << "not before the backend's SYN-ACK";
  const uint32_t b = 0x70000000;
  ASSERT_EQ(in(from_backend(kTcpSyn | kTcpAck, b, client_isn + 1)).size(), 1u);  // the replay
  EXPECT_EQ(b0.connects.load(), 1u);
  EXPECT_EQ(p.bytes_in.load(), hello_bytes.size()) << "the hello, replayed";
  const uint32_t cnext = client_isn + 1 + static_cast<uint32_t>(hello_bytes.size());
  (void)in(from_backend(kTcpAck, b + 1, cnext));
  const std::string up(300, 'u'), down(1000, 'd');
  ASSERT_EQ(in(seg(kTcpAck | kTcpPsh, cnext, isn_ + 1, as_bytes(up))).size(), 1u);
  EXPECT_EQ(p.bytes_in.load(), hello_bytes.size() + 300);
  ASSERT_EQ(in(from_backend(kTcpAck | kTcpPsh, b + 1, cnext + 300, as_bytes(down))).size(), 1u);
  EXPECT_EQ(p.bytes_out.load(), 1000u);
  ASSERT_EQ(in(from_backend(kTcpAck | kTcpPsh, b + 1, cnext + 300, as_bytes(down))).size(), 1u);
  EXPECT_EQ(p.bytes_out.load(), 1000u) << "a retransmission is no new byte";
  ASSERT_EQ(in(from_backend(kTcpAck | kTcpFin, b + 1001, cnext + 300)).size(), 1u);
  EXPECT_EQ(p.bytes_out.load(), 1000u) << "a FIN is no byte";
  ASSERT_EQ(in(seg(kTcpAck | kTcpFin, cnext + 300, isn_ + 1002)).size(), 1u);
  EXPECT_EQ(p.bytes_in.load(), hello_bytes.size() + 300);
  EXPECT_EQ(p.active.load(), 0u) << "in time-wait: open no more (a worker's socket is closed by then)";
  EXPECT_EQ(b0.active.load(), 0u);
  EXPECT_EQ(engine_->flows(), 1u);
  (void)tick(1'000'000 + 301'000);
  EXPECT_EQ(engine_->flows(), 0u);
  EXPECT_EQ(p.active.load(), 0u);
  EXPECT_EQ(b0.active.load(), 0u);
  EXPECT_EQ(p.connections.load(), 1u);
  EXPECT_EQ(p.refused.load(), 0u);
  EXPECT_EQ(b0.connect_failures.load(), 0u);

  // The backend refuses the next flow: a connect failure, nothing open.
  const uint32_t next = connect(9000, 40001);
  const std::vector<Packet> sent = in(seg(kTcpAck | kTcpPsh, next, isn_ + 1, hello("p.test"), 40001));
  const auto syn = std::find_if(sent.begin(), sent.end(), [](const Packet& x) { return x.flags == kTcpSyn; });
  ASSERT_NE(syn, sent.end()) << "the backend's MAC is known: our SYN at once";
  EXPECT_EQ(b0.picks.load(), 2u);
  backend_syn = *syn;
  (void)in(from_backend(kTcpRst | kTcpAck, 0, next));
  EXPECT_EQ(engine_->flows(), 0u);
  EXPECT_EQ(b0.connect_failures.load(), 1u);
  EXPECT_EQ(b0.connects.load(), 1u);
  EXPECT_EQ(b0.active.load(), 0u);
  EXPECT_EQ(p.active.load(), 0u);
  EXPECT_EQ(p.connections.load(), 2u);

  // A reject route: a refused connection of that route, open until the
  // client has closed.
  const uint32_t seq = connect(5000, 40100);
  auto out = in(seg(kTcpAck | kTcpPsh, seq, isn_ + 1, hello("r.test"), 40100));
  ASSERT_EQ(out.size(), 1u);
  const stats::RouteSeries& r = route_row("r");
  EXPECT_EQ(r.connections.load(), 1u);
  EXPECT_EQ(r.refused.load(), 1u);
  EXPECT_EQ(r.active.load(), 1u);
  const uint32_t end = seq + static_cast<uint32_t>(hello("r.test").size());
  (void)in(seg(kTcpAck | kTcpFin, end, out[0].seq + static_cast<uint32_t>(out[0].payload.size()) + 1, {}, 40100));
  EXPECT_EQ(engine_->flows(), 0u);
  EXPECT_EQ(r.active.load(), 0u);
  EXPECT_EQ(p.connections.load(), 2u) << "each route its own";
}

TEST_F(FlowEngineTest, UnknownNameWithoutDefaultGetsAlert112) {
  const uint32_t seq = connect();
  auto out = in(seg(kTcpAck, seq, isn_ + 1, hello("nobody.test")));
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].payload.size(), 7u);
  EXPECT_EQ(out[0].payload[6], 112);
  EXPECT_EQ(stats().no_route, 1u);
}

TEST_F(FlowEngineTest, ClientFinOrRstWhileCollecting) {
  uint32_t seq = connect();
  auto out = in(seg(kTcpFin | kTcpAck, seq, isn_ + 1));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].flags & kTcpRst);
  seq = connect(9000, 40001);
  EXPECT_TRUE(in(seg(kTcpRst, seq, 0, {}, 40001)).empty());
  EXPECT_EQ(stats().client_aborts, 2u);
  EXPECT_EQ(engine_->flows(), 0u);
}

TEST_F(FlowEngineTest, ClosedPortOnTheVipGetsARstOthersNothing) {
  TcpSegment s = seg(kTcpSyn, 50, 0);
  s.flow.dport = 80;
  auto out = in(s);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, kTcpRst | kTcpAck);
  EXPECT_EQ(out[0].ack, 51u);
  s.flow.dst = IpAddr::v4(0x0a000063);
  s.flow.dport = 443;
  EXPECT_TRUE(in(s).empty());
  EXPECT_EQ(stats().rx_not_vip, 2u);
}

TEST_F(FlowEngineTest, BadChecksumIsDroppedNeverRepaired) {
  std::vector<uint8_t> frame(200);
  const size_t n = build_tcp(frame, seg(kTcpSyn, 1, 0));
  frame.resize(n);
  frame[14 + 20 + 4] ^= 0x40;  // a bit of the TCP sequence number
  EXPECT_TRUE(in_raw(frame).empty());
  EXPECT_EQ(stats().rx_bad, 1u);
}

// A segment starting beyond the room offered for the hello (max_hello_bytes
// + the record slack) is dropped with a duplicate ACK, the flow kept: one forged
// segment far ahead used to end any hello in progress (record_overflow).
// A hello whose length fits but whose many small records fill the room
// gets record_overflow once the room is full.
TEST_F(FlowEngineTest, HelloLargerThanTheRoomGetsRecordOverflowASegmentBeyondItIsDropped) {
  make_engine(1024, 5000, 1024);
  const uint32_t seq = connect();
  std::vector<uint8_t> big(1400, 0x16);
  const uint32_t room = 1024 + 4096;
  auto out = in(seg(kTcpAck, seq + room, isn_ + 1, big));  // starts just past the room
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, kTcpAck);
  EXPECT_EQ(out[0].ack, seq) << "a duplicate ACK";
  EXPECT_TRUE(out[0].payload.empty());
  EXPECT_EQ(stats().segments_out_of_window, 1u);
  EXPECT_EQ(stats().hello_too_large, 0u);
  EXPECT_EQ(engine_->flows(), 1u);

  const test::HelloBuilder b = test::HelloBuilder().sni("p.test").padding(850);
  ASSERT_LE(b.message().size(), 1024u) << "its length fits";
  const test::Bytes tiny = b.records(1);  // one byte per record: six on the wire
  ASSERT_GT(tiny.size(), room);
  for (uint32_t at = 0; at < room; at += 1400) {
    const size_t n = std::min<size_t>(1400, room - at);
    out = in(seg(kTcpAck | kTcpPsh, seq + at, isn_ + 1, std::span(tiny).subspan(at, n)));
  }
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].payload.size(), 7u);
  EXPECT_EQ(out[0].payload[6], 22);
  EXPECT_EQ(stats().hello_too_large, 1u);
}

TEST_F(FlowEngineTest, SequenceNumbersWrapAroundZero) {
  const uint32_t seq = connect(0xfffffff0);
  const auto h = hello("r.test");
  const size_t a = 100;
  ASSERT_EQ(in(seg(kTcpAck, seq + static_cast<uint32_t>(a), isn_ + 1,
                   std::span<const uint8_t>(h.data() + a, h.size() - a))).size(), 1u);
  auto out = in(seg(kTcpAck, seq, isn_ + 1, std::span<const uint8_t>(h.data(), a)));
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].payload.size(), 7u);
  EXPECT_EQ(out[0].ack, seq + static_cast<uint32_t>(h.size()));
}

TEST_F(FlowEngineTest, FullTableDropsNewFlowsAndCounts) {
  make_engine(2);
  connect(1, 40001);
  connect(2, 40002);
  auto sa = in(seg(kTcpSyn, 3, 0, {}, 40003));
  ASSERT_EQ(sa.size(), 1u);
  EXPECT_TRUE(in(seg(kTcpAck, 4, sa[0].seq + 1, {}, 40003)).empty());
  EXPECT_EQ(stats().flows_table_full, 1u);
  EXPECT_EQ(engine_->flows(), 2u);
}

TEST_F(FlowEngineTest, ManyFlowsComeAndGoWithoutLeaks) {
  for (int round = 0; round < 3; ++round) {
    for (uint16_t p = 0; p < 600; ++p) connect(p * 1000u, static_cast<uint16_t>(20000 + p));
    EXPECT_EQ(engine_->flows(), 600u);
    for (uint16_t p = 0; p < 600; p += 2) {
      (void)in(seg(kTcpRst, p * 1000u + 1, 0, {}, static_cast<uint16_t>(20000 + p)));
    }
    EXPECT_EQ(engine_->flows(), 300u);
    (void)tick(1'000'000 + 6'000);
    EXPECT_EQ(engine_->flows(), 0u);
  }
}

TEST_F(FlowEngineTest, Ipv6NeighbourSolicitationPingAndSyn) {
  auto out = in(seg(kTcpSyn, 10, 0, {}, 40000, true));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].l3, L3::kIpv6);
  EXPECT_EQ(out[0].flags, kTcpSyn | kTcpAck);
  const uint32_t isn = out[0].seq;
  EXPECT_TRUE(in(seg(kTcpAck, 11, isn + 1, {}, 40000, true)).empty());
  out = in(seg(kTcpAck, 11, isn + 1, hello("r.test"), 40000, true));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].payload.size(), 7u);
}

TEST_F(FlowEngineTest, NoBufferIsCountedNotFatal) {
  sink_.exhausted = true;
  stored_.emplace_back(200);
  const size_t n = build_tcp(stored_.back(), seg(kTcpSyn, 1, 0));
  stored_.back().resize(n);
  engine_->on_frame(stored_.back(), 1'000'000, sink_);
  EXPECT_EQ(stats().tx_no_buffer, 1u);
  EXPECT_TRUE(sink_.frames.empty());
}

}  // namespace
}  // namespace lode::front

// Terminate through the dpdk front: the hand-off to a TLS worker's kernel
// through the exception port (dataplane/front/handoff.*, the engine's side in
// flow_engine_splice.cc). Pure parts first (ports, steering, the PROXY v2
// header's exact bytes), then packet fixtures: crafted frames into the real
// engine, the frames it sends on the wire and on the exception port compared.
#include "dataplane/front/handoff.h"

#include <gtest/gtest.h>

#include <deque>
#include <set>
#include <string>
#include <vector>

#include "controlplane/config.h"
#include "dataplane/front/flow_engine.h"
#include "dataplane/tls/proxy_protocol.h"
#include "support/flow_engine_fixture.h"
#include "support/hello_builder.h"

namespace lode::front {
namespace {

// ------------------------------------------------------------------ pure

TEST(HandoffPort, WorkerAndListenerPickDistinctPorts) {
  EXPECT_EQ(handoff_port(20443, 0, 0, 2), 20443);
  EXPECT_EQ(handoff_port(20443, 0, 1, 2), 20444);
  EXPECT_EQ(handoff_port(20443, 1, 0, 2), 20445);
  EXPECT_EQ(handoff_port(20443, 2, 1, 3), 20443 + 7);
  EXPECT_EQ(handoff_port(65535, 0, 0, 1), 65535);
  EXPECT_EQ(handoff_port(65535, 0, 1, 2), 0) << "past 65535: none";
  EXPECT_EQ(handoff_port(60000, 1000, 7, 16), 0);
  EXPECT_EQ(handoff_port(0, 0, 0, 1), 0) << "no first port: none";
}

TEST(SteerByName, StableCaseFoldedAndSpread) {
  EXPECT_EQ(steer_by_name("a.test", 1), 0u);
  EXPECT_EQ(steer_by_name("a.test", 0), 0u);
  // FNV-1a 32 of "a.test" = 0x2a6d3b7c... computed here, not hard-coded:
  uint32_t h = 2166136261u;
  for (char c : std::string("a.test")) h = (h ^ static_cast<uint8_t>(c)) * 16777619u;
  EXPECT_EQ(steer_by_name("a.test", 7), h % 7);
  EXPECT_EQ(steer_by_name("A.Test", 7), steer_by_name("a.test", 7));
  std::vector<int> per(4, 0);
  for (int i = 0; i < 4000; ++i) ++per[steer_by_name("host" + std::to_string(i) + ".example", 4)];
  for (int n : per) {
    EXPECT_GT(n, 800) << "each of 4 workers gets a fair share";
    EXPECT_LT(n, 1200);
  }
}

std::vector<uint8_t> header_of(const FlowKey& k, std::string_view sni) {
  std::vector<uint8_t> out(kHandoffHeaderMax);
  out.resize(write_handoff_header(out, k, sni));
  return out;
}

TEST(HandoffHeader, Ipv4BytesExactly) {
  FlowKey k;
  k.src = IpAddr::v4(0x0a000002);  // 10.0.0.2:40000, the client
  k.dst = IpAddr::v4(0x0a000001);  // 10.0.0.1:443, the VIP
  k.sport = 40000;
  k.dport = 443;
  const std::vector<uint8_t> want = {
      0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,  // signature
      0x21,                                                                    // v2, PROXY
      0x11,                                                                    // TCP over IPv4
      0x00, 0x15,                                                              // 12 + 3 + 6
      10, 0, 0, 2, 10, 0, 0, 1, 0x9c, 0x40, 0x01, 0xbb,                        // src, dst, ports
      0x02, 0x00, 0x06, 't', '.', 't', 'e', 's', 't'};                         // AUTHORITY
  EXPECT_EQ(header_of(k, "t.test"), want);
}

TEST(HandoffHeader, Ipv6ParsesBackToTheClientAndTheVip) {
  FlowKey k;
  const uint8_t c6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  const uint8_t v6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  k.src = IpAddr::v6(std::span<const uint8_t, 16>(c6, 16));
  k.dst = IpAddr::v6(std::span<const uint8_t, 16>(v6, 16));
  k.sport = 51000;
  k.dport = 443;
  const auto bytes = header_of(k, "six.test");
  ASSERT_EQ(bytes.size(), 16u + 36 + 3 + 8);
  EXPECT_EQ(bytes[13], 0x21) << "TCP over IPv6";
  proxy::ProxyHeaderParser parser;
  ASSERT_EQ(parser.parse(bytes), ParseStatus::kDone);
  const proxy::ProxyHeader& h = parser.header();
  EXPECT_EQ(h.header_len, bytes.size());
  EXPECT_EQ(h.source.port, 51000);
  EXPECT_EQ(h.destination.port, 443);
  EXPECT_EQ(h.source.ip[15], 2);
  EXPECT_EQ(h.destination.ip[15], 1);
  ASSERT_TRUE(h.tlvs.authority.has_value());
  EXPECT_EQ(*h.tlvs.authority, "six.test");
}

TEST(HandoffHeader, NoNameNoAuthorityAndTooSmallABufferWritesNothing) {
  FlowKey k;
  k.src = IpAddr::v4(1);
  k.dst = IpAddr::v4(2);
  EXPECT_EQ(header_of(k, "").size(), 28u);
  EXPECT_EQ(header_of(k, std::string(300, 'a')).size(), 28u) << "not a DNS name: left out";
  std::vector<uint8_t> small(20);
  EXPECT_EQ(write_handoff_header(small, k, "t.test"), 0u);
}

// ------------------------------------------------------------------ config

// [dpdk.exception]: the keys, their checks, and what front = "dpdk" refuses.
class DpdkExceptionConfigTest : public ::testing::Test {
 protected:
  static std::string with(const std::string& exception, const std::string& listener_extra = "") {
    return "front = \"dpdk\"\n[[listener]]\nname = \"vip\"\nlisten = [\"10.0.0.1:443\"]\n" + listener_extra +
           "[[route]]\nname = \"r\"\nnames = [\"r.test\"]\naction = \"reject\"\n"
           "[dpdk]\neal = [\"-l\", \"0-1\"]\n" + exception;
  }
  static std::string first_error(const std::string& toml) {
    auto cfg = config::load_config_string(toml, "x.toml");
    if (cfg) return "";
    return cfg.error().front().key + ": " + cfg.error().front().message;
  }
};

TEST_F(DpdkExceptionConfigTest, DefaultsAndEveryKey) {
  auto cfg = config::load_config_string(with("[dpdk.exception]\nvdev = \"net_tap1,iface=lx0\"\ninterface = \"lx0\"\n"),
                                        "x.toml");
  ASSERT_TRUE(cfg.has_value()) << cfg.error().front().to_string();
  const config::DpdkExceptionConfig& x = cfg->dpdk.exception;
  EXPECT_TRUE(x.enabled());
  EXPECT_EQ(x.kernel_address, 0xa9fe4d01u);
  EXPECT_EQ(x.address, 0xa9fe4d02u);
  EXPECT_EQ(x.prefix_len, 30u);
  EXPECT_EQ(x.first_port, 20443u);
  cfg = config::load_config_string(
      with("exception = { vdev = \"virtio_user0,path=/dev/vhost-net,iface=lx0\", interface = \"lx0\", "
           "kernel_address = \"10.200.0.1\", address = \"10.200.3.254\", first_port = 7000 }\n"),
      "x.toml");
  ASSERT_TRUE(cfg.has_value()) << cfg.error().front().to_string();
  EXPECT_EQ(cfg->dpdk.exception.kernel_address, 0x0ac80001u);
  EXPECT_EQ(cfg->dpdk.exception.address, 0x0ac803feu);
  EXPECT_EQ(cfg->dpdk.exception.prefix_len, 22u) << "the longest prefix holding both";
  EXPECT_EQ(cfg->dpdk.exception.first_port, 7000u);
  auto none = config::load_config_string(with(""), "x.toml");
  ASSERT_TRUE(none.has_value());
  EXPECT_FALSE(none->dpdk.exception.enabled());
}

TEST_F(DpdkExceptionConfigTest, BadValuesNameTheirKey) {
  EXPECT_EQ(first_error(with("[dpdk.exception]\ninterface = \"lx0\"\n")).substr(0, 19), "dpdk.exception.vdev");
  EXPECT_EQ(first_error(with("[dpdk.exception]\nvdev = \"net_tap1\"\n")).substr(0, 24), "dpdk.exception.interface");
  EXPECT_NE(first_error(with("[dpdk.exception]\nvdev = \"net_tap1\"\ninterface = \"a-very-long-name0\"\n"))
                .find("at most 15"),
            std::string::npos);
  EXPECT_NE(first_error(with("[dpdk.exception]\nvdev = \"t\"\ninterface = \"x\"\nkernel_address = \"fd00::1\"\n"))
                .find("expected an IPv4 address"),
            std::string::npos);
  EXPECT_NE(first_error(with("[dpdk.exception]\nvdev = \"t\"\ninterface = \"x\"\naddress = \"169.254.77.1\"\n"))
                .find("must differ"),
            std::string::npos);
  EXPECT_NE(first_error(with("[dpdk.exception]\nvdev = \"t\"\ninterface = \"x\"\naddress = \"10.0.0.2\"\n"))
                .find("16 bits"),
            std::string::npos);
  EXPECT_NE(first_error(with("[dpdk.exception]\nvdev = \"t\"\ninterface = \"x\"\nfirst_port = 80\n"))
                .find("1024..65535"),
            std::string::npos);
  EXPECT_NE(first_error(with("[dpdk.exception]\nvdev = \"t\"\ninterface = \"x\"\nqueues = 2\n")).find("unknown key"),
            std::string::npos);
  EXPECT_NE(first_error(with("exception = \"net_tap1\"\n")).find("expected a table"), std::string::npos);
}

TEST_F(DpdkExceptionConfigTest, ListenersBehindTheDpdkFrontTakeNoProxyHeader) {
  EXPECT_NE(first_error(with("", "proxy_protocol = \"v2\"\n")).find("not with front = \"dpdk\""), std::string::npos);
}

// ------------------------------------------------------------------ engine

using namespace fixture;
using Sink = RecordingSink;

class HandoffTest : public ::testing::Test {
 protected:
  void SetUp() override { make(true, 2); }

  void make(bool handoff, uint16_t workers) {
    const std::string toml =
        "[[listener]]\nname = \"vip\"\nlisten = [\"10.0.0.1:443\", \"[fd00::1]:443\"]\n"
        "[[pool]]\nname = \"app\"\nbackends = [\"127.0.0.1:9000\"]\n"
        "[[certificate]]\nname = \"t\"\ncert = \"t.pem\"\nkey = \"t.key\"\n"
        "[[route]]\nname = \"t\"\nnames = [\"t.test\", \"*.t.test\"]\naction = \"terminate\"\npool = \"app\"\n"
        "certificate = \"t\"\n"
        "[[route]]\nname = \"busy\"\nnames = [\"busy.test\"]\naction = \"terminate\"\npool = \"app\"\n"
        "certificate = \"t\"\nsteer = \"client\"\n";
    const auto runtime = runtime_from(toml, "handoff.toml");
    ASSERT_NE(runtime, nullptr);
    EngineConfig ec = engine_config(*runtime);
    ec.max_flows = 64;
    ec.cookie_key = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6};
    enable_handoff(ec, workers);
    ec.handoff.enabled = handoff;
    engine_ = std::make_unique<FlowEngine>(ec, runtime);
    wire_.exception = &exc_;
  }

  TcpSegment client(uint8_t flags, uint32_t seq, uint32_t ack, std::span<const uint8_t> payload = {}) {
    TcpSegment s;
    s.src_mac = kClientMac;
    s.dst_mac = kOurMac;
    s.flow = v6_ ? FlowKey{IpAddr::v6(std::span<const uint8_t, 16>(kClient6, 16)),
                           IpAddr::v6(std::span<const uint8_t, 16>(kVip6, 16)), sport_, 443}
                 : FlowKey{kClient, kVip, sport_, 443};
    s.seq = seq;
    s.ack = ack;
    s.flags = flags;
    s.window = 502;
    s.payload = payload;
    s.options.has_timestamps = true;
    s.options.ts_val = ++client_ts_;
    s.options.ts_ecr = last_ts_to_client_;
    return s;
  }
  TcpSegment worker(uint8_t flags, uint32_t seq, uint32_t ack, std::span<const uint8_t> payload = {}) {
    TcpSegment s = segment(kKernelMac, kExcMac, FlowKey{IpAddr::v4(kKernelAddr), IpAddr::v4(kExcAddr), syn_.dport, syn_.sport},
                           flags, seq, ack, 300, payload);
    s.options.has_timestamps = true;
    s.options.ts_val = ++worker_ts_;
    s.options.ts_ecr = syn_.options.ts_val;
    return s;
  }
  struct Out {
    std::vector<Packet> wire, exc;
  };
  Out from_wire(const TcpSegment& s, uint64_t now = kT) { return feed(build(s), now, false); }
  Out from_exception(const TcpSegment& s, uint64_t now = kT) { return feed(build(s), now, true); }
  std::vector<uint8_t> build(const TcpSegment& s) { return frame_of(s); }
  Out feed(std::vector<uint8_t> frame, uint64_t now, bool exception) {
    stored_.push_back(std::move(frame));
    wire_.frames.clear();
    exc_.frames.clear();
    std::span<uint8_t> f = stored_.back();
    if (exception) {
      engine_->on_exception_frame_in_place(f, now, wire_);
    } else {
      engine_->on_frame_in_place(f, now, wire_);
    }
    return collect();
  }
  Out tick(uint64_t now) {
    wire_.frames.clear();
    exc_.frames.clear();
    engine_->on_tick(now, wire_);
    return collect();
  }
  Out collect() {
    Out o;
    for (auto& f : wire_.frames) o.wire.push_back(parse_frame(keep(f)));
    for (auto& f : exc_.frames) o.exc.push_back(parse_frame(keep(f)));
    for (auto* v : {&o.wire, &o.exc}) {
      for (auto& p : *v) EXPECT_TRUE(p.ok()) << to_string(p.error);
    }
    for (const Packet& p : o.wire) {
      if (p.l4 == L4::kTcp && p.options.has_timestamps) last_ts_to_client_ = p.options.ts_val;
    }
    return o;
  }
  std::span<const uint8_t> keep(const std::vector<uint8_t>& f) {
    outs_.push_back(f);
    return outs_.back();
  }

  // SYN with options, the cookie's ACK, the hello for `sni` at `hello_at`;
  // the engine asks the kernel's MAC on the exception port; the reply brings
  // our SYN to the worker (kept in syn_).
  void open(const std::string& sni, uint64_t hello_at = kT) {
    TcpSegment syn = client(kTcpSyn, client_isn_, 0);
    syn.options.mss = 1400;
    syn.options.wscale = 6;
    syn.options.sack_ok = true;
    auto sa = from_wire(syn);
    ASSERT_EQ(sa.wire.size(), 1u);
    isn_ = sa.wire[0].seq;
    EXPECT_TRUE(from_wire(client(kTcpAck, client_isn_ + 1, isn_ + 1)).wire.empty());
    hello_ = test::HelloBuilder().sni(sni).records();
    auto out = from_wire(client(kTcpAck | kTcpPsh, client_isn_ + 1, isn_ + 1, hello_), hello_at);
    ASSERT_EQ(out.wire.size(), 1u) << "the hello's ACK";
    EXPECT_EQ(out.wire[0].ack, u32(client_isn_ + 1 + hello_.size()));
    ASSERT_EQ(out.exc.size(), 1u) << "ARP for the kernel (the first time), or our SYN";
    FlowKey k = sa.wire[0].flow();
    header_ = header_of(FlowKey{k.dst, k.src, k.dport, k.sport}, sni);
    if (out.exc[0].l3 != L3::kArp) {
      syn_ = out.exc[0];
      return;
    }
    const Packet& arp = out.exc[0];
    EXPECT_EQ(arp.l3, L3::kArp);
    EXPECT_EQ(arp.src_mac, kExcMac);
    EXPECT_EQ(arp.arp.sender_ip, kExcAddr);
    EXPECT_EQ(arp.arp.target_ip, kKernelAddr);
    std::vector<uint8_t> reply(64);
    reply.resize(build_arp_reply(reply, arp, kKernelMac, kKernelAddr));
    out = feed(reply, hello_at, true);
    EXPECT_TRUE(out.wire.empty());
    ASSERT_EQ(out.exc.size(), 1u);
    syn_ = out.exc[0];
  }
  // The worker's SYN-ACK at `now`: the engine replays header + hello.
  Packet accept(uint64_t now = kT) {
    TcpSegment sa = worker(kTcpSyn | kTcpAck, worker_isn_, syn_.seq + 1);
    sa.options.mss = 1460;
    sa.options.wscale = 7;
    sa.options.sack_ok = true;
    auto out = from_exception(sa, now);
    EXPECT_TRUE(out.wire.empty());
    EXPECT_EQ(out.exc.size(), 1u);
    return out.exc.empty() ? Packet{} : out.exc[0];
  }

  static constexpr uint8_t kClient6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  static constexpr uint8_t kVip6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  std::unique_ptr<FlowEngine> engine_;
  Sink wire_, exc_;
  std::vector<std::vector<uint8_t>> stored_;
  std::deque<std::vector<uint8_t>> outs_;
  bool v6_ = false;
  uint16_t sport_ = 40000;
  uint32_t client_isn_ = 0xfffffe00;  // the client's sequence numbers wrap during the tests
  uint32_t worker_isn_ = 0x12345678;
  uint32_t isn_ = 0;
  uint32_t client_ts_ = 5000, worker_ts_ = 90000, last_ts_to_client_ = 0;
  test::Bytes hello_;
  std::vector<uint8_t> header_;
  Packet syn_;
};

TEST_F(HandoffTest, SynToTheWorkerCarriesTheClientsOptionsAndAnIsnBeforeTheHeader) {
  open("t.test");
  const Packet& s = syn_;
  EXPECT_EQ(s.flags, kTcpSyn);
  EXPECT_EQ(s.src_mac, kExcMac);
  EXPECT_EQ(s.dst_mac, kKernelMac);
  EXPECT_EQ(s.src, IpAddr::v4(kExcAddr)) << "from our side of the exception link, never the VIP";
  EXPECT_EQ(s.dst, IpAddr::v4(kKernelAddr));
  EXPECT_EQ(s.dport, handoff_port(20443, 0, steer_by_name("t.test", 2), 2));
  EXPECT_GE(s.sport, 20000);
  EXPECT_EQ(s.seq, u32(client_isn_ - header_.size())) << "the header's length folded into the ISN";
  EXPECT_EQ(s.options.mss, 1400);
  EXPECT_EQ(s.options.wscale, 6);
  EXPECT_TRUE(s.options.sack_ok);
  EXPECT_TRUE(s.options.has_timestamps);
  EXPECT_EQ(s.options.ts_val, client_ts_) << "the client's latest TSval";
  EXPECT_EQ(engine_->stats().handoff_flows, 1u);
  EXPECT_EQ(engine_->stats().action_unsupported, 0u);
}

TEST_F(HandoffTest, ReplayIsTheProxyHeaderThenExactlyTheHello) {
  open("t.test");
  const Packet r = accept();
  EXPECT_EQ(r.seq, syn_.seq + 1);
  EXPECT_EQ(r.ack, worker_isn_ + 1);
  std::vector<uint8_t> want = header_;
  want.insert(want.end(), hello_.begin(), hello_.end());
  EXPECT_EQ(as_vec(r.payload), want);
  // What the worker reads: the client and the VIP, then the hello at the
  // client's own ISN + 1.
  proxy::ProxyHeaderParser parser;
  ASSERT_EQ(parser.parse(r.payload), ParseStatus::kDone);
  EXPECT_EQ(parser.header().source.port, 40000);
  EXPECT_EQ(parser.header().destination.port, 443);
  EXPECT_EQ(*parser.header().tlvs.authority, "t.test");
  EXPECT_EQ(r.seq + parser.header().header_len, client_isn_ + 1);
}

TEST_F(HandoffTest, SequenceSpacesBothWaysWithSack) {
  wire_.in_place = exc_.in_place = true;
  open("t.test");
  (void)accept();
  const uint32_t c1 = client_isn_ + 1 + static_cast<uint32_t>(hello_.size());  // the client's next byte
  // The worker acknowledges header + hello and answers: to the client at our
  // sequence numbers; its ACK is in the client's space already, and so is a
  // SACK block of the client's bytes.
  const std::string answer(700, 'S');
  TcpSegment d = worker(kTcpAck | kTcpPsh, worker_isn_ + 1, c1,
                        {reinterpret_cast<const uint8_t*>(answer.data()), answer.size()});
  d.options.sack_count = 1;
  d.options.sack[0] = SackBlock{c1 + 100, c1 + 200};
  auto out = from_exception(d);
  ASSERT_EQ(out.wire.size(), 1u);
  ASSERT_TRUE(out.exc.empty());
  const Packet& c = out.wire[0];
  EXPECT_EQ(c.src, kVip);
  EXPECT_EQ(c.sport, 443);
  EXPECT_EQ(c.dst, kClient);
  EXPECT_EQ(c.dst_mac, kClientMac);
  EXPECT_EQ(c.seq, isn_ + 1);
  EXPECT_EQ(c.ack, c1);
  ASSERT_EQ(c.options.sack_count, 1);
  EXPECT_EQ(c.options.sack[0].left, c1 + 100);
  EXPECT_EQ(c.options.sack[0].right, c1 + 200);
  EXPECT_EQ(c.window, 300) << "the worker's scale (7) is ours (7): unchanged";
  EXPECT_EQ(c.payload.size(), answer.size());
  // The client's data and its ACK + SACK of the answer: sequence numbers
  // unchanged, acknowledgements and SACK blocks in the worker's space.
  const std::string fin(64, 'F');
  TcpSegment ca = client(kTcpAck | kTcpPsh, c1, isn_ + 1 + 300,
                         {reinterpret_cast<const uint8_t*>(fin.data()), fin.size()});
  ca.options.sack_count = 1;
  ca.options.sack[0] = SackBlock{isn_ + 1 + 400, isn_ + 1 + 700};
  out = from_wire(ca);
  ASSERT_EQ(out.exc.size(), 1u);
  ASSERT_TRUE(out.wire.empty());
  const Packet& w = out.exc[0];
  EXPECT_EQ(w.src_mac, kExcMac);
  EXPECT_EQ(w.dst_mac, kKernelMac);
  EXPECT_EQ(w.src, IpAddr::v4(kExcAddr));
  EXPECT_EQ(w.dst, IpAddr::v4(kKernelAddr));
  EXPECT_EQ(w.dport, syn_.dport);
  EXPECT_EQ(w.sport, syn_.sport);
  EXPECT_EQ(w.seq, c1);
  EXPECT_EQ(w.ack, worker_isn_ + 1 + 300);
  ASSERT_EQ(w.options.sack_count, 1);
  EXPECT_EQ(w.options.sack[0].left, worker_isn_ + 1 + 400);
  EXPECT_EQ(w.options.sack[0].right, worker_isn_ + 1 + 700);
  EXPECT_EQ(as_vec(w.payload), std::vector<uint8_t>(fin.begin(), fin.end()));
  EXPECT_EQ(wire_.in_place_sent + exc_.in_place_sent, 2u) << "both rewritten where they were received";

  // Without SACK blocks, the replay acknowledged: the fast path
  // (flow_engine_forward.cc) both ways, the same translation.
  TcpSegment d2 = worker(kTcpAck | kTcpPsh, worker_isn_ + 1 + 700, c1 + 64,
                         {reinterpret_cast<const uint8_t*>(answer.data()), 100});
  out = from_exception(d2);
  ASSERT_EQ(out.wire.size(), 1u);
  ASSERT_TRUE(out.exc.empty());
  EXPECT_EQ(out.wire[0].dst, kClient);
  EXPECT_EQ(out.wire[0].dst_mac, kClientMac);
  EXPECT_EQ(out.wire[0].seq, isn_ + 1 + 700);
  EXPECT_EQ(out.wire[0].ack, c1 + 64);
  EXPECT_EQ(out.wire[0].payload.size(), 100u);
  TcpSegment ca2 = client(kTcpAck, c1 + 64, isn_ + 1 + 800);
  out = from_wire(ca2);
  ASSERT_EQ(out.exc.size(), 1u);
  ASSERT_TRUE(out.wire.empty());
  EXPECT_EQ(out.exc[0].src_mac, kExcMac);
  EXPECT_EQ(out.exc[0].dst, IpAddr::v4(kKernelAddr));
  EXPECT_EQ(out.exc[0].seq, c1 + 64);
  EXPECT_EQ(out.exc[0].ack, worker_isn_ + 1 + 800);
  EXPECT_EQ(wire_.in_place_sent + exc_.in_place_sent, 4u);
}

TEST_F(HandoffTest, TranslatedTimestampsNeverGoBackForTheClient) {
  // Our ACK of the hello went out 40 ms after our SYN-ACK; the worker
  // answers later still. Its TSvals, moved into our space, must not fall
  // below what the client saw from us (PAWS would drop them).
  open("t.test", kT + 40);
  const uint32_t seen = last_ts_to_client_;
  EXPECT_EQ(seen, static_cast<uint32_t>(kT + 40));
  (void)accept(kT + 41);
  const uint32_t c1 = client_isn_ + 1 + static_cast<uint32_t>(hello_.size());
  auto out = from_exception(worker(kTcpAck | kTcpPsh, worker_isn_ + 1, c1, hello_), kT + 42);
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_GE(static_cast<int32_t>(out.wire[0].options.ts_val - seen), 0);
  // And the client's echo of it goes back as the worker's own TSval.
  TcpSegment ca = client(kTcpAck, c1, out.wire[0].seq + static_cast<uint32_t>(hello_.size()));
  ca.options.ts_ecr = out.wire[0].options.ts_val;
  out = from_wire(ca, kT + 43);
  ASSERT_EQ(out.exc.size(), 1u);
  EXPECT_EQ(out.exc[0].options.ts_ecr, worker_ts_);
}

TEST_F(HandoffTest, WorkerFinAndClientFinThenTimeWait) {
  open("t.test");
  (void)accept();
  const uint32_t c1 = client_isn_ + 1 + static_cast<uint32_t>(hello_.size());
  auto out = from_exception(worker(kTcpAck | kTcpFin, worker_isn_ + 1, c1));
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_TRUE(out.wire[0].flags & kTcpFin);
  EXPECT_EQ(out.wire[0].seq, isn_ + 1);
  out = from_wire(client(kTcpAck | kTcpFin, c1, isn_ + 2));
  ASSERT_EQ(out.exc.size(), 1u);
  EXPECT_TRUE(out.exc[0].flags & kTcpFin);
  EXPECT_EQ(out.exc[0].ack, worker_isn_ + 2);
  EXPECT_EQ(engine_->flows(), 1u);
  (void)tick(kT + 2'500);
  EXPECT_EQ(engine_->flows(), 0u);
  // The worker's last ACK, after the flow is gone: a RST back to it on the
  // exception link, nothing on the wire.
  out = from_exception(worker(kTcpAck, worker_isn_ + 2, c1 + 1), kT + 2'600);
  EXPECT_TRUE(out.wire.empty());
  ASSERT_EQ(out.exc.size(), 1u);
  EXPECT_TRUE(out.exc[0].flags & kTcpRst);
  EXPECT_EQ(out.exc[0].src_mac, kExcMac);
  EXPECT_EQ(engine_->stats().exception_stray, 1u);
}

TEST_F(HandoffTest, WorkerRstResetsTheClientAndEndsTheFlow) {
  open("t.test");
  (void)accept();
  const uint32_t c1 = client_isn_ + 1 + static_cast<uint32_t>(hello_.size());
  auto out = from_exception(worker(kTcpRst | kTcpAck, worker_isn_ + 1, c1));
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_TRUE(out.wire[0].flags & kTcpRst);
  EXPECT_EQ(out.wire[0].seq, isn_ + 1);
  EXPECT_EQ(out.wire[0].dst, kClient);
  EXPECT_EQ(engine_->flows(), 0u);
}

TEST_F(HandoffTest, RefusedOrSilentWorkerResetsTheClient) {
  open("t.test");
  auto out = from_exception(worker(kTcpRst | kTcpAck, 0, syn_.seq + 1));
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_TRUE(out.wire[0].flags & kTcpRst);
  EXPECT_EQ(engine_->stats().handoff_failures, 1u);
  EXPECT_EQ(engine_->stats().backend_connect_failures, 0u) << "not a backend's failure";
  EXPECT_EQ(engine_->flows(), 0u);

  sport_ = 40001;
  open("t.test");
  for (int i = 1; i <= 2; ++i) {
    out = tick(kT + 1'100 * static_cast<uint64_t>(i));
    ASSERT_EQ(out.exc.size(), 1u) << "our SYN again";
    EXPECT_EQ(out.exc[0].seq, syn_.seq);
  }
  out = tick(kT + 3'400);
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_TRUE(out.wire[0].flags & kTcpRst);
  EXPECT_EQ(engine_->stats().handoff_failures, 2u);
  EXPECT_EQ(engine_->flows(), 0u);
}

TEST_F(HandoffTest, LostReplayGoesAgainWithTheHeader) {
  open("t.test");
  const Packet first = accept();
  auto out = tick(kT + 250);
  ASSERT_EQ(out.exc.size(), 1u);
  EXPECT_EQ(out.exc[0].seq, first.seq);
  EXPECT_EQ(as_vec(out.exc[0].payload), as_vec(first.payload));
  EXPECT_EQ(engine_->stats().replay_retransmits, 1u);
}

TEST_F(HandoffTest, OneNameOneWorkerOtherNamesSpread) {
  std::set<uint16_t> ports;
  for (int i = 0; i < 16; ++i) {
    sport_ = static_cast<uint16_t>(41000 + i);
    const std::string name = i < 8 ? "t.test" : "n" + std::to_string(i) + ".t.test";
    open(name);
    EXPECT_EQ(syn_.dport, handoff_port(20443, 0, steer_by_name(name, 2), 2)) << name;
    if (i >= 8) ports.insert(syn_.dport);
  }
  EXPECT_EQ(ports.size(), 2u) << "8 other names reach both workers";
}

TEST_F(HandoffTest, ARouteThatSteersByClientSpreadsOneNameOverTheWorkers) {
  std::set<uint16_t> ports;
  for (int i = 0; i < 8; ++i) {
    sport_ = static_cast<uint16_t>(42000 + i);
    open("busy.test");
    EXPECT_EQ(syn_.dport, handoff_port(20443, 0, sport_ % 2, 2)) << sport_;
    ports.insert(syn_.dport);
  }
  EXPECT_EQ(ports.size(), 2u) << "steer = \"client\": one name, both workers";
}

TEST_F(HandoffTest, Ipv6ClientGetsAnIpv6HeaderOverTheIpv4Link) {
  v6_ = true;
  open("t.test");
  EXPECT_EQ(syn_.src, IpAddr::v4(kExcAddr));
  const Packet r = accept();
  proxy::ProxyHeaderParser parser;
  ASSERT_EQ(parser.parse(r.payload), ParseStatus::kDone);
  EXPECT_EQ(parser.header().family, proxy::Family::kInet6);
  EXPECT_EQ(parser.header().source.ip[15], 2);
  EXPECT_EQ(r.seq + parser.header().header_len, client_isn_ + 1);
  const uint32_t c1 = client_isn_ + 1 + static_cast<uint32_t>(hello_.size());
  auto out = from_exception(worker(kTcpAck | kTcpPsh, worker_isn_ + 1, c1, hello_));
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_EQ(out.wire[0].l3, L3::kIpv6);
  EXPECT_EQ(out.wire[0].seq, isn_ + 1);
}

TEST_F(HandoffTest, TheExceptionLinkAndTheWireDoNotMix) {
  open("t.test");
  (void)accept();
  const uint32_t c1 = client_isn_ + 1 + static_cast<uint32_t>(hello_.size());
  // The worker's segment arriving on the wire: not for a VIP, dropped.
  auto out = from_wire(worker(kTcpAck | kTcpPsh, worker_isn_ + 1, c1, hello_));
  EXPECT_TRUE(out.wire.empty());
  EXPECT_TRUE(out.exc.empty());
  // ARP for our exception address: answered on the exception port only.
  std::vector<uint8_t> req(64);
  req.resize(build_arp_request(req, kKernelMac, kKernelAddr, kExcAddr));
  out = feed(req, kT, true);
  ASSERT_EQ(out.exc.size(), 1u);
  EXPECT_EQ(out.exc[0].arp.op, 2);
  EXPECT_EQ(out.exc[0].arp.sender_mac, kExcMac);
  out = feed(req, kT, false);
  EXPECT_TRUE(out.wire.empty());
  EXPECT_TRUE(out.exc.empty());
  // A client segment on the exception port: not a hand-off flow, answered
  // with nothing for the client.
  out = feed(build(client(kTcpAck, c1, isn_ + 1)), kT, true);
  EXPECT_TRUE(out.wire.empty());
}

TEST_F(HandoffTest, WithoutAnExceptionPortTerminateIsResetAndCounted) {
  make(false, 1);
  TcpSegment syn = client(kTcpSyn, client_isn_, 0);
  auto sa = from_wire(syn);
  ASSERT_EQ(sa.wire.size(), 1u);
  isn_ = sa.wire[0].seq;
  (void)from_wire(client(kTcpAck, client_isn_ + 1, isn_ + 1));
  hello_ = test::HelloBuilder().sni("t.test").records();
  auto out = from_wire(client(kTcpAck | kTcpPsh, client_isn_ + 1, isn_ + 1, hello_));
  ASSERT_EQ(out.wire.size(), 1u);
  EXPECT_TRUE(out.wire[0].flags & kTcpRst);
  EXPECT_TRUE(out.exc.empty());
  EXPECT_EQ(engine_->stats().action_unsupported, 1u);
  EXPECT_EQ(engine_->stats().handoff_flows, 0u);
}

TEST_F(HandoffTest, NoExceptionSinkCountsNoBufferNeverCrashes) {
  wire_.exception = nullptr;
  TcpSegment syn = client(kTcpSyn, client_isn_, 0);
  auto sa = from_wire(syn);
  isn_ = sa.wire[0].seq;
  (void)from_wire(client(kTcpAck, client_isn_ + 1, isn_ + 1));
  hello_ = test::HelloBuilder().sni("t.test").records();
  auto out = from_wire(client(kTcpAck | kTcpPsh, client_isn_ + 1, isn_ + 1, hello_));
  EXPECT_EQ(out.wire.size(), 1u) << "the hello's ACK only";
  EXPECT_GE(engine_->stats().tx_no_buffer, 1u);
  for (uint64_t i = 1; i <= 4; ++i) (void)tick(kT + 1'100 * i);
  EXPECT_EQ(engine_->flows(), 0u) << "given up after its tries";
  EXPECT_EQ(engine_->stats().handoff_failures, 1u);
}

}  // namespace
}  // namespace lode::front

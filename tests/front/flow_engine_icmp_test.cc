// The dpdk front's path MTU relay (flow_engine_icmp.cc) and shared SYN
// cookie secrets, on packet fixtures: a passthrough flow is spliced, the
// segments it forwards are captured, a router's "fragmentation needed" /
// "packet too big" quoting them is crafted, and what the engine sends is
// parsed and compared.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "controlplane/config.h"
#include "dataplane/front/flow_engine.h"
#include "support/flow_engine_fixture.h"
#include "support/hello_builder.h"
#include "support/test_pki.h"

namespace lode::front {
namespace {

using namespace fixture;
using Frame = std::vector<uint8_t>;

constexpr MacAddr kRouterMac = {0x02, 0, 0, 0, 0, 0xfe};
const IpAddr kBackend = IpAddr::v4(0x0a000009);  // 10.0.0.9
const IpAddr kRouter = IpAddr::v4(0x0a0000fe);   // 10.0.0.254
const uint8_t kVip6Bytes[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
const uint8_t kClient6Bytes[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
const uint8_t kRouter6Bytes[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe};
const IpAddr kVip6 = IpAddr::v6(std::span<const uint8_t, 16>(kVip6Bytes, 16));
const IpAddr kClient6 = IpAddr::v6(std::span<const uint8_t, 16>(kClient6Bytes, 16));
const IpAddr kRouter6 = IpAddr::v6(std::span<const uint8_t, 16>(kRouter6Bytes, 16));
constexpr size_t kL3 = 14;

using VectorSink = RecordingSink;

void put16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void put32(uint8_t* p, uint32_t v) {
  put16(p, v >> 16);
  put16(p + 2, v & 0xffff);
}
uint32_t get32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

// A router's error about `quote` (the IP packet it could not forward, as
// many of its bytes as given): ICMP 3/4 from kRouter to the quote's source,
// or ICMPv6 2 from kRouter6. `type_word`: the 32 bits after the checksum
// (IPv4: 16 unused, the MTU; IPv6: the MTU).
Frame router_error(std::span<const uint8_t> quote, uint32_t type_word, bool v6,
                   const IpAddr* to_other = nullptr) {
  const size_t ip_len = v6 ? 40 : 20;
  Frame f(kL3 + ip_len + 8 + quote.size());
  std::memcpy(f.data(), kOurMac.data(), 6);
  std::memcpy(f.data() + 6, kRouterMac.data(), 6);
  put16(f.data() + 12, v6 ? 0x86dd : 0x0800);
  uint8_t* ip = f.data() + kL3;
  uint8_t* m = ip + ip_len;
  const IpAddr from = v6 ? kRouter6 : kRouter;
  IpAddr to;
  if (quote.size() >= ip_len) {
    to = v6 ? IpAddr::v6(std::span<const uint8_t, 16>(quote.data() + 8, 16))
            : IpAddr::v4(get32(quote.data() + 12));
  } else {
    to = v6 ? kVip6 : kVip;
  }
  if (to_other != nullptr) to = *to_other;
  m[0] = v6 ? 2 : 3;
  m[1] = v6 ? 0 : 4;
  put32(m + 4, type_word);
  std::memcpy(m + 8, quote.data(), quote.size());
  const size_t l4_len = 8 + quote.size();
  if (v6) {
    put32(ip, 6u << 28);
    put16(ip + 4, static_cast<uint32_t>(l4_len));
    ip[6] = 58;
    ip[7] = 64;
    std::memcpy(ip + 8, from.bytes, 16);
    std::memcpy(ip + 24, to.bytes, 16);
    put16(m + 2, l4_checksum(from, to, 58, {m, l4_len}));
  } else {
    ip[0] = 0x45;
    put16(ip + 2, static_cast<uint32_t>(20 + l4_len));
    ip[8] = 64;
    ip[9] = 1;
    std::memcpy(ip + 12, from.bytes, 4);
    std::memcpy(ip + 16, to.bytes, 4);
    put16(ip + 10, inet_checksum({ip, 20}));
    put16(m + 2, inet_checksum({m, l4_len}));
  }
  return f;
}

// The first `extra` + IP header bytes of a frame's IP packet (RFC 792: the
// header and 8 bytes).
std::span<const uint8_t> ip_packet(const Frame& f, size_t tcp_bytes = 8) {
  const bool v6 = f[12] == 0x86;
  const size_t hlen = v6 ? 40 : size_t{f[kL3] & 0x0fu} * 4;
  return {f.data() + kL3, std::min(f.size() - kL3, hlen + tcp_bytes)};
}

std::span<const uint8_t> as_bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

class FlowEngineIcmpTest : public ::testing::Test {
 protected:
  void SetUp() override { engine_ = make_engine(kSecretA); }

  static constexpr std::array<uint8_t, 16> kSecretA = {1, 2,  3,  4,  5,  6,  7,  8,
                                                       9, 10, 11, 12, 13, 14, 15, 16};
  static constexpr std::array<uint8_t, 16> kSecretB = {16, 15, 14, 13, 12, 11, 10, 9,
                                                       8,  7,  6,  5,  4,  3,  2,  1};

  std::unique_ptr<FlowEngine> make_engine(const std::array<uint8_t, 16>& secret,
                                          uint32_t icmp_burst = 50, int64_t cookie_clock_offset_ms = 0) {
    const std::string toml =
        "[[listener]]\nname = \"vip\"\nlisten = [\"10.0.0.1:443\", \"[fd00::1]:443\"]\n"
        "[[pool]]\nname = \"p\"\nbackends = [\"10.0.0.9:443\"]\n"
        "[[route]]\nname = \"p\"\nnames = [\"p.test\"]\naction = \"passthrough\"\npool = \"p\"\n"
        "[[route]]\nname = \"r\"\nnames = [\"r.test\"]\naction = \"reject\"\n";
    const std::string path = dir_.write("lode.toml", toml);
    auto cfg = config::load_config_file(path);
    EXPECT_TRUE(cfg.has_value());
    const auto runtime = runtime_of(*cfg);
    EngineConfig ec = engine_config(*runtime);
    ec.cookie_key = secret;
    ec.icmp_burst = icmp_burst;
    ec.cookie_clock_offset_ms = cookie_clock_offset_ms;
    return std::make_unique<FlowEngine>(ec, runtime);
  }

  TcpSegment from_client(uint8_t flags, uint32_t seq, uint32_t ack,
                         std::span<const uint8_t> payload = {}) {
    return segment(kClientMac, kOurMac,
                   v6_ ? FlowKey{kClient6, kVip6, 40000, 443} : FlowKey{kClient, kVip, 40000, 443},
                   flags, seq, ack, 64240, payload);
  }
  TcpSegment from_backend(uint8_t flags, uint32_t seq, uint32_t ack,
                          std::span<const uint8_t> payload = {}) {
    return segment(kBackendMac, kOurMac,
                   FlowKey{kBackend, kVip, 443, lport_},
                   flags, seq, ack, 1000, payload);
  }
  // Frames in; the frames out (raw: the tests parse them).
  std::vector<Frame> in_frame(const Frame& f, FlowEngine* e = nullptr) {
    sink_.frames.clear();
    (e != nullptr ? e : engine_.get())->on_frame(f, now_, sink_);
    return sink_.frames;
  }
  std::vector<Frame> in(const TcpSegment& s, FlowEngine* e = nullptr) { return in_frame(frame_of(s), e); }

  // SYN, cookie ACK, the hello for p.test, the backend's ARP reply, its
  // SYN-ACK: the flow is spliced, the replay acknowledged.
  void splice(bool ack_replay = true) {
    auto sa = in(from_client(kTcpSyn, client_isn_, 0));
    ASSERT_EQ(sa.size(), 1u);
    isn_ = parse_frame(sa[0]).seq;
    EXPECT_TRUE(in(from_client(kTcpAck, client_isn_ + 1, isn_ + 1)).empty());
    hello_ = big_hello_ ? test::HelloBuilder().sni("p.test").ext(21, test::Bytes(1000, 0)).records()
                        : test::HelloBuilder().sni("p.test").records();
    auto out = in(from_client(kTcpAck | kTcpPsh, client_isn_ + 1, isn_ + 1, hello_));
    ASSERT_EQ(out.size(), 2u);  // our ACK, the ARP request for the backend
    const Packet arp =
        parse_frame(out[0]).l3 == L3::kArp ? parse_frame(out[0]) : parse_frame(out[1]);
    Frame reply(64);
    ASSERT_GT(build_arp_reply(reply, arp, kBackendMac, kBackend.v4_host()), 0u);
    out = in_frame(reply);
    ASSERT_EQ(out.size(), 1u);
    const Packet syn = parse_frame(out[0]);
    ASSERT_EQ(syn.flags, kTcpSyn);
    lport_ = syn.sport;
    TcpSegment synack = from_backend(kTcpSyn | kTcpAck, backend_isn_, client_isn_ + 1);
    synack.options.mss = backend_syn_mss_;
    out = in(synack);
    ASSERT_EQ(out.size(), 1u);  // the replay
    replay_ = out[0];
    cnext_ = client_isn_ + 1 + static_cast<uint32_t>(hello_.size());
    delta_ = isn_ - backend_isn_;
    if (!ack_replay) return;
    EXPECT_EQ(in(from_backend(kTcpAck, backend_isn_ + 1, cnext_)).size(),
              1u);  // passed to the client
  }
  // The client sends `n` bytes: the segment forwarded to the backend.
  Frame client_data(size_t n) {
    const std::string data(n, 'c');
    auto out = in(from_client(kTcpAck | kTcpPsh, cnext_, isn_ + 1, as_bytes(data)));
    EXPECT_EQ(out.size(), 1u);
    return out.empty() ? Frame{} : out[0];
  }
  // The backend sends `n` bytes at its sequence number `seq`: the segment
  // forwarded to the client.
  Frame backend_data(uint32_t seq, size_t n) {
    const std::string data(n, 'b');
    auto out = in(from_backend(kTcpAck | kTcpPsh, seq, cnext_, as_bytes(data)));
    EXPECT_EQ(out.size(), 1u);
    return out.empty() ? Frame{} : out[0];
  }

  // The quoted IPv4 header of an error we sent is valid; returns its offset.
  static void expect_inner_ipv4_checksum(const Frame& f) {
    const Packet p = parse_frame(f);
    ASSERT_GE(p.icmp.body.size(), 28u);
    EXPECT_EQ(inet_checksum(p.icmp.body.first(20)), 0) << "the quoted IPv4 header's checksum";
  }

  const FrontStats& stats() const { return engine_->stats(); }

  test::TempDir dir_;
  std::unique_ptr<FlowEngine> engine_;
  VectorSink sink_;
  uint64_t now_ = 1'000'000;
  bool v6_ = false;
  bool big_hello_ = false;        // a hello of about 1,100 bytes (a padding extension)
  uint16_t backend_syn_mss_ = 0;  // the MSS of the backend's SYN-ACK (0: none)
  uint32_t client_isn_ = 0xfffff000;  // wraps during the tests
  uint32_t backend_isn_ = 0x70000000;
  uint32_t isn_ = 0, cnext_ = 0, delta_ = 0;
  uint16_t lport_ = 0;
  test::Bytes hello_;
  Frame replay_;
};

TEST_F(FlowEngineIcmpTest, FragNeededTowardsTheBackendReachesTheClientAboutItsOwnSegment) {
  splice();
  const Frame sent = client_data(1200);
  const Packet fwd = parse_frame(sent);
  ASSERT_EQ(fwd.dst, kBackend);
  const auto out = in_frame(router_error(ip_packet(sent), 1000, false));
  ASSERT_EQ(out.size(), 1u);
  const Packet e = parse_frame(out[0]);  // checksums verified
  ASSERT_TRUE(e.ok()) << to_string(e.error);
  EXPECT_EQ(e.l4, L4::kIcmp);
  EXPECT_EQ(e.icmp.type, 3);
  EXPECT_EQ(e.icmp.code, 4);
  EXPECT_EQ(e.icmp.next_hop_mtu, 1000u);
  EXPECT_EQ(e.src, kVip);
  EXPECT_EQ(e.dst, kClient);
  EXPECT_EQ(e.dst_mac, kClientMac);
  EXPECT_EQ(e.src_mac, kOurMac);
  const IcmpQuote& q = e.icmp.quote;
  ASSERT_EQ(q.status, IcmpQuote::Status::kTcp);
  EXPECT_EQ(q.src, kClient) << "the client's segment as the client sent it";
  EXPECT_EQ(q.dst, kVip);
  EXPECT_EQ(q.sport, 40000);
  EXPECT_EQ(q.dport, 443);
  EXPECT_EQ(q.seq, cnext_);
  EXPECT_EQ(q.length, fwd.payload.size() + 40);
  expect_inner_ipv4_checksum(out[0]);
  EXPECT_EQ(stats().icmp_too_big, 1u);
  // A quote of more than 8 bytes (Linux routers send up to 576) is the same.
  ASSERT_EQ(in_frame(router_error(ip_packet(sent, 548), 1000, false)).size(), 1u);
  EXPECT_EQ(stats().icmp_too_big, 2u);
}

TEST_F(FlowEngineIcmpTest, FragNeededTowardsTheClientReachesTheBackendInItsSequenceSpace) {
  splice();
  const Frame sent = backend_data(backend_isn_ + 1, 1300);
  const Packet fwd = parse_frame(sent);
  ASSERT_EQ(fwd.dst, kClient);
  ASSERT_EQ(fwd.seq, isn_ + 1);
  const auto out = in_frame(router_error(ip_packet(sent), 1280, false));
  ASSERT_EQ(out.size(), 1u);
  const Packet e = parse_frame(out[0]);
  ASSERT_TRUE(e.ok()) << to_string(e.error);
  EXPECT_EQ(e.icmp.type, 3);
  EXPECT_EQ(e.icmp.code, 4);
  EXPECT_EQ(e.icmp.next_hop_mtu, 1280u);
  EXPECT_EQ(e.src, kVip);
  EXPECT_EQ(e.dst, kBackend);
  EXPECT_EQ(e.dst_mac, kBackendMac);
  const IcmpQuote& q = e.icmp.quote;
  ASSERT_EQ(q.status, IcmpQuote::Status::kTcp);
  EXPECT_EQ(q.src, kBackend) << "the backend's segment as the backend sent it";
  EXPECT_EQ(q.dst, kVip);
  EXPECT_EQ(q.sport, 443);
  EXPECT_EQ(q.dport, lport_);
  EXPECT_EQ(q.seq, backend_isn_ + 1) << "moved back into the backend's space";
  expect_inner_ipv4_checksum(out[0]);
  EXPECT_EQ(stats().icmp_too_big, 1u);
}

// The backend keeps the MTU per destination (the VIP every client comes
// from): an error from one client's path tells it 1280 at the least, and one
// that would not shrink the segment below that is dropped.
TEST_F(FlowEngineIcmpTest, ClientPathErrorsNeverTellTheBackendLessThan1280) {
  splice();
  const Frame sent = backend_data(backend_isn_ + 1, 1400);
  auto out = in_frame(router_error(ip_packet(sent), 576, false));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(parse_frame(out[0]).icmp.next_hop_mtu, 1280u) << "576 raised to the floor";
  const Frame small = backend_data(backend_isn_ + 1401, 1000);
  EXPECT_TRUE(in_frame(router_error(ip_packet(small), 576, false)).empty())
      << "a 1,040-byte segment fits 1280: nothing to tell";
  EXPECT_EQ(stats().icmp_too_big, 1u);
  EXPECT_EQ(stats().icmp_too_big_bad, 1u);
}

TEST_F(FlowEngineIcmpTest, QuotedSequenceOutsideTheUnacknowledgedWindowIsDropped) {
  splice();
  const Frame sent = client_data(1200);
  Frame quote(ip_packet(sent).begin(), ip_packet(sent).end());
  // Before what was sent and not acknowledged (the hello, acknowledged), and
  // at or after what was sent.
  for (const uint32_t seq : {cnext_ - 1, cnext_ - 100000, cnext_ + 1200, cnext_ + 0x40000000}) {
    put32(quote.data() + 24, seq);
    EXPECT_TRUE(in_frame(router_error(quote, 1000, false)).empty()) << seq;
  }
  EXPECT_EQ(stats().icmp_too_big_bad_seq, 4u);
  // Inside: passed on.
  put32(quote.data() + 24, cnext_ + 600);
  EXPECT_EQ(in_frame(router_error(quote, 1000, false)).size(), 1u);
  // Once the backend acknowledged the bytes, the same error is stale.
  EXPECT_EQ(in(from_backend(kTcpAck, backend_isn_ + 1, cnext_ + 1200)).size(), 1u);
  EXPECT_TRUE(in_frame(router_error(quote, 1000, false)).empty());
  EXPECT_EQ(stats().icmp_too_big_bad_seq, 5u);

  // The client leg the same: the client acknowledges the backend's bytes.
  const Frame back = backend_data(backend_isn_ + 1, 1300);
  const Frame err = router_error(ip_packet(back), 1280, false);
  EXPECT_EQ(in(from_client(kTcpAck, cnext_ + 1200, isn_ + 1 + 1300)).size(), 1u);
  EXPECT_TRUE(in_frame(err).empty());
  EXPECT_EQ(stats().icmp_too_big_bad_seq, 6u);
  EXPECT_EQ(stats().icmp_too_big, 1u);
}

TEST_F(FlowEngineIcmpTest, ErrorsOfNoSplicedFlowAreDropped) {
  splice();
  const Frame sent = client_data(1200);
  Frame quote(ip_packet(sent).begin(), ip_packet(sent).end());
  // Another local port, another client port: no flow.
  Frame other = quote;
  put16(other.data() + 20, lport_ + 1);
  EXPECT_TRUE(in_frame(router_error(other, 1000, false)).empty());
  // Not a TCP segment (UDP quoted).
  other = quote;
  other[9] = 17;
  put16(other.data() + 10, 0);
  put16(other.data() + 10, inet_checksum({other.data(), 20}));
  EXPECT_TRUE(in_frame(router_error(other, 1000, false)).empty());
  EXPECT_EQ(stats().icmp_too_big_no_flow, 2u);

  // A flow at its hello: what we sent it were our own ACKs.
  TcpSegment s = from_client(kTcpSyn, 9000, 0);
  s.flow.sport = 40001;
  auto sa = in(s);
  ASSERT_EQ(sa.size(), 1u);
  const uint32_t isn3 = parse_frame(sa[0]).seq;
  s = from_client(kTcpAck, 9001, isn3 + 1);
  s.flow.sport = 40001;
  EXPECT_TRUE(in(s).empty());
  const Frame part = {0x16, 0x03, 0x01,
                      0x02, 0x00, 0x01};  // a hello's first bytes: acknowledged, nothing else
  s = from_client(kTcpAck | kTcpPsh, 9001, isn3 + 1, part);
  s.flow.sport = 40001;
  const auto acks = in(s);
  ASSERT_EQ(acks.size(), 1u);
  // Even a plausible MTU and length: our ACK quoted, padded as a big one.
  Frame q(ip_packet(acks[0]).begin(), ip_packet(acks[0]).end());
  put16(q.data() + 2, 1500);
  EXPECT_TRUE(in_frame(router_error(q, 1000, false)).empty());
  EXPECT_EQ(stats().icmp_too_big_no_flow, 3u);
  EXPECT_EQ(stats().icmp_too_big, 0u);
}

TEST_F(FlowEngineIcmpTest, HostileQuotesAndMtusAreDroppedAndCounted) {
  splice();
  const Frame sent = client_data(1200);
  const Frame quote(ip_packet(sent).begin(), ip_packet(sent).end());
  const uint32_t length = uint32_t{quote[2]} << 8 | quote[3];
  uint64_t bad = 0;
  auto expect_bad = [&](const Frame& q, uint32_t word, const char* what) {
    EXPECT_TRUE(in_frame(router_error(q, word, false)).empty()) << what;
    EXPECT_EQ(stats().icmp_too_big_bad, ++bad) << what;
  };
  Frame q = quote;
  q[0] = 0x4f;  // IHL 60 bytes: past the quote
  expect_bad(q, 1000, "IHL past the quote");
  q = quote;
  q[0] = 0x44;  // IHL 16 bytes
  expect_bad(q, 1000, "IHL below 5");
  q = quote;
  q[0] = 0x65;  // an IPv6 version in an IPv4 error
  expect_bad(q, 1000, "version");
  q = quote;
  put16(q.data() + 2, 24);  // shorter than its header and 8 bytes
  expect_bad(q, 1000, "total length");
  q = quote;
  put16(q.data() + 6, 0x2000 | 0x0010);  // a non-first fragment
  expect_bad(q, 1000, "fragment");
  expect_bad(quote, 0, "MTU 0 (a pre-RFC 1191 router)");
  expect_bad(quote, 67, "MTU below 68");
  expect_bad(quote, length, "MTU not below the quoted length");
  expect_bad(quote, 0xffff, "MTU 65535");
  // Cut before the sequence number: the message itself is refused.
  const uint64_t rx_bad = stats().rx_bad;
  Frame cut(quote.begin(), quote.begin() + 27);
  EXPECT_TRUE(in_frame(router_error(cut, 1000, false)).empty());
  EXPECT_EQ(stats().rx_bad, rx_bad + 1);
  // A bad checksum.
  Frame f = router_error(quote, 1000, false);
  f.back() ^= 1;
  EXPECT_TRUE(in_frame(f).empty());
  EXPECT_EQ(stats().rx_bad, rx_bad + 2);
  // A quote that is not ours: its source is not the VIP the error came to.
  q = quote;
  q[15] = 0x63;  // from 10.0.0.99
  put16(q.data() + 10, 0);
  put16(q.data() + 10, inet_checksum({q.data(), 20}));
  EXPECT_TRUE(in_frame(router_error(q, 1000, false, &kVip)).empty());
  EXPECT_EQ(stats().icmp_too_big_no_flow, 1u);
  EXPECT_EQ(stats().icmp_too_big, 0u);
  // Still working after all that.
  EXPECT_EQ(in_frame(router_error(quote, 1000, false)).size(), 1u);
}

TEST_F(FlowEngineIcmpTest, TooBigReplayIsCutAgainToFit) {
  big_hello_ = true;
  backend_syn_mss_ = 1460;
  splice(false);
  const Packet r = parse_frame(replay_);
  ASSERT_EQ(r.payload.size(), hello_.size()) << "one segment: the backend's MSS is 1460";
  ASSERT_GT(hello_.size(), 1000u);
  // Cuts the replay again into segments that fit the MTU (IPv4, no timestamps:
  // MTU - 40 bytes of payload), never below an MSS of 536.
  auto cut = [&](uint32_t mtu, uint32_t mss) {
    auto out = in_frame(router_error(ip_packet(replay_), mtu, false));
    EXPECT_EQ(out.size(), (hello_.size() + mss - 1) / mss) << "the replay again, in segments that fit, mtu " << mtu;
    test::Bytes again;
    for (const Frame& f : out) {
      const Packet p = parse_frame(f);
      EXPECT_TRUE(p.ok());
      EXPECT_EQ(p.dst, kBackend) << "to the backend, nothing to the client";
      EXPECT_LE(p.payload.size(), mss);
      EXPECT_EQ(p.seq, client_isn_ + 1 + again.size());
      again.insert(again.end(), p.payload.begin(), p.payload.end());
    }
    EXPECT_EQ(again, hello_);
  };
  cut(600, 560);
  EXPECT_EQ(stats().icmp_too_big, 1u);
  // The same error again (a copy, or about another old segment): nothing more to cut.
  EXPECT_TRUE(in_frame(router_error(ip_packet(replay_), 600, false)).empty());
  // A hostile or broken one that says 104: cut to 536, not into 64-byte pieces.
  cut(104, 536);
  EXPECT_EQ(stats().icmp_too_big, 3u);
  EXPECT_TRUE(in_frame(router_error(ip_packet(replay_), 68, false)).empty()) << "536 already";
  // Once the replay is acknowledged, an error about it is stale.
  EXPECT_EQ(in(from_backend(kTcpAck, backend_isn_ + 1, cnext_)).size(), 1u);
  EXPECT_TRUE(in_frame(router_error(ip_packet(replay_), 600, false)).empty());
  EXPECT_EQ(stats().icmp_too_big_bad_seq, 1u);
}

TEST_F(FlowEngineIcmpTest, ErrorsAreRateLimitedPerLcore) {
  splice();
  const Frame sent = client_data(1200);
  const Frame err = router_error(ip_packet(sent), 1000, false);
  size_t sent_errors = 0;
  for (int i = 0; i < 60; ++i) sent_errors += in_frame(err).size();
  EXPECT_EQ(sent_errors, 50u) << "the burst";
  EXPECT_EQ(stats().icmp_rate_limited, 10u);
  now_ += 10;  // 1000 a second: 10 more
  sent_errors = 0;
  for (int i = 0; i < 20; ++i) sent_errors += in_frame(err).size();
  EXPECT_EQ(sent_errors, 10u);
  EXPECT_EQ(stats().icmp_rate_limited, 20u);
  EXPECT_EQ(stats().icmp_too_big, 60u);
}

TEST_F(FlowEngineIcmpTest, Ipv6ClientPacketTooBigAndFragNeededTranslated) {
  v6_ = true;
  splice();
  // The client leg (IPv6): packet too big -> the IPv4 backend, 20 bytes less.
  const Frame back = backend_data(backend_isn_ + 1, 1400);
  ASSERT_EQ(parse_frame(back).dst, kClient6);
  auto out = in_frame(router_error(ip_packet(back), 1300, true));
  ASSERT_EQ(out.size(), 1u);
  Packet e = parse_frame(out[0]);
  ASSERT_TRUE(e.ok()) << to_string(e.error);
  EXPECT_EQ(e.l4, L4::kIcmp);
  EXPECT_EQ(e.icmp.type, 3);
  EXPECT_EQ(e.icmp.next_hop_mtu, 1280u);
  EXPECT_EQ(e.dst, kBackend);
  EXPECT_EQ(e.icmp.quote.seq, backend_isn_ + 1);
  EXPECT_EQ(e.icmp.quote.src, kBackend);
  expect_inner_ipv4_checksum(out[0]);
  // Below IPv6's minimum MTU: bogus.
  EXPECT_TRUE(in_frame(router_error(ip_packet(back), 1200, true)).empty());
  EXPECT_EQ(stats().icmp_too_big_bad, 1u);

  // The backend leg (IPv4): -> an ICMPv6 packet too big to the client,
  // 20 bytes more, never below 1280.
  const Frame sent = client_data(1400);
  for (const auto& [mtu, expected] : {std::pair{1350u, 1370u}, std::pair{600u, 1280u}}) {
    out = in_frame(router_error(ip_packet(sent), mtu, false));
    ASSERT_EQ(out.size(), 1u);
    e = parse_frame(out[0]);  // the ICMPv6 checksum verified
    ASSERT_TRUE(e.ok()) << to_string(e.error);
    EXPECT_EQ(e.l4, L4::kIcmpv6);
    EXPECT_EQ(e.icmp.type, 2);
    EXPECT_EQ(e.icmp.next_hop_mtu, expected);
    EXPECT_EQ(e.src, kVip6);
    EXPECT_EQ(e.dst, kClient6);
    const IcmpQuote& q = e.icmp.quote;
    ASSERT_EQ(q.status, IcmpQuote::Status::kTcp);
    EXPECT_EQ(q.src, kClient6);
    EXPECT_EQ(q.dst, kVip6);
    EXPECT_EQ(q.sport, 40000);
    EXPECT_EQ(q.dport, 443);
    EXPECT_EQ(q.seq, cnext_);
    EXPECT_EQ(q.length, 40u + 20 + 1400);
  }
  EXPECT_EQ(stats().icmp_too_big, 3u);
}

// ------------------------------------------------------------ hand-off

// A terminate flow handed to a worker through the exception port: a too-big
// for one of the worker's segments to the client goes to the workers'
// kernel, on the exception link, about its own segment.
using ExceptionSink = RecordingSink;

TEST(FlowEngineIcmpHandoffTest, TooBigTowardsTheClientReachesTheWorkersKernel) {
  const IpAddr exc_addr = IpAddr::v4(kExcAddr), kernel_addr = IpAddr::v4(kKernelAddr);
  const std::string toml =
      "[[listener]]\nname = \"vip\"\nlisten = [\"10.0.0.1:443\"]\n"
      "[[pool]]\nname = \"app\"\nbackends = [\"127.0.0.1:9000\"]\n"
      "[[certificate]]\nname = \"t\"\ncert = \"t.pem\"\nkey = \"t.key\"\n"
      "[[route]]\nname = \"t\"\nnames = [\"t.test\"]\naction = \"terminate\"\npool = "
      "\"app\"\ncertificate = \"t\"\n";
  const auto runtime = runtime_from(toml, "handoff.toml");
  ASSERT_NE(runtime, nullptr);
  EngineConfig ec = engine_config(*runtime);
  enable_handoff(ec, 1);
  FlowEngine engine(ec, runtime);
  ExceptionSink wire;
  VectorSink exc;
  wire.exception = &exc;
  const uint64_t now = 1'000'000;
  auto feed = [&](Frame f, bool from_exception) {
    wire.frames.clear();
    exc.frames.clear();
    if (from_exception) {
      engine.on_exception_frame(f, now, wire);
    } else {
      engine.on_frame(f, now, wire);
    }
  };
  auto tcp = [](const TcpSegment& s) {
    Frame f(kMaxFrame);
    f.resize(build_tcp(f, s));
    return f;
  };
  TcpSegment c;
  c.src_mac = kClientMac;
  c.dst_mac = kOurMac;
  c.flow = FlowKey{kClient, kVip, 40000, 443};
  c.window = 1000;
  c.seq = 100;
  c.flags = kTcpSyn;
  feed(tcp(c), false);
  ASSERT_EQ(wire.frames.size(), 1u);
  const uint32_t isn = parse_frame(wire.frames[0]).seq;
  c.seq = 101;
  c.ack = isn + 1;
  c.flags = kTcpAck;
  feed(tcp(c), false);
  const auto hello = test::HelloBuilder().sni("t.test").records();
  c.flags = kTcpAck | kTcpPsh;
  c.payload = hello;
  feed(tcp(c), false);
  ASSERT_EQ(exc.frames.size(), 1u);  // ARP for the kernel
  const Packet arp = parse_frame(exc.frames[0]);
  Frame reply(64);
  reply.resize(build_arp_reply(reply, arp, kKernelMac, kernel_addr.v4_host()));
  feed(reply, true);
  ASSERT_EQ(exc.frames.size(), 1u);
  const Packet syn = parse_frame(exc.frames[0]);
  ASSERT_EQ(syn.flags, kTcpSyn);
  TcpSegment w;
  w.src_mac = kKernelMac;
  w.dst_mac = kExcMac;
  w.flow = FlowKey{kernel_addr, exc_addr, syn.dport, syn.sport};
  w.window = 1000;
  w.seq = 5000;
  w.ack = syn.seq + 1;
  w.flags = kTcpSyn | kTcpAck;
  feed(tcp(w), true);
  ASSERT_EQ(exc.frames.size(), 1u);  // the replay: header and hello
  const uint32_t replay_end = 101 + static_cast<uint32_t>(hello.size());
  w.seq = 5001;
  w.ack = replay_end;
  w.flags = kTcpAck | kTcpPsh;
  const std::string data(1300, 'w');
  w.payload = as_bytes(data);
  feed(tcp(w), true);
  ASSERT_EQ(wire.frames.size(), 1u);  // to the client
  const Frame to_client = wire.frames[0];
  ASSERT_EQ(parse_frame(to_client).seq, isn + 1);
  feed(router_error(ip_packet(to_client), 1280, false), false);
  EXPECT_TRUE(wire.frames.empty());
  ASSERT_EQ(exc.frames.size(), 1u) << "through the exception port";
  const Packet e = parse_frame(exc.frames[0]);
  ASSERT_TRUE(e.ok()) << to_string(e.error);
  EXPECT_EQ(e.icmp.type, 3);
  EXPECT_EQ(e.icmp.code, 4);
  EXPECT_EQ(e.icmp.next_hop_mtu, 1280u);
  EXPECT_EQ(e.src_mac, kExcMac);
  EXPECT_EQ(e.dst_mac, kKernelMac);
  EXPECT_EQ(e.vlan, 0);
  EXPECT_EQ(e.src, exc_addr) << "from our side of the exception link";
  EXPECT_EQ(e.dst, kernel_addr);
  EXPECT_EQ(e.icmp.quote.src, kernel_addr) << "the worker's segment as the worker sent it";
  EXPECT_EQ(e.icmp.quote.dst, exc_addr);
  EXPECT_EQ(e.icmp.quote.sport, syn.dport);
  EXPECT_EQ(e.icmp.quote.dport, syn.sport);
  EXPECT_EQ(e.icmp.quote.seq, 5001u);
  EXPECT_EQ(engine.stats().icmp_too_big, 1u);
}

// ------------------------------------------------------------ the parser and builder

IcmpTooBig too_big(bool v6) {
  IcmpTooBig m;
  m.src_mac = kOurMac;
  m.dst_mac = kClientMac;
  m.vlan = 7;
  m.from = v6 ? kVip6 : kVip;
  m.to = v6 ? kClient6 : kClient;
  m.mtu = v6 ? 1400 : 1200;
  m.quoted = v6 ? FlowKey{kClient6, kVip6, 40000, 443} : FlowKey{kClient, kVip, 40000, 443};
  m.quoted_seq = 0xdeadbeef;
  m.quoted_length = 1500;
  m.quoted_ttl = 61;
  return m;
}

TEST(PacketIcmpQuoteTest, BuiltErrorsParseBackToTheirFields) {
  for (const bool v6 : {false, true}) {
    const IcmpTooBig m = too_big(v6);
    Frame f(kMaxFrame);
    f.resize(build_icmp_too_big(f, m));
    ASSERT_GT(f.size(), 0u);
    const Packet p = parse_frame(f);
    ASSERT_TRUE(p.ok()) << to_string(p.error);
    EXPECT_EQ(p.vlan, 7);
    EXPECT_EQ(p.l4, v6 ? L4::kIcmpv6 : L4::kIcmp);
    EXPECT_EQ(p.icmp.type, v6 ? 2 : 3);
    EXPECT_EQ(p.icmp.next_hop_mtu, m.mtu);
    EXPECT_EQ(p.src, m.from);
    EXPECT_EQ(p.dst, m.to);
    EXPECT_EQ(p.ttl, 64);
    const IcmpQuote& q = p.icmp.quote;
    ASSERT_EQ(q.status, IcmpQuote::Status::kTcp);
    EXPECT_EQ(q.src, m.quoted.src);
    EXPECT_EQ(q.dst, m.quoted.dst);
    EXPECT_EQ(q.sport, 40000);
    EXPECT_EQ(q.dport, 443);
    EXPECT_EQ(q.seq, 0xdeadbeefu);
    EXPECT_EQ(q.length, 1500u);
    EXPECT_EQ(q.ttl, 61);
    EXPECT_EQ(p.icmp.body.size(), (v6 ? 40u : 20u) + 8);
  }
}

TEST(PacketIcmpQuoteTest, BuilderRefusesWhatItCannotWrite) {
  Frame f(kMaxFrame);
  IcmpTooBig m = too_big(false);
  m.quoted.src = kClient6;
  EXPECT_EQ(build_icmp_too_big(f, m), 0u) << "families differ";
  m = too_big(false);
  m.mtu = 70000;
  EXPECT_EQ(build_icmp_too_big(f, m), 0u) << "an IPv4 MTU has 16 bits";
  m = too_big(true);
  m.mtu = 70000;
  EXPECT_GT(build_icmp_too_big(f, m), 0u) << "an IPv6 one 32";
  m.quoted_length = 47;
  EXPECT_EQ(build_icmp_too_big(f, m), 0u) << "shorter than the quote itself";
  m = too_big(false);
  m.quoted_length = 70000;
  EXPECT_EQ(build_icmp_too_big(f, m), 0u);
  Frame small(40);
  EXPECT_EQ(build_icmp_too_big(small, too_big(false)), 0u) << "no room";
}

TEST(PacketIcmpQuoteTest, HostileIpv6QuotesAreMarkedNotTrusted) {
  Frame f(kMaxFrame);
  IcmpTooBig m = too_big(true);
  m.vlan = 0;
  f.resize(build_icmp_too_big(f, m));
  const Frame good(f.data() + kL3 + 48, f.data() + f.size());  // the quote: 40 + 8 bytes
  ASSERT_EQ(good.size(), 48u);
  auto parse_with = [](const Frame& quote) { return parse_frame(router_error(quote, 1280, true)); };
  Packet p = parse_with(good);
  ASSERT_TRUE(p.ok()) << to_string(p.error);
  EXPECT_EQ(p.icmp.quote.status, IcmpQuote::Status::kTcp);
  Frame q = good;
  q[6] = 17;  // UDP
  EXPECT_EQ(parse_with(q).icmp.quote.status, IcmpQuote::Status::kNotTcp);
  q = good;
  q[6] = 44;  // a fragment header: not one of ours
  EXPECT_EQ(parse_with(q).icmp.quote.status, IcmpQuote::Status::kNotTcp);
  q = good;
  q[0] = 0x45;  // IPv4 in an ICMPv6 error
  EXPECT_EQ(parse_with(q).icmp.quote.status, IcmpQuote::Status::kMalformed);
  q = good;
  q[4] = 0;
  q[5] = 7;  // a payload shorter than the 8 bytes quoted
  EXPECT_EQ(parse_with(q).icmp.quote.status, IcmpQuote::Status::kMalformed);
  q.assign(good.begin(), good.begin() + 47);  // cut before the end of the sequence number
  EXPECT_EQ(parse_with(q).error, PacketError::kBadIcmp);
  q.assign(good.begin(), good.begin() + 20);
  EXPECT_EQ(parse_with(q).error, PacketError::kBadIcmp);
  // The quote of an echo or any other type is not parsed.
  Frame echo = router_error(good, 0, true);
  echo[kL3 + 40] = 1;  // destination unreachable
  put16(echo.data() + kL3 + 42, 0);
  put16(echo.data() + kL3 + 42,
        l4_checksum(kRouter6, kClient6, 58, {echo.data() + kL3 + 40, echo.size() - kL3 - 40}));
  p = parse_frame(echo);
  ASSERT_TRUE(p.ok()) << to_string(p.error);
  EXPECT_EQ(p.icmp.quote.status, IcmpQuote::Status::kAbsent);
}

// ------------------------------------------------------------ shared secret

// ECMP: the SYN-ACK of one node, the ACK on another.
TEST_F(FlowEngineIcmpTest, CookieFromOneNodeCompletesOnAnotherWithTheSameSecret) {
  auto node_a = make_engine(kSecretA);
  auto node_b = make_engine(kSecretA);
  auto node_c = make_engine(kSecretB);
  auto sa = in(from_client(kTcpSyn, 1234, 0), node_a.get());
  ASSERT_EQ(sa.size(), 1u);
  const uint32_t cookie = parse_frame(sa[0]).seq;
  // Node C (another secret) drops the ACK silently.
  EXPECT_TRUE(in(from_client(kTcpAck, 1235, cookie + 1), node_c.get()).empty());
  EXPECT_EQ(node_c->stats().cookie_invalid, 1u);
  EXPECT_EQ(node_c->flows(), 0u);
  // Node B (the same secret) completes it: the flow is there, its hello
  // collected and answered (r.test: rejected with alert 112 and FIN).
  EXPECT_TRUE(in(from_client(kTcpAck, 1235, cookie + 1), node_b.get()).empty());
  EXPECT_EQ(node_b->stats().flows_created, 1u);
  EXPECT_EQ(node_b->flows(), 1u);
  const auto h = test::HelloBuilder().sni("r.test").records();
  const auto out = in(from_client(kTcpAck | kTcpPsh, 1235, cookie + 1, h), node_b.get());
  ASSERT_EQ(out.size(), 1u);
  const Packet alert = parse_frame(out[0]);
  EXPECT_EQ(alert.seq, cookie + 1);
  EXPECT_TRUE(alert.flags & kTcpFin);
  EXPECT_EQ(node_b->stats().rejects, 1u);
}

// The nodes' engine clocks (CLOCK_MONOTONIC: from each host's boot) differ
// by days; their wall clocks agree. Cookies count wall-clock time, so node B
// completes node A's cookie; a node whose wall clock is days off does not.
TEST_F(FlowEngineIcmpTest, CookieTimeIsWallClockTimeNotTheNodesUptime) {
  constexpr int64_t kDays = 3 * 86'400'000LL;
  const uint64_t a_now = now_;
  auto node_a = make_engine(kSecretA, 50, 1'800'000'000'000LL);
  auto node_b = make_engine(kSecretA, 50, 1'800'000'000'000LL - kDays);  // up 3 days longer
  auto node_c = make_engine(kSecretA, 50, 1'800'000'000'000LL);          // the same uptime gap, wall clock off
  auto sa = in(from_client(kTcpSyn, 1234, 0), node_a.get());
  ASSERT_EQ(sa.size(), 1u);
  const uint32_t cookie = parse_frame(sa[0]).seq;
  now_ = a_now + kDays;
  EXPECT_TRUE(in(from_client(kTcpAck, 1235, cookie + 1), node_c.get()).empty());
  EXPECT_EQ(node_c->stats().cookie_invalid, 1u);
  EXPECT_EQ(node_c->flows(), 0u);
  EXPECT_TRUE(in(from_client(kTcpAck, 1235, cookie + 1), node_b.get()).empty());
  EXPECT_EQ(node_b->stats().cookie_invalid, 0u);
  EXPECT_EQ(node_b->stats().flows_created, 1u);
  now_ = a_now;
}

TEST_F(FlowEngineIcmpTest, NewSecretKeepsThePreviousOneForACookiesLife) {
  auto node = make_engine(kSecretA);
  auto peer_a = make_engine(kSecretA);
  auto peer_b = make_engine(kSecretB);
  TcpSegment syn = from_client(kTcpSyn, 1234, 0);
  const uint32_t before = parse_frame(in(syn, node.get()).at(0)).seq;
  node->set_cookie_secret(kSecretB, now_);
  node->set_cookie_secret(kSecretB, now_ + 1);  // the same again: nothing changes
  // A cookie made before the change still completes (for a cookie's life).
  EXPECT_TRUE(in(from_client(kTcpAck, 1235, before + 1), node.get()).empty());
  EXPECT_EQ(node->stats().flows_created, 1u);
  // One made after it is the new secret's: peer B takes it, peer A does not.
  syn.flow.sport = 40001;
  const uint32_t after = parse_frame(in(syn, node.get()).at(0)).seq;
  TcpSegment ack = from_client(kTcpAck, 1235, after + 1);
  ack.flow.sport = 40001;
  EXPECT_TRUE(in(ack, peer_a.get()).empty());
  EXPECT_EQ(peer_a->stats().flows_created, 0u);
  EXPECT_TRUE(in(ack, peer_b.get()).empty());
  EXPECT_EQ(peer_b->stats().flows_created, 1u);
  // A peer not given the new secret yet: its cookies still complete here
  // during the grace (a cookie's life), and no longer after it.
  syn.flow.sport = 40002;
  now_ += 1000;
  uint32_t old = parse_frame(in(syn, peer_a.get()).at(0)).seq;
  ack = from_client(kTcpAck, 1235, old + 1);
  ack.flow.sport = 40002;
  EXPECT_TRUE(in(ack, node.get()).empty());
  EXPECT_EQ(node->stats().flows_created, 2u);
  syn.flow.sport = 40003;
  now_ += 2 * SynCookies::kSlotSeconds * 1000;
  old = parse_frame(in(syn, peer_a.get()).at(0)).seq;
  ack = from_client(kTcpAck, 1235, old + 1);
  ack.flow.sport = 40003;
  EXPECT_TRUE(in(ack, node.get()).empty());
  EXPECT_EQ(node->stats().cookie_invalid, 1u);
  EXPECT_EQ(node->stats().flows_created, 2u);
  EXPECT_TRUE(in(ack, peer_a.get()).empty());
  EXPECT_EQ(peer_a->stats().flows_created, 1u) << "the cookie itself is valid";
}

}  // namespace
}  // namespace lode::front

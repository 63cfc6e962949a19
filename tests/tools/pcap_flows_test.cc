#include "tools/lodectl/pcap_flows.h"

#include <gtest/gtest.h>

#include <cstring>

#include "support/fixtures.h"
#include "support/hello_builder.h"

namespace lode::tools {
namespace {

using test::Bytes;

// A classic pcap, Ethernet link, IPv4/TCP frames written by hand.
class PcapWriter {
 public:
  PcapWriter() {
    const uint32_t hdr[] = {0xa1b2c3d4, 0x00040002, 0, 0, 65535, 1};
    bytes_.resize(24);
    std::memcpy(bytes_.data(), hdr, 24);
  }
  // flags: 0x02 SYN, 0x10 ACK, 0x18 PSH|ACK
  void tcp(uint32_t src_ip, uint16_t sport, uint32_t dst_ip, uint16_t dport, uint32_t seq, uint8_t flags,
           const Bytes& payload) {
    Bytes f(14, 0);
    f[12] = 0x08;  // IPv4
    Bytes ip(20, 0);
    ip[0] = 0x45;
    const size_t total = 20 + 20 + payload.size();
    ip[2] = static_cast<uint8_t>(total >> 8);
    ip[3] = static_cast<uint8_t>(total);
    ip[8] = 64;
    ip[9] = 6;
    for (int i = 0; i < 4; ++i) {
      ip[12 + i] = static_cast<uint8_t>(src_ip >> (24 - 8 * i));
      ip[16 + i] = static_cast<uint8_t>(dst_ip >> (24 - 8 * i));
    }
    Bytes t(20, 0);
    t[0] = static_cast<uint8_t>(sport >> 8);
    t[1] = static_cast<uint8_t>(sport);
    t[2] = static_cast<uint8_t>(dport >> 8);
    t[3] = static_cast<uint8_t>(dport);
    for (int i = 0; i < 4; ++i) t[4 + i] = static_cast<uint8_t>(seq >> (24 - 8 * i));
    t[12] = 0x50;
    t[13] = flags;
    f.insert(f.end(), ip.begin(), ip.end());
    f.insert(f.end(), t.begin(), t.end());
    f.insert(f.end(), payload.begin(), payload.end());
    const uint32_t rec[] = {0, 0, static_cast<uint32_t>(f.size()), static_cast<uint32_t>(f.size())};
    const size_t at = bytes_.size();
    bytes_.resize(at + 16);
    std::memcpy(bytes_.data() + at, rec, 16);
    bytes_.insert(bytes_.end(), f.begin(), f.end());
  }
  const Bytes& bytes() const { return bytes_; }

 private:
  Bytes bytes_;
};

constexpr uint32_t kClient = 0x7f000001, kServer = 0x7f000002;

Bytes slice(const Bytes& b, size_t from, size_t to) {
  return Bytes(b.begin() + static_cast<std::ptrdiff_t>(from), b.begin() + static_cast<std::ptrdiff_t>(to));
}

TEST(PcapFlows, RealCaptureHasFourFlowsInOrder) {
  const auto file = test::read_fixture("pcap/clients.pcap");
  auto flows = read_pcap_flows(file);
  ASSERT_TRUE(flows.has_value()) << flows.error();
  ASSERT_EQ(flows->size(), 4u);
  EXPECT_EQ((*flows)[0].client.to_string(), "127.0.0.1:33384");
  EXPECT_EQ((*flows)[0].server.to_string(), "127.0.0.1:44312");
  EXPECT_TRUE((*flows)[0].saw_syn);
  // The first client bytes are exactly the captured hello's.
  const auto hello = test::read_fixture("client_hello/openssl_tls13.bin");
  ASSERT_GE((*flows)[0].bytes.size(), hello.size());
  EXPECT_EQ(0, std::memcmp((*flows)[0].bytes.data(), hello.data(), 5));  // same record header
}

TEST(PcapFlows, OutOfOrderAndRetransmittedSegmentsReassemble) {
  const Bytes hello = test::HelloBuilder::typical("a.test").records();
  PcapWriter w;
  const uint32_t isn = 1000;
  w.tcp(kClient, 40000, kServer, 443, isn, 0x02, {});
  w.tcp(kServer, 443, kClient, 40000, 5000, 0x12, {});
  w.tcp(kClient, 40000, kServer, 443, isn + 1 + 100, 0x18, slice(hello, 100, hello.size()));
  w.tcp(kClient, 40000, kServer, 443, isn + 1, 0x18, slice(hello, 0, 120));
  // A retransmission with different bytes: the first bytes seen win.
  Bytes bogus = slice(hello, 0, 50);
  for (auto& x : bogus) x ^= 0xff;
  w.tcp(kClient, 40000, kServer, 443, isn + 1, 0x18, bogus);
  w.tcp(kServer, 443, kClient, 40000, 5001, 0x18, Bytes(30, 0x16));  // server data is ignored
  auto flows = read_pcap_flows(w.bytes());
  ASSERT_TRUE(flows.has_value()) << flows.error();
  ASSERT_EQ(flows->size(), 1u);
  const PcapFlow& f = (*flows)[0];
  EXPECT_EQ(f.bytes, hello);
  EXPECT_EQ(f.segments, 3u);
  EXPECT_FALSE(f.gap);
  EXPECT_EQ(f.client.to_string(), "127.0.0.1:40000");
  EXPECT_EQ(f.server.to_string(), "127.0.0.2:443");
}

TEST(PcapFlows, HoleStopsTheContiguousPrefix) {
  const Bytes hello = test::HelloBuilder::typical("a.test").records();
  PcapWriter w;
  w.tcp(kClient, 40000, kServer, 443, 0, 0x02, {});
  w.tcp(kClient, 40000, kServer, 443, 1, 0x18, slice(hello, 0, 40));
  w.tcp(kClient, 40000, kServer, 443, 1 + 60, 0x18, slice(hello, 60, hello.size()));
  auto flows = read_pcap_flows(w.bytes());
  ASSERT_TRUE(flows.has_value());
  EXPECT_EQ((*flows)[0].bytes.size(), 40u);
  EXPECT_TRUE((*flows)[0].gap);
}

TEST(PcapFlows, MidstreamCaptureStartsAtTheFirstPayload) {
  PcapWriter w;
  w.tcp(kClient, 40000, kServer, 443, 777777, 0x18, Bytes{1, 2, 3});
  w.tcp(kClient, 40000, kServer, 443, 777780, 0x18, Bytes{4, 5});
  auto flows = read_pcap_flows(w.bytes());
  ASSERT_TRUE(flows.has_value());
  EXPECT_EQ((*flows)[0].bytes, (Bytes{1, 2, 3, 4, 5}));
  EXPECT_FALSE((*flows)[0].saw_syn);
}

TEST(PcapFlows, SequenceWrapAroundIsHandled) {
  PcapWriter w;
  w.tcp(kClient, 40000, kServer, 443, 0xfffffffe, 0x02, {});
  w.tcp(kClient, 40000, kServer, 443, 0xffffffff, 0x18, Bytes{1, 2});
  w.tcp(kClient, 40000, kServer, 443, 0x00000001, 0x18, Bytes{3});
  auto flows = read_pcap_flows(w.bytes());
  ASSERT_TRUE(flows.has_value());
  EXPECT_EQ((*flows)[0].bytes, (Bytes{1, 2, 3}));
}

TEST(PcapFlows, FlowCapIsRespected) {
  PcapWriter w;
  for (uint16_t p = 0; p < 10; ++p) w.tcp(kClient, static_cast<uint16_t>(40000 + p), kServer, 443, 0, 0x18, Bytes{1});
  w.tcp(kClient, 40009, kServer, 443, 1, 0x18, Bytes{2});  // a later segment of an ignored flow
  PcapOptions opt;
  opt.max_flows = 3;
  PcapSummary summary;
  auto flows = read_pcap_flows(w.bytes(), opt, &summary);
  ASSERT_TRUE(flows.has_value());
  EXPECT_EQ(flows->size(), 3u);
  EXPECT_EQ(summary.flows_ignored, 3u);  // counted up to max_flows (then "at least")
  opt.max_flows = 8;
  ASSERT_TRUE(read_pcap_flows(w.bytes(), opt, &summary).has_value());
  EXPECT_EQ(summary.flows_ignored, 2u);  // each ignored flow once
}

// A one-byte segment far into a flow makes room up to its end: a capture of
// many such flows asked for max_flows x max_bytes_per_flow before. The holes
// over all flows are bounded; the segments that would pass it are dropped
// and their flows say so, the flows within it reassemble as before, and
// bytes that come in order (whose memory the file itself brought) are never
// counted against it.
TEST(PcapFlows, ReassemblyMemoryIsBoundedOverAllFlows) {
  PcapWriter w;
  for (uint16_t p = 0; p < 6; ++p) {
    const uint16_t port = static_cast<uint16_t>(40000 + p);
    w.tcp(kClient, port, kServer, 443, 0, 0x02, {});
    w.tcp(kClient, port, kServer, 443, 1, 0x18, Bytes{1, 2});
    w.tcp(kClient, port, kServer, 443, 1 + 60'000, 0x18, Bytes{9});  // a hole of 59,998 bytes
  }
  // 30,000 bytes in order, more than the 20,006 the holes left of the budget.
  w.tcp(kClient, 41000, kServer, 443, 0, 0x02, {});
  for (uint32_t i = 0; i < 30; ++i) w.tcp(kClient, 41000, kServer, 443, 1 + i * 1000, 0x18, Bytes(1000, 5));
  PcapOptions opt;
  opt.max_total_bytes = 200'000;
  auto flows = read_pcap_flows(w.bytes(), opt);
  ASSERT_TRUE(flows.has_value());
  ASSERT_EQ(flows->size(), 7u);
  EXPECT_EQ((*flows)[6].bytes, Bytes(30'000, 5));
  EXPECT_FALSE((*flows)[6].truncated);
  EXPECT_FALSE((*flows)[6].gap);
  size_t truncated = 0;
  for (size_t i = 0; i < 6; ++i) {
    const PcapFlow& f = (*flows)[i];
    EXPECT_EQ(f.bytes, (Bytes{1, 2})) << i;  // the contiguous prefix either way
    EXPECT_EQ(f.truncated, i >= 3) << i;     // three holes fit in 200,000 bytes, the rest do not
    EXPECT_EQ(f.gap, i < 3) << i;
    EXPECT_EQ(f.segments, i < 3 ? 2u : 1u) << i;
    truncated += f.truncated;
  }
  EXPECT_EQ(truncated, 3u);
  // The default bound: 256 MiB, far below 100,000 flows x 70 KiB.
  EXPECT_EQ(PcapOptions{}.max_total_bytes, 256u * 1024 * 1024);
}

TEST(PcapFlows, MalformedFilesAreClearErrors) {
  EXPECT_NE(read_pcap_flows(Bytes{}).error().find("shorter than"), std::string::npos);
  EXPECT_NE(read_pcap_flows(Bytes(24, 0)).error().find("bad magic"), std::string::npos);
  EXPECT_NE(read_pcap_flows(Bytes{0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0}).error().find("pcapng"), std::string::npos);
  PcapWriter w;
  w.tcp(kClient, 40000, kServer, 443, 0, 0x18, Bytes(100, 7));
  Bytes cut = w.bytes();
  cut.resize(cut.size() - 10);
  EXPECT_NE(read_pcap_flows(cut).error().find("runs past the end"), std::string::npos);
  cut.resize(24 + 7);
  EXPECT_NE(read_pcap_flows(cut).error().find("truncated record header"), std::string::npos);
  Bytes link = PcapWriter().bytes();
  link[20] = 200;
  EXPECT_NE(read_pcap_flows(link).error().find("unsupported link type"), std::string::npos);
}

TEST(PcapFlows, GarbageFramesAreSkippedNotFatal) {
  PcapWriter w;
  Bytes b = w.bytes();
  // A record whose frame is 5 bytes of nothing.
  const uint32_t rec[] = {0, 0, 5, 5};
  b.resize(b.size() + 16);
  std::memcpy(b.data() + b.size() - 16, rec, 16);
  b.insert(b.end(), {1, 2, 3, 4, 5});
  auto flows = read_pcap_flows(b);
  ASSERT_TRUE(flows.has_value());
  EXPECT_TRUE(flows->empty());
}

}  // namespace
}  // namespace lode::tools

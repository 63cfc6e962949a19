// The software Toeplitz hash and RSS queue choice (dataplane/front/toeplitz.h)
// against Microsoft's published verification vectors ("Verifying the RSS
// Hash Calculation": the key below, IPv4 and IPv6, with and without the TCP
// ports), and the shortcut the port search uses.
#include "dataplane/front/toeplitz.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace lode::front {
namespace {

constexpr uint8_t kMsKey[40] = {0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67,
                                0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb,
                                0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
                                0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa};

IpAddr addr(const char* text) {
  IpAddr a;
  if (inet_pton(AF_INET, text, a.bytes) == 1) {
    a.family = 4;
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, text, a.bytes), 1) << text;
    a.family = 6;
  }
  return a;
}

struct Vector {
  const char* dst;
  uint16_t dport;
  const char* src;
  uint16_t sport;
  uint32_t ip_only, with_tcp;
};

// Microsoft's table: destination, source, the hash of the addresses only,
// the hash with the TCP ports.
constexpr Vector kIpv4[] = {
    {"161.142.100.80", 1766, "66.9.149.187", 2794, 0x323e8fc2, 0x51ccc178},
    {"65.69.140.83", 4739, "199.92.111.2", 14230, 0xd718262a, 0xc626b0ea},
    {"12.22.207.184", 38024, "24.19.198.95", 12898, 0xd2d0a5de, 0x5c2b394a},
    {"209.142.163.6", 2217, "38.27.205.30", 48228, 0x82989176, 0xafc7327f},
    {"202.188.127.2", 1303, "153.39.163.191", 44251, 0x5d1809c5, 0x10e828a2},
};
constexpr Vector kIpv6[] = {
    {"3ffe:2501:200:3::1", 1766, "3ffe:2501:200:1fff::7", 2794, 0x2cc18cd5, 0x40207d3d},
    {"ff02::1", 4739, "3ffe:501:8::260:97ff:fe40:efab", 14230, 0x0f0c461c, 0xdde51bbf},
    {"fe80::200:f8ff:fe21:67cf", 38024, "3ffe:1900:4545:3:200:f8ff:fe21:67cf", 44251, 0x4b61e985, 0x02d1feef},
};

FlowKey key_of(const Vector& v) { return FlowKey{addr(v.src), addr(v.dst), v.sport, v.dport}; }

// The NIC's input: source address, destination address (addresses only).
std::vector<uint8_t> addresses(const FlowKey& k) {
  std::vector<uint8_t> in(k.src.bytes, k.src.bytes + k.src.size());
  in.insert(in.end(), k.dst.bytes, k.dst.bytes + k.dst.size());
  return in;
}

RssHash ms_rss(std::vector<uint16_t> reta = std::vector<uint16_t>(128, 0)) {
  auto r = RssHash::make(kMsKey, std::move(reta));
  EXPECT_TRUE(r.has_value());
  return *r;
}

TEST(ToeplitzTest, MicrosoftIpv4Vectors) {
  const RssHash rss = ms_rss();
  for (const Vector& v : kIpv4) {
    const FlowKey k = key_of(v);
    EXPECT_EQ(toeplitz_hash(kMsKey, addresses(k)), v.ip_only) << v.src << " -> " << v.dst;
    EXPECT_EQ(rss.hash(k), v.with_tcp) << v.src << ":" << v.sport << " -> " << v.dst << ":" << v.dport;
  }
}

TEST(ToeplitzTest, MicrosoftIpv6Vectors) {
  const RssHash rss = ms_rss();
  for (const Vector& v : kIpv6) {
    const FlowKey k = key_of(v);
    EXPECT_EQ(toeplitz_hash(kMsKey, addresses(k)), v.ip_only) << v.src << " -> " << v.dst;
    EXPECT_EQ(rss.hash(k), v.with_tcp) << v.src << ":" << v.sport << " -> " << v.dst << ":" << v.dport;
  }
}

TEST(ToeplitzTest, TheBytesOfTheTupleInTheNicsOrder) {
  // 66.9.149.187:2794 -> 161.142.100.80:1766 spelled out: src, dst, sport, dport.
  const uint8_t in[12] = {66, 9, 149, 187, 161, 142, 100, 80, 2794 >> 8, 2794 & 0xff, 1766 >> 8, 1766 & 0xff};
  EXPECT_EQ(toeplitz_hash(kMsKey, in), 0x51ccc178u);
  // The ports the other way round are another hash: the order matters.
  const uint8_t swapped[12] = {66, 9, 149, 187, 161, 142, 100, 80, 1766 >> 8, 1766 & 0xff, 2794 >> 8, 2794 & 0xff};
  EXPECT_NE(toeplitz_hash(kMsKey, swapped), 0x51ccc178u);
  EXPECT_EQ(toeplitz_hash(kMsKey, {}), 0u) << "no input, no bits";
}

TEST(ToeplitzTest, A52ByteKeyHashesTheTupleByItsFirst40) {
  std::vector<uint8_t> key(kMsKey, kMsKey + 40);
  key.insert(key.end(), 12, 0xa5);
  auto r = RssHash::make(key, std::vector<uint16_t>(64, 0));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->key().size(), 52u);
  EXPECT_EQ(r->hash(key_of(kIpv4[0])), 0x51ccc178u);
  EXPECT_EQ(r->hash(key_of(kIpv6[2])), 0x02d1feefu);
}

TEST(ToeplitzTest, TheDestinationPortTablesAddUpToTheFullHash) {
  std::vector<uint8_t> key(52);
  std::mt19937 rng(7);
  for (auto& b : key) b = static_cast<uint8_t>(rng());
  auto r = RssHash::make(key, std::vector<uint16_t>(512, 3));
  ASSERT_TRUE(r.has_value());
  for (int i = 0; i < 2000; ++i) {
    FlowKey k;
    k.src.family = k.dst.family = i % 2 == 0 ? 4 : 6;
    for (auto& b : k.src.bytes) b = static_cast<uint8_t>(rng());
    for (auto& b : k.dst.bytes) b = static_cast<uint8_t>(rng());
    k.sport = static_cast<uint16_t>(rng());
    k.dport = static_cast<uint16_t>(rng());
    uint8_t in[36];
    const size_t a = k.src.size();
    std::copy_n(k.src.bytes, a, in);
    std::copy_n(k.dst.bytes, a, in + a);
    in[2 * a] = static_cast<uint8_t>(k.sport >> 8);
    in[2 * a + 1] = static_cast<uint8_t>(k.sport);
    in[2 * a + 2] = static_cast<uint8_t>(k.dport >> 8);
    in[2 * a + 3] = static_cast<uint8_t>(k.dport);
    const uint32_t full = toeplitz_hash(key, {in, 2 * a + 4});
    ASSERT_EQ(r->hash(k), full) << i;
    ASSERT_EQ(r->hash_without_dport(k) ^ r->dport_part(k.dst.family, k.dport), full) << i;
  }
}

TEST(ToeplitzTest, TheRetaIsIndexedByTheLowBitsOfTheHash) {
  std::vector<uint16_t> reta(128);
  for (size_t i = 0; i < reta.size(); ++i) reta[i] = static_cast<uint16_t>((i * 7) % 5);
  const RssHash rss = ms_rss(reta);
  for (const Vector& v : kIpv4) {
    EXPECT_EQ(rss.queue_of(key_of(v)), reta[v.with_tcp & 127]);
  }
  // 0x51ccc178: low 7 bits 0x78 = 120.
  EXPECT_EQ(rss.queue_of_hash(0x51ccc178), reta[120]);
  EXPECT_EQ(rss.queue_of_hash(0xffffff80), reta[0]);
}

TEST(ToeplitzTest, KeysAndTablesOutOfShapeAreRefused) {
  const std::vector<uint16_t> reta(128, 0);
  EXPECT_FALSE(RssHash::make(std::span<const uint8_t>(kMsKey, 39), reta).has_value()) << "too short for IPv6";
  EXPECT_FALSE(RssHash::make(std::vector<uint8_t>(53, 1), reta).has_value()) << "longer than any NIC's";
  EXPECT_FALSE(RssHash::make(kMsKey, {}).has_value()) << "no RETA";
  EXPECT_FALSE(RssHash::make(kMsKey, std::vector<uint16_t>(96, 0)).has_value()) << "not a power of two";
  EXPECT_FALSE(RssHash::make(kMsKey, std::vector<uint16_t>(8192, 0)).has_value()) << "too long";
  EXPECT_TRUE(RssHash::make(kMsKey, std::vector<uint16_t>(1, 0)).has_value());
}

}  // namespace
}  // namespace lode::front

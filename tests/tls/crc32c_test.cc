#include "dataplane/tls/crc32c.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string_view>
#include <vector>

namespace lode::proxy {
namespace {

std::span<const uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Bit-at-a-time reference, straight from the definition.
uint32_t crc32c_bitwise(std::span<const uint8_t> data) {
  uint32_t crc = 0xffffffff;
  for (const uint8_t b : data) {
    crc ^= b;
    for (int i = 0; i < 8; ++i) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78 : crc >> 1;
  }
  return ~crc;
}

// RFC 3720 appendix B.4 known answers.
TEST(Crc32cTest, Rfc3720ThirtyTwoZeros) {
  const std::vector<uint8_t> zeros(32, 0x00);
  EXPECT_EQ(crc32c(zeros), 0x8A9136AAu);
}

TEST(Crc32cTest, Rfc3720ThirtyTwoOnes) {
  const std::vector<uint8_t> ones(32, 0xff);
  EXPECT_EQ(crc32c(ones), 0x62A8AB43u);
}

TEST(Crc32cTest, Rfc3720Incrementing) {
  std::vector<uint8_t> v(32);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(crc32c(v), 0x46DD794Eu);
}

TEST(Crc32cTest, Rfc3720Decrementing) {
  std::vector<uint8_t> v(32);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>(31 - i);
  EXPECT_EQ(crc32c(v), 0x113FDB5Cu);
}

TEST(Crc32cTest, CheckString) {
  EXPECT_EQ(crc32c(as_bytes("123456789")), 0xE3069283u);
}

TEST(Crc32cTest, EmptyIsZero) {
  EXPECT_EQ(crc32c({}), 0u);
  EXPECT_EQ(crc32c_extend(0x12345678, {}), 0x12345678u);
}

// Every length and alignment through the 8-byte loop and the byte tail.
TEST(Crc32cTest, MatchesBitwiseReferenceAtEveryLengthAndOffset) {
  std::vector<uint8_t> data(300);
  uint32_t x = 0x9e3779b9;
  for (auto& b : data) {
    x = x * 1664525 + 1013904223;
    b = static_cast<uint8_t>(x >> 24);
  }
  for (size_t off = 0; off < 8; ++off) {
    for (size_t len = 0; off + len <= 200; ++len) {
      const std::span<const uint8_t> s(data.data() + off, len);
      ASSERT_EQ(crc32c(s), crc32c_bitwise(s)) << "off " << off << " len " << len;
    }
  }
}

TEST(Crc32cTest, ExtendEqualsWholeAtEverySplit) {
  const std::string_view text = "The quick brown fox jumps over the lazy dog, twice over.";
  const uint32_t whole = crc32c(as_bytes(text));
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    const uint32_t head = crc32c(as_bytes(text.substr(0, cut)));
    EXPECT_EQ(crc32c_extend(head, as_bytes(text.substr(cut))), whole) << "cut " << cut;
  }
}

TEST(Crc32cTest, SingleBitFlipChangesTheSum) {
  std::vector<uint8_t> v(64, 0x5a);
  const uint32_t base = crc32c(v);
  for (size_t i = 0; i < v.size() * 8; ++i) {
    v[i / 8] ^= static_cast<uint8_t>(1u << (i % 8));
    EXPECT_NE(crc32c(v), base) << "bit " << i;
    v[i / 8] ^= static_cast<uint8_t>(1u << (i % 8));
  }
}

}  // namespace
}  // namespace lode::proxy

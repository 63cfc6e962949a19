#include "dataplane/front/syn_cookie.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <vector>

#include "support/openssl_siphash.h"

namespace lode::front {
namespace {

using Key = std::array<uint8_t, 16>;

// --- SipHash-2-4 ---------------------------------------------------------------

// Expected values: vectors_sip64 from the SipHash reference implementation's
// vectors.h (https://github.com/veorq/SipHash/blob/master/vectors.h, commit
// 1a7d041abc95055170c996d9af80887d4046aa5a): key 00 01 .. 0f, message
// 00 01 .. (len-1) for len 0..63, each output's 8 bytes read little-endian.
// Entry 15 is also the worked example in Appendix A of the SipHash paper
// (Aumasson and Bernstein, 2012): a129ca6149be45e5.
constexpr std::array<uint64_t, 64> kSip64Vectors = {
    0x726fdb47dd0e0e31, 0x74f839c593dc67fd, 0x0d6c8009d9a94f5a, 0x85676696d7fb7e2d,
    0xcf2794e0277187b7, 0x18765564cd99a68d, 0xcbc9466e58fee3ce, 0xab0200f58b01d137,
    0x93f5f5799a932462, 0x9e0082df0ba9e4b0, 0x7a5dbbc594ddb9f3, 0xf4b32f46226bada7,
    0x751e8fbc860ee5fb, 0x14ea5627c0843d90, 0xf723ca908e7af2ee, 0xa129ca6149be45e5,
    0x3f2acc7f57c29bdb, 0x699ae9f52cbe4794, 0x4bc1b3f0968dd39c, 0xbb6dc91da77961bd,
    0xbed65cf21aa2ee98, 0xd0f2cbb02e3b67c7, 0x93536795e3a33e88, 0xa80c038ccd5ccec8,
    0xb8ad50c6f649af94, 0xbce192de8a85b8ea, 0x17d835b85bbb15f3, 0x2f2e6163076bcfad,
    0xde4daaaca71dc9a5, 0xa6a2506687956571, 0xad87a3535c49ef28, 0x32d892fad841c342,
    0x7127512f72f27cce, 0xa7f32346f95978e3, 0x12e0b01abb051238, 0x15e034d40fa197ae,
    0x314dffbe0815a3b4, 0x027990f029623981, 0xcadcd4e59ef40c4d, 0x9abfd8766a33735c,
    0x0e3ea96b5304a7d0, 0xad0c42d6fc585992, 0x187306c89bc215a9, 0xd4a60abcf3792b95,
    0xf935451de4f21df2, 0xa9538f0419755787, 0xdb9acddff56ca510, 0xd06c98cd5c0975eb,
    0xe612a3cb9ecba951, 0xc766e62cfcadaf96, 0xee64435a9752fe72, 0xa192d576b245165a,
    0x0a8787bf8ecb74b2, 0x81b3e73d20b49b6f, 0x7fa8220ba3b2ecea, 0x245731c13ca42499,
    0xb78dbfaf3a8d83bd, 0xea1ad565322a1a0b, 0x60e61c23a3795013, 0x6606d7e446282b93,
    0x6ca4ecb15c5f91e1, 0x9f626da15c9625f3, 0xe51b38608ef25f57, 0x958a324ceb064572,
};

Key counting_key() {
  Key k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(i);
  return k;
}

TEST(SipHashTest, ReferenceVectors) {
  std::array<uint8_t, 64> msg;
  for (size_t i = 0; i < msg.size(); ++i) msg[i] = static_cast<uint8_t>(i);
  for (size_t len = 0; len < kSip64Vectors.size(); ++len) {
    EXPECT_EQ(siphash24(counting_key(), std::span(msg).first(len)), kSip64Vectors[len])
        << "length " << len;
  }
}

// Random keys and messages up to 200 bytes at every alignment, against
// OpenSSL's implementation.
TEST(SipHashTest, MatchesOpenSsl) {
  test::OpenSslSipHash openssl;
  std::mt19937_64 rng(7);
  std::vector<uint8_t> buf(208);
  for (int round = 0; round < 2000; ++round) {
    Key key;
    for (auto& b : key) b = static_cast<uint8_t>(rng());
    for (auto& b : buf) b = static_cast<uint8_t>(rng());
    const size_t offset = rng() % 8, len = rng() % 201;
    const auto msg = std::span<const uint8_t>(buf).subspan(offset, len);
    ASSERT_EQ(siphash24(key, msg), openssl(key, msg)) << "length " << len << " offset " << offset;
  }
}

TEST(SipHashTest, EveryKeyBitChangesTheOutput) {
  const std::array<uint8_t, 8> msg = {1, 2, 3, 4, 5, 6, 7, 8};
  const uint64_t base = siphash24(counting_key(), msg);
  for (size_t bit = 0; bit < 128; ++bit) {
    Key k = counting_key();
    k[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    EXPECT_NE(siphash24(k, msg), base) << "key bit " << bit;
  }
}

// --- SYN cookies ---------------------------------------------------------------

constexpr Key kKeyA = {0x1b, 0x93, 0x5e, 0x07, 0xc4, 0x28, 0xfa, 0x61,
                       0x3d, 0x80, 0x0e, 0xb2, 0x47, 0xd9, 0x75, 0x2c};
constexpr Key kKeyB = {0xa4, 0x11, 0x6f, 0xe0, 0x39, 0x8d, 0x52, 0xcb,
                       0x07, 0x9e, 0x44, 0xf3, 0x18, 0x6a, 0xbd, 0x20};
constexpr Key kKeyC = {0x5c, 0xe7, 0x30, 0x9a, 0x01, 0x76, 0xdb, 0x4f,
                       0x88, 0x23, 0xbe, 0x65, 0x0c, 0xf1, 0x97, 0x3a};

constexpr uint64_t kSlot = SynCookies::kSlotSeconds;
constexpr uint32_t kIsn = 0x9a3c51e7;

// A time inside slot `slot`, `into` seconds after its start.
constexpr uint64_t at(uint64_t slot, uint64_t into = 17) {
  return slot * kSlot + into;
}

FlowKey v4_flow() {
  FlowKey f;
  f.src = IpAddr::v4(0xc0000201);  // 192.0.2.1
  f.dst = IpAddr::v4(0xc6336407);  // 198.51.100.7
  f.sport = 51234;
  f.dport = 443;
  return f;
}

FlowKey v6_flow() {
  const std::array<uint8_t, 16> client = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0,    0,
                                          0,    0,    0,    0,    0, 0, 0x12, 0x34};
  const std::array<uint8_t, 16> vip = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1,
                                       0,    0,    0,    0,    0, 0, 0, 0x80};
  FlowKey f;
  f.src = IpAddr::v6(client);
  f.dst = IpAddr::v6(vip);
  f.sport = 40000;
  f.dport = 443;
  return f;
}

SynOptions options(uint16_t mss, int8_t wscale, bool sack) {
  SynOptions o;
  o.mss = mss;
  o.wscale = wscale;
  o.sack_ok = sack;
  return o;
}

const SynOptions kTypical = options(1460, 7, true);

// Slots of both parities: the parity bit must work either way.
constexpr uint64_t kSlots[] = {1'000'000, 1'000'001};

// The options a cookie made for `opt` gives back in the same slot.
std::optional<SynOptions> round_trip(const SynOptions& opt, const FlowKey& flow = v4_flow()) {
  SynCookies c(kKeyA);
  return c.check(flow, kIsn, c.make(flow, kIsn, opt, at(kSlots[0])), at(kSlots[0]));
}

// --- Happy paths: what a cookie carries comes back ---

TEST(SynCookieTest, RoundTripEveryMssTableEntry) {
  for (uint16_t mss : SynCookies::kMssTable) {
    const auto got = round_trip(options(mss, 7, true));
    ASSERT_TRUE(got.has_value()) << mss;
    EXPECT_EQ(got->mss, mss);
  }
}

TEST(SynCookieTest, MssRoundsDownToTheTable) {
  struct Case {
    uint16_t offered, carried;
  };
  const Case cases[] = {{0, 216},     {1, 216},     {215, 216},   {216, 216},   {217, 216},
                        {535, 216},   {536, 536},   {1459, 1440}, {1460, 1460}, {1461, 1460},
                        {8959, 1460}, {8960, 8960}, {9000, 8960}, {65535, 8960}};
  for (const Case& c : cases) {
    const auto got = round_trip(options(c.offered, -1, false));
    ASSERT_TRUE(got.has_value()) << c.offered;
    EXPECT_EQ(got->mss, c.carried) << c.offered;
    EXPECT_EQ(SynCookies::encodable(options(c.offered, -1, false)).mss, c.carried) << c.offered;
  }
  // A SYN without an MSS option means 536 (RFC 9293 3.7.1), the default.
  EXPECT_EQ(round_trip(SynOptions{})->mss, 536);
}

TEST(SynCookieTest, RoundTripEveryWindowScale) {
  for (int w = -1; w <= 14; ++w) {
    const auto got = round_trip(options(1460, static_cast<int8_t>(w), true));
    ASSERT_TRUE(got.has_value()) << w;
    EXPECT_EQ(got->wscale, w);
  }
}

// RFC 7323 2.3: a shift above 14 is used as 14. int8_t holds 15..127; bytes
// 128..254 arrive narrowed to -128..-2. (255 narrows to -1, "not offered".)
TEST(SynCookieTest, WindowScaleAbove14IsCappedAt14) {
  for (int8_t w : {int8_t{15}, int8_t{16}, int8_t{127}, int8_t{-128}, int8_t{-56}, int8_t{-2}}) {
    const auto got = round_trip(options(1460, w, true));
    ASSERT_TRUE(got.has_value()) << int{w};
    EXPECT_EQ(got->wscale, 14) << int{w};
    EXPECT_EQ(SynCookies::encodable(options(1460, w, true)).wscale, 14) << int{w};
  }
}

TEST(SynCookieTest, SackOnAndOff) {
  for (bool sack : {false, true}) {
    for (int8_t w : {int8_t{-1}, int8_t{0}, int8_t{14}}) {
      const auto got = round_trip(options(1460, w, sack));
      ASSERT_TRUE(got.has_value());
      EXPECT_EQ(got->sack_ok, sack);
      EXPECT_EQ(got->wscale, w);
    }
  }
}

// All 256 encodable option sets, IPv4 and IPv6, slots of both parities,
// checked in the same and the next slot: check() returns encodable(opt).
TEST(SynCookieTest, EveryEncodableOptionSetRoundTrips) {
  SynCookies c(kKeyA);
  for (const FlowKey& flow : {v4_flow(), v6_flow()}) {
    for (uint64_t slot : kSlots) {
      for (uint16_t mss : SynCookies::kMssTable) {
        for (int w = -1; w <= 14; ++w) {
          for (bool sack : {false, true}) {
            const SynOptions opt = options(mss, static_cast<int8_t>(w), sack);
            ASSERT_EQ(SynCookies::encodable(opt), opt);
            const uint32_t cookie = c.make(flow, kIsn, opt, at(slot));
            ASSERT_EQ(c.check(flow, kIsn, cookie, at(slot)), opt);
            ASSERT_EQ(c.check(flow, kIsn, cookie, at(slot + 1)), opt);
          }
        }
      }
    }
  }
}

TEST(SynCookieTest, AcceptedThroughoutTheSameAndTheNextSlot) {
  SynCookies c(kKeyA);
  for (uint64_t slot : kSlots) {
    for (uint64_t made : {at(slot, 0), at(slot, kSlot - 1)}) {
      const uint32_t cookie = c.make(v4_flow(), kIsn, kTypical, made);
      for (uint64_t now :
           {at(slot, 0), at(slot, kSlot - 1), at(slot + 1, 0), at(slot + 1, kSlot - 1)}) {
        if (now < made) continue;
        EXPECT_EQ(c.check(v4_flow(), kIsn, cookie, now), kTypical)
            << "made " << made << " now " << now;
      }
    }
  }
}

// The client retransmits its SYN across a slot boundary: the ACK may answer
// the first SYN-ACK (made in slot t) or the second (made in t + 1); both
// pass in t + 1.
TEST(SynCookieTest, SynRetransmitAcrossTheSlotBoundary) {
  SynCookies c(kKeyA);
  for (uint64_t slot : kSlots) {
    const uint32_t first = c.make(v4_flow(), kIsn, kTypical, at(slot, kSlot - 1));
    const uint32_t second = c.make(v4_flow(), kIsn, kTypical, at(slot + 1, 2));
    EXPECT_NE(first, second);
    EXPECT_EQ(c.check(v4_flow(), kIsn, first, at(slot + 1, 3)), kTypical);
    EXPECT_EQ(c.check(v4_flow(), kIsn, second, at(slot + 1, 3)), kTypical);
  }
}

// rotate(key, from_s): the previous key is tried only for slots that began
// before the new one took over, so after two slots a forged ACK has one key
// to match (2^-23), not two (2^-22, the default: every slot).
TEST(SynCookieTest, ThePreviousKeyIsTriedOnlyForSlotsBeforeItsSuccessorTookOver) {
  const uint64_t slot = kSlots[0];
  SynCookies c(kKeyA);
  const uint32_t old_cookie = c.make(v4_flow(), kIsn, kTypical, at(slot, 5));
  c.rotate(kKeyB, at(slot, 30));
  EXPECT_EQ(c.check(v4_flow(), kIsn, old_cookie, at(slot, 40)), kTypical);
  EXPECT_EQ(c.check(v4_flow(), kIsn, old_cookie, at(slot + 1, 10)), kTypical) << "its slot began before";
  // What the previous key would make in the next slot (which began after
  // the rotation): not tried.
  SynCookies a_only(kKeyA);
  const uint32_t late = a_only.make(v4_flow(), kIsn, kTypical, at(slot + 1, 5));
  EXPECT_EQ(c.check(v4_flow(), kIsn, late, at(slot + 1, 10)), std::nullopt);
  SynCookies unbounded(kKeyA);
  unbounded.rotate(kKeyB);
  EXPECT_EQ(unbounded.check(v4_flow(), kIsn, late, at(slot + 1, 10)), kTypical) << "the default";
}

TEST(SynCookieTest, PreviousKeyAcceptedAfterOneRotation) {
  SynCookies c(kKeyA);
  const uint32_t old_cookie = c.make(v4_flow(), kIsn, kTypical, at(kSlots[0]));
  c.rotate(kKeyB);
  const uint32_t new_cookie = c.make(v4_flow(), kIsn, kTypical, at(kSlots[0]));
  EXPECT_NE(old_cookie, new_cookie);
  EXPECT_EQ(c.check(v4_flow(), kIsn, old_cookie, at(kSlots[0])), kTypical);
  EXPECT_EQ(c.check(v4_flow(), kIsn, old_cookie, at(kSlots[0] + 1)), kTypical);
  EXPECT_EQ(c.check(v4_flow(), kIsn, new_cookie, at(kSlots[0] + 1)), kTypical);
}

// FlowKey's == ignores the bytes past an IPv4 address; so does the cookie.
TEST(SynCookieTest, EqualFlowKeysMakeEqualCookies) {
  FlowKey dirty = v4_flow();
  for (size_t i = 4; i < 16; ++i) {
    dirty.src.bytes[i] = static_cast<uint8_t>(0xa0 + i);
    dirty.dst.bytes[i] = static_cast<uint8_t>(0x50 + i);
  }
  ASSERT_EQ(dirty, v4_flow());
  SynCookies c(kKeyA);
  const uint32_t cookie = c.make(v4_flow(), kIsn, kTypical, at(kSlots[0]));
  EXPECT_EQ(c.make(dirty, kIsn, kTypical, at(kSlots[0])), cookie);
  EXPECT_EQ(c.check(dirty, kIsn, cookie, at(kSlots[0])), kTypical);
}

// --- Failures: everything else is empty ---

TEST(SynCookieTest, RejectedTwoSlotsLaterAndAfter) {
  SynCookies c(kKeyA);
  for (uint64_t slot : kSlots) {
    const uint32_t cookie = c.make(v4_flow(), kIsn, kTypical, at(slot, kSlot - 1));
    for (uint64_t now :
         {at(slot + 2, 0), at(slot + 2, kSlot - 1), at(slot + 3), at(slot + 4), at(slot + 1001)}) {
      EXPECT_EQ(c.check(v4_flow(), kIsn, cookie, now), std::nullopt) << now;
    }
  }
}

TEST(SynCookieTest, RejectedWhenTimeGoesBackwards) {
  SynCookies c(kKeyA);
  for (uint64_t slot : kSlots) {
    const uint32_t cookie = c.make(v4_flow(), kIsn, kTypical, at(slot, 0));
    for (uint64_t now : {at(slot - 1, kSlot - 1), at(slot - 1, 0), at(slot - 2), at(0)}) {
      EXPECT_EQ(c.check(v4_flow(), kIsn, cookie, now), std::nullopt) << now;
    }
  }
}

// In slot 0 an odd parity would name slot -1: no such slot, nothing passes,
// whatever the cookie's MAC.
TEST(SynCookieTest, NothingBeforeTheFirstSlot) {
  SynCookies c(kKeyA);
  const uint32_t made_in_1 = c.make(v4_flow(), kIsn, kTypical, at(1));
  EXPECT_EQ(c.check(v4_flow(), kIsn, made_in_1, at(0)), std::nullopt);
  const uint32_t made_last = c.make(v4_flow(), kIsn, kTypical, UINT64_MAX);  // slot 2^58 - 1, odd
  EXPECT_EQ(c.check(v4_flow(), kIsn, made_last, UINT64_MAX), kTypical);
  EXPECT_EQ(c.check(v4_flow(), kIsn, made_last, 0), std::nullopt);
  const uint32_t made_in_0 = c.make(v4_flow(), kIsn, kTypical, at(0));
  EXPECT_EQ(c.check(v4_flow(), kIsn, made_in_0 ^ (1u << 7), at(0)), std::nullopt);
}

TEST(SynCookieTest, PreviousKeyRejectedAfterTwoRotations) {
  SynCookies c(kKeyA);
  const uint32_t cookie_a = c.make(v4_flow(), kIsn, kTypical, at(kSlots[0]));
  c.rotate(kKeyB);
  const uint32_t cookie_b = c.make(v4_flow(), kIsn, kTypical, at(kSlots[0]));
  c.rotate(kKeyC);
  EXPECT_EQ(c.check(v4_flow(), kIsn, cookie_a, at(kSlots[0])), std::nullopt);
  EXPECT_EQ(c.check(v4_flow(), kIsn, cookie_b, at(kSlots[0])), kTypical);
}

// The previous key is accepted "within the same time window", no longer.
TEST(SynCookieTest, RotationDoesNotExtendACookiesLife) {
  SynCookies c(kKeyA);
  const uint32_t cookie = c.make(v4_flow(), kIsn, kTypical, at(kSlots[0]));
  c.rotate(kKeyB);
  EXPECT_EQ(c.check(v4_flow(), kIsn, cookie, at(kSlots[0] + 2)), std::nullopt);
}

TEST(SynCookieTest, AnotherKeysCookieRejected) {
  SynCookies a(kKeyA), b(kKeyB);
  const uint32_t from_b = b.make(v4_flow(), kIsn, kTypical, at(kSlots[0]));
  EXPECT_EQ(a.check(v4_flow(), kIsn, from_b, at(kSlots[0])), std::nullopt);
  // rotate() replaces the key: the new one is current, the old one previous.
  SynCookies rotated(kKeyA);
  rotated.rotate(kKeyC);
  EXPECT_EQ(rotated.check(v4_flow(), kIsn, from_b, at(kSlots[0])), std::nullopt);
}

// Each of the 32 bits: MAC bits break the MAC, option bits change what the
// MAC covers, the parity bit names the other slot.
TEST(SynCookieTest, EverySingleBitFlipRejected) {
  for (bool rotated : {false, true}) {
    SynCookies c(kKeyA);
    if (rotated) c.rotate(kKeyB);
    for (const FlowKey& flow : {v4_flow(), v6_flow()}) {
      for (uint64_t slot : kSlots) {
        const uint32_t cookie = c.make(flow, kIsn, kTypical, at(slot));
        for (int bit = 0; bit < 32; ++bit) {
          const uint32_t flipped = cookie ^ (1u << bit);
          EXPECT_EQ(c.check(flow, kIsn, flipped, at(slot)), std::nullopt) << "bit " << bit;
          EXPECT_EQ(c.check(flow, kIsn, flipped, at(slot + 1)), std::nullopt) << "bit " << bit;
        }
      }
    }
  }
}

// A client cannot raise what it gets by rewriting the clear option bits.
TEST(SynCookieTest, OptionsCannotBeUpgraded) {
  SynCookies c(kKeyA);
  const uint32_t cookie = c.make(v4_flow(), kIsn, options(536, -1, false), at(kSlots[0]));
  const uint32_t upgrades[] = {
      (cookie & ~0x70u) | 0x70u,  // MSS index 7 (8960)
      (cookie & ~0x0fu) | 14u,    // window scale 14
      cookie | 0x100u,            // SACK
      cookie | 0x17eu,            // all three
  };
  for (uint32_t forged : upgrades) {
    ASSERT_NE(forged, cookie);
    EXPECT_EQ(c.check(v4_flow(), kIsn, forged, at(kSlots[0])), std::nullopt) << std::hex << forged;
  }
}

TEST(SynCookieTest, OtherClientIsnRejected) {
  SynCookies c(kKeyA);
  const uint32_t cookie = c.make(v4_flow(), kIsn, kTypical, at(kSlots[0]));
  for (uint32_t isn : {kIsn + 1, kIsn - 1, kIsn ^ 0x80000000u, 0u, cookie}) {
    EXPECT_EQ(c.check(v4_flow(), isn, cookie, at(kSlots[0])), std::nullopt) << isn;
  }
}

TEST(SynCookieTest, OtherPortRejected) {
  SynCookies c(kKeyA);
  const FlowKey flow = v4_flow();
  const uint32_t cookie = c.make(flow, kIsn, kTypical, at(kSlots[0]));
  std::vector<FlowKey> others(4, flow);
  others[0].sport = static_cast<uint16_t>(flow.sport + 1);
  others[1].dport = 8443;
  others[2].sport = flow.dport;  // ports swapped
  others[2].dport = flow.sport;
  others[3].sport = static_cast<uint16_t>(flow.sport ^ 0x8000);
  for (const FlowKey& other : others) {
    EXPECT_EQ(c.check(other, kIsn, cookie, at(kSlots[0])), std::nullopt)
        << other.sport << "->" << other.dport;
  }
}

TEST(SynCookieTest, OtherAddressRejected) {
  SynCookies c(kKeyA);
  for (const FlowKey& flow : {v4_flow(), v6_flow()}) {
    const uint32_t cookie = c.make(flow, kIsn, kTypical, at(kSlots[0]));
    // One bit of each address byte, source and destination.
    for (size_t i = 0; i < flow.src.size(); ++i) {
      FlowKey other = flow;
      other.src.bytes[i] ^= 0x01;
      EXPECT_EQ(c.check(other, kIsn, cookie, at(kSlots[0])), std::nullopt) << "src byte " << i;
      other = flow;
      other.dst.bytes[i] ^= 0x80;
      EXPECT_EQ(c.check(other, kIsn, cookie, at(kSlots[0])), std::nullopt) << "dst byte " << i;
    }
    // The reverse direction.
    FlowKey reversed = flow;
    reversed.src = flow.dst;
    reversed.dst = flow.src;
    reversed.sport = flow.dport;
    reversed.dport = flow.sport;
    EXPECT_EQ(c.check(reversed, kIsn, cookie, at(kSlots[0])), std::nullopt);
  }
}

// 192.0.2.1 and the IPv6 address c000:0201:: have the same 16 bytes.
TEST(SynCookieTest, Ipv4AndIpv6WithEqualBytesRejected) {
  const FlowKey v4 = v4_flow();
  FlowKey v6 = v4;
  v6.src.family = 6;
  v6.dst.family = 6;
  ASSERT_EQ(std::memcmp(v4.src.bytes, v6.src.bytes, 16), 0);
  SynCookies c(kKeyA);
  const uint32_t from_v4 = c.make(v4, kIsn, kTypical, at(kSlots[0]));
  const uint32_t from_v6 = c.make(v6, kIsn, kTypical, at(kSlots[0]));
  EXPECT_NE(from_v4, from_v6);
  EXPECT_EQ(c.check(v6, kIsn, from_v4, at(kSlots[0])), std::nullopt);
  EXPECT_EQ(c.check(v4, kIsn, from_v6, at(kSlots[0])), std::nullopt);
  FlowKey mixed = v4;  // one side's family alone
  mixed.dst.family = 6;
  EXPECT_EQ(c.check(mixed, kIsn, from_v4, at(kSlots[0])), std::nullopt);
}

// 2^20 random ACKs for one flow while two keys are held: each names one slot
// and is compared with one 23-bit MAC per key, so the expected number that
// pass is 2^20 * 2 * 2^-23 = 0.25 (P(more than 4) is about 6e-6 for a Poisson
// count; the seed is fixed, so the test is deterministic). A MAC cut to 16
// bits would let about 32 through.
TEST(SynCookieTest, ForgedAckFloodAcceptsAlmostNone) {
  SynCookies c(kKeyA);
  c.rotate(kKeyB);
  std::mt19937 rng(20240611);
  int accepted = 0;
  for (int i = 0; i < (1 << 20); ++i) {
    accepted += c.check(v4_flow(), kIsn, static_cast<uint32_t>(rng()), at(kSlots[1])).has_value();
  }
  EXPECT_LE(accepted, 4);
}

}  // namespace
}  // namespace lode::front

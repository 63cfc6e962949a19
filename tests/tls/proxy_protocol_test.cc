#include "dataplane/tls/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/tls/crc32c.h"

namespace lode::proxy {
namespace {

using Bytes = std::vector<uint8_t>;
using Code = ProxyErrorCode;
using Kind = ProxyHeaderParser::Kind;

constexpr uint8_t kClientHelloByte = 0x16;  // a TLS handshake record follows the header

Bytes bytes(std::string_view s) {
  return Bytes(s.begin(), s.end());
}
Bytes operator+(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
std::string_view text(std::span<const uint8_t> s) {
  return {reinterpret_cast<const char*>(s.data()), s.size()};
}

const Bytes kV2Sig = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

Bytes tlv(uint8_t type, const Bytes& value) {
  Bytes b = {type, static_cast<uint8_t>(value.size() >> 8), static_cast<uint8_t>(value.size())};
  return b + value;
}
Bytes tlv(uint8_t type, std::string_view value) {
  return tlv(type, bytes(value));
}

// A v2 header put together field by field, so a test can break one thing.
struct V2 {
  uint8_t ver_cmd = 0x21;                                                // v2, PROXY
  uint8_t fam = 0x11;                                                    // INET, STREAM
  Bytes addr = {192, 0, 2, 1, 198, 51, 100, 7, 0xc3, 0x50, 0x01, 0xbb};  // :50000 -> :443
  Bytes tlvs;
  int len_override = -1;

  Bytes build() const {
    const size_t len =
        len_override >= 0 ? static_cast<size_t>(len_override) : addr.size() + tlvs.size();
    Bytes b = kV2Sig;
    b.push_back(ver_cmd);
    b.push_back(fam);
    b.push_back(static_cast<uint8_t>(len >> 8));
    b.push_back(static_cast<uint8_t>(len));
    return b + addr + tlvs;
  }
};

// Fills in a zeroed CRC32C value (the last TLV must be the CRC one).
Bytes with_crc_at_end(Bytes h) {
  const uint32_t crc = crc32c(h);
  const size_t at = h.size() - 4;
  h[at] = static_cast<uint8_t>(crc >> 24);
  h[at + 1] = static_cast<uint8_t>(crc >> 16);
  h[at + 2] = static_cast<uint8_t>(crc >> 8);
  h[at + 3] = static_cast<uint8_t>(crc);
  return h;
}

// Feeds growing prefixes, each in a freshly allocated buffer (so the address
// changes between calls, as it may for the caller). Keeps the last buffer
// alive in `last` for the views.
ParseStatus parse_bytewise(ProxyHeaderParser& p, const Bytes& input,
                           std::unique_ptr<uint8_t[]>& last) {
  ParseStatus st = ParseStatus::kNeedMore;
  for (size_t n = 1; n <= input.size(); ++n) {
    auto buf = std::make_unique<uint8_t[]>(n);
    std::memcpy(buf.get(), input.data(), n);
    st = p.parse({buf.get(), n});
    last = std::move(buf);
    if (st != ParseStatus::kNeedMore) break;
  }
  return st;
}

struct Outcome {
  ParseStatus status;
  ProxyError error;
  uint32_t header_len;
};
Outcome parse_once(const Bytes& input, ProxyLimits limits = {}) {
  ProxyHeaderParser p(limits);
  const ParseStatus st = p.parse(input);
  return {st, p.error(), p.header().header_len};
}

void expect_error(const Bytes& input, Code code, uint32_t offset, ProxyLimits limits = {}) {
  SCOPED_TRACE(testing::Message() << "input: " << testing::PrintToString(text(input)));
  ProxyHeaderParser p(limits);
  ASSERT_EQ(p.parse(input), ParseStatus::kError);
  EXPECT_EQ(p.error().code, code) << to_string(p.error().code);
  EXPECT_EQ(p.error().offset, offset);
  EXPECT_FALSE(p.error().reason().empty());
  // The same answer when fed one byte at a time.
  ProxyHeaderParser q(limits);
  std::unique_ptr<uint8_t[]> keep;
  ASSERT_EQ(parse_bytewise(q, input, keep), ParseStatus::kError);
  EXPECT_EQ(q.error().code, code);
  EXPECT_EQ(q.error().offset, offset);
}

// Every proper prefix of a valid header is kNeedMore.
void expect_prefixes_need_more(const Bytes& header) {
  for (size_t n = 0; n < header.size(); ++n) {
    ProxyHeaderParser p;
    EXPECT_EQ(p.parse({header.data(), n}), ParseStatus::kNeedMore)
        << "prefix " << n << ": " << to_string(p.error().code);
  }
}

Address v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port) {
  return Address::inet({a, b, c, d}, port);
}
Address v6(std::string_view s, uint16_t port) {
  std::array<uint8_t, 16> ip{};
  EXPECT_EQ(inet_pton(AF_INET6, std::string(s).c_str(), ip.data()), 1);
  return Address::inet6(ip, port);
}

// ---------------------------------------------------------------- detect ----

TEST(ProxyDetectTest, EmptyAndSignaturePrefixesNeedMore) {
  EXPECT_EQ(ProxyHeaderParser::detect({}), Kind::kNeedMore);
  const Bytes v1 = bytes("PROXY ");
  for (size_t n = 1; n < v1.size(); ++n)
    EXPECT_EQ(ProxyHeaderParser::detect({v1.data(), n}), Kind::kNeedMore);
  for (size_t n = 1; n < kV2Sig.size(); ++n)
    EXPECT_EQ(ProxyHeaderParser::detect({kV2Sig.data(), n}), Kind::kNeedMore);
}

TEST(ProxyDetectTest, FullSignatures) {
  EXPECT_EQ(ProxyHeaderParser::detect(bytes("PROXY ")), Kind::kV1);
  EXPECT_EQ(ProxyHeaderParser::detect(bytes("PROXY TCP4 ")), Kind::kV1);
  EXPECT_EQ(ProxyHeaderParser::detect(kV2Sig), Kind::kV2);
  EXPECT_EQ(ProxyHeaderParser::detect(V2{}.build()), Kind::kV2);
}

TEST(ProxyDetectTest, OtherProtocolsAreNotProxy) {
  EXPECT_EQ(ProxyHeaderParser::detect(Bytes{0x16, 0x03, 0x01}), Kind::kNotProxy);
  EXPECT_EQ(ProxyHeaderParser::detect(bytes("GET / HTTP/1.1\r\n")), Kind::kNotProxy);
  EXPECT_EQ(ProxyHeaderParser::detect(bytes("PROXZ")), Kind::kNotProxy);
  EXPECT_EQ(ProxyHeaderParser::detect(bytes("PROXY\t")), Kind::kNotProxy);
  EXPECT_EQ(ProxyHeaderParser::detect(bytes("proxy ")), Kind::kNotProxy);
  EXPECT_EQ(ProxyHeaderParser::detect(bytes(std::string_view("\r\n\r\n\0\r\nQUIX", 11))),
            Kind::kNotProxy);
  EXPECT_EQ(ProxyHeaderParser::detect(bytes("\r\n\r\n\r")), Kind::kNotProxy);
}

TEST(ProxyDetectTest, ParserRejectsNotProxyAtFirstWrongByte) {
  expect_error(Bytes{kClientHelloByte, 0x03, 0x01, 0x00, 0x10}, Code::kNotProxy, 0);
  expect_error(bytes("PROXZ TCP4"), Code::kNotProxy, 4);
  expect_error(bytes("GET / HTTP/1.1\r\n"), Code::kNotProxy, 0);
  Bytes sig = kV2Sig;
  for (size_t i = 0; i < sig.size(); ++i) {
    Bytes bad = sig;
    bad[i] ^= 0x40;
    SCOPED_TRACE(i);
    const Outcome o = parse_once(bad);
    ASSERT_EQ(o.status, ParseStatus::kError);
    EXPECT_EQ(o.error.code, Code::kNotProxy);
    EXPECT_EQ(o.error.offset, i);
  }
}

// -------------------------------------------------------------------- v1 ----

TEST(ProxyV1Test, Tcp4) {
  const Bytes h = bytes("PROXY TCP4 192.0.2.1 198.51.100.7 50000 443\r\n");
  ProxyHeaderParser p;
  ASSERT_EQ(p.parse(h), ParseStatus::kDone);
  const ProxyHeader& hdr = p.header();
  EXPECT_EQ(hdr.version, 1);
  EXPECT_EQ(hdr.command, Command::kProxy);
  EXPECT_EQ(hdr.family, Family::kInet);
  EXPECT_EQ(hdr.transport, Transport::kStream);
  EXPECT_EQ(hdr.source, v4(192, 0, 2, 1, 50000));
  EXPECT_EQ(hdr.destination, v4(198, 51, 100, 7, 443));
  EXPECT_EQ(hdr.header_len, h.size());
  EXPECT_TRUE(hdr.has_addresses());
}

TEST(ProxyV1Test, Tcp6) {
  const Bytes h = bytes("PROXY TCP6 2001:db8::1 ::ffff:192.0.2.9 0 65535\r\n");
  ProxyHeaderParser p;
  ASSERT_EQ(p.parse(h), ParseStatus::kDone);
  EXPECT_EQ(p.header().family, Family::kInet6);
  EXPECT_EQ(p.header().source, v6("2001:db8::1", 0));
  EXPECT_EQ(p.header().destination, v6("::ffff:192.0.2.9", 65535));
}

TEST(ProxyV1Test, UnknownBare) {
  const Bytes h = bytes("PROXY UNKNOWN\r\n");
  ProxyHeaderParser p;
  ASSERT_EQ(p.parse(h), ParseStatus::kDone);
  EXPECT_EQ(p.header().version, 1);
  EXPECT_EQ(p.header().family, Family::kUnspec);
  EXPECT_FALSE(p.header().has_addresses());
  EXPECT_EQ(p.header().header_len, 15u);
}

TEST(ProxyV1Test, UnknownIgnoresAnythingUpToCrlf) {
  const Bytes h = bytes("PROXY UNKNOWN ffff:f...f 1.2.3.999  99999 x\r\n");
  ProxyHeaderParser p;
  ASSERT_EQ(p.parse(h), ParseStatus::kDone);
  EXPECT_EQ(p.header().family, Family::kUnspec);
  EXPECT_EQ(p.header().header_len, h.size());
}

TEST(ProxyV1Test, LongestLegalLineIs107Bytes) {
  const Bytes h = bytes(
      "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      "65535 65535\r\n");
  ASSERT_EQ(h.size(), 104u);
  EXPECT_EQ(parse_once(h).status, ParseStatus::kDone);
  // UNKNOWN padded to exactly 107 bytes is accepted; 108 is not.
  Bytes u = bytes("PROXY UNKNOWN ") + Bytes(107 - 14 - 2, 'x') + bytes("\r\n");
  ASSERT_EQ(u.size(), 107u);
  EXPECT_EQ(parse_once(u).status, ParseStatus::kDone);
  Bytes longer = bytes("PROXY UNKNOWN ") + Bytes(107 - 14 - 1, 'x') + bytes("\r\n");
  expect_error(longer, Code::kV1TooLong, 106);
}

TEST(ProxyV1Test, HeaderLengthIsOffsetOfPayload) {
  for (std::string_view line : {"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n",
                                "PROXY TCP6 ::1 ::2 1 2\r\n", "PROXY UNKNOWN\r\n"}) {
    const Bytes h = bytes(line) + Bytes{kClientHelloByte, 0x03, 0x01};
    ProxyHeaderParser p;
    ASSERT_EQ(p.parse(h), ParseStatus::kDone) << line;
    EXPECT_EQ(p.header().header_len, line.size());
    EXPECT_EQ(h[p.header().header_len], kClientHelloByte);
  }
}

TEST(ProxyV1Test, EveryPrefixNeedsMore) {
  expect_prefixes_need_more(bytes("PROXY TCP4 192.0.2.1 198.51.100.7 50000 443\r\n"));
  expect_prefixes_need_more(bytes("PROXY TCP6 2001:db8::1 2001:db8::2 50000 443\r\n"));
  expect_prefixes_need_more(bytes("PROXY UNKNOWN\r\n"));
}

TEST(ProxyV1Test, ByteAtATimeEqualsWhole) {
  const Bytes h =
      bytes("PROXY TCP6 2001:db8::1 2001:db8::2 50000 443\r\n") + Bytes{kClientHelloByte};
  ProxyHeaderParser whole, inc;
  ASSERT_EQ(whole.parse(h), ParseStatus::kDone);
  std::unique_ptr<uint8_t[]> keep;
  ASSERT_EQ(parse_bytewise(inc, h, keep), ParseStatus::kDone);
  EXPECT_EQ(inc.header().header_len, whole.header().header_len);
  EXPECT_EQ(inc.header().source, whole.header().source);
  EXPECT_EQ(inc.header().destination, whole.header().destination);
}

TEST(ProxyV1Test, DoneAndErrorAreSticky) {
  ProxyHeaderParser p;
  const Bytes h = bytes("PROXY UNKNOWN\r\n");
  ASSERT_EQ(p.parse(h), ParseStatus::kDone);
  EXPECT_EQ(p.parse(bytes("garbage")), ParseStatus::kDone);
  EXPECT_EQ(p.status(), ParseStatus::kDone);
  p.reset();
  EXPECT_EQ(p.status(), ParseStatus::kNeedMore);
  ASSERT_EQ(p.parse(bytes("XYZ")), ParseStatus::kError);
  EXPECT_EQ(p.parse(h), ParseStatus::kError);
}

TEST(ProxyV1Test, NoCrlfWithin107Bytes) {
  const Bytes h = bytes("PROXY TCP4 ") + Bytes(200, '1');
  ProxyHeaderParser p;
  EXPECT_EQ(p.parse({h.data(), 106}), ParseStatus::kNeedMore);
  EXPECT_EQ(p.parse({h.data(), 107}), ParseStatus::kError);
  EXPECT_EQ(p.error().code, Code::kV1TooLong);
  expect_error(Bytes(h.begin(), h.begin() + 107), Code::kV1TooLong, 106);
}

TEST(ProxyV1Test, CrAtLastAllowedByteIsTooLong) {
  const Bytes h = bytes("PROXY UNKNOWN ") + Bytes(106 - 14, 'x') + bytes("\r");
  ASSERT_EQ(h.size(), 107u);
  expect_error(h, Code::kV1TooLong, 106);
}

TEST(ProxyV1Test, BareLfIsRejected) {
  expect_error(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), Code::kV1BadLineEnd, 30);
  expect_error(bytes("PROXY UNKNOWN\n"), Code::kV1BadLineEnd, 13);
}

TEST(ProxyV1Test, CrNotFollowedByLfIsRejected) {
  expect_error(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r"), Code::kV1BadLineEnd, 31);
  expect_error(bytes("PROXY UNKNOWN\rx\r\n"), Code::kV1BadLineEnd, 14);
}

TEST(ProxyV1Test, DoubleSpaces) {
  expect_error(bytes("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), Code::kV1BadSpacing, 6);
  expect_error(bytes("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), Code::kV1BadSpacing, 11);
  expect_error(bytes("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"), Code::kV1BadSpacing, 19);
  expect_error(bytes("PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n"), Code::kV1BadSpacing, 27);
  expect_error(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n"), Code::kV1BadSpacing, 29);
}

TEST(ProxyV1Test, TrailingSpaceOrFieldIsRejected) {
  expect_error(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), Code::kV1TrailingData, 30);
  expect_error(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), Code::kV1TrailingData, 30);
}

TEST(ProxyV1Test, TabIsNotASeparator) {
  expect_error(bytes("PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n"), Code::kV1BadProtocol, 6);
}

TEST(ProxyV1Test, BadProtocol) {
  expect_error(bytes("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), Code::kV1BadProtocol, 6);
  expect_error(bytes("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n"), Code::kV1BadProtocol, 6);
  expect_error(bytes("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), Code::kV1BadProtocol, 6);
  expect_error(bytes("PROXY UNKNOWNX\r\n"), Code::kV1BadProtocol, 6);
  expect_error(bytes("PROXY \r\n"), Code::kV1BadProtocol, 6);
}

TEST(ProxyV1Test, MissingFields) {
  expect_error(bytes("PROXY TCP4\r\n"), Code::kV1MissingField, 10);
  expect_error(bytes("PROXY TCP4 1.2.3.4\r\n"), Code::kV1MissingField, 18);
  expect_error(bytes("PROXY TCP4 1.2.3.4 5.6.7.8\r\n"), Code::kV1MissingField, 26);
  expect_error(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), Code::kV1MissingField, 28);
  expect_error(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n"), Code::kV1MissingField, 29);
}

TEST(ProxyV1Test, BadIpv4Addresses) {
  expect_error(bytes("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"), Code::kV1BadAddress, 11);
  expect_error(bytes("PROXY TCP4 1.2.3.4 5.6.7 1 2\r\n"), Code::kV1BadAddress, 19);
  expect_error(bytes("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n"), Code::kV1BadAddress, 11);
  expect_error(bytes("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"), Code::kV1BadAddress, 11);
  expect_error(bytes("PROXY TCP4 localhost 5.6.7.8 1 2\r\n"), Code::kV1BadAddress, 11);
  expect_error(bytes("PROXY TCP4 ") + Bytes(60, '1') + bytes(" 5.6.7.8 1 2\r\n"),
               Code::kV1BadAddress, 11);
}

TEST(ProxyV1Test, BadIpv6Addresses) {
  expect_error(bytes("PROXY TCP6 ::g ::1 1 2\r\n"), Code::kV1BadAddress, 11);
  expect_error(bytes("PROXY TCP6 ::1 1::2::3 1 2\r\n"), Code::kV1BadAddress, 15);
  expect_error(bytes("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), Code::kV1BadAddress, 11);
  expect_error(bytes("PROXY TCP6 [::1] ::1 1 2\r\n"), Code::kV1BadAddress, 11);
}

TEST(ProxyV1Test, NulInsideAnAddress) {
  // inet_pton would stop at the NUL and accept "1.2.3.4".
  expect_error(bytes(std::string_view("PROXY TCP4 1.2.3.4\0x 5.6.7.8 1 2\r\n", 34)),
               Code::kV1BadAddress, 11);
  expect_error(bytes(std::string_view("PROXY TCP6 ::1 ::2\0 1 2\r\n", 25)), Code::kV1BadAddress,
               15);
}

TEST(ProxyV1Test, AddressOfTheWrongFamily) {
  expect_error(bytes("PROXY TCP4 ::1 5.6.7.8 1 2\r\n"), Code::kV1FamilyMismatch, 11);
  expect_error(bytes("PROXY TCP4 1.2.3.4 2001:db8::1 1 2\r\n"), Code::kV1FamilyMismatch, 19);
  expect_error(bytes("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"), Code::kV1FamilyMismatch, 11);
}

TEST(ProxyV1Test, BadPorts) {
  expect_error(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), Code::kV1BadPort, 27);
  expect_error(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n"), Code::kV1BadPort, 29);
  expect_error(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n"), Code::kV1BadPort, 27);
  expect_error(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n"), Code::kV1BadPort, 27);
  expect_error(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 0443\r\n"), Code::kV1BadPort, 29);
  expect_error(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"), Code::kV1BadPort, 27);
  expect_error(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n"), Code::kV1BadPort, 27);
  expect_error(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 2x\r\n"), Code::kV1BadPort, 29);
  expect_error(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 123456\r\n"), Code::kV1BadPort, 29);
}

TEST(ProxyV1Test, EmptyPortIsASpacingError) {
  expect_error(bytes("PROXY TCP4 1.2.3.4 5.6.7.8  2\r\n"), Code::kV1BadSpacing, 27);
}

TEST(ProxyV1Test, BoundaryPortsAccepted) {
  ProxyHeaderParser p;
  ASSERT_EQ(p.parse(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n")), ParseStatus::kDone);
  EXPECT_EQ(p.header().source.port, 0);
  EXPECT_EQ(p.header().destination.port, 65535);
}

TEST(ProxyV1Test, ErrorDecidedBeforeTheLineEnds) {
  // A bare LF is refused as soon as it arrives, without waiting for more.
  ProxyHeaderParser p;
  EXPECT_EQ(p.parse(bytes("PROXY TCP4\n")), ParseStatus::kError);
  EXPECT_EQ(p.error().code, Code::kV1BadLineEnd);
}

// -------------------------------------------------------------------- v2 ----

TEST(ProxyV2Test, Inet) {
  const Bytes h = V2{}.build();
  ProxyHeaderParser p;
  ASSERT_EQ(p.parse(h), ParseStatus::kDone);
  const ProxyHeader& hdr = p.header();
  EXPECT_EQ(hdr.version, 2);
  EXPECT_EQ(hdr.command, Command::kProxy);
  EXPECT_EQ(hdr.family, Family::kInet);
  EXPECT_EQ(hdr.transport, Transport::kStream);
  EXPECT_EQ(hdr.source, v4(192, 0, 2, 1, 50000));
  EXPECT_EQ(hdr.destination, v4(198, 51, 100, 7, 443));
  EXPECT_EQ(hdr.header_len, 28u);
  EXPECT_FALSE(hdr.tlvs.alpn);
  EXPECT_FALSE(hdr.tlvs.crc32c);
}

TEST(ProxyV2Test, Inet6Dgram) {
  V2 v;
  v.fam = 0x22;
  std::array<uint8_t, 16> s{}, d{};
  inet_pton(AF_INET6, "2001:db8::1", s.data());
  inet_pton(AF_INET6, "2001:db8::2", d.data());
  v.addr = Bytes(s.begin(), s.end()) + Bytes(d.begin(), d.end()) + Bytes{0x12, 0x34, 0x00, 0x35};
  ProxyHeaderParser p;
  const Bytes built = v.build();
  ASSERT_EQ(p.parse(built), ParseStatus::kDone);
  EXPECT_EQ(p.header().family, Family::kInet6);
  EXPECT_EQ(p.header().transport, Transport::kDgram);
  EXPECT_EQ(p.header().source, v6("2001:db8::1", 0x1234));
  EXPECT_EQ(p.header().destination, v6("2001:db8::2", 53));
  EXPECT_EQ(p.header().header_len, 52u);
}

TEST(ProxyV2Test, Unix) {
  V2 v;
  v.fam = 0x31;
  v.addr = Bytes(216, 0);
  std::memcpy(v.addr.data(), "/run/a.sock", 11);
  std::memcpy(v.addr.data() + 108, "/run/b.sock", 11);
  const Bytes h = v.build();
  ProxyHeaderParser p;
  ASSERT_EQ(p.parse(h), ParseStatus::kDone);
  EXPECT_EQ(p.header().source.family, Family::kUnix);
  EXPECT_EQ(p.header().source.unix_path.size(), 108u);
  EXPECT_EQ(text(p.header().source.unix_path).substr(0, 11), "/run/a.sock");
  EXPECT_EQ(text(p.header().destination.unix_path).substr(0, 11), "/run/b.sock");
  sockaddr_storage ss;
  const socklen_t len = p.header().source.to_sockaddr(ss);
  EXPECT_EQ(len, offsetof(sockaddr_un, sun_path) + 11);
  EXPECT_STREQ(reinterpret_cast<sockaddr_un*>(&ss)->sun_path, "/run/a.sock");
}

TEST(ProxyV2Test, LocalIgnoresAddressesButParsesTlvs) {
  V2 v;
  v.ver_cmd = 0x20;
  v.tlvs = tlv(0x02, "example.com");
  ProxyHeaderParser p;
  const Bytes built = v.build();
  ASSERT_EQ(p.parse(built), ParseStatus::kDone);
  EXPECT_EQ(p.header().command, Command::kLocal);
  EXPECT_EQ(p.header().family, Family::kInet);
  EXPECT_FALSE(p.header().has_addresses());
  EXPECT_EQ(p.header().source.family, Family::kUnspec);
  ASSERT_TRUE(p.header().tlvs.authority);
  EXPECT_EQ(*p.header().tlvs.authority, "example.com");
}

TEST(ProxyV2Test, LocalUnspecEmpty) {
  V2 v;
  v.ver_cmd = 0x20;
  v.fam = 0x00;
  v.addr.clear();
  ProxyHeaderParser p;
  const Bytes built = v.build();
  ASSERT_EQ(p.parse(built), ParseStatus::kDone);
  EXPECT_EQ(p.header().header_len, 16u);
  EXPECT_FALSE(p.header().has_addresses());
}

TEST(ProxyV2Test, AllTlvs) {
  V2 v;
  const Bytes ssl = Bytes{0x07, 0x00, 0x00, 0x00, 0x00} + tlv(0x21, "TLSv1.3") +
                    tlv(0x22, "client.example") + tlv(0x23, "TLS_AES_128_GCM_SHA256") +
                    tlv(0x24, "ECDSA-SHA256") + tlv(0x25, "EC256") + tlv(0x2f, "unknown-sub");
  v.tlvs = tlv(0x01, "h2") + tlv(0x02, "www.example.com") + tlv(0x04, Bytes(5, 0)) +
           tlv(0x05, Bytes(128, 0xab)) + tlv(0x20, ssl) + tlv(0x30, "blue") + tlv(0xe0, "custom") +
           tlv(0xee, Bytes{1, 2, 3}) + tlv(0x04, "");
  ProxyHeaderParser p;
  const Bytes built = v.build();
  ASSERT_EQ(p.parse(built), ParseStatus::kDone) << to_string(p.error().code);
  const Tlvs& t = p.header().tlvs;
  EXPECT_EQ(t.alpn.value_or(""), "h2");
  EXPECT_EQ(t.authority.value_or(""), "www.example.com");
  ASSERT_TRUE(t.unique_id);
  EXPECT_EQ(t.unique_id->size(), 128u);
  EXPECT_EQ(t.netns.value_or(""), "blue");
  EXPECT_EQ(t.noop_count, 2);
  EXPECT_EQ(t.unknown_count, 2);
  EXPECT_EQ(t.raw.size(), v.tlvs.size());
  ASSERT_TRUE(t.ssl);
  EXPECT_EQ(t.ssl->client, 0x07);
  EXPECT_EQ(t.ssl->verify, 0u);
  EXPECT_EQ(t.ssl->version.value_or(""), "TLSv1.3");
  EXPECT_EQ(t.ssl->cn.value_or(""), "client.example");
  EXPECT_EQ(t.ssl->cipher.value_or(""), "TLS_AES_128_GCM_SHA256");
  EXPECT_EQ(t.ssl->sig_alg.value_or(""), "ECDSA-SHA256");
  EXPECT_EQ(t.ssl->key_alg.value_or(""), "EC256");
}

TEST(ProxyV2Test, EmptyTlvValuesArePresent) {
  V2 v;
  v.tlvs = tlv(0x01, "") + tlv(0x20, Bytes{0x00, 0x00, 0x00, 0x00, 0x01});
  ProxyHeaderParser p;
  const Bytes built = v.build();
  ASSERT_EQ(p.parse(built), ParseStatus::kDone);
  ASSERT_TRUE(p.header().tlvs.alpn);
  EXPECT_TRUE(p.header().tlvs.alpn->empty());
  ASSERT_TRUE(p.header().tlvs.ssl);
  EXPECT_EQ(p.header().tlvs.ssl->verify, 1u);
  EXPECT_FALSE(p.header().tlvs.ssl->cn);
}

TEST(ProxyV2Test, CrcCorrect) {
  V2 v;
  v.tlvs = tlv(0x02, "example.com") + tlv(0x03, Bytes(4, 0));
  const Bytes h = with_crc_at_end(v.build());
  ProxyHeaderParser p;
  ASSERT_EQ(p.parse(h), ParseStatus::kDone) << to_string(p.error().code);
  ASSERT_TRUE(p.header().tlvs.crc32c);
}

TEST(ProxyV2Test, CrcCorruptedAnywhere) {
  V2 v;
  v.tlvs = tlv(0x03, Bytes(4, 0)) + tlv(0x02, "example.com");
  // CRC first this time: the zeroed window is in the middle.
  Bytes h = v.build();
  const uint32_t crc = crc32c(h);
  h[31] = static_cast<uint8_t>(crc >> 24);
  h[32] = static_cast<uint8_t>(crc >> 16);
  h[33] = static_cast<uint8_t>(crc >> 8);
  h[34] = static_cast<uint8_t>(crc);
  ASSERT_EQ(parse_once(h).status, ParseStatus::kDone);
  // Flip a bit in the addresses, in the CRC itself, and in the TLV after it.
  for (size_t at : {size_t{16}, size_t{20}, size_t{33}, h.size() - 1}) {
    Bytes bad = h;
    bad[at] ^= 0x01;
    SCOPED_TRACE(at);
    expect_error(bad, Code::kV2CrcMismatch, 28);
  }
}

TEST(ProxyV2Test, CrcWrongLength) {
  V2 v;
  v.tlvs = tlv(0x03, Bytes(3, 0));
  expect_error(v.build(), Code::kV2BadTlvLength, 28);
  v.tlvs = tlv(0x03, Bytes(5, 0));
  expect_error(v.build(), Code::kV2BadTlvLength, 28);
}

TEST(ProxyV2Test, HeaderLengthIsOffsetOfPayload) {
  V2 v;
  v.tlvs = tlv(0x01, "h2") + tlv(0x02, "example.com");
  const Bytes header = v.build();
  const Bytes h = header + Bytes{kClientHelloByte, 0x03, 0x01, 0x02, 0x00};
  ProxyHeaderParser p;
  ASSERT_EQ(p.parse(h), ParseStatus::kDone);
  EXPECT_EQ(p.header().header_len, header.size());
  EXPECT_EQ(h[p.header().header_len], kClientHelloByte);
}

TEST(ProxyV2Test, EveryPrefixNeedsMore) {
  V2 v;
  v.tlvs = tlv(0x01, "h2") + tlv(0x02, "example.com") + tlv(0x03, Bytes(4, 0));
  expect_prefixes_need_more(with_crc_at_end(v.build()));
  v.ver_cmd = 0x20;
  v.fam = 0x00;
  v.addr.clear();
  v.tlvs.clear();
  expect_prefixes_need_more(v.build());
}

TEST(ProxyV2Test, ByteAtATimeEqualsWholeAndViewsPointIntoLastBuffer) {
  V2 v;
  v.tlvs =
      tlv(0x01, "http/1.1") + tlv(0x02, "example.com") + tlv(0x05, "id-1") + tlv(0x03, Bytes(4, 0));
  const Bytes h = with_crc_at_end(v.build()) + Bytes{kClientHelloByte};
  ProxyHeaderParser whole, inc;
  ASSERT_EQ(whole.parse(h), ParseStatus::kDone);
  std::unique_ptr<uint8_t[]> last;
  ASSERT_EQ(parse_bytewise(inc, h, last), ParseStatus::kDone);
  const ProxyHeader& a = whole.header();
  const ProxyHeader& b = inc.header();
  EXPECT_EQ(a.header_len, b.header_len);
  EXPECT_EQ(a.source, b.source);
  EXPECT_EQ(a.destination, b.destination);
  EXPECT_EQ(*a.tlvs.alpn, *b.tlvs.alpn);
  EXPECT_EQ(*a.tlvs.authority, *b.tlvs.authority);
  EXPECT_EQ(*a.tlvs.crc32c, *b.tlvs.crc32c);
  // The last call saw the whole header (it completes on its last byte), and
  // the views point into that call's buffer.
  const auto* base = reinterpret_cast<const char*>(last.get());
  EXPECT_GE(b.tlvs.authority->data(), base);
  EXPECT_LT(b.tlvs.authority->data(), base + b.header_len);
}

TEST(ProxyV2Test, BadVersion) {
  for (const uint8_t vc : std::initializer_list<uint8_t>{0x01, 0x11, 0x31, 0xf1}) {
    V2 v;
    v.ver_cmd = vc;
    expect_error(v.build(), Code::kV2BadVersion, 12);
  }
}

TEST(ProxyV2Test, BadCommand) {
  for (const uint8_t vc : std::initializer_list<uint8_t>{0x22, 0x23, 0x2f}) {
    V2 v;
    v.ver_cmd = vc;
    expect_error(v.build(), Code::kV2BadCommand, 12);
  }
}

TEST(ProxyV2Test, BadFamily) {
  for (const uint8_t fam : std::initializer_list<uint8_t>{0x41, 0x51, 0xf1}) {
    V2 v;
    v.fam = fam;
    expect_error(v.build(), Code::kV2BadFamily, 13);
  }
}

TEST(ProxyV2Test, BadTransport) {
  for (const uint8_t fam :
       std::initializer_list<uint8_t>{0x13, 0x1f, 0x01, 0x02, 0x10, 0x20, 0x30}) {
    V2 v;
    v.fam = fam;
    expect_error(v.build(), Code::kV2BadTransport, 13);
  }
}

TEST(ProxyV2Test, LocalStillChecksFamilyAndTransport) {
  V2 v;
  v.ver_cmd = 0x20;
  v.fam = 0x41;
  expect_error(v.build(), Code::kV2BadFamily, 13);
  v.fam = 0x13;
  expect_error(v.build(), Code::kV2BadTransport, 13);
}

TEST(ProxyV2Test, FixedPartErrorsDecidedAt16Bytes) {
  V2 v;
  v.ver_cmd = 0x31;
  v.tlvs = tlv(0x02, std::string(1000, 'a'));
  const Bytes h = v.build();
  ProxyHeaderParser p;
  EXPECT_EQ(p.parse({h.data(), 15}), ParseStatus::kNeedMore);
  EXPECT_EQ(p.parse({h.data(), 16}), ParseStatus::kError);
  EXPECT_EQ(p.error().code, Code::kV2BadVersion);
}

TEST(ProxyV2Test, AddressBlockTooShortForFamily) {
  const std::pair<uint8_t, int> cases[] = {{0x11, 11}, {0x12, 0},   {0x21, 35},
                                           {0x21, 12}, {0x31, 215}, {0x32, 36}};
  for (const auto& [fam, len] : cases) {
    V2 v;
    v.fam = fam;
    v.addr = Bytes(static_cast<size_t>(len), 0);
    SCOPED_TRACE(testing::Message() << "fam " << int(fam) << " len " << len);
    expect_error(v.build(), Code::kV2AddressTooShort, 14);
  }
}

TEST(ProxyV2Test, LocalStillNeedsRoomForItsFamilysAddressBlock) {
  V2 v;
  v.ver_cmd = 0x20;
  v.addr = Bytes(4, 0);
  expect_error(v.build(), Code::kV2AddressTooShort, 14);
}

TEST(ProxyV2Test, TlvOverrunsTheHeader) {
  V2 v;
  v.tlvs = tlv(0x02, "example.com");
  v.tlvs[2] = 12;  // one more than is there
  expect_error(v.build(), Code::kV2TlvOverrun, 28);
  v.tlvs = tlv(0x01, "h2") + Bytes{0xe0, 0xff, 0xff, 'x'};
  expect_error(v.build(), Code::kV2TlvOverrun, 33);
}

TEST(ProxyV2Test, TrailingPartialTlvHeader) {
  V2 v;
  v.tlvs = tlv(0x01, "h2") + Bytes{0x02};
  expect_error(v.build(), Code::kV2TlvTruncated, 33);
  v.tlvs = tlv(0x01, "h2") + Bytes{0x02, 0x00};
  expect_error(v.build(), Code::kV2TlvTruncated, 33);
  v.tlvs = Bytes{0x00};
  expect_error(v.build(), Code::kV2TlvTruncated, 28);
}

TEST(ProxyV2Test, DuplicateWellKnownTlvs) {
  const std::pair<uint8_t, Bytes> cases[] = {
      {0x01, bytes("h2")}, {0x02, bytes("a.example")}, {0x03, Bytes(4, 0)},
      {0x05, bytes("id")}, {0x20, Bytes(5, 0)},        {0x30, bytes("ns")},
  };
  for (const auto& [type, value] : cases) {
    V2 v;
    v.tlvs = tlv(type, value) + tlv(0x04, "") + tlv(type, value);
    SCOPED_TRACE(int(type));
    expect_error(v.build(), Code::kV2DuplicateTlv,
                 static_cast<uint32_t>(28 + 3 + value.size() + 3));
  }
}

TEST(ProxyV2Test, RepeatedNoopAndCustomTlvsAreFine) {
  V2 v;
  v.tlvs = tlv(0x04, "") + tlv(0x04, "xx") + tlv(0xe1, "a") + tlv(0xe1, "b");
  ProxyHeaderParser p;
  const Bytes built = v.build();
  ASSERT_EQ(p.parse(built), ParseStatus::kDone);
  EXPECT_EQ(p.header().tlvs.noop_count, 2);
  EXPECT_EQ(p.header().tlvs.unknown_count, 2);
}

TEST(ProxyV2Test, UniqueIdTooLong) {
  V2 v;
  v.tlvs = tlv(0x05, Bytes(129, 1));
  expect_error(v.build(), Code::kV2BadTlvLength, 28);
}

TEST(ProxyV2Test, SslTlvTooShort) {
  V2 v;
  v.tlvs = tlv(0x20, Bytes(4, 0));
  expect_error(v.build(), Code::kV2BadTlvLength, 28);
}

TEST(ProxyV2Test, SslSubTlvOverrun) {
  V2 v;
  Bytes sub = tlv(0x22, "cn");
  sub[2] = 3;
  v.tlvs = tlv(0x20, Bytes(5, 0) + sub);
  expect_error(v.build(), Code::kV2TlvOverrun, 28 + 3 + 5);
}

TEST(ProxyV2Test, SslSubTlvTrailingBytes) {
  V2 v;
  v.tlvs = tlv(0x20, Bytes(5, 0) + tlv(0x21, "TLSv1.2") + Bytes{0x22, 0x00});
  expect_error(v.build(), Code::kV2TlvTruncated, 28 + 3 + 5 + 10);
}

TEST(ProxyV2Test, SslDuplicateSubTlv) {
  V2 v;
  v.tlvs = tlv(0x20, Bytes(5, 0) + tlv(0x22, "a") + tlv(0x22, "b"));
  expect_error(v.build(), Code::kV2DuplicateTlv, 28 + 3 + 5 + 4);
}

TEST(ProxyV2Test, LengthAboveDefaultCap) {
  V2 v;
  v.len_override = 4096 - 16 + 1;
  const Bytes h = v.build();
  // Decided from the fixed part alone, the body never arrives.
  expect_error(h, Code::kV2TooLong, 14);
}

TEST(ProxyV2Test, LengthAtCapIsAccepted) {
  V2 v;
  v.tlvs = tlv(0xe0, Bytes(4096 - 16 - 12 - 3, 0));
  ProxyHeaderParser p;
  const Bytes built = v.build();
  ASSERT_EQ(p.parse(built), ParseStatus::kDone);
  EXPECT_EQ(p.header().header_len, 4096u);
}

TEST(ProxyV2Test, ConfiguredCap) {
  V2 v;
  v.tlvs = tlv(0x02, "example.com");  // 16 + 12 + 14 = 42 bytes
  const Bytes h = v.build();
  expect_error(h, Code::kV2TooLong, 14, ProxyLimits{41});
  EXPECT_EQ(parse_once(h, ProxyLimits{42}).status, ParseStatus::kDone);
  V2 big;
  big.len_override = 0xffff;
  expect_error(big.build(), Code::kV2TooLong, 14);
  ProxyHeaderParser p(ProxyLimits{70000});
  EXPECT_EQ(p.parse(big.build()),
            ParseStatus::kNeedMore);  // within a large cap: waits for the body
}

TEST(ProxyV2Test, ErrorCodesHaveDistinctReasons) {
  std::set<std::string_view> seen;
  for (size_t i = 0; i < kProxyErrorCodeCount; ++i) {
    const std::string_view r = to_string(static_cast<ProxyErrorCode>(i));
    EXPECT_NE(r, "unknown");
    EXPECT_TRUE(seen.insert(r).second) << r;
  }
}

// ----------------------------------------------------------------- Address ----

TEST(ProxyAddressTest, ToSockaddrInet) {
  sockaddr_storage ss;
  ASSERT_EQ(v4(192, 0, 2, 1, 443).to_sockaddr(ss), sizeof(sockaddr_in));
  const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
  EXPECT_EQ(in->sin_family, AF_INET);
  EXPECT_EQ(ntohs(in->sin_port), 443);
  char buf[INET_ADDRSTRLEN];
  EXPECT_STREQ(inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf)), "192.0.2.1");
  EXPECT_EQ(Address::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), sizeof(sockaddr_in)),
            v4(192, 0, 2, 1, 443));
}

TEST(ProxyAddressTest, ToSockaddrInet6AndUnspec) {
  sockaddr_storage ss;
  ASSERT_EQ(v6("2001:db8::5", 8443).to_sockaddr(ss), sizeof(sockaddr_in6));
  EXPECT_EQ(Address::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), sizeof(sockaddr_in6)),
            v6("2001:db8::5", 8443));
  EXPECT_EQ(Address{}.to_sockaddr(ss), 0u);
  // A length too short for the family is refused.
  EXPECT_EQ(Address::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), 8).family,
            Family::kUnspec);
  EXPECT_EQ(Address::from_sockaddr(nullptr, 0).family, Family::kUnspec);
}

// ------------------------------------------------------------------ writer ----

// Writes, parses back, and returns the parser for the checks.
std::unique_ptr<ProxyHeaderParser> round_trip(const ProxyHeaderSpec& spec, Bytes& buf) {
  buf.assign(70000, 0xcc);
  const auto n = write_v2(spec, buf);
  EXPECT_TRUE(n.has_value()) << to_string(n.error());
  if (!n) return nullptr;
  buf.resize(*n);
  auto p = std::make_unique<ProxyHeaderParser>(ProxyLimits{70000});
  EXPECT_EQ(p->parse(buf), ParseStatus::kDone) << to_string(p->error().code);
  EXPECT_EQ(p->header().header_len, *n);
  return p;
}

TEST(ProxyWriterTest, RoundTripInet) {
  ProxyHeaderSpec spec;
  spec.source = v4(203, 0, 113, 9, 61000);
  spec.destination = v4(192, 0, 2, 80, 443);
  Bytes buf;
  auto p = round_trip(spec, buf);
  ASSERT_TRUE(p);
  EXPECT_EQ(buf.size(), 28u);
  EXPECT_EQ(buf[12], 0x21);
  EXPECT_EQ(buf[13], 0x11);
  EXPECT_EQ(p->header().source, spec.source);
  EXPECT_EQ(p->header().destination, spec.destination);
}

TEST(ProxyWriterTest, RoundTripInet6) {
  ProxyHeaderSpec spec;
  spec.source = v6("2001:db8::1", 1);
  spec.destination = v6("2001:db8:ffff::2", 65535);
  Bytes buf;
  auto p = round_trip(spec, buf);
  ASSERT_TRUE(p);
  EXPECT_EQ(buf.size(), 52u);
  EXPECT_EQ(p->header().family, Family::kInet6);
  EXPECT_EQ(p->header().source, spec.source);
  EXPECT_EQ(p->header().destination, spec.destination);
}

TEST(ProxyWriterTest, RoundTripUnixPadsPaths) {
  const Bytes src = bytes("/run/lode.sock"), dst = bytes("/run/backend.sock");
  ProxyHeaderSpec spec;
  spec.source.family = spec.destination.family = Family::kUnix;
  spec.source.unix_path = src;
  spec.destination.unix_path = dst;
  Bytes buf;
  auto p = round_trip(spec, buf);
  ASSERT_TRUE(p);
  EXPECT_EQ(buf.size(), 16u + 216u);
  EXPECT_EQ(text(p->header().source.unix_path).substr(0, src.size()), text(src));
  EXPECT_EQ(p->header().source.unix_path[src.size()], 0);
  EXPECT_EQ(text(p->header().destination.unix_path).substr(0, dst.size()), text(dst));
}

TEST(ProxyWriterTest, RoundTripLocal) {
  ProxyHeaderSpec spec;
  spec.command = Command::kLocal;
  spec.source = v4(1, 2, 3, 4, 5);  // ignored for LOCAL
  spec.destination = v6("::1", 6);
  spec.authority = "health.example";
  Bytes buf;
  auto p = round_trip(spec, buf);
  ASSERT_TRUE(p);
  EXPECT_EQ(buf[12], 0x20);
  EXPECT_EQ(buf[13], 0x00);
  EXPECT_EQ(p->header().command, Command::kLocal);
  EXPECT_FALSE(p->header().has_addresses());
  EXPECT_EQ(p->header().tlvs.authority.value_or(""), "health.example");
}

TEST(ProxyWriterTest, RoundTripAllTlvsWithCrc) {
  const Bytes uid(128, 0x42);
  ProxyHeaderSpec spec;
  spec.source = v4(10, 1, 2, 3, 40000);
  spec.destination = v4(10, 9, 8, 7, 443);
  spec.alpn = "h2";
  spec.authority = "www.example.com";
  spec.unique_id = std::span<const uint8_t>(uid);
  SslTlv ssl;
  ssl.client = SslTlv::kClientSsl | SslTlv::kClientCertConn;
  ssl.verify = 0xdeadbeef;
  ssl.version = "TLSv1.3";
  ssl.cn = "client";
  ssl.cipher = "TLS_AES_256_GCM_SHA384";
  ssl.sig_alg = "RSA-PSS+SHA256";
  ssl.key_alg = "RSA2048";
  spec.ssl = ssl;
  spec.netns = "ns0";
  spec.crc32c = true;
  Bytes buf;
  auto p = round_trip(spec, buf);
  ASSERT_TRUE(p);
  const Tlvs& t = p->header().tlvs;
  EXPECT_EQ(t.alpn.value_or(""), "h2");
  EXPECT_EQ(t.authority.value_or(""), "www.example.com");
  ASSERT_TRUE(t.unique_id);
  EXPECT_TRUE(std::equal(t.unique_id->begin(), t.unique_id->end(), uid.begin(), uid.end()));
  EXPECT_EQ(t.netns.value_or(""), "ns0");
  ASSERT_TRUE(t.crc32c);
  ASSERT_TRUE(t.ssl);
  EXPECT_EQ(t.ssl->client, 0x03);
  EXPECT_EQ(t.ssl->verify, 0xdeadbeefu);
  EXPECT_EQ(t.ssl->version, ssl.version);
  EXPECT_EQ(t.ssl->cn, ssl.cn);
  EXPECT_EQ(t.ssl->cipher, ssl.cipher);
  EXPECT_EQ(t.ssl->sig_alg, ssl.sig_alg);
  EXPECT_EQ(t.ssl->key_alg, ssl.key_alg);
  // The CRC the writer computed is the one a reader checks: break one byte.
  buf[20] ^= 1;
  expect_error(buf, Code::kV2CrcMismatch, static_cast<uint32_t>(buf.size() - 7),
               ProxyLimits{70000});
}

TEST(ProxyWriterTest, AlignmentPadsWithNoop) {
  for (const uint16_t align : std::initializer_list<uint16_t>{2, 3, 4, 8, 16, 64, 100}) {
    ProxyHeaderSpec spec;
    spec.source = v4(1, 1, 1, 1, 1);
    spec.destination = v4(2, 2, 2, 2, 2);
    spec.authority = "a.example";
    spec.crc32c = true;
    spec.align = align;
    Bytes buf;
    auto p = round_trip(spec, buf);
    ASSERT_TRUE(p);
    EXPECT_EQ(buf.size() % align, 0u) << align;
    EXPECT_LE(p->header().tlvs.noop_count, 1);
  }
}

TEST(ProxyWriterTest, BufferTooSmallAtEverySize) {
  ProxyHeaderSpec spec;
  spec.source = v6("2001:db8::1", 1);
  spec.destination = v6("2001:db8::2", 2);
  spec.alpn = "http/1.1";
  spec.crc32c = true;
  Bytes full(200);
  const auto n = write_v2(spec, full);
  ASSERT_TRUE(n.has_value());
  for (size_t size = 0; size < *n; ++size) {
    Bytes out(size, 0xcc);
    const auto r = write_v2(spec, out);
    ASSERT_FALSE(r.has_value()) << size;
    EXPECT_EQ(r.error(), WriteError::kBufferTooSmall);
    EXPECT_EQ(out, Bytes(size, 0xcc)) << "nothing is written when it does not fit";
  }
}

TEST(ProxyWriterTest, FieldTooLong) {
  Bytes buf(70000);
  const Bytes uid(129, 1);
  ProxyHeaderSpec spec;
  spec.unique_id = std::span<const uint8_t>(uid);
  EXPECT_EQ(write_v2(spec, buf).error(), WriteError::kFieldTooLong);

  const std::string huge(70000, 'a');
  ProxyHeaderSpec spec2;
  spec2.authority = huge;
  EXPECT_EQ(write_v2(spec2, buf).error(), WriteError::kFieldTooLong);

  const Bytes path(109, 'p');
  ProxyHeaderSpec spec3;
  spec3.source.family = spec3.destination.family = Family::kUnix;
  spec3.source.unix_path = path;
  EXPECT_EQ(write_v2(spec3, buf).error(), WriteError::kFieldTooLong);
}

TEST(ProxyWriterTest, HeaderTooLong) {
  Bytes buf(140000);
  const std::string a(40000, 'a'), b(40000, 'b');
  ProxyHeaderSpec spec;
  spec.alpn = a;
  spec.authority = b;
  EXPECT_EQ(write_v2(spec, buf).error(), WriteError::kHeaderTooLong);
}

TEST(ProxyWriterTest, FamilyMismatchAndBadTransport) {
  Bytes buf(256);
  ProxyHeaderSpec spec;
  spec.source = v4(1, 2, 3, 4, 5);
  spec.destination = v6("::1", 6);
  EXPECT_EQ(write_v2(spec, buf).error(), WriteError::kFamilyMismatch);
  EXPECT_EQ(write_v1(spec, buf).error(), WriteError::kFamilyMismatch);
  spec.destination = v4(5, 6, 7, 8, 9);
  spec.transport = Transport::kUnspec;
  EXPECT_EQ(write_v2(spec, buf).error(), WriteError::kBadTransport);
}

TEST(ProxyWriterTest, V1RoundTrips) {
  Bytes buf(kV1MaxLen);
  ProxyHeaderSpec spec;
  spec.source = v4(192, 0, 2, 1, 50000);
  spec.destination = v4(198, 51, 100, 7, 443);
  auto n = write_v1(spec, buf);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(text({buf.data(), *n}), "PROXY TCP4 192.0.2.1 198.51.100.7 50000 443\r\n");
  ProxyHeaderParser p;
  ASSERT_EQ(p.parse({buf.data(), *n}), ParseStatus::kDone);
  EXPECT_EQ(p.header().source, spec.source);

  spec.source = v6("2001:db8::1", 0);
  spec.destination = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
  n = write_v1(spec, buf);
  ASSERT_TRUE(n.has_value());
  p.reset();
  ASSERT_EQ(p.parse({buf.data(), *n}), ParseStatus::kDone);
  EXPECT_EQ(p.header().source, spec.source);
  EXPECT_EQ(p.header().destination, spec.destination);

  spec.command = Command::kLocal;
  n = write_v1(spec, buf);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(text({buf.data(), *n}), "PROXY UNKNOWN\r\n");
}

TEST(ProxyWriterTest, V1BufferTooSmall) {
  ProxyHeaderSpec spec;
  spec.source = v4(1, 2, 3, 4, 5);
  spec.destination = v4(5, 6, 7, 8, 9);
  Bytes buf(20);
  EXPECT_EQ(write_v1(spec, buf).error(), WriteError::kBufferTooSmall);
  spec.source = spec.destination = Address{};
  Bytes tiny(14);
  EXPECT_EQ(write_v1(spec, tiny).error(), WriteError::kBufferTooSmall);
}

}  // namespace
}  // namespace lode::proxy

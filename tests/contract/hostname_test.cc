// lodestone/hostname.h: the one normalization every reader of a server name
// uses (ClientHello parser, route-table builder).
#include "lodestone/hostname.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace lode {
namespace {

struct Normalized {
  bool ok = false;
  HostnameError error = HostnameError::kEmpty;
  HostnameKind kind = HostnameKind::kName;
  std::string name;
};

Normalized normalize(std::string_view in) {
  char buf[kHostnameBufSize];
  const auto r = normalize_hostname(in, buf);
  Normalized n;
  if (!r) {
    n.error = r.error();
    return n;
  }
  n.ok = true;
  n.kind = r->kind;
  n.name.assign(buf, r->len);
  return n;
}

std::string label(size_t n, char c = 'a') {
  return std::string(n, c);
}

// A name of exactly `len` bytes made of labels of at most 63 bytes.
std::string name_of_length(size_t len) {
  std::string s;
  while (s.size() < len) {
    if (!s.empty()) s += '.';
    s += label(std::min<size_t>(63, len - s.size()), 'b');
  }
  return s;
}

void expect_name(std::string_view in, std::string_view want) {
  const Normalized n = normalize(in);
  ASSERT_TRUE(n.ok) << in << ": " << to_string(n.error);
  EXPECT_EQ(n.kind, HostnameKind::kName) << in;
  EXPECT_EQ(n.name, want) << in;
}

void expect_error(std::string_view in, HostnameError want) {
  const Normalized n = normalize(in);
  EXPECT_FALSE(n.ok) << "accepted: " << in;
  if (!n.ok) EXPECT_EQ(n.error, want) << in << ": got " << to_string(n.error);
}

void expect_kind(std::string_view in, HostnameKind want) {
  const Normalized n = normalize(in);
  ASSERT_TRUE(n.ok) << in << ": " << to_string(n.error);
  EXPECT_EQ(n.kind, want) << in;
  if (want != HostnameKind::kName) EXPECT_TRUE(n.name.empty()) << in;
}

// --- Happy paths -------------------------------------------------------------

TEST(Hostname, UpperCaseIsFolded) {
  expect_name("WWW.Example.COM", "www.example.com");
  expect_name("A-B_C.D9", "a-b_c.d9");
}

TEST(Hostname, OneTrailingDotIsStripped) {
  expect_name("example.com.", "example.com");
  expect_name("A.", "a");
}

TEST(Hostname, SingleLabelAndDigitsAreNames) {
  expect_name("localhost", "localhost");
  expect_name("123", "123");
  expect_name("1.2.3", "1.2.3");  // three parts: not a dotted quad
}

TEST(Hostname, LabelOf63BytesIsAccepted) {
  expect_name(label(63) + ".com", label(63) + ".com");
}

TEST(Hostname, NameOf253BytesIsAccepted) {
  const std::string n = name_of_length(253);
  ASSERT_EQ(n.size(), 253u);
  expect_name(n, n);
  expect_name(n + ".", n);  // 254 with the trailing dot: still 253
}

TEST(Hostname, NormalizationIsIdempotent) {
  for (std::string_view in : {"Www.Example.COM.", "a", "x-y.z_w.Q"}) {
    const Normalized once = normalize(in);
    ASSERT_TRUE(once.ok);
    expect_name(once.name, once.name);
  }
}

TEST(Hostname, WorksAtCompileTime) {
  constexpr auto r = [] {
    char buf[kHostnameBufSize] = {};
    const auto n = normalize_hostname("AB.c.", buf);
    return n && n->len == 4 && buf[0] == 'a' && buf[1] == 'b' && buf[2] == '.' && buf[3] == 'c';
  }();
  static_assert(r);
}

// --- IP literals ----------------------------------------------------------------

TEST(Hostname, Ipv4DottedQuadIsALiteral) {
  expect_kind("1.2.3.4", HostnameKind::kIpv4Literal);
  expect_kind("255.255.255.255", HostnameKind::kIpv4Literal);
  expect_kind("0.0.0.0.", HostnameKind::kIpv4Literal);  // trailing dot
}

TEST(Hostname, NotDottedQuadsAreNames) {
  expect_kind("1.2.3", HostnameKind::kName);
  expect_kind("256.1.1.1", HostnameKind::kName);  // a part above 255
  expect_kind("1.2.3.4.5", HostnameKind::kName);
  expect_kind("1.2.3.1000", HostnameKind::kName);
  expect_kind("1.2.3.a", HostnameKind::kName);
}

TEST(Hostname, Ipv6Literals) {
  for (std::string_view ip : {"::1", "[::1]", "fe80::1", "FE80::1", "::", "2001:db8::1",
                              "1:2:3:4:5:6:7:8", "[2001:db8:0:0:0:0:0:1]",
                              "1::", "1:2:3:4:5:6:7::", "::ffff:192.0.2.1", "64:ff9b::1.2.3.4"}) {
    expect_kind(ip, HostnameKind::kIpv6Literal);
  }
}

// Strings with colons that are not IPv6 addresses are bad names, not "IP
// literals" (which the parser treats as "no SNI" and routes to the default).
TEST(Hostname, ColonStringsThatAreNotIpv6AreRefused) {
  for (std::string_view s :
       {"a:b", "dead:beef", "bad.cafe:443", "1.2.3.4:443", ":::", ":1", "1:", "1::2::3", "12345::1",
        "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8::", "::ffff:1.2.3", "::1.2.3.4.5", "[::1", "::1]",
        "[]", "[:]", "g::1", "::1]]"}) {
    expect_error(s, HostnameError::kBadChar);
  }
}

// --- Failures --------------------------------------------------------------------

TEST(Hostname, EmptyIsRefused) {
  expect_error("", HostnameError::kEmpty);
  expect_error(".", HostnameError::kEmpty);
}

TEST(Hostname, EmptyLabelsAreRefused) {
  for (std::string_view s : {"..", "a..b", ".a", "a.b..", ".", "a.b...", ".a."}) {
    if (s == ".") continue;  // kEmpty, above
    expect_error(s, HostnameError::kEmptyLabel);
  }
}

TEST(Hostname, LabelOf64BytesIsRefused) {
  expect_error(label(64) + ".com", HostnameError::kLabelTooLong);
  expect_error("com." + label(64), HostnameError::kLabelTooLong);
  expect_error(label(64), HostnameError::kLabelTooLong);
}

TEST(Hostname, NameOf254BytesIsRefused) {
  const std::string n = name_of_length(254);
  ASSERT_EQ(n.size(), 254u);
  expect_error(n, HostnameError::kTooLong);
  expect_error(n + ".", HostnameError::kTooLong);
  expect_error(name_of_length(1000), HostnameError::kTooLong);
}

TEST(Hostname, NulIsRefusedAnywhere) {
  expect_error(std::string_view("\0", 1), HostnameError::kNul);
  expect_error(std::string_view("a\0b.com", 7), HostnameError::kNul);
  expect_error(std::string_view("a.com\0", 6), HostnameError::kNul);
  // NUL wins over the length check: a NUL is the attack, not the length.
  std::string long_nul = name_of_length(300);
  long_nul[280] = '\0';
  expect_error(long_nul, HostnameError::kNul);
}

TEST(Hostname, NonAsciiIsRefused) {
  expect_error("caf\xc3\xa9.com", HostnameError::kNonAscii);
  expect_error("\x80", HostnameError::kNonAscii);
  expect_error("a.\xff", HostnameError::kNonAscii);
}

TEST(Hostname, BadCharactersAreRefused) {
  for (std::string_view s :
       {"a b.com", "a/b.com", "*.example.com", "a*b.com", "a@b.com", "a%b", "a\tb", "a\x7f", "a!b",
        "a+b.com", "a,b", "a;b", "a=b", "~a", "a\\b", "a\"b", "a'b", "a#b"}) {
    expect_error(s, HostnameError::kBadChar);
  }
}

TEST(Hostname, EveryByteOutsideTheAlphabetIsRefused) {
  for (int c = 1; c < 256; ++c) {
    const char ch = static_cast<char>(c);
    const bool allowed = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                         (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.';
    const std::string s = std::string("x") + ch + "y.com";
    const Normalized n = normalize(s);
    if (allowed) {
      EXPECT_TRUE(n.ok) << c;
    } else {
      EXPECT_FALSE(n.ok) << c;
      EXPECT_EQ(n.error, c >= 0x80 ? HostnameError::kNonAscii : HostnameError::kBadChar) << c;
    }
  }
}

}  // namespace
}  // namespace lode

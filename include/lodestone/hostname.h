// Host name normalization shared by every reader of a server name: the
// ClientHello parser (dataplane) and the route-table builder (control plane)
// must agree byte for byte, or a name could route one way and select a
// certificate another. Pure, no allocation.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "lodestone/result.h"

namespace lode {

inline constexpr size_t kMaxHostnameLen = 253;  // RFC 1035, without the trailing dot
inline constexpr size_t kMaxLabelLen = 63;
inline constexpr size_t kHostnameBufSize = 256;

enum class HostnameError : uint8_t {
  kEmpty,         // zero length (or only ".")
  kTooLong,       // > 253 bytes after the trailing dot is stripped
  kEmptyLabel,    // "a..b", ".a"
  kLabelTooLong,  // a label > 63 bytes
  kNul,           // a NUL byte anywhere
  kNonAscii,      // a byte >= 0x80
  kBadChar,       // ASCII that is not a letter, digit, '-' or '_'
};

constexpr std::string_view to_string(HostnameError e) noexcept {
  switch (e) {
    case HostnameError::kEmpty: return "empty host name";
    case HostnameError::kTooLong: return "host name longer than 253 bytes";
    case HostnameError::kEmptyLabel: return "empty label in host name";
    case HostnameError::kLabelTooLong: return "label longer than 63 bytes";
    case HostnameError::kNul: return "NUL byte in host name";
    case HostnameError::kNonAscii: return "non-ASCII byte in host name";
    case HostnameError::kBadChar: return "character not allowed in host name";
  }
  return "bad host name";
}

enum class HostnameKind : uint8_t { kName, kIpv4Literal, kIpv6Literal };

struct NormalizedHostname {
  HostnameKind kind = HostnameKind::kName;
  uint16_t len = 0;  // bytes written to the output buffer (0 for IP literals)
};

namespace detail {

constexpr bool is_ipv4_literal(std::string_view s) noexcept {
  // Exactly four dot-separated decimal parts, each 0..255, 1..3 digits.
  int parts = 0;
  size_t i = 0;
  while (true) {
    unsigned v = 0;
    size_t digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      v = v * 10 + static_cast<unsigned>(s[i] - '0');
      ++digits;
      ++i;
      if (digits > 3) return false;
    }
    if (digits == 0 || v > 255) return false;
    ++parts;
    if (i == s.size()) return parts == 4;
    if (s[i] != '.' || parts == 4) return false;
    ++i;
  }
}

// Each byte of a host name: itself lower-cased when allowed (letters, digits,
// '-', '_', '.'), 0 when not.
inline constexpr std::array<char, 256> kHostByte = [] {
  std::array<char, 256> t{};
  for (int c = 'a'; c <= 'z'; ++c) t[c] = static_cast<char>(c);
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = static_cast<char>(c | 0x20);
  for (int c = '0'; c <= '9'; ++c) t[c] = static_cast<char>(c);
  t['-'] = '-';
  t['_'] = '_';
  t['.'] = '.';
  return t;
}();

constexpr bool is_hex_digit(char c) noexcept {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// RFC 4291 section 2.2 text form, optionally in brackets: eight groups of 1..4
// hex digits separated by ':', or fewer with one "::" standing for at least
// one zero group; the last two groups may be an IPv4 dotted quad.
constexpr bool is_ipv6_literal(std::string_view s) noexcept {
  if (s.size() >= 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
  int groups = 0;
  bool gap = false;
  size_t i = 0;
  if (s.size() >= 2 && s[0] == ':' && s[1] == ':') {
    gap = true;
    i = 2;
    if (i == s.size()) return true;  // "::"
  }
  while (true) {
    size_t j = i;
    while (j < s.size() && is_hex_digit(s[j])) ++j;
    if (j < s.size() && s[j] == '.') {  // an IPv4 tail ends the address
      if (!is_ipv4_literal(s.substr(i))) return false;
      groups += 2;
      break;
    }
    if (j == i || j - i > 4) return false;
    ++groups;
    i = j;
    if (i == s.size()) break;
    if (s[i] != ':' || ++i == s.size()) return false;  // a lone trailing ':'
    if (s[i] == ':') {
      if (gap) return false;  // at most one "::"
      gap = true;
      if (++i == s.size()) break;
    }
  }
  return gap ? groups <= 7 : groups == 8;
}

}  // namespace detail

// Normalizes a DNS host name: ASCII letters, digits, '-' and '_' in non-empty
// labels of at most 63 bytes; upper case folded to lower case; one trailing dot
// stripped; at most 253 bytes. `out` must hold kHostnameBufSize bytes. IPv4 and
// IPv6 literals are recognised and reported as such (nothing written).
[[nodiscard]] constexpr Result<NormalizedHostname, HostnameError> normalize_hostname(
    std::string_view in, char* out) noexcept {
  if (!in.empty() && in.back() == '.') in.remove_suffix(1);
  if (in.empty()) return unexpected(HostnameError::kEmpty);
  if (in.size() > kMaxHostnameLen) {
    for (char c : in) {
      if (c == '\0') return unexpected(HostnameError::kNul);
    }
    return unexpected(HostnameError::kTooLong);
  }
  size_t label = 0;
  bool saw_colon = false;
  for (size_t i = 0; i < in.size(); ++i) {
    const auto c = static_cast<unsigned char>(in[i]);
    const char o = detail::kHostByte[c];
    out[i] = o;
    if (o == '.') {
      if (label == 0) return unexpected(HostnameError::kEmptyLabel);
      label = 0;
      continue;
    }
    if (o == 0) [[unlikely]] {
      if (c == 0) return unexpected(HostnameError::kNul);
      if (c >= 0x80) return unexpected(HostnameError::kNonAscii);
      if (c == ':' || c == '[' || c == ']') {
        saw_colon = true;
        continue;  // decided below: an IPv6 literal or a bad character
      }
      return unexpected(HostnameError::kBadChar);
    }
    if (++label > kMaxLabelLen) return unexpected(HostnameError::kLabelTooLong);
  }
  if (saw_colon) {
    if (detail::is_ipv6_literal(in)) return NormalizedHostname{HostnameKind::kIpv6Literal, 0};
    return unexpected(HostnameError::kBadChar);
  }
  if (label == 0) return unexpected(HostnameError::kEmptyLabel);  // "a.." ends in an empty label
  if (detail::is_ipv4_literal(in)) return NormalizedHostname{HostnameKind::kIpv4Literal, 0};
  return NormalizedHostname{HostnameKind::kName, static_cast<uint16_t>(in.size())};
}

}  // namespace lode

#include "dataplane/tls/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "dataplane/tls/crc32c.h"

namespace lode::proxy {
namespace {

constexpr std::string_view kV1Signature = "PROXY ";
constexpr std::string_view kV2Signature{"\r\n\r\n\0\r\nQUIT\n", 12};
constexpr size_t kTlvHeaderLen = 3;  // type, length_hi, length_lo
constexpr size_t kSslFixedLen = 5;   // client, verify
constexpr size_t kCrcLen = 4;

// Address block sizes by family nibble: UNSPEC, INET, INET6, UNIX.
constexpr size_t kAddrLen[4] = {0, 12, 36, 2 * kUnixPathLen};

enum TlvType : uint8_t {
  kTlvAlpn = 0x01,
  kTlvAuthority = 0x02,
  kTlvCrc32c = 0x03,
  kTlvNoop = 0x04,
  kTlvUniqueId = 0x05,
  kTlvSsl = 0x20,
  kSubSslVersion = 0x21,
  kSubSslCn = 0x22,
  kSubSslCipher = 0x23,
  kSubSslSigAlg = 0x24,
  kSubSslKeyAlg = 0x25,
  kTlvNetns = 0x30,
};

inline uint16_t load_u16(const uint8_t* p) noexcept {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}
inline uint32_t load_u32(const uint8_t* p) noexcept {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}
inline void store_u16(uint8_t* p, size_t v) noexcept {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void store_u32(uint8_t* p, uint32_t v) noexcept {
  store_u16(p, v >> 16);
  store_u16(p + 2, v & 0xffff);
}
inline std::string_view as_text(std::span<const uint8_t> s) noexcept {
  return {reinterpret_cast<const char*>(s.data()), s.size()};
}

// How far `prefix` agrees with `sig`: the length of the common prefix.
size_t common_prefix(std::span<const uint8_t> prefix, std::string_view sig) noexcept {
  const size_t n = std::min(prefix.size(), sig.size());
  size_t i = 0;
  while (i < n && prefix[i] == static_cast<uint8_t>(sig[i])) ++i;
  return i;
}

// A decimal port: "0" or 1-5 digits without a leading zero, at most 65535.
bool parse_port(std::string_view s, uint16_t& port) noexcept {
  if (s.empty() || s.size() > 5 || (s[0] == '0' && s.size() > 1)) return false;
  uint32_t v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > 65535) return false;
  port = static_cast<uint16_t>(v);
  return true;
}

// An address of `want` (kInet / kInet6) through inet_pton on a NUL-terminated
// local copy; an address of the other family is told apart from garbage.
ProxyErrorCode parse_ip(std::string_view s, Family want, Address& out) noexcept {
  char buf[INET6_ADDRSTRLEN];  // 46: the longest IPv6 text plus NUL
  // A NUL would end the copy early and let inet_pton accept a prefix.
  if (s.size() >= sizeof(buf) || s.find('\0') != s.npos) return ProxyErrorCode::kV1BadAddress;
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  const int af = want == Family::kInet ? AF_INET : AF_INET6;
  if (inet_pton(af, buf, out.ip.data()) == 1) {
    out.family = want;
    return ProxyErrorCode::kNone;
  }
  uint8_t scratch[16];
  if (inet_pton(af == AF_INET ? AF_INET6 : AF_INET, buf, scratch) == 1)
    return ProxyErrorCode::kV1FamilyMismatch;
  return ProxyErrorCode::kV1BadAddress;
}

// Walks a TLV list that must fill `area` exactly:
//   struct pp2_tlv { uint8_t type; uint8_t length_hi; uint8_t length_lo; uint8_t value[0]; };
// `base` is the stream offset of area[0]. visit(type, value, offset) gets the
// stream offset of the TLV and returns kOk to go on or the failure to stop with.
struct TlvFailure {
  ProxyErrorCode code = ProxyErrorCode::kNone;
  size_t offset = 0;
};
constexpr TlvFailure kOk{};

template <class Visit>
TlvFailure walk_tlvs(std::span<const uint8_t> area, size_t base, Visit&& visit) noexcept {
  size_t pos = 0;
  while (pos < area.size()) {
    const size_t left = area.size() - pos;
    if (left < kTlvHeaderLen) return {ProxyErrorCode::kV2TlvTruncated, base + pos};
    const uint8_t type = area[pos];
    const size_t len = load_u16(&area[pos + 1]);
    if (len > left - kTlvHeaderLen) return {ProxyErrorCode::kV2TlvOverrun, base + pos};
    const TlvFailure f = visit(type, area.subspan(pos + kTlvHeaderLen, len), base + pos);
    if (f.code != ProxyErrorCode::kNone) return f;
    pos += kTlvHeaderLen + len;
  }
  return kOk;
}

// Records a TLV type in a 64-bit set; true if it was there already.
bool seen_before(uint64_t& seen, unsigned bit) noexcept {
  const uint64_t mask = uint64_t{1} << bit;
  const bool dup = (seen & mask) != 0;
  seen |= mask;
  return dup;
}

// PP2_TYPE_SSL:
//   struct pp2_tlv_ssl { uint8_t client; uint32_t verify; struct pp2_tlv sub_tlv[0]; };
// `v` is the value of the TLV at stream offset `tlv_off`.
TlvFailure parse_ssl(std::span<const uint8_t> v, size_t tlv_off, SslTlv& ssl) noexcept {
  if (v.size() < kSslFixedLen) return {ProxyErrorCode::kV2BadTlvLength, tlv_off};
  ssl.client = v[0];
  ssl.verify = load_u32(&v[1]);
  uint64_t seen = 0;
  return walk_tlvs(
      v.subspan(kSslFixedLen), tlv_off + kTlvHeaderLen + kSslFixedLen,
      [&](uint8_t type, std::span<const uint8_t> value, size_t off) noexcept -> TlvFailure {
        std::optional<std::string_view>* slot = nullptr;
        switch (type) {
          case kSubSslVersion:
            slot = &ssl.version;
            break;
          case kSubSslCn:
            slot = &ssl.cn;
            break;
          case kSubSslCipher:
            slot = &ssl.cipher;
            break;
          case kSubSslSigAlg:
            slot = &ssl.sig_alg;
            break;
          case kSubSslKeyAlg:
            slot = &ssl.key_alg;
            break;
          default:
            return kOk;  // unknown sub-TLV: skipped
        }
        if (seen_before(seen, type - kSubSslVersion)) return {ProxyErrorCode::kV2DuplicateTlv, off};
        *slot = as_text(value);
        return kOk;
      });
}

}  // namespace

std::string_view to_string(ProxyErrorCode code) noexcept {
  switch (code) {
    case ProxyErrorCode::kNone:
      return "no error";
    case ProxyErrorCode::kNotProxy:
      return "not a PROXY protocol header";
    case ProxyErrorCode::kV1TooLong:
      return "v1: no CRLF within 107 bytes";
    case ProxyErrorCode::kV1BadLineEnd:
      return "v1: line does not end with CRLF";
    case ProxyErrorCode::kV1BadProtocol:
      return "v1: protocol is not TCP4, TCP6 or UNKNOWN";
    case ProxyErrorCode::kV1BadSpacing:
      return "v1: fields not separated by single spaces";
    case ProxyErrorCode::kV1MissingField:
      return "v1: line ends before the destination port";
    case ProxyErrorCode::kV1TrailingData:
      return "v1: data after the destination port";
    case ProxyErrorCode::kV1BadAddress:
      return "v1: invalid address";
    case ProxyErrorCode::kV1FamilyMismatch:
      return "v1: address of the wrong family for the protocol";
    case ProxyErrorCode::kV1BadPort:
      return "v1: invalid port";
    case ProxyErrorCode::kV2BadVersion:
      return "v2: version is not 2";
    case ProxyErrorCode::kV2BadCommand:
      return "v2: command is not LOCAL or PROXY";
    case ProxyErrorCode::kV2BadFamily:
      return "v2: unknown address family";
    case ProxyErrorCode::kV2BadTransport:
      return "v2: unknown transport for the family";
    case ProxyErrorCode::kV2TooLong:
      return "v2: header longer than the configured cap";
    case ProxyErrorCode::kV2AddressTooShort:
      return "v2: length too short for the address family";
    case ProxyErrorCode::kV2TlvTruncated:
      return "v2: partial TLV header at the end";
    case ProxyErrorCode::kV2TlvOverrun:
      return "v2: TLV length runs past the end";
    case ProxyErrorCode::kV2DuplicateTlv:
      return "v2: duplicate TLV";
    case ProxyErrorCode::kV2BadTlvLength:
      return "v2: TLV value of the wrong size";
    case ProxyErrorCode::kV2CrcMismatch:
      return "v2: CRC32C mismatch";
  }
  return "unknown";
}

std::string_view to_string(WriteError e) noexcept {
  switch (e) {
    case WriteError::kBufferTooSmall:
      return "buffer too small";
    case WriteError::kFieldTooLong:
      return "field too long";
    case WriteError::kHeaderTooLong:
      return "header longer than 65535 bytes";
    case WriteError::kFamilyMismatch:
      return "source and destination families differ";
    case WriteError::kBadTransport:
      return "transport does not fit the address family";
  }
  return "unknown";
}

// --- Address ------------------------------------------------------------------

Address Address::inet(std::array<uint8_t, 4> ip4, uint16_t port) noexcept {
  Address a;
  a.family = Family::kInet;
  a.port = port;
  std::copy(ip4.begin(), ip4.end(), a.ip.begin());
  return a;
}

Address Address::inet6(const std::array<uint8_t, 16>& ip6, uint16_t port) noexcept {
  Address a;
  a.family = Family::kInet6;
  a.port = port;
  a.ip = ip6;
  return a;
}

Address Address::from_sockaddr(const sockaddr* sa, socklen_t len) noexcept {
  Address a;
  if (sa == nullptr) return a;
  if (sa->sa_family == AF_INET && len >= sizeof(sockaddr_in)) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    a.family = Family::kInet;
    a.port = ntohs(in->sin_port);
    std::memcpy(a.ip.data(), &in->sin_addr, 4);
  } else if (sa->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    a.family = Family::kInet6;
    a.port = ntohs(in6->sin6_port);
    std::memcpy(a.ip.data(), &in6->sin6_addr, 16);
  } else if (sa->sa_family == AF_UNIX && len > offsetof(sockaddr_un, sun_path)) {
    const auto* un = reinterpret_cast<const sockaddr_un*>(sa);
    const size_t n = std::min<size_t>(len - offsetof(sockaddr_un, sun_path), sizeof(un->sun_path));
    a.family = Family::kUnix;
    a.unix_path = {reinterpret_cast<const uint8_t*>(un->sun_path), n};
  }
  return a;
}

socklen_t Address::to_sockaddr(sockaddr_storage& out) const noexcept {
  std::memset(&out, 0, sizeof(out));
  switch (family) {
    case Family::kInet: {
      auto* in = reinterpret_cast<sockaddr_in*>(&out);
      in->sin_family = AF_INET;
      in->sin_port = htons(port);
      std::memcpy(&in->sin_addr, ip.data(), 4);
      return sizeof(sockaddr_in);
    }
    case Family::kInet6: {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&out);
      in6->sin6_family = AF_INET6;
      in6->sin6_port = htons(port);
      std::memcpy(&in6->sin6_addr, ip.data(), 16);
      return sizeof(sockaddr_in6);
    }
    case Family::kUnix: {
      auto* un = reinterpret_cast<sockaddr_un*>(&out);
      un->sun_family = AF_UNIX;
      // Trailing NUL padding is not part of the name (keeps abstract names intact).
      size_t n = std::min(unix_path.size(), sizeof(un->sun_path));
      while (n > 0 && unix_path[n - 1] == 0) --n;
      std::memcpy(un->sun_path, unix_path.data(), n);
      return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n);
    }
    case Family::kUnspec:
      break;
  }
  return 0;
}

bool operator==(const Address& a, const Address& b) noexcept {
  return a.family == b.family && a.port == b.port && a.ip == b.ip &&
         std::equal(a.unix_path.begin(), a.unix_path.end(), b.unix_path.begin(), b.unix_path.end());
}

// --- Parser -------------------------------------------------------------------

ProxyHeaderParser::Kind ProxyHeaderParser::detect(std::span<const uint8_t> prefix) noexcept {
  if (prefix.empty()) return Kind::kNeedMore;
  for (const auto& [sig, kind] :
       {std::pair{kV1Signature, Kind::kV1}, std::pair{kV2Signature, Kind::kV2}}) {
    const size_t n = common_prefix(prefix, sig);
    if (n == sig.size()) return kind;
    if (n == prefix.size()) return Kind::kNeedMore;  // a proper prefix of this signature
  }
  return Kind::kNotProxy;
}

void ProxyHeaderParser::reset() noexcept {
  status_ = ParseStatus::kNeedMore;
  kind_ = Kind::kNeedMore;
  scan_ = total_ = 0;
  header_ = ProxyHeader{};
  error_ = ProxyError{};
}

ParseStatus ProxyHeaderParser::fail(ProxyErrorCode code, size_t offset) noexcept {
  error_ = ProxyError{code, static_cast<uint32_t>(offset)};
  header_ = ProxyHeader{};
  status_ = ParseStatus::kError;
  return status_;
}

ParseStatus ProxyHeaderParser::parse(std::span<const uint8_t> stream) noexcept {
  if (status_ != ParseStatus::kNeedMore) return status_;
  if (kind_ == Kind::kNeedMore) {
    kind_ = detect(stream);
    if (kind_ == Kind::kNeedMore) return status_;
    if (kind_ == Kind::kNotProxy) {
      // The first byte that fits neither signature.
      const size_t at =
          std::max(common_prefix(stream, kV1Signature), common_prefix(stream, kV2Signature));
      return fail(ProxyErrorCode::kNotProxy, at);
    }
  }
  return kind_ == Kind::kV1 ? parse_v1(stream) : parse_v2(stream);
}

// v1: one US-ASCII line of at most 107 bytes, CRLF included. Only the bytes
// not looked at before are scanned for the CR.
ParseStatus ProxyHeaderParser::parse_v1(std::span<const uint8_t> stream) noexcept {
  const size_t limit = std::min(stream.size(), kV1MaxLen);
  for (size_t i = scan_; i < limit; ++i) {
    if (stream[i] == '\n') return fail(ProxyErrorCode::kV1BadLineEnd, i);
    if (stream[i] != '\r') continue;
    if (i + 1 == kV1MaxLen) return fail(ProxyErrorCode::kV1TooLong, i);  // the LF would be byte 108
    if (i + 1 == stream.size()) {
      scan_ = static_cast<uint32_t>(i);  // look at this CR again with its next byte
      return status_;
    }
    if (stream[i + 1] != '\n') return fail(ProxyErrorCode::kV1BadLineEnd, i + 1);
    return finish_v1(as_text(stream.first(i + 2)));
  }
  scan_ = static_cast<uint32_t>(limit);
  if (limit == kV1MaxLen) return fail(ProxyErrorCode::kV1TooLong, kV1MaxLen - 1);
  return status_;
}

//   "PROXY" SP ( "TCP4" | "TCP6" ) SP src-addr SP dst-addr SP src-port SP dst-port CRLF
//   "PROXY" SP "UNKNOWN" [ SP <anything but CRLF> ] CRLF
// `line` is the whole line, CRLF included, with no other CR or LF in it.
ParseStatus ProxyHeaderParser::finish_v1(std::string_view line) noexcept {
  const size_t end = line.size() - 2;  // the CR
  size_t pos = kV1Signature.size();
  size_t at = pos;
  std::string_view field;
  // The next field runs to the next space or the CR; it must not be empty.
  auto next_field = [&]() noexcept -> ProxyErrorCode {
    at = pos;
    const size_t stop = std::min(line.find(' ', pos), end);
    if (stop == pos)
      return pos == end ? ProxyErrorCode::kV1MissingField : ProxyErrorCode::kV1BadSpacing;
    field = line.substr(pos, stop - pos);
    pos = stop;
    return ProxyErrorCode::kNone;
  };
  // A single space, then a field.
  auto space_field = [&]() noexcept -> ProxyErrorCode {
    if (pos == end) {
      at = pos;
      return ProxyErrorCode::kV1MissingField;
    }
    ++pos;
    return next_field();
  };

  if (const auto e = next_field(); e != ProxyErrorCode::kNone) {
    return fail(e == ProxyErrorCode::kV1MissingField ? ProxyErrorCode::kV1BadProtocol : e, at);
  }
  header_.version = 1;
  header_.command = Command::kProxy;
  header_.header_len = static_cast<uint32_t>(line.size());
  if (field == "UNKNOWN") {
    status_ = ParseStatus::kDone;  // the rest of the line is ignored
    return status_;
  }
  Family family;
  if (field == "TCP4") {
    family = Family::kInet;
  } else if (field == "TCP6") {
    family = Family::kInet6;
  } else {
    return fail(ProxyErrorCode::kV1BadProtocol, at);
  }

  Address src, dst;
  for (Address* a : {&src, &dst}) {
    if (const auto e = space_field(); e != ProxyErrorCode::kNone) return fail(e, at);
    if (const auto e = parse_ip(field, family, *a); e != ProxyErrorCode::kNone) return fail(e, at);
  }
  for (Address* a : {&src, &dst}) {
    if (const auto e = space_field(); e != ProxyErrorCode::kNone) return fail(e, at);
    if (!parse_port(field, a->port)) return fail(ProxyErrorCode::kV1BadPort, at);
  }
  if (pos != end) return fail(ProxyErrorCode::kV1TrailingData, pos);

  header_.family = family;
  header_.transport = Transport::kStream;
  header_.source = src;
  header_.destination = dst;
  status_ = ParseStatus::kDone;
  return status_;
}

//   struct proxy_hdr_v2 {
//       uint8_t sig[12];  /* \x0D \x0A \x0D \x0A \x00 \x0D \x0A \x51 \x55 \x49 \x54 \x0A */
//       uint8_t ver_cmd;  /* protocol version (high nibble) and command (low nibble) */
//       uint8_t fam;      /* address family (high nibble) and transport (low nibble) */
//       uint16_t len;     /* number of following bytes, network order */
//   };
// The fixed part is checked as soon as its 16 bytes are here; the rest waits
// until the whole header is, then is parsed in one pass.
ParseStatus ProxyHeaderParser::parse_v2(std::span<const uint8_t> stream) noexcept {
  if (total_ == 0) {
    if (stream.size() < kV2HeaderLen) return status_;
    const uint8_t ver_cmd = stream[12];
    const uint8_t fam = stream[13];
    if ((ver_cmd >> 4) != 2) return fail(ProxyErrorCode::kV2BadVersion, 12);
    if ((ver_cmd & 0x0f) > 1) return fail(ProxyErrorCode::kV2BadCommand, 12);
    const unsigned family = fam >> 4;
    const unsigned transport = fam & 0x0f;
    if (family > 3) return fail(ProxyErrorCode::kV2BadFamily, 13);
    // Defined: 0x00 UNSPEC, and STREAM or DGRAM over INET, INET6, UNIX.
    if (transport > 2 || (family == 0) != (transport == 0))
      return fail(ProxyErrorCode::kV2BadTransport, 13);
    const size_t len = load_u16(&stream[14]);
    if (kV2HeaderLen + len > limits_.max_v2_len) return fail(ProxyErrorCode::kV2TooLong, 14);
    if (len < kAddrLen[family]) return fail(ProxyErrorCode::kV2AddressTooShort, 14);
    total_ = static_cast<uint32_t>(kV2HeaderLen + len);
  }
  if (stream.size() < total_) return status_;
  return finish_v2(stream.first(total_));
}

//   union proxy_addr {
//       struct { uint32_t src_addr; uint32_t dst_addr;
//                uint16_t src_port; uint16_t dst_port; } ipv4_addr;     /* 12 bytes */
//       struct { uint8_t src_addr[16]; uint8_t dst_addr[16];
//                uint16_t src_port; uint16_t dst_port; } ipv6_addr;     /* 36 bytes */
//       struct { uint8_t src_addr[108]; uint8_t dst_addr[108]; } unix_addr;  /* 216 bytes */
//   };
// followed by TLVs up to 16 + len. `hdr` is the whole header; the fixed part
// was checked by parse_v2.
ParseStatus ProxyHeaderParser::finish_v2(std::span<const uint8_t> hdr) noexcept {
  ProxyHeader& h = header_;  // fail() clears it again on error
  h.version = 2;
  h.command = static_cast<Command>(hdr[12] & 0x0f);
  h.family = static_cast<Family>(hdr[13] >> 4);
  h.transport = static_cast<Transport>(hdr[13] & 0x0f);
  h.header_len = static_cast<uint32_t>(hdr.size());
  const size_t addr_len = kAddrLen[static_cast<unsigned>(h.family)];
  const uint8_t* a = &hdr[kV2HeaderLen];

  if (h.command == Command::kProxy) {
    switch (h.family) {
      case Family::kInet:
        h.source = Address::inet({a[0], a[1], a[2], a[3]}, load_u16(a + 8));
        h.destination = Address::inet({a[4], a[5], a[6], a[7]}, load_u16(a + 10));
        break;
      case Family::kInet6: {
        std::array<uint8_t, 16> src, dst;
        std::memcpy(src.data(), a, 16);
        std::memcpy(dst.data(), a + 16, 16);
        h.source = Address::inet6(src, load_u16(a + 32));
        h.destination = Address::inet6(dst, load_u16(a + 34));
        break;
      }
      case Family::kUnix:
        h.source.family = h.destination.family = Family::kUnix;
        h.source.unix_path = hdr.subspan(kV2HeaderLen, kUnixPathLen);
        h.destination.unix_path = hdr.subspan(kV2HeaderLen + kUnixPathLen, kUnixPathLen);
        break;
      case Family::kUnspec:
        break;
    }
  }

  const size_t tlv_base = kV2HeaderLen + addr_len;
  Tlvs& t = h.tlvs;
  t.raw = hdr.subspan(tlv_base);
  uint64_t seen = 0;
  size_t crc_at = 0;  // stream offset of the CRC32C value, 0 if none
  const TlvFailure f = walk_tlvs(
      t.raw, tlv_base,
      [&](uint8_t type, std::span<const uint8_t> v, size_t off) noexcept -> TlvFailure {
        if (type == kTlvNoop) {
          ++t.noop_count;
          return kOk;
        }
        const bool known = type == kTlvAlpn || type == kTlvAuthority || type == kTlvCrc32c ||
                           type == kTlvUniqueId || type == kTlvSsl || type == kTlvNetns;
        if (!known) {
          ++t.unknown_count;  // custom 0xE0-0xEF and anything newer: skipped
          return kOk;
        }
        if (seen_before(seen, type & 0x3f)) return {ProxyErrorCode::kV2DuplicateTlv, off};
        switch (type) {
          case kTlvAlpn:
            t.alpn = as_text(v);
            break;
          case kTlvAuthority:
            t.authority = as_text(v);
            break;
          case kTlvNetns:
            t.netns = as_text(v);
            break;
          case kTlvCrc32c:
            if (v.size() != kCrcLen) return {ProxyErrorCode::kV2BadTlvLength, off};
            t.crc32c = load_u32(v.data());
            crc_at = off + kTlvHeaderLen;
            break;
          case kTlvUniqueId:
            if (v.size() > kV2MaxUniqueIdLen) return {ProxyErrorCode::kV2BadTlvLength, off};
            t.unique_id = v;
            break;
          case kTlvSsl: {
            SslTlv ssl;
            if (const TlvFailure sf = parse_ssl(v, off, ssl); sf.code != ProxyErrorCode::kNone)
              return sf;
            t.ssl = ssl;
            break;
          }
          default:
            break;
        }
        return kOk;
      });
  if (f.code != ProxyErrorCode::kNone) return fail(f.code, f.offset);

  if (t.crc32c) {
    // The checksum covers the whole header with the CRC32C value zeroed; the
    // value is stored in network byte order (as HAProxy does).
    static constexpr uint8_t kZeros[kCrcLen] = {};
    uint32_t crc = crc32c(hdr.first(crc_at));
    crc = crc32c_extend(crc, kZeros);
    crc = crc32c_extend(crc, hdr.subspan(crc_at + kCrcLen));
    if (crc != *t.crc32c) return fail(ProxyErrorCode::kV2CrcMismatch, crc_at - kTlvHeaderLen);
  }
  status_ = ParseStatus::kDone;
  return status_;
}

// --- Writers ------------------------------------------------------------------

namespace {

// Appends TLVs to a buffer whose size was checked beforehand.
class TlvWriter {
 public:
  explicit TlvWriter(uint8_t* p) noexcept : p_(p) {}
  uint8_t* put(uint8_t type, size_t len) noexcept {  // returns where the value goes
    p_[0] = type;
    store_u16(p_ + 1, len);
    uint8_t* value = p_ + kTlvHeaderLen;
    p_ = value + len;
    return value;
  }
  void put(uint8_t type, std::span<const uint8_t> v) noexcept {
    if (!v.empty())
      std::memcpy(put(type, v.size()), v.data(), v.size());
    else
      put(type, 0);
  }
  void put(uint8_t type, std::string_view v) noexcept {
    put(type, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()), v.size()));
  }
  uint8_t* pos() const noexcept { return p_; }

 private:
  uint8_t* p_;
};

struct SslSub {
  uint8_t type;
  const std::optional<std::string_view>* value;
};

}  // namespace

Result<size_t, WriteError> write_v2(const ProxyHeaderSpec& spec, std::span<uint8_t> out) noexcept {
  // Family and address block.
  Family family = Family::kUnspec;
  Transport transport = Transport::kUnspec;
  if (spec.command == Command::kProxy) {
    if (spec.source.family != spec.destination.family)
      return unexpected(WriteError::kFamilyMismatch);
    family = spec.source.family;
    transport = family == Family::kUnspec ? Transport::kUnspec : spec.transport;
    if (family != Family::kUnspec && transport == Transport::kUnspec)
      return unexpected(WriteError::kBadTransport);
    if (family == Family::kUnix && (spec.source.unix_path.size() > kUnixPathLen ||
                                    spec.destination.unix_path.size() > kUnixPathLen)) {
      return unexpected(WriteError::kFieldTooLong);
    }
  }
  const size_t addr_len = kAddrLen[static_cast<unsigned>(family)];

  // Sizes first, so nothing is written unless everything fits.
  constexpr size_t kMaxValue = 0xffff;
  size_t tlv_len = 0;
  for (const auto* v : {&spec.alpn, &spec.authority, &spec.netns}) {
    if (!*v) continue;
    if ((*v)->size() > kMaxValue) return unexpected(WriteError::kFieldTooLong);
    tlv_len += kTlvHeaderLen + (*v)->size();
  }
  if (spec.unique_id) {
    if (spec.unique_id->size() > kV2MaxUniqueIdLen) return unexpected(WriteError::kFieldTooLong);
    tlv_len += kTlvHeaderLen + spec.unique_id->size();
  }
  SslSub subs[5] = {};
  size_t ssl_len = 0;
  if (spec.ssl) {
    const SslTlv& s = *spec.ssl;
    subs[0] = {kSubSslVersion, &s.version};
    subs[1] = {kSubSslCn, &s.cn};
    subs[2] = {kSubSslCipher, &s.cipher};
    subs[3] = {kSubSslSigAlg, &s.sig_alg};
    subs[4] = {kSubSslKeyAlg, &s.key_alg};
    ssl_len = kSslFixedLen;
    for (const SslSub& sub : subs) {
      if (!*sub.value) continue;
      if ((*sub.value)->size() > kMaxValue) return unexpected(WriteError::kFieldTooLong);
      ssl_len += kTlvHeaderLen + (*sub.value)->size();
    }
    if (ssl_len > kMaxValue) return unexpected(WriteError::kFieldTooLong);
    tlv_len += kTlvHeaderLen + ssl_len;
  }
  if (spec.crc32c) tlv_len += kTlvHeaderLen + kCrcLen;

  size_t total = kV2HeaderLen + addr_len + tlv_len;
  size_t pad = 0;
  if (spec.align > 1) {
    pad = (spec.align - total % spec.align) % spec.align;
    while (pad != 0 && pad < kTlvHeaderLen) pad += spec.align;  // a NOOP TLV is 3 bytes at least
  }
  total += pad;
  if (total - kV2HeaderLen > kMaxValue) return unexpected(WriteError::kHeaderTooLong);
  if (out.size() < total) return unexpected(WriteError::kBufferTooSmall);

  uint8_t* p = out.data();
  std::memcpy(p, kV2Signature.data(), kV2Signature.size());
  p[12] = static_cast<uint8_t>(0x20 | static_cast<unsigned>(spec.command));
  p[13] =
      static_cast<uint8_t>(static_cast<unsigned>(family) << 4 | static_cast<unsigned>(transport));
  store_u16(p + 14, total - kV2HeaderLen);
  uint8_t* a = p + kV2HeaderLen;
  switch (family) {
    case Family::kInet:
      std::memcpy(a, spec.source.ip.data(), 4);
      std::memcpy(a + 4, spec.destination.ip.data(), 4);
      store_u16(a + 8, spec.source.port);
      store_u16(a + 10, spec.destination.port);
      break;
    case Family::kInet6:
      std::memcpy(a, spec.source.ip.data(), 16);
      std::memcpy(a + 16, spec.destination.ip.data(), 16);
      store_u16(a + 32, spec.source.port);
      store_u16(a + 34, spec.destination.port);
      break;
    case Family::kUnix:
      std::memset(a, 0, 2 * kUnixPathLen);
      if (!spec.source.unix_path.empty()) {
        std::memcpy(a, spec.source.unix_path.data(), spec.source.unix_path.size());
      }
      if (!spec.destination.unix_path.empty()) {
        std::memcpy(a + kUnixPathLen, spec.destination.unix_path.data(),
                    spec.destination.unix_path.size());
      }
      break;
    case Family::kUnspec:
      break;
  }

  TlvWriter w(a + addr_len);
  if (spec.alpn) w.put(kTlvAlpn, *spec.alpn);
  if (spec.authority) w.put(kTlvAuthority, *spec.authority);
  if (spec.unique_id) w.put(kTlvUniqueId, *spec.unique_id);
  if (spec.ssl) {
    uint8_t* v = w.put(kTlvSsl, ssl_len);
    v[0] = spec.ssl->client;
    store_u32(v + 1, spec.ssl->verify);
    TlvWriter sw(v + kSslFixedLen);
    for (const SslSub& sub : subs) {
      if (*sub.value) sw.put(sub.type, **sub.value);
    }
  }
  if (spec.netns) w.put(kTlvNetns, *spec.netns);
  uint8_t* crc_value = nullptr;
  if (spec.crc32c) {
    crc_value = w.put(kTlvCrc32c, kCrcLen);
    std::memset(crc_value, 0, kCrcLen);
  }
  if (pad != 0) std::memset(w.put(kTlvNoop, pad - kTlvHeaderLen), 0, pad - kTlvHeaderLen);
  if (crc_value != nullptr) store_u32(crc_value, crc32c({p, total}));
  return total;
}

Result<size_t, WriteError> write_v1(const ProxyHeaderSpec& spec, std::span<uint8_t> out) noexcept {
  char line[kV1MaxLen + 1];
  size_t n = 0;
  const Family family = spec.source.family;
  if (spec.command != Command::kProxy || (family != Family::kInet && family != Family::kInet6)) {
    constexpr std::string_view kUnknown = "PROXY UNKNOWN\r\n";
    std::memcpy(line, kUnknown.data(), kUnknown.size());
    n = kUnknown.size();
  } else {
    if (spec.destination.family != family) return unexpected(WriteError::kFamilyMismatch);
    const int af = family == Family::kInet ? AF_INET : AF_INET6;
    char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
    if (inet_ntop(af, spec.source.ip.data(), src, sizeof(src)) == nullptr ||
        inet_ntop(af, spec.destination.ip.data(), dst, sizeof(dst)) == nullptr) {
      return unexpected(WriteError::kFieldTooLong);  // cannot happen with these buffer sizes
    }
    const int len = std::snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n",
                                  family == Family::kInet ? "TCP4" : "TCP6", src, dst,
                                  static_cast<unsigned>(spec.source.port),
                                  static_cast<unsigned>(spec.destination.port));
    if (len < 0 || static_cast<size_t>(len) > kV1MaxLen)
      return unexpected(WriteError::kFieldTooLong);
    n = static_cast<size_t>(len);
  }
  if (out.size() < n) return unexpected(WriteError::kBufferTooSmall);
  std::memcpy(out.data(), line, n);
  return n;
}

}  // namespace lode::proxy

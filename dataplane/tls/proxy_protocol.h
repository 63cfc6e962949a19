// PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): an
// incremental, strict, capped parser and the writers. Pure: no I/O; the only
// libc calls are inet_pton / inet_ntop on bounded local copies.
//
// Where it is used: the TLS workers under the dpdk front accept a PROXY v2
// header (VIP, client address, SNI as AUTHORITY) in front of the replayed
// ClientHello; the kernel front can accept one from a load balancer.
//
// Parsing follows the ClientHello parser: the caller keeps every byte received
// so far in one contiguous buffer and calls parse() again with the longer
// buffer as bytes arrive. The buffer may move between calls but must hold the
// same prefix; the parser keeps offsets, never pointers, between calls. Each
// call costs O(new bytes) (v1 line scan) or O(1) (v2, until the whole header
// is in, then one pass over it), so a header fed one byte at a time is parsed
// in linear time.
//
// Views in ProxyHeader (TLVs, UNIX paths) point into the buffer passed to the
// call that returned kDone and stay valid while that buffer is unchanged.
//
// Strict: every deviation from the spec is an error with its own code and the
// stream offset where it was found, decided as soon as the bytes decide it
// (a signature mismatch at the first wrong byte, the v2 fixed part at byte 16,
// a v1 line without CRLF at byte 107). Capped: v1 at 107 bytes, v2 at
// ProxyLimits::max_v2_len. The CRC32C TLV, when present, is verified; its
// value is in network byte order, as HAProxy writes and checks it.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "lodestone/parse_status.h"
#include "lodestone/result.h"

namespace lode::proxy {

inline constexpr size_t kV1MaxLen = 107;    // the whole line, "\r\n" included
inline constexpr size_t kV2HeaderLen = 16;  // signature, ver_cmd, fam, len
inline constexpr size_t kV2MaxUniqueIdLen = 128;
inline constexpr size_t kUnixPathLen = 108;  // each path of the v2 UNIX address block

enum class Command : uint8_t { kLocal = 0, kProxy = 1 };
enum class Family : uint8_t { kUnspec = 0, kInet = 1, kInet6 = 2, kUnix = 3 };
enum class Transport : uint8_t { kUnspec = 0, kStream = 1, kDgram = 2 };

// One end of the proxied connection.
struct Address {
  Family family = Family::kUnspec;
  uint16_t port = 0;                   // host byte order (kInet, kInet6)
  std::array<uint8_t, 16> ip{};        // network byte order; kInet uses the first 4 bytes
  std::span<const uint8_t> unix_path;  // kUnix: the raw path bytes (NUL-padded), a view

  [[nodiscard]] static Address inet(std::array<uint8_t, 4> ip4, uint16_t port) noexcept;
  [[nodiscard]] static Address inet6(const std::array<uint8_t, 16>& ip6, uint16_t port) noexcept;
  // kInet, kInet6 or kUnix from a socket address (the UNIX path is a view into *sa);
  // kUnspec for anything else or a length too short for the family.
  [[nodiscard]] static Address from_sockaddr(const sockaddr* sa, socklen_t len) noexcept;

  // Fills `out` (sockaddr_in / sockaddr_in6 / sockaddr_un) for logging or
  // connect(); returns the length to pass with it, 0 for kUnspec.
  [[nodiscard]] socklen_t to_sockaddr(sockaddr_storage& out) const noexcept;

  // Same family, port and address bytes (the UNIX path compared by content).
  friend bool operator==(const Address& a, const Address& b) noexcept;
};

// PP2_TYPE_SSL: client bits, verify result, and the sub-TLVs that were present.
struct SslTlv {
  static constexpr uint8_t kClientSsl = 0x01;
  static constexpr uint8_t kClientCertConn = 0x02;
  static constexpr uint8_t kClientCertSess = 0x04;

  uint8_t client = 0;
  uint32_t verify = 0;                      // 0: a client certificate was presented and verified
  std::optional<std::string_view> version;  // PP2_SUBTYPE_SSL_VERSION  0x21
  std::optional<std::string_view> cn;       // PP2_SUBTYPE_SSL_CN       0x22
  std::optional<std::string_view> cipher;   // PP2_SUBTYPE_SSL_CIPHER   0x23
  std::optional<std::string_view> sig_alg;  // PP2_SUBTYPE_SSL_SIG_ALG  0x24
  std::optional<std::string_view> key_alg;  // PP2_SUBTYPE_SSL_KEY_ALG  0x25
};

// The v2 TLVs Lodestone knows. Each well-known type appears at most once.
struct Tlvs {
  std::optional<std::string_view> alpn;               // PP2_TYPE_ALPN       0x01
  std::optional<std::string_view> authority;          // PP2_TYPE_AUTHORITY  0x02 (the SNI)
  std::optional<uint32_t> crc32c;                     // PP2_TYPE_CRC32C     0x03 (verified)
  std::optional<std::span<const uint8_t>> unique_id;  // PP2_TYPE_UNIQUE_ID  0x05 (<= 128 bytes)
  std::optional<SslTlv> ssl;                          // PP2_TYPE_SSL        0x20
  std::optional<std::string_view> netns;              // PP2_TYPE_NETNS      0x30
  uint16_t noop_count = 0;                            // PP2_TYPE_NOOP 0x04, ignored
  uint16_t unknown_count = 0;    // other types (custom 0xE0-0xEF included), skipped
  std::span<const uint8_t> raw;  // the whole TLV area, for callers that want a custom type
};

struct ProxyHeader {
  uint8_t version = 0;  // 1 or 2
  Command command = Command::kLocal;
  // As sent. v1 TCP4/TCP6 give kInet/kInet6 + kStream; v1 UNKNOWN gives kUnspec.
  Family family = Family::kUnspec;
  Transport transport = Transport::kUnspec;
  // Filled only for command kProxy with a known family; otherwise kUnspec and
  // the receiver uses the connection's own endpoints.
  Address source;
  Address destination;
  uint32_t header_len = 0;  // stream offset of the first payload byte
  Tlvs tlvs;                // v2 only

  bool has_addresses() const noexcept { return source.family != Family::kUnspec; }
};

enum class ProxyErrorCode : uint8_t {
  kNone,
  kNotProxy,  // neither the v1 nor the v2 signature
  // v1
  kV1TooLong,         // no CRLF within 107 bytes
  kV1BadLineEnd,      // CR not followed by LF, or a bare LF
  kV1BadProtocol,     // not TCP4, TCP6 or UNKNOWN
  kV1BadSpacing,      // an empty field: two spaces, or a leading space
  kV1MissingField,    // the line ends before the destination port
  kV1TrailingData,    // anything after the destination port
  kV1BadAddress,      // not an address of either family
  kV1FamilyMismatch,  // an address of the other family (TCP4 with an IPv6 address)
  kV1BadPort,         // empty, not decimal, leading zero, or above 65535
  // v2
  kV2BadVersion,       // version nibble is not 2
  kV2BadCommand,       // command nibble is not LOCAL (0) or PROXY (1)
  kV2BadFamily,        // address family nibble above UNIX (3)
  kV2BadTransport,     // transport nibble above DGRAM (2), or UNSPEC paired with a non-UNSPEC
  kV2TooLong,          // 16 + len above ProxyLimits::max_v2_len
  kV2AddressTooShort,  // len smaller than the family's address block
  kV2TlvTruncated,     // fewer than 3 bytes left for a TLV header
  kV2TlvOverrun,       // a TLV's length runs past the end of its container
  kV2DuplicateTlv,     // a well-known TLV (or SSL sub-TLV) sent twice
  kV2BadTlvLength,     // CRC32C not 4 bytes, UNIQUE_ID over 128, SSL under 5
  kV2CrcMismatch,      // CRC32C TLV does not match the header
};
inline constexpr size_t kProxyErrorCodeCount =
    static_cast<size_t>(ProxyErrorCode::kV2CrcMismatch) + 1;

[[nodiscard]] std::string_view to_string(ProxyErrorCode code) noexcept;

struct ProxyError {
  ProxyErrorCode code = ProxyErrorCode::kNone;
  uint32_t offset = 0;  // stream offset of the byte (or field) that is wrong

  std::string_view reason() const noexcept { return to_string(code); }
};

struct ProxyLimits {
  size_t max_v2_len = 4096;  // whole v2 header, 16-byte fixed part included
};

class ProxyHeaderParser {
 public:
  enum class Kind : uint8_t { kNeedMore, kV1, kV2, kNotProxy };

  explicit ProxyHeaderParser(ProxyLimits limits = {}) noexcept : limits_(limits) {}
  ProxyHeaderParser(const ProxyHeaderParser&) = delete;
  ProxyHeaderParser& operator=(const ProxyHeaderParser&) = delete;

  // Feeds the whole stream received so far. After kDone or kError the parser
  // keeps answering the same until reset().
  [[nodiscard]] ParseStatus parse(std::span<const uint8_t> stream) noexcept;

  const ProxyHeader& header() const noexcept { return header_; }  // after kDone
  const ProxyError& error() const noexcept { return error_; }     // after kError
  ParseStatus status() const noexcept { return status_; }
  void reset() noexcept;

  // Which protocol the first bytes of a connection start: kNeedMore while
  // they are a proper prefix of a signature (an empty prefix included).
  [[nodiscard]] static Kind detect(std::span<const uint8_t> prefix) noexcept;

 private:
  ParseStatus fail(ProxyErrorCode code, size_t offset) noexcept;
  ParseStatus parse_v1(std::span<const uint8_t> stream) noexcept;
  ParseStatus finish_v1(std::string_view line) noexcept;
  ParseStatus parse_v2(std::span<const uint8_t> stream) noexcept;
  ParseStatus finish_v2(std::span<const uint8_t> hdr) noexcept;

  ProxyLimits limits_;
  ParseStatus status_ = ParseStatus::kNeedMore;
  Kind kind_ = Kind::kNeedMore;
  uint32_t scan_ = 0;   // v1: next byte to look at for the CR
  uint32_t total_ = 0;  // v2: 16 + len, once the fixed part was read
  ProxyHeader header_;
  ProxyError error_;
};

// --- Writers ------------------------------------------------------------------

enum class WriteError : uint8_t {
  kBufferTooSmall,  // `out` cannot hold the header
  kFieldTooLong,    // a TLV value over 65535 bytes, UNIQUE_ID over 128, a UNIX path over 108
  kHeaderTooLong,   // the v2 len field would exceed 65535
  kFamilyMismatch,  // source and destination of different families
  kBadTransport,    // kUnspec with an address family, or an address family with kUnspec
};

[[nodiscard]] std::string_view to_string(WriteError e) noexcept;

// What to put in a header. Views are read during the call only.
struct ProxyHeaderSpec {
  Command command = Command::kProxy;
  Transport transport = Transport::kStream;
  // The family comes from the addresses (both the same). kLocal writes no
  // address block (family UNSPEC); kProxy with kUnspec addresses too.
  Address source;
  Address destination;
  std::optional<std::string_view> alpn;
  std::optional<std::string_view> authority;
  std::optional<std::span<const uint8_t>> unique_id;
  std::optional<SslTlv> ssl;
  std::optional<std::string_view> netns;
  bool crc32c = false;  // add a CRC32C TLV computed over the whole header
  uint16_t align = 0;   // pad with a NOOP TLV to a multiple of this total length (0, 1: none)
};

// Writes a v2 header: TLVs in the order ALPN, AUTHORITY, UNIQUE_ID, SSL,
// NETNS, CRC32C, NOOP. Returns the bytes written.
[[nodiscard]] Result<size_t, WriteError> write_v2(const ProxyHeaderSpec& spec,
                                                  std::span<uint8_t> out) noexcept;

// Writes a v1 line: "PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n" for
// kProxy with kInet/kInet6 addresses, "PROXY UNKNOWN\r\n" otherwise. TLVs,
// transport and alignment are ignored.
[[nodiscard]] Result<size_t, WriteError> write_v1(const ProxyHeaderSpec& spec,
                                                  std::span<uint8_t> out) noexcept;

}  // namespace lode::proxy

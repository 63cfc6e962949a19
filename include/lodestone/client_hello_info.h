// What Lodestone learns from a TLS ClientHello, and what went wrong when it
// could not. Filled by lode::tls::ClientHelloParser (dataplane/tls); read by
// the router, the workers, the explain tool and the statistics.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "lodestone/hostname.h"
#include "lodestone/tls_alert.h"

namespace lode::tls {

inline constexpr size_t kMaxAlpnProtocols = 16;
inline constexpr size_t kMaxKeyShares = 8;

// GREASE (RFC 8701): 0x0A0A, 0x1A1A, ..., 0xFAFA.
constexpr bool is_grease(uint16_t v) noexcept { return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff); }

// Named groups that carry a post-quantum KEM.
constexpr bool is_post_quantum_group(uint16_t g) noexcept {
  switch (g) {
    case 0x11EB:  // SecP256r1MLKEM768
    case 0x11EC:  // X25519MLKEM768
    case 0x11ED:  // SecP384r1MLKEM1024
    case 0x6399:  // X25519Kyber768Draft00
    case 0x0200:  // MLKEM512
    case 0x0201:  // MLKEM768
    case 0x0202:  // MLKEM1024
      return true;
    default:
      return false;
  }
}

// A successfully parsed ClientHello. Views point into the caller's stream
// buffer (or, for a hello spread over several records, into the parser's
// reassembly buffer) and stay valid while both are unchanged.
struct ClientHelloInfo {
  // server_name (RFC 6066), normalized: lower case, no trailing dot.
  char sni_buf[kHostnameBufSize];
  uint16_t sni_len = 0;
  bool has_sni = false;          // a usable host name was sent
  bool sni_ip_literal = false;   // an IP literal was sent: treated as no SNI

  uint16_t record_version = 0;   // of the first record
  uint16_t legacy_version = 0;   // ClientHello.legacy_version
  uint16_t max_version = 0;      // highest non-GREASE of supported_versions, else legacy_version
  bool offers_tls13 = false;

  std::span<const uint8_t> random;
  std::span<const uint8_t> session_id;
  std::span<const uint8_t> cipher_suites;       // raw u16 list
  std::span<const uint8_t> supported_versions;  // raw u16 list (may be empty)
  std::span<const uint8_t> supported_groups;    // raw u16 list (may be empty)
  std::span<const uint8_t> signature_algorithms;
  std::span<const uint8_t> alpn_raw;            // ProtocolNameList body

  std::array<std::string_view, kMaxAlpnProtocols> alpn;  // non-GREASE order kept
  uint8_t alpn_count = 0;

  std::array<uint16_t, kMaxKeyShares> key_share_groups;  // non-GREASE
  uint8_t key_share_count = 0;

  bool status_request = false;  // status_request (OCSP) extension present
  bool session_ticket = false;  // session_ticket extension with a ticket in it
  bool psk = false;             // pre_shared_key present (TLS 1.3 resumption)
  bool early_data = false;      // early_data extension present
  bool ech = false;             // encrypted_client_hello (0xfe0d) present
  bool pq_group_offered = false;
  bool pq_key_share = false;
  bool extensions_present = false;  // the extensions block exists (may be empty)
  uint16_t extension_count = 0;     // including GREASE

  uint32_t hello_len = 0;   // handshake message length, header included
  uint32_t records = 0;     // TLS records the hello spans
  uint32_t end_offset = 0;  // stream offset just past the last record of the hello

  std::string_view sni() const noexcept { return {sni_buf, sni_len}; }
};

enum class HelloError : uint8_t {
  // Not TLS at all: classified so the router can act on it.
  kSslv2Hello,        // SSLv2-compatible hello (first byte has the high bit set)
  kHttpRequest,       // plain HTTP on the TLS port
  kProxyHeader,       // a PROXY protocol header where TLS was expected
  kNotTls,            // anything else
  // TLS record layer.
  kUnexpectedContentType,  // a record that is not a handshake before the hello completed
  kBadRecordVersion,
  kRecordTooLong,
  kEmptyRecord,
  kNotClientHello,         // first handshake message is not a ClientHello
  kHelloTooLarge,          // exceeds the configured cap
  kTrailingHandshakeData,  // more handshake bytes after the hello in its last record
  // ClientHello body.
  kBadLegacyVersion,  // legacy_version major is not 3
  kTruncatedHello,   // a length runs past the end of the message
  kBadSessionId,
  kBadCipherSuites,
  kBadCompression,
  kTrailingBytes,    // bytes after the extensions block, or inside a block
  kBadExtensions,    // the extensions block is malformed
  kDuplicateExtension,
  kTooManyExtensions,
  kBadServerName,    // server_name extension malformed
  kMultipleServerNames,
  kBadHostName,      // host_name bytes are not a valid DNS name
  kBadAlpn,
  kTooManyAlpn,
  kBadSupportedVersions,
  kBadSupportedGroups,
  kBadKeyShare,
  kBadSignatureAlgorithms,
  kPskNotLast,
  kOutOfMemory,
};

constexpr std::string_view to_string(HelloError e) noexcept {
  switch (e) {
    case HelloError::kSslv2Hello: return "sslv2_hello";
    case HelloError::kHttpRequest: return "http_request";
    case HelloError::kProxyHeader: return "proxy_protocol_header";
    case HelloError::kNotTls: return "not_tls";
    case HelloError::kUnexpectedContentType: return "unexpected_content_type";
    case HelloError::kBadRecordVersion: return "bad_record_version";
    case HelloError::kRecordTooLong: return "record_too_long";
    case HelloError::kEmptyRecord: return "empty_record";
    case HelloError::kNotClientHello: return "not_client_hello";
    case HelloError::kHelloTooLarge: return "hello_too_large";
    case HelloError::kTrailingHandshakeData: return "trailing_handshake_data";
    case HelloError::kBadLegacyVersion: return "bad_legacy_version";
    case HelloError::kTruncatedHello: return "truncated_hello";
    case HelloError::kBadSessionId: return "bad_session_id";
    case HelloError::kBadCipherSuites: return "bad_cipher_suites";
    case HelloError::kBadCompression: return "bad_compression_methods";
    case HelloError::kTrailingBytes: return "trailing_bytes";
    case HelloError::kBadExtensions: return "bad_extensions_block";
    case HelloError::kDuplicateExtension: return "duplicate_extension";
    case HelloError::kTooManyExtensions: return "too_many_extensions";
    case HelloError::kBadServerName: return "bad_server_name_extension";
    case HelloError::kMultipleServerNames: return "multiple_server_names";
    case HelloError::kBadHostName: return "bad_host_name";
    case HelloError::kBadAlpn: return "bad_alpn";
    case HelloError::kTooManyAlpn: return "too_many_alpn_protocols";
    case HelloError::kBadSupportedVersions: return "bad_supported_versions";
    case HelloError::kBadSupportedGroups: return "bad_supported_groups";
    case HelloError::kBadKeyShare: return "bad_key_share";
    case HelloError::kBadSignatureAlgorithms: return "bad_signature_algorithms";
    case HelloError::kPskNotLast: return "pre_shared_key_not_last";
    case HelloError::kOutOfMemory: return "out_of_memory";
  }
  return "unknown";
}

// True for the classifications of input that is not TLS at all.
constexpr bool is_not_tls(HelloError e) noexcept {
  return e == HelloError::kSslv2Hello || e == HelloError::kHttpRequest ||
         e == HelloError::kProxyHeader || e == HelloError::kNotTls;
}

struct HelloParseError {
  HelloError code = HelloError::kNotTls;
  TlsAlert alert = TlsAlert::kDecodeError;  // what a server answers
  // Where it went wrong: a stream offset for record-layer faults and for
  // not-TLS input; an offset inside the handshake message (its 4-byte header
  // included) when in_message is set.
  uint32_t offset = 0;
  bool in_message = false;
  HostnameError hostname_error = HostnameError::kEmpty;  // detail for kBadHostName
};

}  // namespace lode::tls

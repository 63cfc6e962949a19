// Server-side OpenSSL objects for the TLS workers: one SSL_CTX per certificate,
// built from PEM (files or bytes) and the process-wide TlsSettings, and the
// per-connection SSL made from the certificate the worker already chose.
//
// No sockets, no I/O besides reading the PEM files: the worker feeds the SSL
// through its own BIO; the tests run it against a client in memory.
//
// Certificate selection: the worker parses the ClientHello itself, routes by
// the normalized SNI and picks the SSL_CTX of that route's certificate before
// OpenSSL sees a byte. new_server_ssl() records the name the worker routed by;
// a servername callback installed on every server SSL_CTX re-checks that the
// name OpenSSL parsed, normalized the same way, is that name, and aborts the
// handshake with unrecognized_name (112) if not, so a ClientHello that two
// parsers read differently can never be served another tenant's certificate.
//
// Errors: load functions return a message that names the file (or the PEM
// source label) and what was expected. Private key bytes never appear in a
// message; the buffers that held them are cleansed.
#pragma once

#include <openssl/ssl.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lodestone/result.h"

namespace lode::tls {

class TicketKeys;

struct SslCtxDeleter {
  void operator()(SSL_CTX* ctx) const noexcept { SSL_CTX_free(ctx); }
};
struct SslDeleter {
  void operator()(SSL* ssl) const noexcept { SSL_free(ssl); }
};
struct SslSessionDeleter {
  void operator()(SSL_SESSION* s) const noexcept { SSL_SESSION_free(s); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;
using SslPtr = std::unique_ptr<SSL, SslDeleter>;
using SslSessionPtr = std::unique_ptr<SSL_SESSION, SslSessionDeleter>;

// Protocol versions by their wire value (the same numbers as OpenSSL's
// TLS1_x_VERSION constants).
enum class TlsVersion : uint16_t {
  kTls10 = 0x0301,
  kTls11 = 0x0302,
  kTls12 = 0x0303,
  kTls13 = 0x0304,
};

// ECDHE key exchange with AEAD ciphers only (no CBC, no static RSA, no DHE).
inline constexpr std::string_view kDefaultCipherList =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
inline constexpr std::string_view kDefaultGroups = "X25519:P-256:P-384";

// Plain data, filled from the configuration. Every server SSL_CTX of the
// process is built with the same settings. Always on, not configurable: no
// compression, no renegotiation (SSL_OP_NO_RENEGOTIATION set,
// SSL_OP_ALLOW_CLIENT_RENEGOTIATION cleared: OpenSSL 3.0 has no
// SSL_OP_NO_CLIENT_RENEGOTIATION), server cipher preference,
// SSL_MODE_RELEASE_BUFFERS, SSL_OP_ENABLE_KTLS (unless `ktls` is off), no server-side session cache (stateless tickets only).
struct TlsSettings {
  TlsVersion min_version = TlsVersion::kTls12;
  TlsVersion max_version = TlsVersion::kTls13;
  std::string cipher_list{kDefaultCipherList};  // TLS 1.2 and below (OpenSSL syntax)
  std::string ciphersuites;                     // TLS 1.3; empty = OpenSSL's default
  std::string groups{kDefaultGroups};
  // ALPN protocols in server preference order (RFC 7301); empty = the server
  // ignores the client's ALPN extension. When the client offers ALPN and
  // nothing overlaps, the handshake goes on without ALPN, unless alpn_strict
  // (then the no_application_protocol alert, 120).
  std::vector<std::string> alpn;
  bool alpn_strict = false;
  bool session_tickets = true;
  // Kernel TLS (SSL_OP_ENABLE_KTLS): the workers give the record layer to the
  // kernel where it has the tls ULP; off = user-space TLS everywhere.
  bool ktls = true;
  // Where kTLS is not used: after the handshake the workers seal and open the
  // client's records themselves and free the connection's SSL (AEAD suites;
  // dataplane/worker/record_layer.h); off = OpenSSL's record layer.
  bool own_records = true;
  std::chrono::seconds session_timeout{300};  // session lifetime; TLS 1.3 ticket lifetime hint
};

// Where a certificate comes from: a PEM chain (leaf first, then the
// intermediates) and a PEM private key (ECDSA or RSA, not encrypted). For the
// *_pem loaders these are labels used in messages only.
struct CertFiles {
  std::string cert_path;
  std::string key_path;
};

// What a certificate says, for logs, warnings and directory checks.
struct CertInfo {
  std::string subject;  // RFC 2253 one-liner, control characters escaped
  std::string issuer;
  // The names it is valid for: its DNS subjectAltNames, or its CN where it
  // has none (RFC 6125 6.4.4: with any DNS SAN, clients ignore the CN); lower
  // case, without duplicates; a wildcard stays "*.example.com". Entries that
  // are not valid host names are left out.
  std::vector<std::string> names;
  std::chrono::sys_seconds not_before{};
  std::chrono::sys_seconds not_after{};
  std::string key_type;  // "EC P-256", "RSA 2048", ...

  [[nodiscard]] bool expired_at(std::chrono::sys_seconds now) const noexcept {
    return now > not_after;
  }
  [[nodiscard]] bool not_yet_valid_at(std::chrono::sys_seconds now) const noexcept {
    return now < not_before;
  }
};

// A loaded certificate: its SSL_CTX (shared by every connection that is served
// this certificate on one worker) and what the certificate says.
struct ServerCert {
  SslCtxPtr ctx;
  CertInfo info;
};

// Reads both files and builds the certificate's SSL_CTX: chain, key, the key
// matches the leaf (SSL_CTX_check_private_key), settings, ALPN selection, the
// SNI re-check, and session tickets through `ticket_keys` (shared by all
// workers so a ticket resumes on any of them). Without ticket keys and with
// session_tickets on, OpenSSL's own per-SSL_CTX keys are used: tickets then
// resume only on the same SSL_CTX. The SSL_CTX keeps a reference to the keys.
[[nodiscard]] Result<ServerCert, std::string> load_server_cert(
    const CertFiles& files, const TlsSettings& settings, std::shared_ptr<TicketKeys> ticket_keys);

// The same from PEM bytes already in memory (the control plane's snapshot);
// `source` only names them in messages.
[[nodiscard]] Result<ServerCert, std::string> load_server_cert_pem(
    std::string_view chain_pem, std::string_view key_pem, const CertFiles& source,
    const TlsSettings& settings, std::shared_ptr<TicketKeys> ticket_keys);

// load_server_cert() without the certificate's description.
[[nodiscard]] Result<SslCtxPtr, std::string> make_server_ctx(
    const CertFiles& files, const TlsSettings& settings, std::shared_ptr<TicketKeys> ticket_keys);

// Checks the settings alone (versions, cipher strings, groups, ALPN list),
// e.g. when a configuration is validated; the message names the setting.
[[nodiscard]] Result<void, std::string> validate_settings(const TlsSettings& settings);

// The description of a certificate, or of the leaf installed in a server
// SSL_CTX (empty CertInfo if it has none).
[[nodiscard]] CertInfo describe_cert(const X509* cert);
[[nodiscard]] CertInfo describe_server_ctx(const SSL_CTX* ctx);

// A server SSL for one connection, made from the SSL_CTX the worker chose for
// `routed_host`: the normalized SNI the worker routed by, or empty when the
// ClientHello carried no SNI (a default route). The handshake is aborted with
// unrecognized_name when OpenSSL's reading of the SNI differs. nullptr when
// `chosen` is not a server SSL_CTX made here, `routed_host` is not a valid
// host name, or memory runs out.
[[nodiscard]] SslPtr new_server_ssl(SSL_CTX* chosen, std::string_view routed_host) noexcept;

// True once the SNI re-check aborted this connection's handshake (for the
// worker's counter of ambiguous hellos).
[[nodiscard]] bool sni_mismatch(const SSL* ssl) noexcept;

// The ALPN protocol negotiated on a connection, empty if none.
[[nodiscard]] std::string_view selected_alpn(const SSL* ssl) noexcept;

// Serializes an ALPN list into the wire format (length-prefixed strings), or
// an error naming the bad entry (empty, longer than 255 bytes, more than 16).
[[nodiscard]] Result<std::string, std::string> alpn_wire(const std::vector<std::string>& protocols);

namespace detail {
// Drains this thread's OpenSSL error queue into one line ("" if empty).
std::string take_openssl_errors();
// Reads a whole file of at most `max_bytes`; the message names the file.
Result<std::string, std::string> read_small_file(const std::string& path, size_t max_bytes);
// Applies min/max version to a context; the message names the setting.
Result<void, std::string> set_versions(SSL_CTX* ctx, TlsVersion min, TlsVersion max);
}  // namespace detail

}  // namespace lode::tls

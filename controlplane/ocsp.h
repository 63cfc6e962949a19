// OCSP stapling and CRL checks for the control plane (issue 4).
//
// What the control plane does with it, per served certificate:
//   1. ocsp_urls(cert) (AIA, or a configured override) and make_ocsp_request;
//   2. fetch_ocsp (libcurl, RFC 6960 POST or RFC 5019 GET);
//   3. verify_ocsp_response: only a verified response is cached or stapled;
//   4. OcspDiskCache::store, so a restart staples on its very first handshake
//      (anything loaded back is verified again before use);
//   5. next_refresh / backoff schedule the next fetch; stapleable() says
//      whether the response may still be sent to clients.
// Nothing here keeps state or threads: the scheduler that calls it lives in
// the control plane. Every function reports failure as a message that says
// what was being done and what went wrong; none throws.
//
// Decisions:
// - RFC 6961 (status_request_v2, "multi": the status of the intermediates in
//   the handshake) is obsolete: TLS 1.3 replaced it (RFC 8446 4.4.2.1 lets a
//   status ride on any CertificateEntry), and OpenSSL implements neither v2 nor
//   statuses for anything but the leaf. Lodestone staples the leaf's response
//   (status_request) and checks the intermediates itself, in the control
//   plane, with OCSP (the intermediate's AIA, its issuer the root) or, because
//   CAs are retiring OCSP, with the CRL distribution points (check_crl): a
//   chain with a revoked member is not published.
// - Requests use a SHA-1 CertID (RFC 5019 section 2.1.1: what every responder
//   answers) and no nonce by default (RFC 5019: responders pre-sign and cache;
//   a nonce defeats that and many ignore it).
// - The response must be signed by the issuer itself or by a responder
//   certificate that the issuer signed and that carries id-kp-OCSPSigning
//   (RFC 6960 4.2.2.2). The trust store for that check holds the issuer alone,
//   as a partial-chain anchor (it is usually an intermediate), and explicit
//   root trust is never a way in (OCSP_NOEXPLICIT), so no other CA's key and no
//   other certificate of the issuer can vouch for a status. Chain times are
//   checked at `now`.
// - Freshness (checked at `now`, not the wall clock, so tests and the
//   scheduler agree): thisUpdate and producedAt may be at most `max_skew` in
//   the future; nextUpdate must be after thisUpdate and still in the future,
//   with no skew allowance (we never staple what a client would call expired);
//   a response without nextUpdate counts as expiring 24 h after thisUpdate
//   (kOcspMaxAgeWithoutNextUpdate, as mozilla::pkix does).
// - A revoked or unknown status is a successful verification: the caller
//   decides (policy lenient / strict / must-staple); only kGood is stapleable.
//
// Refresh rules (next_refresh):
//   - with nextUpdate: at the midpoint of [thisUpdate, nextUpdate], but never
//     later than nextUpdate - 1 h when the window is longer than 1 h;
//   - without nextUpdate: now + 1 h;
//   - never earlier than now + 60 s (a responder is not hammered by a response
//     that is already near or past its end).
// Back-off after failures (backoff): 5 s doubling per failure up to 10 min,
// minus up to 25 % random jitter so that many certificates spread out.
#pragma once

#include <openssl/x509.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lodestone/result.h"

namespace lode::cp {

using std::chrono::sys_seconds;

inline constexpr size_t kMaxOcspResponseBytes = 64 * 1024;
inline constexpr std::chrono::seconds kDefaultOcspSkew{300};
inline constexpr std::chrono::seconds kOcspMaxAgeWithoutNextUpdate{24 * 3600};

// --- Certificates ------------------------------------------------------------

// DER OCSPRequest for one certificate: a single SHA-1 CertID of (cert,
// issuer), unsigned, with a random nonce only when asked.
Result<std::string, std::string> make_ocsp_request(X509* cert, X509* issuer,
                                                   bool add_nonce = false);

// The certificate's AIA OCSP URIs, in order (empty when none).
std::vector<std::string> ocsp_urls(X509* cert);

// The certificate's CRL distribution point URIs (full names only), in order,
// without duplicates.
std::vector<std::string> crl_urls(X509* cert);

// True when the certificate carries the TLS feature extension (RFC 7633,
// id-pe-tlsfeature) listing status_request (5): "must-staple".
bool must_staple(X509* cert);

// --- HTTP ------------------------------------------------------------------

enum class OcspMethod { kPost, kGet };

// RFC 5019 GET URL: url + "/" + URL-encoded base64 of the DER request (no "/"
// added when url ends with one).
std::string ocsp_get_url(const std::string& url, std::string_view request_der);

// Fetches an OCSP response. POST (RFC 6960 appendix A: Content-Type
// application/ocsp-request) or GET (ocsp_get_url; RFC 5019 recommends GET when
// that URL stays under 255 bytes). Only http and https, also for redirects
// (at most 3, POST stays POST). The reply must be HTTP 200 with Content-Type
// application/ocsp-response and at most max_bytes. `timeout` bounds the
// connect and the whole exchange. The error names the method, the URL and what
// went wrong. The body is not verified here: see verify_ocsp_response.
Result<std::string, std::string> fetch_ocsp(const std::string& url, std::string_view request_der,
                                            OcspMethod method, std::chrono::milliseconds timeout,
                                            size_t max_bytes = kMaxOcspResponseBytes);

// GET of any http(s) URL (a CRL): HTTP 200, at most max_bytes, same timeout
// and redirect rules; no Content-Type check (CRLs are served under several).
Result<std::string, std::string> fetch_url(const std::string& url,
                                           std::chrono::milliseconds timeout, size_t max_bytes);

// --- Verification ----------------------------------------------------------

struct OcspStatus {
  enum class Cert { kGood, kRevoked, kUnknown };
  Cert status = Cert::kUnknown;
  sys_seconds this_update{};
  sys_seconds next_update{};  // the epoch when the response has none
  sys_seconds produced_at{};
  sys_seconds revoked_at{};    // kRevoked only
  int revocation_reason = -1;  // CRLReason when given (1 = keyCompromise)
  std::string der;             // the verified response, as stapled
};

std::string_view to_string(OcspStatus::Cert s) noexcept;

// Verifies a DER OCSPResponse for `cert` issued by `issuer` at time `now`
// (the rules are in the comment at the top). Returns the certificate's status,
// good, revoked or unknown; any failed check is an error.
Result<OcspStatus, std::string> verify_ocsp_response(
    std::string_view der, X509* cert, X509* issuer, sys_seconds now,
    std::chrono::seconds max_skew = kDefaultOcspSkew);

// When the response stops being usable: nextUpdate, or thisUpdate + 24 h.
sys_seconds expires_at(const OcspStatus& s) noexcept;

// Good, not expired at `now` and holding its DER: may be stapled.
bool stapleable(const OcspStatus& s, sys_seconds now) noexcept;

// --- Schedule --------------------------------------------------------------

// When to fetch again after a successful fetch (rules at the top).
sys_seconds next_refresh(const OcspStatus& s, sys_seconds now) noexcept;

// Delay before retry number `failures` (1 = first failure): 5 s · 2^(n-1),
// capped at 10 min, minus up to 25 % jitter. 0 for failures <= 0.
std::chrono::milliseconds backoff(int failures);

// --- CRL -------------------------------------------------------------------

struct CrlStatus {
  bool revoked = false;
  sys_seconds revoked_at{};    // when revoked
  int revocation_reason = -1;  // CRLReason when given
  sys_seconds this_update{};
  sys_seconds next_update{};  // the epoch when the CRL has none
};

// Checks `cert` against a CRL (DER or PEM) of `issuer` at `now`: the CRL must
// name the issuer, verify with the issuer's key (which, when it has a key
// usage, must allow cRLSign), not be a delta CRL, have thisUpdate no more than
// 300 s ahead of now and nextUpdate (when present) after now. Then whether the
// serial is listed (removeFromCRL entries count as not revoked).
Result<CrlStatus, std::string> check_crl(std::string_view crl_der_or_pem, X509* cert, X509* issuer,
                                         sys_seconds now);

// --- Disk cache --------------------------------------------------------------

// Verified OCSP responses on disk, one file per certificate: DIR/KEY.der.
// Files are written atomically (temporary file, fsync, rename, fsync of the
// directory), mode 0644: OCSP responses are public. DIR is created 0755 when
// missing. Loading refuses anything that is not a regular file or is larger
// than kMaxOcspResponseBytes; the caller verifies what it loads.
class OcspDiskCache {
 public:
  explicit OcspDiskCache(std::string dir);

  Result<void, std::string> store(std::string_view key, std::string_view der);
  std::optional<std::string> load(std::string_view key) const;
  Result<void, std::string> remove(std::string_view key);

  // Hex SHA-256 of the DER SHA-1 CertID of (cert, issuer): issuer name hash,
  // issuer key hash and serial. Empty when it cannot be computed.
  static std::string key_for(X509* cert, X509* issuer);

  const std::string& dir() const noexcept { return dir_; }

 private:
  std::string path_for(std::string_view key) const;

  std::string dir_;
};

}  // namespace lode::cp

// A certificate the control plane has loaded and checked, ready to publish to
// the dataplane as PEM bytes: the chain exactly as it will be served, the
// private key, the leaf's issuer (for OCSP) and a content version, so workers
// rebuild an SSL_CTX only for entries whose version changed.
//
// Validation before anything is published (each failure is one message that
// names the file and says what was expected; private key bytes never appear):
//  - the chain file holds PEM certificates, leaf first, each one issued by the
//    next (an unrelated or misordered certificate is refused);
//  - the key parses (ECDSA or RSA, not encrypted) and matches the leaf;
//  - the leaf is not a CA certificate, is valid at `now` (expired or not yet
//    valid is refused) and expires after now + expiry_warning (else a warning);
//  - the chain builds: with a trusted_ca_file, a full X509_verify_cert (the
//    chain file's other certificates and the intermediates_file untrusted,
//    purpose sslserver, at time `now`); without one, the chain as given (plus
//    intermediates_file certificates when the file stops short) is verified
//    up to its topmost certificate as the anchor, with a warning that no trust
//    anchor is configured.
// Intermediates that the chain file lacks and the intermediates_file (or the
// trusted_ca_file) supplied are appended to the served chain; self-signed
// roots found that way are not.
//
// Pure with respect to time: the caller passes `now`. No I/O besides reading
// the named files.
#pragma once

#include <openssl/x509.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dataplane/tls/tls_context.h"
#include "lodestone/result.h"

namespace lode::cp {

struct X509Deleter {
  void operator()(X509* x) const noexcept { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

struct X509StoreDeleter {
  void operator()(X509_STORE* s) const noexcept { X509_STORE_free(s); }
};
using X509StorePtr = std::unique_ptr<X509_STORE, X509StoreDeleter>;

inline constexpr std::chrono::seconds kDefaultExpiryWarning = std::chrono::days(30);
// Clock skew tolerated on a certificate's notBefore (a freshly issued one).
inline constexpr std::chrono::seconds kNotBeforeSkew{300};

struct CertValidation {
  std::string trusted_ca_file;     // PEM roots; empty = no trust anchor (links checked only)
  std::string intermediates_file;  // PEM intermediates that chain files may leave out
  std::chrono::seconds expiry_warning{kDefaultExpiryWarning};
};

// CertValidation with its files read once, for loading many certificates
// (a directory scan) without re-reading a CA bundle per certificate.
class CertTrust {
 public:
  // Reads and parses both files; the message names the file that failed.
  [[nodiscard]] static Result<CertTrust, std::string> load(const CertValidation& v);

  CertTrust(CertTrust&&) noexcept = default;
  CertTrust& operator=(CertTrust&&) noexcept = default;

  [[nodiscard]] bool has_anchor() const noexcept { return store_ != nullptr; }
  [[nodiscard]] X509_STORE* store() const noexcept { return store_.get(); }
  [[nodiscard]] const std::vector<X509Ptr>& intermediates() const noexcept {
    return intermediates_;
  }
  [[nodiscard]] const CertValidation& validation() const noexcept { return validation_; }
  // "WHAT: no trusted_ca_file configured; ...": the CertTrust loaders leave
  // this warning to the caller, so a directory scan says it once.
  [[nodiscard]] std::string no_anchor_warning(std::string_view what) const;

 private:
  // No default constructor, so `{}` in a loader call means CertValidation{}.
  explicit CertTrust(CertValidation v) : validation_(std::move(v)) {}

  CertValidation validation_;
  X509StorePtr store_;                  // null without trusted_ca_file
  std::vector<X509Ptr> intermediates_;  // intermediates_file
};

struct CertBundle {
  std::string source;     // "cert.pem + key.pem", a label for messages
  std::string chain_pem;  // leaf first, then the intermediates, as served (normalized PEM)
  std::string key_pem;    // PKCS#8 PEM; never logged; cleansed when destroyed
  X509Ptr leaf;
  std::vector<X509Ptr> chain;  // the intermediates of chain_pem, in order (not the leaf)
  X509Ptr issuer;              // the leaf's issuer (for OCSP); null only when not found
  tls::CertInfo info;          // names, validity, key type of the leaf
  uint64_t version = 0;        // first 8 bytes of SHA-256(chain_pem || key_pem), big-endian

  CertBundle() = default;
  ~CertBundle();
  CertBundle(CertBundle&&) noexcept;
  CertBundle& operator=(CertBundle&&) noexcept;
  CertBundle(const CertBundle&) = delete;
  CertBundle& operator=(const CertBundle&) = delete;
};

// Reads cert_path (PEM chain, leaf first) and key_path and validates them.
// Warnings (expiring soon, no subjectAltName, self-signed, issuer not found,
// and, from the CertValidation overloads only, no trust anchor) are appended
// to `warnings`, one line each, naming the file.
[[nodiscard]] Result<CertBundle, std::string> load_cert_bundle(const std::string& cert_path,
                                                               const std::string& key_path,
                                                               const CertValidation& v,
                                                               std::chrono::sys_seconds now,
                                                               std::vector<std::string>& warnings);
[[nodiscard]] Result<CertBundle, std::string> load_cert_bundle(const std::string& cert_path,
                                                               const std::string& key_path,
                                                               const CertTrust& trust,
                                                               std::chrono::sys_seconds now,
                                                               std::vector<std::string>& warnings);

// The same from PEM bytes in memory (an admin push); `label` names them in
// messages and becomes CertBundle::source.
[[nodiscard]] Result<CertBundle, std::string> load_cert_bundle_pem(
    std::string_view chain_pem, std::string_view key_pem, std::string label,
    const CertValidation& v, std::chrono::sys_seconds now, std::vector<std::string>& warnings);
[[nodiscard]] Result<CertBundle, std::string> load_cert_bundle_pem(
    std::string_view chain_pem, std::string_view key_pem, std::string label, const CertTrust& trust,
    std::chrono::sys_seconds now, std::vector<std::string>& warnings);

// The route names (as given) that the certificate's names (CN and DNS SANs,
// CertInfo::names) do not cover. Names compare normalized (case, trailing
// dot). A certificate wildcard "*.example.com" covers exactly one label below
// example.com (a.example.com; not example.com, not a.b.example.com) and the
// route wildcard "*.example.com" itself; a route wildcard is covered only by
// that same certificate wildcard. A route name that is not a host name is
// never covered.
[[nodiscard]] std::vector<std::string> uncovered_names(const tls::CertInfo& info,
                                                       const std::vector<std::string>& route_names);

}  // namespace lode::cp

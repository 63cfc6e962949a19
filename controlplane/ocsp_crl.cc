// CRL checks (RFC 5280 section 5) for the served chain: the revocation check
// that still works where a CA has retired OCSP.
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "controlplane/ocsp.h"
#include "controlplane/ocsp_internal.h"

namespace lode::cp {

using namespace std::chrono_literals;
using detail::format_time;
using detail::subject_of;

namespace {

constexpr std::chrono::seconds kCrlSkew = 300s;

// CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue }
// in DER, or the same between "-----BEGIN X509 CRL-----" lines.
Result<detail::X509CrlPtr, std::string> parse_crl(std::string_view in) {
  if (in.empty()) return unexpected(std::string("the CRL is empty"));
  if (in.size() > static_cast<size_t>(INT32_MAX))
    return unexpected(std::string("the CRL is too large"));
  if (in.find("-----BEGIN") != std::string_view::npos) {
    BIO* bio = BIO_new_mem_buf(in.data(), static_cast<int>(in.size()));
    if (bio == nullptr) return unexpected(detail::drain_openssl_errors());
    detail::X509CrlPtr crl(PEM_read_bio_X509_CRL(bio, nullptr, nullptr, nullptr));
    BIO_free(bio);
    if (crl == nullptr) {
      ERR_clear_error();
      return unexpected(std::string("no X509 CRL in the PEM"));
    }
    return crl;
  }
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  const unsigned char* const end = p + in.size();
  detail::X509CrlPtr crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(in.size())));
  if (crl == nullptr) {
    ERR_clear_error();
    return unexpected(std::string("not a CRL (neither DER nor PEM)"));
  }
  if (p != end) return unexpected(std::to_string(end - p) + " bytes after the DER CRL");
  return crl;
}

}  // namespace

Result<CrlStatus, std::string> check_crl(std::string_view crl_der_or_pem, X509* cert, X509* issuer,
                                         sys_seconds now) {
  std::string what = "CRL check of " + subject_of(cert) + ": ";
  if (cert == nullptr || issuer == nullptr) {
    return unexpected(what + "no certificate or no issuer given");
  }
  if (std::string why = detail::issued_by(cert, issuer); !why.empty()) {
    return unexpected(what + why);
  }
  auto parsed = parse_crl(crl_der_or_pem);
  if (!parsed) return unexpected(what + parsed.error());
  X509_CRL* crl = parsed->get();

  if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(issuer)) != 0) {
    X509_NAME* crl_issuer = X509_CRL_get_issuer(crl);
    char name[256] = "?";
    X509_NAME_oneline(crl_issuer, name, sizeof(name));
    return unexpected(what + "the CRL is issued by " + name + ", not by " + subject_of(issuer));
  }
  if ((X509_get_key_usage(issuer) & KU_CRL_SIGN) == 0) {
    return unexpected(what + subject_of(issuer) + " has no cRLSign key usage");
  }
  EVP_PKEY* key = X509_get0_pubkey(issuer);
  if (key == nullptr || X509_CRL_verify(crl, key) != 1) {
    ERR_clear_error();
    return unexpected(what + "the CRL signature does not verify with the key of " +
                      subject_of(issuer));
  }
  if (X509_CRL_get_ext_by_NID(crl, NID_delta_crl, -1) >= 0) {
    return unexpected(what + "delta CRLs are not supported; use the base CRL");
  }

  CrlStatus out;
  if (!detail::to_sys_seconds(X509_CRL_get0_lastUpdate(crl), &out.this_update)) {
    return unexpected(what + "unreadable thisUpdate");
  }
  const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl);
  if (next != nullptr && !detail::to_sys_seconds(next, &out.next_update)) {
    return unexpected(what + "unreadable nextUpdate");
  }
  const std::string at = " (now " + format_time(now) + ")";
  if (out.this_update > now + kCrlSkew) {
    return unexpected(what + "the CRL's thisUpdate " + format_time(out.this_update) +
                      " is in the future" + at);
  }
  if (next != nullptr && now >= out.next_update) {
    return unexpected(what + "the CRL expired: nextUpdate " + format_time(out.next_update) +
                      " has passed" + at);
  }

  X509_REVOKED* entry = nullptr;
  const int found =
      X509_CRL_get0_by_serial(crl, &entry, const_cast<ASN1_INTEGER*>(X509_get0_serialNumber(cert)));
  if (found == 1 && entry != nullptr) {  // 2: listed with removeFromCRL, not revoked
    out.revoked = true;
    if (!detail::to_sys_seconds(X509_REVOKED_get0_revocationDate(entry), &out.revoked_at)) {
      return unexpected(what + "unreadable revocationDate for serial " + detail::serial_of(cert));
    }
    int crit = -1;
    auto* reason = static_cast<ASN1_ENUMERATED*>(
        X509_REVOKED_get_ext_d2i(entry, NID_crl_reason, &crit, nullptr));
    if (reason != nullptr) {
      out.revocation_reason = static_cast<int>(ASN1_ENUMERATED_get(reason));
      ASN1_ENUMERATED_free(reason);
    }
  }
  ERR_clear_error();
  return out;
}

}  // namespace lode::cp

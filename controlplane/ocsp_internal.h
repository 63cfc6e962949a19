// Helpers shared by the OCSP / CRL sources (ocsp.cc, ocsp_fetch.cc,
// ocsp_crl.cc, ocsp_disk_cache.cc); not part of the module's interface.
#pragma once

#include <openssl/asn1.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>

#include <chrono>
#include <memory>
#include <string>

namespace lode::cp::detail {

template <auto Free>
struct Deleter {
  template <class T>
  void operator()(T* p) const noexcept {
    Free(p);
  }
};
using OcspRequestPtr = std::unique_ptr<OCSP_REQUEST, Deleter<OCSP_REQUEST_free>>;
using OcspResponsePtr = std::unique_ptr<OCSP_RESPONSE, Deleter<OCSP_RESPONSE_free>>;
using OcspBasicPtr = std::unique_ptr<OCSP_BASICRESP, Deleter<OCSP_BASICRESP_free>>;
using OcspCertIdPtr = std::unique_ptr<OCSP_CERTID, Deleter<OCSP_CERTID_free>>;
using X509StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using X509CrlPtr = std::unique_ptr<X509_CRL, Deleter<X509_CRL_free>>;

// The OpenSSL error queue as one line ("reason (data); reason"), emptied.
// "no OpenSSL detail" when the queue is empty.
std::string drain_openssl_errors();

// ASN1_TIME (UTCTime or GeneralizedTime) → seconds since the epoch; false
// when the time does not parse.
bool to_sys_seconds(const ASN1_TIME* t, std::chrono::sys_seconds* out) noexcept;

// "2026-05-04T10:00:00Z".
std::string format_time(std::chrono::sys_seconds t);

// "CN=Lodestone Test Intermediate CA" (RFC 2253 order), for messages.
std::string subject_of(const X509* cert);

// Hex of the certificate's serial number ("07", "1A2B").
std::string serial_of(const X509* cert);

// Empty when `issuer` issued `cert` (names, key identifiers, CA key usage);
// otherwise why not. Signatures are checked where the caller needs them.
std::string issued_by(X509* cert, X509* issuer);

}  // namespace lode::cp::detail

// OCSP requests, certificate fields, response verification and the refresh
// schedule. HTTP is in ocsp_fetch.cc, CRLs in ocsp_crl.cc, the disk cache in
// ocsp_disk_cache.cc.
#include "controlplane/ocsp.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <ctime>
#include <random>

#include "controlplane/ocsp_internal.h"

namespace lode::cp {

using namespace std::chrono_literals;

namespace detail {

std::string drain_openssl_errors() {
  std::string out;
  int kept = 0;
  const char* data = nullptr;
  int flags = 0;
  while (unsigned long e = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) {
    if (kept++ == 4) continue;  // keep the message short; still empty the queue
    if (!out.empty()) out += "; ";
    const char* reason = ERR_reason_error_string(e);
    out += reason != nullptr ? reason : "error " + std::to_string(ERR_GET_REASON(e));
    if ((flags & ERR_TXT_STRING) != 0 && data != nullptr && *data != '\0') {
      out += " (";
      out += data;
      out += ")";
    }
  }
  return out.empty() ? "no OpenSSL detail" : out;
}

bool to_sys_seconds(const ASN1_TIME* t, std::chrono::sys_seconds* out) noexcept {
  if (t == nullptr) return false;  // ASN1_TIME_to_tm(nullptr) would mean "now"
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return false;
  // By the calendar, not timegm(): its -1 for an error is also
  // 1969-12-31T23:59:59Z, a time a response may carry.
  const std::chrono::year_month_day ymd{std::chrono::year{tm.tm_year + 1900},
                                        std::chrono::month{static_cast<unsigned>(tm.tm_mon + 1)},
                                        std::chrono::day{static_cast<unsigned>(tm.tm_mday)}};
  if (!ymd.ok()) return false;
  *out = std::chrono::sys_days{ymd} + std::chrono::hours{tm.tm_hour} + std::chrono::minutes{tm.tm_min} +
         std::chrono::seconds{tm.tm_sec};
  return true;
}

std::string format_time(std::chrono::sys_seconds t) {
  const time_t secs = static_cast<time_t>(t.time_since_epoch().count());
  std::tm tm{};
  if (gmtime_r(&secs, &tm) == nullptr) return std::to_string(secs);
  char buf[32];
  const size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf, n);
}

std::string subject_of(const X509* cert) {
  if (cert == nullptr) return "(no certificate)";
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return "(?)";
  X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string s = n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string("(empty name)");
  BIO_free(bio);
  return s;
}

namespace {
std::string hex_of(const ASN1_INTEGER* i) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(i, nullptr);
  if (bn == nullptr) return "?";
  char* hex = BN_bn2hex(bn);
  std::string s = hex != nullptr ? hex : "?";
  OPENSSL_free(hex);
  BN_free(bn);
  return s;
}
}  // namespace

std::string serial_of(const X509* cert) {
  return cert != nullptr ? hex_of(X509_get0_serialNumber(cert)) : "?";
}

std::string issued_by(X509* cert, X509* issuer) {
  const int rc = X509_check_issued(issuer, cert);
  if (rc == X509_V_OK) return {};
  return subject_of(issuer) + " did not issue " + subject_of(cert) + " (" +
         X509_verify_cert_error_string(rc) + ")";
}

}  // namespace detail

using detail::format_time;
using detail::subject_of;

// --- Certificates ------------------------------------------------------------

// OCSPRequest ::= SEQUENCE { tbsRequest TBSRequest, optionalSignature [0] ... }
// TBSRequest  ::= SEQUENCE { version [0] DEFAULT v1, requestorName [1] OPTIONAL,
//                            requestList SEQUENCE OF Request, requestExtensions [2] }
// Request     ::= SEQUENCE { reqCert CertID, ... }
// CertID      ::= SEQUENCE { hashAlgorithm, issuerNameHash, issuerKeyHash, serialNumber }
Result<std::string, std::string> make_ocsp_request(X509* cert, X509* issuer, bool add_nonce) {
  if (cert == nullptr || issuer == nullptr) {
    return unexpected(std::string("OCSP request: no certificate or no issuer"));
  }
  if (std::string why = detail::issued_by(cert, issuer); !why.empty()) {
    return unexpected("OCSP request: " + why);
  }
  detail::OcspRequestPtr req(OCSP_REQUEST_new());
  OCSP_CERTID* id = OCSP_cert_to_id(EVP_sha1(), cert, issuer);
  if (req == nullptr || id == nullptr) {
    OCSP_CERTID_free(id);
    return unexpected("OCSP request: cannot build the CertID: " + detail::drain_openssl_errors());
  }
  if (OCSP_request_add0_id(req.get(), id) == nullptr) {  // not taken on failure
    OCSP_CERTID_free(id);
    return unexpected("OCSP request: " + detail::drain_openssl_errors());
  }
  if (add_nonce && OCSP_request_add1_nonce(req.get(), nullptr, -1) != 1) {
    return unexpected("OCSP request: cannot add a nonce: " + detail::drain_openssl_errors());
  }
  const int len = i2d_OCSP_REQUEST(req.get(), nullptr);
  if (len <= 0) return unexpected("OCSP request: cannot encode: " + detail::drain_openssl_errors());
  std::string der(static_cast<size_t>(len), '\0');
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  i2d_OCSP_REQUEST(req.get(), &p);
  return der;
}

std::vector<std::string> ocsp_urls(X509* cert) {
  std::vector<std::string> urls;
  if (cert == nullptr) return urls;
  STACK_OF(OPENSSL_STRING)* list = X509_get1_ocsp(cert);
  for (int i = 0; i < sk_OPENSSL_STRING_num(list); ++i) {
    urls.emplace_back(sk_OPENSSL_STRING_value(list, i));
  }
  X509_email_free(list);
  return urls;
}

std::vector<std::string> crl_urls(X509* cert) {
  std::vector<std::string> urls;
  if (cert == nullptr) return urls;
  auto* points = static_cast<STACK_OF(DIST_POINT)*>(
      X509_get_ext_d2i(cert, NID_crl_distribution_points, nullptr, nullptr));
  for (int i = 0; i < sk_DIST_POINT_num(points); ++i) {
    const DIST_POINT* dp = sk_DIST_POINT_value(points, i);
    // A relative name (type 1) needs the CRL issuer's name: not a URL.
    if (dp->distpoint == nullptr || dp->distpoint->type != 0) continue;
    const GENERAL_NAMES* names = dp->distpoint->name.fullname;
    for (int j = 0; j < sk_GENERAL_NAME_num(names); ++j) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, j);
      if (gn->type != GEN_URI) continue;
      const ASN1_IA5STRING* uri = gn->d.uniformResourceIdentifier;
      std::string url(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                      static_cast<size_t>(ASN1_STRING_length(uri)));
      if (std::find(urls.begin(), urls.end(), url) == urls.end()) urls.push_back(std::move(url));
    }
  }
  sk_DIST_POINT_pop_free(points, DIST_POINT_free);
  return urls;
}

// Features ::= SEQUENCE OF INTEGER   (RFC 7633; status_request = 5)
// A duplicated or undecodable extension counts as must-staple: the strict side.
bool must_staple(X509* cert) {
  if (cert == nullptr) return false;
  int crit = -1;
  auto* features =
      static_cast<TLS_FEATURE*>(X509_get_ext_d2i(cert, NID_tlsfeature, &crit, nullptr));
  if (features == nullptr) return crit != -1;
  bool found = false;
  for (int i = 0; i < sk_ASN1_INTEGER_num(features); ++i) {
    if (ASN1_INTEGER_get(sk_ASN1_INTEGER_value(features, i)) == 5) found = true;
  }
  sk_ASN1_INTEGER_pop_free(features, ASN1_INTEGER_free);
  return found;
}

// --- Verification ----------------------------------------------------------

std::string_view to_string(OcspStatus::Cert s) noexcept {
  switch (s) {
    case OcspStatus::Cert::kGood:
      return "good";
    case OcspStatus::Cert::kRevoked:
      return "revoked";
    case OcspStatus::Cert::kUnknown:
      return "unknown";
  }
  return "?";
}

namespace {

Result<void, std::string> check_signer(OCSP_BASICRESP* bs, X509* issuer, sys_seconds now) {
  detail::X509StorePtr store(X509_STORE_new());
  STACK_OF(X509)* candidates = sk_X509_new_null();
  if (store == nullptr || candidates == nullptr || X509_STORE_add_cert(store.get(), issuer) != 1 ||
      sk_X509_push(candidates, issuer) <= 0) {
    sk_X509_free(candidates);
    return unexpected("cannot set up the signer check: " + detail::drain_openssl_errors());
  }
  X509_VERIFY_PARAM* param = X509_STORE_get0_param(store.get());
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
  X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(now.time_since_epoch().count()));
  ERR_clear_error();
  // `candidates` lets a response signed by the issuer itself verify even when
  // it carries no certificates; without OCSP_TRUSTOTHER that signer is still
  // chain-checked (trivially: it is the anchor). OCSP_NOEXPLICIT: only the
  // issuer or its delegated responder, never "some trusted root".
  const int rc =
      OCSP_basic_verify(bs, candidates, store.get(), OCSP_NOEXPLICIT | OCSP_PARTIAL_CHAIN);
  sk_X509_free(candidates);
  if (rc == 1) return {};
  return unexpected("signature not accepted: the signer must be " + subject_of(issuer) +
                    " or a responder certificate it issued with the OCSP-signing EKU: " +
                    detail::drain_openssl_errors());
}

std::string listed_serials(OCSP_BASICRESP* bs) {
  std::string s;
  for (int i = 0; i < OCSP_resp_count(bs) && i < 8; ++i) {
    const OCSP_CERTID* id = OCSP_SINGLERESP_get0_id(OCSP_resp_get0(bs, i));
    ASN1_INTEGER* serial = nullptr;
    if (OCSP_id_get0_info(nullptr, nullptr, nullptr, &serial, const_cast<OCSP_CERTID*>(id)) != 1) {
      continue;
    }
    if (!s.empty()) s += ", ";
    BIGNUM* bn = ASN1_INTEGER_to_BN(serial, nullptr);
    char* hex = bn != nullptr ? BN_bn2hex(bn) : nullptr;
    s += hex != nullptr ? hex : "?";
    OPENSSL_free(hex);
    BN_free(bn);
  }
  return s.empty() ? "none" : s;
}

}  // namespace

Result<OcspStatus, std::string> verify_ocsp_response(std::string_view der, X509* cert, X509* issuer,
                                                     sys_seconds now,
                                                     std::chrono::seconds max_skew) {
  const std::string what = "OCSP response for " + subject_of(cert) + ": ";
  if (cert == nullptr || issuer == nullptr) {
    return unexpected(what + "no certificate or no issuer given");
  }
  if (std::string why = detail::issued_by(cert, issuer); !why.empty()) {
    return unexpected(what + why);
  }
  if (der.empty()) return unexpected(what + "empty");
  if (der.size() > kMaxOcspResponseBytes) {
    return unexpected(what + std::to_string(der.size()) + " bytes, more than the " +
                      std::to_string(kMaxOcspResponseBytes) + " accepted");
  }
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* const end = p + der.size();
  detail::OcspResponsePtr resp(d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size())));
  if (resp == nullptr) {
    ERR_clear_error();
    return unexpected(what + "not a DER OCSPResponse");
  }
  if (p != end) {
    return unexpected(what + std::to_string(end - p) + " bytes after the DER OCSPResponse");
  }
  if (const int rs = OCSP_response_status(resp.get()); rs != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
    return unexpected(what + "responder answered " + OCSP_response_status_str(rs) + " (" +
                      std::to_string(rs) + "), not successful");
  }
  detail::OcspBasicPtr bs(OCSP_response_get1_basic(resp.get()));
  if (bs == nullptr) {
    ERR_clear_error();
    return unexpected(what + "not a basic OCSP response (id-pkix-ocsp-basic)");
  }
  if (auto signer = check_signer(bs.get(), issuer, now); !signer) {
    return unexpected(what + signer.error());
  }

  // The single response for this certificate: SHA-1 CertID as requested; a
  // SHA-256 one from a responder that answers with its own choice.
  int status = -1;
  int reason = -1;
  ASN1_GENERALIZEDTIME* revoked = nullptr;
  ASN1_GENERALIZEDTIME* this_upd = nullptr;
  ASN1_GENERALIZEDTIME* next_upd = nullptr;
  bool found = false;
  for (const EVP_MD* md : {EVP_sha1(), EVP_sha256()}) {
    detail::OcspCertIdPtr id(OCSP_cert_to_id(md, cert, issuer));
    if (id != nullptr && OCSP_resp_find_status(bs.get(), id.get(), &status, &reason, &revoked,
                                               &this_upd, &next_upd) == 1) {
      found = true;
      break;
    }
  }
  ERR_clear_error();
  if (!found) {
    return unexpected(what + "no status for serial " + detail::serial_of(cert) + " of " +
                      subject_of(issuer) + " (the response covers serial " +
                      listed_serials(bs.get()) + ")");
  }

  OcspStatus out;
  switch (status) {
    case V_OCSP_CERTSTATUS_GOOD:
      out.status = OcspStatus::Cert::kGood;
      break;
    case V_OCSP_CERTSTATUS_REVOKED:
      out.status = OcspStatus::Cert::kRevoked;
      break;
    default:
      out.status = OcspStatus::Cert::kUnknown;
      break;
  }
  if (!detail::to_sys_seconds(this_upd, &out.this_update)) {
    return unexpected(what + "unreadable thisUpdate");
  }
  if (next_upd != nullptr && !detail::to_sys_seconds(next_upd, &out.next_update)) {
    return unexpected(what + "unreadable nextUpdate");
  }
  if (!detail::to_sys_seconds(OCSP_resp_get0_produced_at(bs.get()), &out.produced_at)) {
    return unexpected(what + "unreadable producedAt");
  }
  if (out.status == OcspStatus::Cert::kRevoked) {
    if (!detail::to_sys_seconds(revoked, &out.revoked_at)) {
      return unexpected(what + "unreadable revocationTime");
    }
    out.revocation_reason = reason;
  }

  const std::string at = " (now " + format_time(now) + ")";
  if (out.this_update > now + max_skew) {
    return unexpected(what + "thisUpdate " + format_time(out.this_update) +
                      " is in the future by more than the allowed " +
                      std::to_string(max_skew.count()) + " s" + at);
  }
  if (out.produced_at > now + max_skew) {
    return unexpected(what + "producedAt " + format_time(out.produced_at) +
                      " is in the future by more than the allowed " +
                      std::to_string(max_skew.count()) + " s" + at);
  }
  if (next_upd != nullptr && out.next_update < out.this_update) {
    return unexpected(what + "nextUpdate " + format_time(out.next_update) +
                      " is before thisUpdate " + format_time(out.this_update));
  }
  if (now >= expires_at(out)) {
    if (next_upd != nullptr) {
      return unexpected(what + "expired: nextUpdate " + format_time(out.next_update) +
                        " has passed" + at);
    }
    return unexpected(what + "stale: no nextUpdate and thisUpdate " + format_time(out.this_update) +
                      " is more than " +
                      std::to_string(kOcspMaxAgeWithoutNextUpdate.count() / 3600) + " h old" + at);
  }
  out.der.assign(der);
  return out;
}

sys_seconds expires_at(const OcspStatus& s) noexcept {
  if (s.next_update == sys_seconds{}) return s.this_update + kOcspMaxAgeWithoutNextUpdate;
  return s.next_update;
}

bool stapleable(const OcspStatus& s, sys_seconds now) noexcept {
  return s.status == OcspStatus::Cert::kGood && !s.der.empty() && now < expires_at(s);
}

// --- Schedule --------------------------------------------------------------

sys_seconds next_refresh(const OcspStatus& s, sys_seconds now) noexcept {
  sys_seconds at;
  if (s.next_update == sys_seconds{}) {
    at = now + 1h;
  } else {
    const auto window = s.next_update - s.this_update;
    at = s.this_update + window / 2;
    if (window > 1h) at = std::min(at, s.next_update - 1h);
  }
  return std::max(at, now + 60s);
}

std::chrono::milliseconds backoff(int failures) {
  if (failures <= 0) return 0ms;
  constexpr std::chrono::milliseconds kBase = 5s;
  constexpr std::chrono::milliseconds kCap = 10min;
  std::chrono::milliseconds d = kCap;
  if (failures <= 8) d = std::min(kCap, kBase * (int64_t{1} << (failures - 1)));
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<int64_t> jitter(0, d.count() / 4);
  return d - std::chrono::milliseconds(jitter(rng));
}

}  // namespace lode::cp

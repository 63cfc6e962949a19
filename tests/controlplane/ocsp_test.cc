// controlplane/ocsp.cc: requests, certificate fields, response verification
// (responses from real `openssl ocsp` responders on loopback) and the refresh
// schedule.
#include "controlplane/ocsp.h"

#include <gtest/gtest.h>
#include <openssl/ocsp.h>

#include <algorithm>
#include <cstdint>
#include <set>

#include "controlplane/ocsp_internal.h"
#include "tests/support/ocsp_responder.h"
#include "tests/support/test_pki.h"

namespace lode::cp {
namespace {

using namespace std::chrono_literals;
using test::ocsp_certs;
using test::OcspResponderSpec;
using test::shared_ocsp_pki;

sys_seconds now_s() {
  return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
}

// A response from a real responder started from `spec`; fails the test when
// there is none.
std::string response(const OcspResponderSpec& spec, X509* cert, X509* issuer) {
  std::string error;
  std::string der = test::response_from(spec, cert, issuer, &error);
  EXPECT_FALSE(der.empty()) << error;
  return der;
}

std::string good_response() {
  static const std::string der = response(test::intermediate_responder_spec(),
                                          ocsp_certs().good.get(), ocsp_certs().intermediate.get());
  return der;
}

::testing::AssertionResult fails_with(const Result<OcspStatus, std::string>& r,
                                      std::string_view needle) {
  if (r) {
    return ::testing::AssertionFailure() << "verified (status " << to_string(r->status)
                                         << "), expected an error with '" << needle << "'";
  }
  if (r.error().find(needle) == std::string::npos) {
    return ::testing::AssertionFailure() << "error '" << r.error() << "' lacks '" << needle << "'";
  }
  return ::testing::AssertionSuccess();
}

// --- Requests ----------------------------------------------------------------

TEST(OcspRequest, Sha1CertIdWithoutNonce) {
  auto der = make_ocsp_request(ocsp_certs().good.get(), ocsp_certs().intermediate.get());
  ASSERT_TRUE(der) << der.error();
  const auto* p = reinterpret_cast<const unsigned char*>(der->data());
  OCSP_REQUEST* req = d2i_OCSP_REQUEST(nullptr, &p, static_cast<long>(der->size()));
  ASSERT_NE(req, nullptr);
  ASSERT_EQ(OCSP_request_onereq_count(req), 1);
  ASN1_OBJECT* md = nullptr;
  ASN1_INTEGER* serial = nullptr;
  ASSERT_EQ(OCSP_id_get0_info(nullptr, &md, nullptr, &serial,
                              OCSP_onereq_get0_id(OCSP_request_onereq_get0(req, 0))),
            1);
  EXPECT_EQ(OBJ_obj2nid(md), NID_sha1);
  EXPECT_EQ(ASN1_INTEGER_get(serial), 7);
  EXPECT_LT(OCSP_REQUEST_get_ext_by_NID(req, NID_id_pkix_OCSP_Nonce, -1), 0);
  EXPECT_FALSE(OCSP_request_is_signed(req));
  OCSP_REQUEST_free(req);
}

TEST(OcspRequest, NonceWhenAsked) {
  auto der = make_ocsp_request(ocsp_certs().good.get(), ocsp_certs().intermediate.get(), true);
  ASSERT_TRUE(der) << der.error();
  const auto* p = reinterpret_cast<const unsigned char*>(der->data());
  OCSP_REQUEST* req = d2i_OCSP_REQUEST(nullptr, &p, static_cast<long>(der->size()));
  ASSERT_NE(req, nullptr);
  EXPECT_GE(OCSP_REQUEST_get_ext_by_NID(req, NID_id_pkix_OCSP_Nonce, -1), 0);
  OCSP_REQUEST_free(req);
}

TEST(OcspRequest, WrongIssuerRefused) {
  auto der = make_ocsp_request(ocsp_certs().good.get(), ocsp_certs().root.get());
  ASSERT_FALSE(der);
  EXPECT_NE(der.error().find("did not issue CN=ocsp-good.test"), std::string::npos) << der.error();
}

TEST(OcspRequest, MissingCertificateRefused) {
  EXPECT_FALSE(make_ocsp_request(nullptr, ocsp_certs().intermediate.get()));
  EXPECT_FALSE(make_ocsp_request(ocsp_certs().good.get(), nullptr));
}

// --- Certificate fields --------------------------------------------------------

TEST(OcspCert, OcspUrlsFromAia) {
  const auto& pki = shared_ocsp_pki();
  EXPECT_EQ(ocsp_urls(ocsp_certs().good.get()),
            std::vector<std::string>{"http://127.0.0.1:" + std::to_string(pki.ocsp_port)});
  EXPECT_EQ(ocsp_urls(ocsp_certs().intermediate.get()),
            std::vector<std::string>{"http://127.0.0.1:" + std::to_string(pki.root_ocsp_port)});
}

TEST(OcspCert, NoUrlsWithoutExtensions) {
  EXPECT_TRUE(ocsp_urls(ocsp_certs().root.get()).empty());
  EXPECT_TRUE(crl_urls(ocsp_certs().root.get()).empty());
  EXPECT_TRUE(crl_urls(ocsp_certs().intermediate.get()).empty());
  EXPECT_TRUE(ocsp_urls(nullptr).empty());
  EXPECT_TRUE(crl_urls(nullptr).empty());
}

TEST(OcspCert, CrlUrlsFromDistributionPoints) {
  const auto& pki = shared_ocsp_pki();
  EXPECT_EQ(crl_urls(ocsp_certs().revoked.get()),
            std::vector<std::string>{"http://127.0.0.1:" + std::to_string(pki.crl_port) +
                                     "/intermediate.crl"});
}

TEST(OcspCert, MustStapleDetected) {
  EXPECT_TRUE(must_staple(ocsp_certs().muststaple.get()));
}

TEST(OcspCert, MustStapleAbsent) {
  EXPECT_FALSE(must_staple(ocsp_certs().good.get()));
  EXPECT_FALSE(must_staple(ocsp_certs().intermediate.get()));
  EXPECT_FALSE(must_staple(test::shared_test_pki().root.cert.get()));
  EXPECT_FALSE(must_staple(nullptr));
}

// --- Verification --------------------------------------------------------------

TEST(OcspVerify, GoodFromDelegatedResponder) {
  const std::string der = good_response();
  auto st =
      verify_ocsp_response(der, ocsp_certs().good.get(), ocsp_certs().intermediate.get(), now_s());
  ASSERT_TRUE(st) << st.error();
  EXPECT_EQ(st->status, OcspStatus::Cert::kGood);
  EXPECT_LE(st->this_update, now_s());
  EXPECT_EQ(st->next_update - st->this_update, 24h);
  EXPECT_EQ(st->der, der);
  EXPECT_TRUE(stapleable(*st, now_s()));
}

TEST(OcspVerify, RevokedWithTimeAndReason) {
  const auto& c = ocsp_certs();
  const std::string der =
      response(test::intermediate_responder_spec(), c.revoked.get(), c.intermediate.get());
  auto st = verify_ocsp_response(der, c.revoked.get(), c.intermediate.get(), now_s());
  ASSERT_TRUE(st) << st.error();
  EXPECT_EQ(st->status, OcspStatus::Cert::kRevoked);
  // Revoked by the PKI script, run by this process.
  EXPECT_LE(st->revoked_at, now_s());
  EXPECT_GT(st->revoked_at, now_s() - 1h);
  EXPECT_EQ(st->revocation_reason, 1);  // keyCompromise
  EXPECT_FALSE(stapleable(*st, now_s()));
}

TEST(OcspVerify, IntermediateFromRootResponder) {
  const auto& c = ocsp_certs();
  const std::string der = response(test::root_responder_spec(), c.intermediate.get(), c.root.get());
  auto st = verify_ocsp_response(der, c.intermediate.get(), c.root.get(), now_s());
  ASSERT_TRUE(st) << st.error();
  EXPECT_EQ(st->status, OcspStatus::Cert::kGood);
}

TEST(OcspVerify, SignedByIssuerItselfAccepted) {
  const auto& c = ocsp_certs();
  auto spec = test::intermediate_responder_spec();
  spec.rsigner = shared_ocsp_pki().path("intermediate.pem");
  spec.rkey = shared_ocsp_pki().path("intermediate.key");
  spec.extra = {"-resp_no_certs"};  // the issuer is known: no certificate needed
  const std::string der = response(spec, c.good.get(), c.intermediate.get());
  auto st = verify_ocsp_response(der, c.good.get(), c.intermediate.get(), now_s());
  ASSERT_TRUE(st) << st.error();
  EXPECT_EQ(st->status, OcspStatus::Cert::kGood);
}

TEST(OcspVerify, UnknownSerialIsUnknown) {
  // The responder certificate is issued by the intermediate but not in index.txt.
  const auto& c = ocsp_certs();
  const std::string der =
      response(test::intermediate_responder_spec(), c.responder.get(), c.intermediate.get());
  auto st = verify_ocsp_response(der, c.responder.get(), c.intermediate.get(), now_s());
  ASSERT_TRUE(st) << st.error();
  EXPECT_EQ(st->status, OcspStatus::Cert::kUnknown);
  EXPECT_FALSE(stapleable(*st, now_s()));
}

TEST(OcspVerify, ResponseForAnotherCertificateRefused) {
  const auto& c = ocsp_certs();
  auto st =
      verify_ocsp_response(good_response(), c.muststaple.get(), c.intermediate.get(), now_s());
  EXPECT_TRUE(fails_with(st, "no status for serial 09"));
  EXPECT_TRUE(fails_with(st, "covers serial 07"));
}

TEST(OcspVerify, WrongIssuerArgumentRefused) {
  const auto& c = ocsp_certs();
  EXPECT_TRUE(fails_with(verify_ocsp_response(good_response(), c.good.get(), c.root.get(), now_s()),
                         "did not issue"));
}

TEST(OcspVerify, ResponderOfAnotherCaRefused) {
  // The root's delegated responder has OCSPSigning but was not issued by the
  // intermediate: it may not speak for the intermediate's certificates.
  const auto& c = ocsp_certs();
  auto spec = test::intermediate_responder_spec();
  spec.rsigner = shared_ocsp_pki().path("root-ocsp-responder.pem");
  spec.rkey = shared_ocsp_pki().path("root-ocsp-responder.key");
  const std::string der = response(spec, c.good.get(), c.intermediate.get());
  EXPECT_TRUE(fails_with(verify_ocsp_response(der, c.good.get(), c.intermediate.get(), now_s()),
                         "signature not accepted"));
}

TEST(OcspVerify, SignerWithoutOcspSigningEkuRefused) {
  // Issued by the intermediate, but a server certificate: no id-kp-OCSPSigning.
  const auto& c = ocsp_certs();
  auto spec = test::intermediate_responder_spec();
  spec.rsigner = shared_ocsp_pki().path("ocsp-muststaple.test.pem");
  spec.rkey = shared_ocsp_pki().path("ocsp-muststaple.test.key");
  const std::string der = response(spec, c.good.get(), c.intermediate.get());
  auto st = verify_ocsp_response(der, c.good.get(), c.intermediate.get(), now_s());
  EXPECT_TRUE(fails_with(st, "signature not accepted"));
  EXPECT_TRUE(fails_with(st, "ocspsigning"));
}

TEST(OcspVerify, IntermediateCannotVouchForItself) {
  // Signed by the intermediate's own key about the intermediate: its issuer
  // (the root) did not sign it as a responder, and a self-signed root at the
  // top of the chain is no way in.
  const auto& c = ocsp_certs();
  auto spec = test::root_responder_spec();
  spec.rsigner = shared_ocsp_pki().path("intermediate.pem");
  spec.rkey = shared_ocsp_pki().path("intermediate.key");
  const std::string der = response(spec, c.intermediate.get(), c.root.get());
  EXPECT_TRUE(fails_with(verify_ocsp_response(der, c.intermediate.get(), c.root.get(), now_s()),
                         "signature not accepted"));
}

TEST(OcspVerify, UnrelatedSignerRefused) {
  const auto& c = ocsp_certs();
  const test::TestCert other =
      test::make_root_ca("Unrelated OCSP Signer", test::KeyKind::kEcdsaP256, 7);
  test::TempDir tmp;
  auto spec = test::intermediate_responder_spec();
  spec.rsigner = tmp.write("signer.pem", other.cert_pem());
  spec.rkey = tmp.write("signer.key", other.key_pem());
  const std::string der = response(spec, c.good.get(), c.intermediate.get());
  EXPECT_TRUE(fails_with(verify_ocsp_response(der, c.good.get(), c.intermediate.get(), now_s()),
                         "signature not accepted"));
}

TEST(OcspVerify, ImpostorWithTheIssuersNameRefused) {
  // Same subject name as the intermediate, another key.
  const auto& c = ocsp_certs();
  const test::TestCert impostor =
      test::make_root_ca("Lodestone OCSP Test Intermediate CA", test::KeyKind::kEcdsaP256, 8);
  test::TempDir tmp;
  auto spec = test::intermediate_responder_spec();
  spec.rsigner = tmp.write("impostor.pem", impostor.cert_pem());
  spec.rkey = tmp.write("impostor.key", impostor.key_pem());
  const std::string der = response(spec, c.good.get(), c.intermediate.get());
  EXPECT_TRUE(fails_with(verify_ocsp_response(der, c.good.get(), c.intermediate.get(), now_s()),
                         "signature not accepted"));
}

TEST(OcspVerify, DelegatedResponderNotIncludedRefused) {
  const auto& c = ocsp_certs();
  auto spec = test::intermediate_responder_spec();
  spec.extra = {"-resp_no_certs"};
  const std::string der = response(spec, c.good.get(), c.intermediate.get());
  EXPECT_TRUE(fails_with(verify_ocsp_response(der, c.good.get(), c.intermediate.get(), now_s()),
                         "signature not accepted"));
}

TEST(OcspVerify, ExpiredRefused) {
  const auto& c = ocsp_certs();
  auto st =
      verify_ocsp_response(good_response(), c.good.get(), c.intermediate.get(), now_s() + 48h);
  EXPECT_TRUE(fails_with(st, "expired: nextUpdate"));
}

TEST(OcspVerify, ChainCheckedAtNow) {
  // In 400 days the delegated responder's certificate (365 days) has expired:
  // the signer check runs at `now`, before the response's own dates.
  const auto& c = ocsp_certs();
  auto st = verify_ocsp_response(good_response(), c.good.get(), c.intermediate.get(),
                                 now_s() + 400 * 24h);
  EXPECT_TRUE(fails_with(st, "signature not accepted"));
  EXPECT_TRUE(fails_with(st, "certificate has expired"));
}

TEST(OcspVerify, ShortLivedResponseExpires) {
  const auto& c = ocsp_certs();
  auto spec = test::intermediate_responder_spec();
  spec.ndays = -1;
  spec.extra = {"-nmin", "1"};
  const std::string der = response(spec, c.good.get(), c.intermediate.get());
  auto fresh = verify_ocsp_response(der, c.good.get(), c.intermediate.get(), now_s());
  ASSERT_TRUE(fresh) << fresh.error();
  EXPECT_TRUE(stapleable(*fresh, now_s()));
  EXPECT_FALSE(stapleable(*fresh, fresh->next_update));
  EXPECT_TRUE(fails_with(
      verify_ocsp_response(der, c.good.get(), c.intermediate.get(), now_s() + 2min), "expired"));
}

TEST(OcspVerify, NoNextUpdateAgesOutAfterADay) {
  const auto& c = ocsp_certs();
  auto spec = test::intermediate_responder_spec();
  spec.ndays = -1;  // no -ndays, no -nmin: no nextUpdate
  const std::string der = response(spec, c.good.get(), c.intermediate.get());
  auto st = verify_ocsp_response(der, c.good.get(), c.intermediate.get(), now_s());
  ASSERT_TRUE(st) << st.error();
  EXPECT_EQ(st->next_update, sys_seconds{});
  EXPECT_EQ(expires_at(*st), st->this_update + 24h);
  EXPECT_TRUE(fails_with(
      verify_ocsp_response(der, c.good.get(), c.intermediate.get(), now_s() + 25h), "stale"));
}

TEST(OcspVerify, ThisUpdateInTheFutureRefused) {
  const auto& c = ocsp_certs();
  auto st = verify_ocsp_response(good_response(), c.good.get(), c.intermediate.get(),
                                 now_s() - 30min, 60s);
  EXPECT_TRUE(fails_with(st, "is in the future"));
}

TEST(OcspVerify, SmallClockSkewTolerated) {
  const auto& c = ocsp_certs();
  auto st =
      verify_ocsp_response(good_response(), c.good.get(), c.intermediate.get(), now_s() - 30s);
  EXPECT_TRUE(st) << st.error();
}

TEST(OcspVerify, TamperedResponseRefused) {
  const auto& c = ocsp_certs();
  std::string der = good_response();
  // producedAt is the first GeneralizedTime: "YYYYMMDDHHMMSSZ". Change a digit.
  size_t z = 14;
  auto is_time = [&der](size_t at) {
    return der[at] == 'Z' && std::all_of(der.begin() + static_cast<long>(at) - 14,
                                         der.begin() + static_cast<long>(at),
                                         [](char ch) { return ch >= '0' && ch <= '9'; });
  };
  while (z < der.size() && !is_time(z)) ++z;
  ASSERT_LT(z, der.size());
  der[z - 4] = der[z - 4] == '0' ? '1' : '0';  // minutes, still a valid time
  EXPECT_TRUE(fails_with(verify_ocsp_response(der, c.good.get(), c.intermediate.get(), now_s()),
                         "signature not accepted"));
}

TEST(OcspVerify, TrailingBytesRefused) {
  const auto& c = ocsp_certs();
  EXPECT_TRUE(fails_with(
      verify_ocsp_response(good_response() + "x", c.good.get(), c.intermediate.get(), now_s()),
      "1 bytes after"));
}

// Response times read by the calendar: timegm()'s error value -1 is also
// 1969-12-31T23:59:59Z, which a response (thisUpdate, revocationTime) may
// carry; found by the ocsp_fuzz oracle's review.
TEST(OcspTime, EveryGeneralizedTimeIsReadIncludingTheSecondBeforeTheEpoch) {
  for (const time_t t : {time_t{-1}, time_t{0}, time_t{-86'400 * 365}, time_t{1'764'400'000}, time_t{4'102'444'799}}) {
    ASN1_GENERALIZEDTIME* g = ASN1_GENERALIZEDTIME_set(nullptr, t);
    ASSERT_NE(g, nullptr);
    std::chrono::sys_seconds out{};
    EXPECT_TRUE(detail::to_sys_seconds(g, &out)) << t;
    EXPECT_EQ(out.time_since_epoch().count(), static_cast<int64_t>(t)) << t;
    ASN1_GENERALIZEDTIME_free(g);
  }
  std::chrono::sys_seconds out{};
  EXPECT_FALSE(detail::to_sys_seconds(nullptr, &out));
}

TEST(OcspVerify, GarbageRefused) {
  const auto& c = ocsp_certs();
  X509* cert = c.good.get();
  X509* issuer = c.intermediate.get();
  EXPECT_TRUE(fails_with(verify_ocsp_response("", cert, issuer, now_s()), "empty"));
  EXPECT_TRUE(fails_with(verify_ocsp_response("<html>oops</html>", cert, issuer, now_s()),
                         "not a DER OCSPResponse"));
  const std::string der = good_response();
  EXPECT_TRUE(fails_with(verify_ocsp_response(der.substr(0, der.size() / 2), cert, issuer, now_s()),
                         "not a DER OCSPResponse"));
  EXPECT_TRUE(fails_with(
      verify_ocsp_response(std::string(kMaxOcspResponseBytes + 1, '\x30'), cert, issuer, now_s()),
      "more than"));
  EXPECT_TRUE(fails_with(verify_ocsp_response(der, nullptr, issuer, now_s()), "no certificate"));
}

TEST(OcspVerify, UnsuccessfulResponseStatusRefused) {
  const auto& c = ocsp_certs();
  for (int status : {OCSP_RESPONSE_STATUS_TRYLATER, OCSP_RESPONSE_STATUS_UNAUTHORIZED,
                     OCSP_RESPONSE_STATUS_MALFORMEDREQUEST}) {
    OCSP_RESPONSE* resp = OCSP_response_create(status, nullptr);
    ASSERT_NE(resp, nullptr);
    unsigned char* buf = nullptr;
    const int len = i2d_OCSP_RESPONSE(resp, &buf);
    ASSERT_GT(len, 0);
    const std::string der(reinterpret_cast<char*>(buf), static_cast<size_t>(len));
    OPENSSL_free(buf);
    OCSP_RESPONSE_free(resp);
    EXPECT_TRUE(fails_with(verify_ocsp_response(der, c.good.get(), c.intermediate.get(), now_s()),
                           std::string("responder answered ") + OCSP_response_status_str(status)));
  }
}

// --- Schedule ----------------------------------------------------------------

OcspStatus good_status(sys_seconds this_update, std::chrono::seconds window) {
  OcspStatus s;
  s.status = OcspStatus::Cert::kGood;
  s.this_update = this_update;
  s.next_update = window.count() > 0 ? this_update + window : sys_seconds{};
  s.der = "x";
  return s;
}

TEST(OcspSchedule, RefreshAtTheMidpoint) {
  const sys_seconds t = now_s();
  EXPECT_EQ(next_refresh(good_status(t, 24h), t), t + 12h);
  EXPECT_EQ(next_refresh(good_status(t, 7 * 24h), t + 1h), t + 84h);
}

TEST(OcspSchedule, RefreshAnHourBeforeNextUpdateWhenTheWindowAllows) {
  const sys_seconds t = now_s();
  EXPECT_EQ(next_refresh(good_status(t, 90min), t), t + 30min);
  EXPECT_EQ(next_refresh(good_status(t, 2h), t), t + 1h);
}

TEST(OcspSchedule, ShortWindowUsesTheMidpoint) {
  const sys_seconds t = now_s();
  EXPECT_EQ(next_refresh(good_status(t, 30min), t), t + 15min);
}

TEST(OcspSchedule, NeverSoonerThanAMinute) {
  const sys_seconds t = now_s();
  // Midpoint passed, or the response already expired: now + 60 s.
  EXPECT_EQ(next_refresh(good_status(t - 20h, 24h), t), t + 60s);
  EXPECT_EQ(next_refresh(good_status(t - 48h, 24h), t), t + 60s);
  EXPECT_EQ(next_refresh(good_status(t, 60s), t), t + 60s);
}

TEST(OcspSchedule, NoNextUpdateRefreshesHourly) {
  const sys_seconds t = now_s();
  EXPECT_EQ(next_refresh(good_status(t, 0s), t), t + 1h);
}

TEST(OcspSchedule, BackoffDoublesWithJitterUpToTenMinutes) {
  EXPECT_EQ(backoff(0), 0ms);
  EXPECT_EQ(backoff(-3), 0ms);
  for (int n = 1; n <= 40; ++n) {
    const std::chrono::milliseconds d = std::min<std::chrono::milliseconds>(
        10min, n <= 8 ? std::chrono::milliseconds(5s) * (1 << (n - 1)) : 10min);
    std::set<int64_t> seen;
    for (int i = 0; i < 50; ++i) {
      const auto b = backoff(n);
      EXPECT_LE(b, d) << n;
      EXPECT_GE(b, d * 3 / 4) << n;
      seen.insert(b.count());
    }
    EXPECT_GT(seen.size(), 1u) << "no jitter at failure " << n;
  }
  EXPECT_LE(backoff(1000), 10min);
  EXPECT_LE(backoff(INT32_MAX), 10min);
}

TEST(OcspSchedule, OnlyFreshGoodResponsesAreStapleable) {
  const sys_seconds t = now_s();
  EXPECT_TRUE(stapleable(good_status(t, 24h), t));
  EXPECT_FALSE(stapleable(good_status(t, 24h), t + 24h));  // at nextUpdate
  EXPECT_FALSE(stapleable(good_status(t - 25h, 0s), t));   // no nextUpdate, a day old
  OcspStatus revoked = good_status(t, 24h);
  revoked.status = OcspStatus::Cert::kRevoked;
  EXPECT_FALSE(stapleable(revoked, t));
  OcspStatus unknown = good_status(t, 24h);
  unknown.status = OcspStatus::Cert::kUnknown;
  EXPECT_FALSE(stapleable(unknown, t));
  OcspStatus no_der = good_status(t, 24h);
  no_der.der.clear();
  EXPECT_FALSE(stapleable(no_der, t));
}

}  // namespace
}  // namespace lode::cp

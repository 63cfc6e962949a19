// controlplane/ocsp_crl.cc: the intermediate's CRL made by `openssl ca`
// (tools/make-ocsp-pki.sh), fetched from the certificate's distribution point,
// and CRLs that must be refused.
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <chrono>

#include "controlplane/ocsp.h"
#include "tests/support/ocsp_responder.h"
#include "tests/support/test_pki.h"

namespace lode::cp {
namespace {

using namespace std::chrono_literals;
using test::file_contents;
using test::ocsp_certs;
using test::shared_ocsp_pki;

sys_seconds now_s() {
  return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
}

std::string crl_pem() {
  return file_contents(shared_ocsp_pki().path("intermediate.crl.pem"));
}
std::string crl_der() {
  return file_contents(shared_ocsp_pki().path("intermediate.crl"));
}

::testing::AssertionResult fails_with(const Result<CrlStatus, std::string>& r,
                                      std::string_view needle) {
  if (r) return ::testing::AssertionFailure() << "accepted (revoked=" << r->revoked << ")";
  if (r.error().find(needle) == std::string::npos) {
    return ::testing::AssertionFailure() << "error '" << r.error() << "' lacks '" << needle << "'";
  }
  return ::testing::AssertionSuccess();
}

// A CRL named after `issuer_name_from` but signed with `key`.
std::string forged_crl(X509* issuer_name_from, EVP_PKEY* key) {
  X509_CRL* crl = X509_CRL_new();
  X509_CRL_set_version(crl, X509_CRL_VERSION_2);
  X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer_name_from));
  ASN1_TIME* t = X509_gmtime_adj(nullptr, -3600);
  X509_CRL_set1_lastUpdate(crl, t);
  X509_gmtime_adj(t, 24 * 3600);
  X509_CRL_set1_nextUpdate(crl, t);
  ASN1_TIME_free(t);
  X509_CRL_sign(crl, key, EVP_sha256());
  unsigned char* der = nullptr;
  const int len = i2d_X509_CRL(crl, &der);
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len > 0 ? len : 0));
  OPENSSL_free(der);
  X509_CRL_free(crl);
  return out;
}

TEST(CrlCheck, GoodCertificateNotListed) {
  const auto& c = ocsp_certs();
  for (const std::string& crl : {crl_pem(), crl_der()}) {
    auto st = check_crl(crl, c.good.get(), c.intermediate.get(), now_s());
    ASSERT_TRUE(st) << st.error();
    EXPECT_FALSE(st->revoked);
    EXPECT_LT(st->this_update, now_s());
    EXPECT_GT(st->next_update, now_s() + 24h);
  }
}

TEST(CrlCheck, RevokedCertificateListedWithTimeAndReason) {
  const auto& c = ocsp_certs();
  auto st = check_crl(crl_der(), c.revoked.get(), c.intermediate.get(), now_s());
  ASSERT_TRUE(st) << st.error();
  EXPECT_TRUE(st->revoked);
  EXPECT_LE(st->revoked_at, now_s());
  EXPECT_GT(st->revoked_at, now_s() - 1h);
  EXPECT_EQ(st->revocation_reason, 1);  // keyCompromise
}

TEST(CrlCheck, CrlOfAnotherIssuerRefused) {
  const auto& c = ocsp_certs();
  EXPECT_TRUE(fails_with(check_crl(crl_der(), c.intermediate.get(), c.root.get(), now_s()),
                         "the CRL is issued by /CN=Lodestone OCSP Test Intermediate CA"));
}

TEST(CrlCheck, ForgedSignatureRefused) {
  const auto& c = ocsp_certs();
  auto other_key = test::test_key(test::KeyKind::kEcdsaP256, 9);
  const std::string crl = forged_crl(c.intermediate.get(), other_key.get());
  ASSERT_FALSE(crl.empty());
  EXPECT_TRUE(fails_with(check_crl(crl, c.revoked.get(), c.intermediate.get(), now_s()),
                         "signature does not verify"));
}

TEST(CrlCheck, WrongIssuerArgumentRefused) {
  const auto& c = ocsp_certs();
  EXPECT_TRUE(
      fails_with(check_crl(crl_der(), c.good.get(), c.root.get(), now_s()), "did not issue"));
  EXPECT_TRUE(fails_with(check_crl(crl_der(), nullptr, c.root.get(), now_s()), "no certificate"));
}

TEST(CrlCheck, ExpiredCrlRefused) {
  const auto& c = ocsp_certs();
  EXPECT_TRUE(
      fails_with(check_crl(crl_der(), c.good.get(), c.intermediate.get(), now_s() + 60 * 24h),
                 "the CRL expired"));
}

TEST(CrlCheck, CrlFromTheFutureRefused) {
  const auto& c = ocsp_certs();
  EXPECT_TRUE(fails_with(check_crl(crl_der(), c.good.get(), c.intermediate.get(), now_s() - 72h),
                         "is in the future"));
}

TEST(CrlCheck, GarbageRefused) {
  const auto& c = ocsp_certs();
  X509* cert = c.good.get();
  X509* issuer = c.intermediate.get();
  EXPECT_TRUE(fails_with(check_crl("", cert, issuer, now_s()), "the CRL is empty"));
  EXPECT_TRUE(fails_with(check_crl("garbage", cert, issuer, now_s()), "neither DER nor PEM"));
  const std::string der = crl_der();
  EXPECT_TRUE(fails_with(check_crl(der.substr(0, der.size() - 10), cert, issuer, now_s()),
                         "neither DER nor PEM"));
  EXPECT_TRUE(fails_with(check_crl(der + "zz", cert, issuer, now_s()), "2 bytes after"));
  EXPECT_TRUE(fails_with(
      check_crl("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n", cert, issuer, now_s()),
      "no X509 CRL in the PEM"));
}

TEST(CrlCheck, TamperedCrlRefused) {
  const auto& c = ocsp_certs();
  std::string der = crl_der();
  // The CRL number or a date: flip a byte in the middle of tbsCertList.
  der[der.size() / 3] = static_cast<char>(der[der.size() / 3] ^ 0x01);
  auto st = check_crl(der, c.good.get(), c.intermediate.get(), now_s());
  EXPECT_FALSE(st);
}

TEST(CrlFetch, FromTheDistributionPoint) {
  const auto& c = ocsp_certs();
  test::FakeHttpServer server(
      test::HttpReply{.content_type = "application/pkix-crl", .body = crl_der()},
      shared_ocsp_pki().crl_port);
  ASSERT_TRUE(server.ok());
  const auto urls = crl_urls(c.revoked.get());
  ASSERT_EQ(urls.size(), 1u);
  auto body = fetch_url(urls[0], 2s, 1 << 20);
  ASSERT_TRUE(body) << body.error();
  EXPECT_NE(server.last_head().find("GET /intermediate.crl HTTP/1.1"), std::string::npos);
  auto st = check_crl(*body, c.revoked.get(), c.intermediate.get(), now_s());
  ASSERT_TRUE(st) << st.error();
  EXPECT_TRUE(st->revoked);
}

TEST(CrlFetch, NotFoundRefused) {
  test::FakeHttpServer server(test::HttpReply{.status = 404, .body = "no"});
  ASSERT_TRUE(server.ok());
  auto body = fetch_url(server.url() + "/intermediate.crl", 2s, 1 << 20);
  ASSERT_FALSE(body);
  EXPECT_NE(body.error().find("GET " + server.url() + "/intermediate.crl: HTTP status 404"),
            std::string::npos)
      << body.error();
}

TEST(CrlFetch, SizeCapRefused) {
  test::FakeHttpServer server(test::HttpReply{.body = std::string(5000, 'x')});
  ASSERT_TRUE(server.ok());
  auto body = fetch_url(server.url(), 2s, 4096);
  ASSERT_FALSE(body);
  EXPECT_NE(body.error().find("larger than 4096 bytes"), std::string::npos) << body.error();
}

}  // namespace
}  // namespace lode::cp

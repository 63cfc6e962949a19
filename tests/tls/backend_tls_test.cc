#include "dataplane/tls/backend_tls.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "lodestone/tls_alert.h"
#include "tests/support/mem_handshake.h"
#include "tests/support/test_pki.h"

namespace lode::tls {
namespace {

using test::MemHandshake;
using test::TempDir;
using test::TestCert;

constexpr int kUnknownCa = 48;
constexpr int kBadCertificate = 42;
constexpr int kCertificateExpired = 45;

// A backend server (made with the server side of this module) and the
// backend TLS client under test, in memory.
class BackendTlsTest : public ::testing::Test {
 protected:
  const test::TestPki& pki = test::shared_test_pki();
  TempDir dir;
  std::string root_file = dir.write("ca/root.pem", pki.root.cert_pem());

  ServerCert backend(const std::string& name, test::CertSpec spec = {},
                     const test::TestPki* issuer = nullptr) {
    const test::TestPki& p = issuer != nullptr ? *issuer : pki;
    const TestCert leaf = p.leaf(name, spec);
    auto cert = load_server_cert_pem(p.server_chain_pem(leaf), leaf.key_pem(),
                                     CertFiles{name + ".pem", name + ".key"},
                                     TlsSettings{.alpn = {"h2", "http/1.1"}}, nullptr);
    EXPECT_TRUE(cert) << (cert ? "" : cert.error());
    return cert ? std::move(*cert) : ServerCert{};
  }

  BackendTlsSettings settings(std::string server_name) {
    BackendTlsSettings s;
    s.server_name = std::move(server_name);
    s.ca_file = root_file;
    return s;
  }

  struct Run {
    test::HandshakeResult result;
    std::string server_saw_sni;  // what the backend read
    std::string chain;
    std::string verify;
    std::string alpn;
  };

  // Connects `client` to a backend serving `server` that routed `routed`.
  Run connect(SslPtr client, const ServerCert& server, const std::string& routed) {
    EXPECT_NE(client, nullptr);
    Run run;
    if (!client) return run;
    MemHandshake hs(std::move(client), new_server_ssl(server.ctx.get(), routed));
    run.result = hs.run();
    const char* sni = SSL_get_servername(hs.server(), TLSEXT_NAMETYPE_host_name);
    run.server_saw_sni = sni != nullptr ? sni : "";
    run.chain = describe_chain(hs.client());
    run.verify = verify_error(hs.client());
    run.alpn = std::string(selected_alpn(hs.client()));
    return run;
  }
};

TEST_F(BackendTlsTest, VerifiesTheRightCaAndNameAndLogsTheChain) {
  ServerCert srv = backend("backend.test");
  auto ctx = make_backend_ctx(settings("backend.test"));
  ASSERT_TRUE(ctx) << ctx.error();
  Run run = connect(new_backend_ssl(ctx->get()), srv, "backend.test");
  ASSERT_TRUE(run.result.ok()) << run.result.client_error << " / " << run.result.server_error;
  EXPECT_EQ(run.verify, "");
  EXPECT_EQ(run.server_saw_sni, "backend.test");
  // Leaf, intermediate, root: one line, subject and issuer of each.
  EXPECT_NE(run.chain.find("0 s=CN=backend.test,O=Lodestone Test i=CN=Lodestone Test "
                           "Intermediate A,O=Lodestone Test"),
            std::string::npos)
      << run.chain;
  EXPECT_NE(run.chain.find(" | 1 s=CN=Lodestone Test Intermediate A"), std::string::npos)
      << run.chain;
  EXPECT_NE(run.chain.find(" | 2 s=CN=Lodestone Test Root A"), std::string::npos) << run.chain;
  EXPECT_EQ(run.chain.find('\n'), std::string::npos);
}

TEST_F(BackendTlsTest, SniSentEqualsTheConfiguredServerName) {
  ServerCert srv = backend("backend.test");
  auto ctx = make_backend_ctx(settings("Backend.Test."));  // normalized before use
  ASSERT_TRUE(ctx) << ctx.error();
  SslPtr ssl = new_backend_ssl(ctx->get(), "client.example");  // not used: sni_from_client off
  ASSERT_NE(ssl, nullptr);
  EXPECT_EQ(backend_sni(ssl.get()), "backend.test");
  Run run = connect(std::move(ssl), srv, "backend.test");
  EXPECT_TRUE(run.result.ok()) << run.result.client_error;
  EXPECT_EQ(run.server_saw_sni, "backend.test");
}

TEST_F(BackendTlsTest, ClientSniIsPassedThroughAndVerifiedWhenConfigured) {
  test::CertSpec spec;
  spec.dns_names = {"alt.test"};
  ServerCert srv = backend("backend.test", spec);
  BackendTlsSettings s = settings("backend.test");
  s.sni_from_client = true;
  auto ctx = BackendTlsContext::create(s);
  ASSERT_TRUE(ctx) << ctx.error();
  Run run = connect((*ctx)->new_ssl("alt.test"), srv, "alt.test");
  EXPECT_TRUE(run.result.ok()) << run.result.client_error;
  EXPECT_EQ(run.server_saw_sni, "alt.test");
  // A client without SNI: server_name is the fallback.
  Run fallback = connect((*ctx)->new_ssl(""), srv, "backend.test");
  EXPECT_TRUE(fallback.result.ok()) << fallback.result.client_error;
  EXPECT_EQ(fallback.server_saw_sni, "backend.test");
  // A client SNI the backend's certificate does not cover fails verification.
  ServerCert other = backend("other.test");
  Run wrong = connect((*ctx)->new_ssl("other2.test"), other, "other2.test");
  EXPECT_FALSE(wrong.result.ok());
  EXPECT_NE(wrong.verify.find("hostname mismatch (verify error 62)"), std::string::npos)
      << wrong.verify;
}

TEST_F(BackendTlsTest, WrongCaIsReportedWithTheVerifyError) {
  ServerCert srv = backend("backend.test", {}, &test::other_test_pki());
  auto ctx = make_backend_ctx(settings("backend.test"));
  ASSERT_TRUE(ctx) << ctx.error();
  Run run = connect(new_backend_ssl(ctx->get()), srv, "backend.test");
  EXPECT_FALSE(run.result.client_done);
  EXPECT_EQ(run.result.client_alert_sent, kUnknownCa);
  EXPECT_NE(run.verify.find("unable to get local issuer certificate (verify error 20)"),
            std::string::npos)
      << run.verify;
  // The chain as the backend sent it is still there for the log.
  EXPECT_NE(run.chain.find("0 s=CN=backend.test"), std::string::npos) << run.chain;
  EXPECT_NE(run.chain.find("Intermediate B"), std::string::npos) << run.chain;
}

TEST_F(BackendTlsTest, WrongNameFailsVerification) {
  ServerCert srv = backend("backend.test");
  BackendTlsSettings s = settings("backend.test");
  s.verify_name = "db.test";
  auto ctx = make_backend_ctx(s);
  ASSERT_TRUE(ctx) << ctx.error();
  Run run = connect(new_backend_ssl(ctx->get()), srv, "backend.test");
  EXPECT_FALSE(run.result.client_done);
  EXPECT_EQ(run.result.client_alert_sent, kBadCertificate);
  EXPECT_NE(run.verify.find("hostname mismatch (verify error 62)"), std::string::npos)
      << run.verify;
  EXPECT_EQ(run.server_saw_sni, "backend.test");  // the SNI is still server_name
}

TEST_F(BackendTlsTest, NoPartialWildcards) {
  test::CertSpec spec;
  spec.dns_names = {"b*.example.test"};  // OpenSSL would match it by default
  ServerCert srv = backend("x.example", spec);
  BackendTlsSettings s = settings("x.example");
  s.verify_name = "backend.example.test";
  auto ctx = make_backend_ctx(s);
  ASSERT_TRUE(ctx) << ctx.error();
  Run run = connect(new_backend_ssl(ctx->get()), srv, "x.example");
  EXPECT_FALSE(run.result.client_done);
  EXPECT_NE(run.verify.find("hostname mismatch (verify error 62)"), std::string::npos)
      << run.verify;
}

TEST_F(BackendTlsTest, ExpiredBackendCertificateIsReported) {
  test::CertSpec old;
  old.not_before = -std::chrono::hours(48);
  old.not_after = -std::chrono::hours(24);
  ServerCert srv = backend("backend.test", old);
  auto ctx = make_backend_ctx(settings("backend.test"));
  ASSERT_TRUE(ctx) << ctx.error();
  Run run = connect(new_backend_ssl(ctx->get()), srv, "backend.test");
  EXPECT_FALSE(run.result.client_done);
  EXPECT_EQ(run.result.client_alert_sent, kCertificateExpired);
  EXPECT_NE(run.verify.find("certificate has expired"), std::string::npos) << run.verify;
}

TEST_F(BackendTlsTest, VerifyOffConnectsButStillReportsWhatIsWrong) {
  ServerCert srv = backend("backend.test", {}, &test::other_test_pki());
  BackendTlsSettings s = settings("backend.test");
  s.verify = false;
  auto ctx = make_backend_ctx(s);
  ASSERT_TRUE(ctx) << ctx.error();
  Run run = connect(new_backend_ssl(ctx->get()), srv, "backend.test");
  EXPECT_TRUE(run.result.ok()) << run.result.client_error;
  EXPECT_NE(run.verify.find("verify error"), std::string::npos) << run.verify;
}

TEST_F(BackendTlsTest, CaPathDirectoryIsUsed) {
  char hash_name[32];
  std::snprintf(hash_name, sizeof(hash_name), "%08lx.0",
                X509_subject_name_hash(pki.root.cert.get()));
  dir.write(std::string("capath/") + hash_name, pki.root.cert_pem());
  ServerCert srv = backend("backend.test");
  BackendTlsSettings s;
  s.server_name = "backend.test";
  s.ca_path = dir.path() + "/capath";
  auto ctx = make_backend_ctx(s);
  ASSERT_TRUE(ctx) << ctx.error();
  Run run = connect(new_backend_ssl(ctx->get()), srv, "backend.test");
  EXPECT_TRUE(run.result.ok()) << run.result.client_error;
  // The same directory without the root's hash link: unknown CA.
  dir.remove(std::string("capath/") + hash_name);
  auto empty = make_backend_ctx(s);
  ASSERT_TRUE(empty) << empty.error();
  Run fail = connect(new_backend_ssl(empty->get()), srv, "backend.test");
  EXPECT_FALSE(fail.result.client_done);
  EXPECT_NE(fail.verify.find("verify error 20"), std::string::npos) << fail.verify;
}

TEST_F(BackendTlsTest, IpAddressBackendGetsNoSniAndIsVerifiedByIp) {
  test::CertSpec spec;
  spec.ip_addresses = {"192.0.2.10"};
  ServerCert srv = backend("ip-backend.test", spec);
  BackendTlsSettings s = settings("192.0.2.10");
  auto ctx = make_backend_ctx(s);
  ASSERT_TRUE(ctx) << ctx.error();
  SslPtr ssl = new_backend_ssl(ctx->get());
  ASSERT_NE(ssl, nullptr);
  EXPECT_EQ(backend_sni(ssl.get()), "");
  Run run = connect(std::move(ssl), srv, "");  // the backend's default route: no SNI
  EXPECT_TRUE(run.result.ok()) << run.result.client_error << " / " << run.result.server_error;
  EXPECT_EQ(run.server_saw_sni, "");
  // Another IP is not accepted.
  BackendTlsSettings other = settings("192.0.2.11");
  auto ctx2 = make_backend_ctx(other);
  ASSERT_TRUE(ctx2) << ctx2.error();
  Run wrong = connect(new_backend_ssl(ctx2->get()), srv, "");
  EXPECT_FALSE(wrong.result.client_done);
  EXPECT_NE(wrong.verify.find("IP address mismatch"), std::string::npos) << wrong.verify;
}

TEST_F(BackendTlsTest, AlpnIsOfferedToTheBackend) {
  ServerCert srv = backend("backend.test");
  BackendTlsSettings s = settings("backend.test");
  s.alpn = {"http/1.1"};
  auto ctx = make_backend_ctx(s);
  ASSERT_TRUE(ctx) << ctx.error();
  Run run = connect(new_backend_ssl(ctx->get()), srv, "backend.test");
  EXPECT_TRUE(run.result.ok());
  EXPECT_EQ(run.alpn, "http/1.1");
}

TEST_F(BackendTlsTest, BadSettingsAreRefusedNamingTheSetting) {
  auto err = [](const BackendTlsSettings& s) {
    auto r = make_backend_ctx(s);
    EXPECT_FALSE(r);
    return r ? std::string() : r.error();
  };
  BackendTlsSettings no_name;
  no_name.ca_file = root_file;
  EXPECT_NE(err(no_name).find("no name to check"), std::string::npos);

  BackendTlsSettings missing = settings("backend.test");
  missing.ca_file = dir.path() + "/nope.pem";
  EXPECT_NE(err(missing).find("ca_file " + missing.ca_file), std::string::npos);

  BackendTlsSettings garbage = settings("backend.test");
  garbage.ca_file = dir.write("garbage.pem", "not a certificate");
  EXPECT_NE(err(garbage).find("no CA certificate loaded"), std::string::npos) << err(garbage);

  BackendTlsSettings bad_path = settings("backend.test");
  bad_path.ca_file.clear();
  bad_path.ca_path = dir.path() + "/nope";
  EXPECT_NE(err(bad_path).find("ca_path"), std::string::npos);

  EXPECT_NE(err(settings("bad name")).find("server_name"), std::string::npos);
  BackendTlsSettings bad_verify = settings("backend.test");
  bad_verify.verify_name = "a..b";
  EXPECT_NE(err(bad_verify).find("verify_name"), std::string::npos);
  BackendTlsSettings bad_alpn = settings("backend.test");
  bad_alpn.alpn = {""};
  EXPECT_NE(err(bad_alpn).find("alpn"), std::string::npos);
  BackendTlsSettings versions = settings("backend.test");
  versions.min_version = TlsVersion::kTls13;
  versions.max_version = TlsVersion::kTls12;
  EXPECT_NE(err(versions).find("min_version"), std::string::npos);
}

TEST_F(BackendTlsTest, NoSslWithoutANameToVerify) {
  // Pass-through SNI with verification and no fallback name: a client with
  // no SNI gets no backend SSL rather than an unchecked backend.
  BackendTlsSettings s;
  s.sni_from_client = true;
  s.ca_file = root_file;
  auto ctx = make_backend_ctx(s);
  ASSERT_TRUE(ctx) << ctx.error();
  EXPECT_EQ(new_backend_ssl(ctx->get(), ""), nullptr);
  EXPECT_EQ(new_backend_ssl(ctx->get(), "bad name"), nullptr);
  EXPECT_NE(new_backend_ssl(ctx->get(), "backend.test"), nullptr);
}

TEST_F(BackendTlsTest, NewBackendSslNeedsABackendContext) {
  ServerCert srv = backend("backend.test");
  EXPECT_EQ(new_backend_ssl(nullptr), nullptr);
  EXPECT_EQ(new_backend_ssl(srv.ctx.get()), nullptr);
  SslCtxPtr plain(SSL_CTX_new(TLS_client_method()));
  EXPECT_EQ(new_backend_ssl(plain.get()), nullptr);
}

TEST_F(BackendTlsTest, DescribeChainWithoutAPeer) {
  auto ctx = make_backend_ctx(settings("backend.test"));
  ASSERT_TRUE(ctx) << ctx.error();
  SslPtr ssl = new_backend_ssl(ctx->get());
  EXPECT_EQ(describe_chain(ssl.get()), "no certificate");
  EXPECT_EQ(verify_error(ssl.get()), "");
}

}  // namespace
}  // namespace lode::tls

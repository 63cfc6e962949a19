#include "dataplane/tls/tls_context.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <chrono>
#include <sstream>
#include <string>
#include <vector>

#include "lodestone/tls_alert.h"
#include "tests/support/mem_handshake.h"
#include "tests/support/test_pki.h"

namespace lode::tls {
namespace {

using test::MemHandshake;
using test::TempDir;
using test::TestCert;

constexpr int code(TlsAlert a) {
  return static_cast<int>(a);
}

class TlsContextTest : public ::testing::Test {
 protected:
  const test::TestPki& pki = test::shared_test_pki();
  TempDir dir;

  // Writes NAME.pem (leaf + intermediate) and NAME.key, returns the paths.
  CertFiles write_pair(const std::string& name, const TestCert& leaf) {
    return CertFiles{dir.write(name + ".pem", pki.server_chain_pem(leaf)),
                     dir.write(name + ".key", leaf.key_pem())};
  }

  ServerCert load(const std::string& name, const TlsSettings& settings = {},
                  std::shared_ptr<TicketKeys> keys = nullptr) {
    auto cert = load_server_cert(write_pair(name, pki.leaf(name)), settings, std::move(keys));
    EXPECT_TRUE(cert) << (cert ? "" : cert.error());
    return cert ? std::move(*cert) : ServerCert{};
  }

  SslCtxPtr client_ctx(test::TestClientOptions o = {}) {
    if (o.ca_pem.empty()) o.ca_pem = pki.root.cert_pem();
    return test::make_test_client_ctx(o);
  }
};

std::string load_error(const CertFiles& files, const TlsSettings& s = {}) {
  auto r = load_server_cert(files, s, nullptr);
  EXPECT_FALSE(r) << "loaded but should not have: " << files.cert_path;
  return r ? std::string() : r.error();
}

// --- loading -----------------------------------------------------------------

TEST_F(TlsContextTest, LoadsEcdsaChainAndDescribesIt) {
  test::CertSpec spec;
  spec.dns_names = {"www.a.test", "*.cdn.a.test", "A.Test"};  // duplicate after folding
  auto files = write_pair("a.test", pki.leaf("a.test", spec));
  auto cert = load_server_cert(files, {}, nullptr);
  ASSERT_TRUE(cert) << cert.error();
  EXPECT_EQ(cert->info.names, (std::vector<std::string>{"a.test", "www.a.test", "*.cdn.a.test"}));
  EXPECT_EQ(cert->info.key_type, "EC P-256");
  EXPECT_NE(cert->info.subject.find("CN=a.test"), std::string::npos) << cert->info.subject;
  EXPECT_NE(cert->info.issuer.find("Intermediate"), std::string::npos) << cert->info.issuer;
  const auto now =
      std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  EXPECT_FALSE(cert->info.expired_at(now));
  EXPECT_GT(cert->info.not_after, now + std::chrono::hours(24 * 29));
  EXPECT_LT(cert->info.not_after, now + std::chrono::hours(24 * 31));
  EXPECT_EQ(describe_server_ctx(cert->ctx.get()).names, cert->info.names);
}

TEST_F(TlsContextTest, ServesTheChosenCertificateWithItsChain) {
  ServerCert a = load("a.test");
  ServerCert b = load("b.test");
  auto cctx = client_ctx();
  for (auto [ctx, name] : {std::pair{a.ctx.get(), "a.test"}, std::pair{b.ctx.get(), "b.test"}}) {
    MemHandshake hs(test::new_test_client(cctx.get(), name), new_server_ssl(ctx, name));
    auto r = hs.run();
    ASSERT_TRUE(r.ok()) << r.client_error << " / " << r.server_error;
    EXPECT_EQ(test::peer_cn(hs.client()), name);
    // Verification to the root proves the intermediate was sent.
    EXPECT_EQ(SSL_get_verify_result(hs.client()), X509_V_OK);
    EXPECT_EQ(hs.client_to_server("ping"), "ping");
    EXPECT_EQ(hs.server_to_client("pong"), "pong");
  }
}

TEST_F(TlsContextTest, LoadsRsaKeyAndServesTls12AndTls13) {
  test::CertSpec spec;
  spec.key_kind = test::KeyKind::kRsa2048;
  auto files = write_pair("rsa.test", pki.leaf("rsa.test", spec));
  auto cert = load_server_cert(files, {}, nullptr);
  ASSERT_TRUE(cert) << cert.error();
  EXPECT_EQ(cert->info.key_type, "RSA 2048");
  for (int v : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    auto cctx = client_ctx({.min_version = v, .max_version = v});
    MemHandshake hs(test::new_test_client(cctx.get(), "rsa.test"),
                    new_server_ssl(cert->ctx.get(), "rsa.test"));
    auto r = hs.run();
    ASSERT_TRUE(r.ok()) << r.client_error << " / " << r.server_error;
    EXPECT_EQ(SSL_version(hs.client()), v);
    EXPECT_TRUE(SSL_CIPHER_is_aead(SSL_get_current_cipher(hs.client())));
  }
}

TEST_F(TlsContextTest, LoadsTraditionalKeyFormat) {
  const TestCert leaf = pki.leaf("trad.test");
  CertFiles files{dir.write("trad.pem", pki.server_chain_pem(leaf)),
                  dir.write("trad.key", leaf.traditional_key_pem())};
  auto cert = load_server_cert(files, {}, nullptr);
  EXPECT_TRUE(cert) << cert.error();
}

TEST_F(TlsContextTest, LoadsFromPemInMemory) {
  const TestCert leaf = pki.leaf("mem.test");
  auto cert = load_server_cert_pem(pki.server_chain_pem(leaf), leaf.key_pem(),
                                   CertFiles{"shm:cert/7", "shm:key/7"}, {}, nullptr);
  ASSERT_TRUE(cert) << cert.error();
  EXPECT_EQ(cert->info.names, std::vector<std::string>{"mem.test"});
  auto bad = load_server_cert_pem("junk", leaf.key_pem(), CertFiles{"shm:cert/8", "shm:key/8"}, {},
                                  nullptr);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("shm:cert/8"), std::string::npos) << bad.error();
}

TEST_F(TlsContextTest, KeyCertMismatchNamesBothFiles) {
  test::CertSpec other_key;
  other_key.key_slot = 1;
  const TestCert leaf = pki.leaf("a.test");
  const TestCert stranger = pki.leaf("x.test", other_key);
  CertFiles files{dir.write("certs/a.pem", pki.server_chain_pem(leaf)),
                  dir.write("certs/a.key", stranger.key_pem())};
  const std::string err = load_error(files);
  EXPECT_NE(err.find(files.key_path + ": key does not match certificate " + files.cert_path),
            std::string::npos)
      << err;
}

TEST_F(TlsContextTest, RsaKeyForEcdsaCertificateIsAMismatch) {
  test::CertSpec rsa;
  rsa.key_kind = test::KeyKind::kRsa2048;
  const TestCert leaf = pki.leaf("a.test");
  CertFiles files{dir.write("a.pem", pki.server_chain_pem(leaf)),
                  dir.write("a.key", pki.leaf("r.test", rsa).key_pem())};
  EXPECT_NE(load_error(files).find("does not match"), std::string::npos);
}

TEST_F(TlsContextTest, ChainInWrongOrderIsExplained) {
  const TestCert leaf = pki.leaf("a.test");
  CertFiles files{dir.write("a.pem", test::chain_pem({&pki.intermediate, &leaf})),
                  dir.write("a.key", leaf.key_pem())};
  const std::string err = load_error(files);
  EXPECT_NE(err.find("matches certificate #2"), std::string::npos) << err;
  EXPECT_NE(err.find("must come first"), std::string::npos) << err;
}

TEST_F(TlsContextTest, EncryptedKeysAreRefusedClearlyWithoutLeakingThem) {
  const TestCert leaf = pki.leaf("a.test");
  const std::string chain = dir.write("a.pem", pki.server_chain_pem(leaf));
  for (const std::string& pem :
       {leaf.encrypted_key_pem("hunter2"), leaf.encrypted_traditional_key_pem("hunter2")}) {
    const std::string key_path = dir.write("a.key", pem);
    const std::string err = load_error(CertFiles{chain, key_path});
    EXPECT_NE(err.find(key_path + ": the private key is encrypted"), std::string::npos) << err;
    // Not a line of the key's PEM body shows up in the message.
    std::istringstream lines(pem);
    for (std::string line; std::getline(lines, line);) {
      if (line.size() >= 16 && line.find("-----") == std::string::npos) {
        EXPECT_EQ(err.find(line.substr(0, 16)), std::string::npos);
      }
    }
  }
}

TEST_F(TlsContextTest, KeyErrorsNeverQuoteTheKey) {
  // A key that parses as PEM but is corrupt inside: the message names the
  // file and the reason, never bytes of the key.
  const TestCert leaf = pki.leaf("a.test");
  std::string pem = leaf.key_pem();
  const size_t body = pem.find('\n') + 1;
  pem[body + 10] = pem[body + 10] == 'A' ? 'B' : 'A';
  pem[body + 11] = pem[body + 11] == 'A' ? 'B' : 'A';
  CertFiles files{dir.write("a.pem", pki.server_chain_pem(leaf)), dir.write("a.key", pem)};
  const std::string err = load_error(files);
  EXPECT_NE(err.find(files.key_path), std::string::npos) << err;
  EXPECT_EQ(err.find(pem.substr(body, 16)), std::string::npos) << err;
}

TEST_F(TlsContextTest, GarbageCertificateFilesAreRefused) {
  const TestCert leaf = pki.leaf("a.test");
  const std::string key = dir.write("a.key", leaf.key_pem());

  const std::string text = dir.write("text.pem", "hello, this is not a certificate\n");
  EXPECT_NE(load_error({text, key}).find(text + ": no certificate found"), std::string::npos);

  const std::string empty = dir.write("empty.pem", "");
  EXPECT_NE(load_error({empty, key}).find("no certificate found"), std::string::npos);

  std::string pem = leaf.cert_pem();
  pem.replace(pem.find('\n') + 5, 12, "!!!!garbage!");
  const std::string corrupt = dir.write("corrupt.pem", pem);
  EXPECT_NE(load_error({corrupt, key}).find(corrupt + ": certificate #1 is not a valid"),
            std::string::npos);

  // The second certificate of a chain is corrupt.
  const std::string second = dir.write("second.pem", leaf.cert_pem() + pem);
  EXPECT_NE(load_error({second, key}).find("certificate #2 is not a valid"), std::string::npos);
}

TEST_F(TlsContextTest, GarbageKeyFilesAreRefused) {
  const TestCert leaf = pki.leaf("a.test");
  const std::string chain = dir.write("a.pem", pki.server_chain_pem(leaf));

  const std::string text = dir.write("text.key", "not a key");
  EXPECT_NE(load_error({chain, text}).find(text + ": no private key found"), std::string::npos)
      << load_error({chain, text});

  const std::string cert_as_key = dir.write("cert.key", leaf.cert_pem());
  EXPECT_NE(load_error({chain, cert_as_key}).find("no private key found"), std::string::npos);
}

TEST_F(TlsContextTest, UnsupportedKeyTypeRefused) {
  test::CertSpec ed;
  ed.key_kind = test::KeyKind::kEd25519;
  const TestCert leaf = pki.leaf("ed.test", ed);
  CertFiles files{dir.write("ed.pem", pki.server_chain_pem(leaf)),
                  dir.write("ed.key", leaf.key_pem())};
  const std::string err = load_error(files);
  EXPECT_NE(err.find(files.key_path + ": unsupported key type"), std::string::npos) << err;
}

TEST_F(TlsContextTest, MissingFilesAreNamed) {
  const TestCert leaf = pki.leaf("a.test");
  const std::string chain = dir.write("a.pem", pki.server_chain_pem(leaf));
  const std::string key = dir.write("a.key", leaf.key_pem());
  const std::string nope = dir.path() + "/nope.pem";
  EXPECT_NE(load_error({nope, key}).find(nope + ": cannot open"), std::string::npos);
  EXPECT_NE(load_error({chain, nope}).find(nope + ": cannot open"), std::string::npos);
  EXPECT_NE(load_error({dir.path(), key}).find("not a regular file"), std::string::npos);
}

TEST_F(TlsContextTest, ExpiredCertificateLoadsAndReportsNotAfter) {
  test::CertSpec old;
  old.not_before = -std::chrono::hours(48);
  old.not_after = -std::chrono::hours(24);
  auto files = write_pair("old.test", pki.leaf("old.test", old));
  auto cert = load_server_cert(files, {}, nullptr);
  ASSERT_TRUE(cert) << cert.error();
  const auto now =
      std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  EXPECT_TRUE(cert->info.expired_at(now));
  EXPECT_LT(cert->info.not_after, now - std::chrono::hours(23));
  // A verifying client refuses it.
  auto cctx = client_ctx();
  MemHandshake hs(test::new_test_client(cctx.get(), "old.test"),
                  new_server_ssl(cert->ctx.get(), "old.test"));
  auto r = hs.run();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(SSL_get_verify_result(hs.client()), X509_V_ERR_CERT_HAS_EXPIRED);
}

TEST_F(TlsContextTest, BadSettingsAreRefusedNamingTheSetting) {
  auto err = [](TlsSettings s) {
    auto r = validate_settings(s);
    EXPECT_FALSE(r);
    return r ? std::string() : r.error();
  };
  EXPECT_TRUE(validate_settings({}));
  EXPECT_NE(err({.cipher_list = "NOT-A-CIPHER"}).find("cipher_list"), std::string::npos);
  EXPECT_NE(err({.ciphersuites = "TLS_NOPE"}).find("ciphersuites"), std::string::npos);
  EXPECT_NE(err({.groups = "X99999"}).find("groups"), std::string::npos);
  EXPECT_NE(err({.min_version = TlsVersion::kTls13, .max_version = TlsVersion::kTls12})
                .find("min_version"),
            std::string::npos);
  EXPECT_NE(err({.alpn = {"h2", ""}}).find("alpn"), std::string::npos);
  EXPECT_NE(err({.alpn = {std::string(256, 'x')}}).find("alpn"), std::string::npos);
  EXPECT_NE(err({.alpn = std::vector<std::string>(17, "h2")}).find("alpn"), std::string::npos);
  // A certificate is not loaded with bad settings either.
  auto files = write_pair("a.test", pki.leaf("a.test"));
  EXPECT_NE(load_error(files, {.groups = "X99999"}).find("groups"), std::string::npos);
}

TEST_F(TlsContextTest, SecureDefaultsAreSet) {
  ServerCert a = load("a.test");
  const uint64_t opts = SSL_CTX_get_options(a.ctx.get());
  EXPECT_TRUE(opts & SSL_OP_NO_COMPRESSION);
  EXPECT_TRUE(opts & SSL_OP_NO_RENEGOTIATION);
  EXPECT_FALSE(opts & SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
  EXPECT_TRUE(opts & SSL_OP_CIPHER_SERVER_PREFERENCE);
  EXPECT_TRUE(opts & SSL_OP_ENABLE_KTLS);
  EXPECT_FALSE(opts & SSL_OP_NO_TICKET);
  EXPECT_TRUE(SSL_CTX_get_mode(a.ctx.get()) & SSL_MODE_RELEASE_BUFFERS);
  EXPECT_EQ(SSL_CTX_get_session_cache_mode(a.ctx.get()), SSL_SESS_CACHE_OFF);
  EXPECT_EQ(SSL_CTX_get_min_proto_version(a.ctx.get()), TLS1_2_VERSION);
  EXPECT_EQ(SSL_CTX_get_max_proto_version(a.ctx.get()), TLS1_3_VERSION);
}

// --- protocol versions, ciphers, renegotiation -------------------------------

TEST_F(TlsContextTest, Tls11ClientIsRefusedWithProtocolVersion) {
  ServerCert a = load("a.test");
  auto cctx = client_ctx({.min_version = TLS1_VERSION,
                          .max_version = TLS1_1_VERSION,
                          .cipher_list = "DEFAULT:@SECLEVEL=0"});
  MemHandshake hs(test::new_test_client(cctx.get(), "a.test"),
                  new_server_ssl(a.ctx.get(), "a.test"));
  auto r = hs.run();
  EXPECT_FALSE(r.client_done);
  EXPECT_FALSE(r.server_done);
  EXPECT_EQ(r.server_alert_sent, code(TlsAlert::kProtocolVersion)) << r.server_error;
  EXPECT_EQ(r.client_alert_received, code(TlsAlert::kProtocolVersion));
}

TEST_F(TlsContextTest, Tls12ClientOfferingOnlyCbcIsRefused) {
  ServerCert a = load("a.test");
  auto cctx = client_ctx({.max_version = TLS1_2_VERSION,
                          .cipher_list = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384"});
  MemHandshake hs(test::new_test_client(cctx.get(), "a.test"),
                  new_server_ssl(a.ctx.get(), "a.test"));
  auto r = hs.run();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.server_alert_sent, code(TlsAlert::kHandshakeFailure)) << r.server_error;
  EXPECT_NE(r.server_error.find("no shared cipher"), std::string::npos) << r.server_error;
}

TEST_F(TlsContextTest, Tls12ClientGetsAnAeadCipherByServerPreference) {
  ServerCert a = load("a.test");
  // The client prefers CHACHA20 and also offers a CBC suite; the server's
  // order wins and CBC is never chosen.
  auto cctx = client_ctx({.max_version = TLS1_2_VERSION,
                          .cipher_list = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-CHACHA20-POLY1305:"
                                         "ECDHE-ECDSA-AES128-GCM-SHA256"});
  MemHandshake hs(test::new_test_client(cctx.get(), "a.test"),
                  new_server_ssl(a.ctx.get(), "a.test"));
  auto r = hs.run();
  ASSERT_TRUE(r.ok()) << r.server_error;
  EXPECT_STREQ(SSL_get_cipher_name(hs.client()), "ECDHE-ECDSA-AES128-GCM-SHA256");
}

TEST_F(TlsContextTest, RenegotiationIsRefused) {
  ServerCert a = load("a.test");
  auto cctx = client_ctx({.max_version = TLS1_2_VERSION});
  MemHandshake hs(test::new_test_client(cctx.get(), "a.test"),
                  new_server_ssl(a.ctx.get(), "a.test"));
  ASSERT_TRUE(hs.run().ok());
  ASSERT_EQ(SSL_renegotiate(hs.client()), 1);
  ASSERT_LE(SSL_do_handshake(hs.client()), 0);  // sends the new ClientHello
  char buf[16];
  for (int i = 0; i < 4; ++i) {
    hs.transfer();
    (void)SSL_read(hs.server(), buf, sizeof(buf));
    hs.transfer();
    (void)SSL_read(hs.client(), buf, sizeof(buf));
  }
  ERR_clear_error();
  ASSERT_FALSE(hs.server_alerts_sent().empty());
  EXPECT_EQ(hs.server_alerts_sent().front().description, 100);  // no_renegotiation
  EXPECT_EQ(SSL_num_renegotiations(hs.server()), 0);
  // The client gave up on the connection (OpenSSL makes the refusal fatal).
  EXPECT_EQ(SSL_write(hs.client(), "x", 1), -1);
  ERR_clear_error();
}

TEST_F(TlsContextTest, Tls13OnlySettingsRefuseTls12Clients) {
  ServerCert a = load("a.test", {.min_version = TlsVersion::kTls13});
  auto cctx = client_ctx({.max_version = TLS1_2_VERSION});
  MemHandshake hs(test::new_test_client(cctx.get(), "a.test"),
                  new_server_ssl(a.ctx.get(), "a.test"));
  auto r = hs.run();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.server_alert_sent, code(TlsAlert::kProtocolVersion));
}

// --- ALPN ----------------------------------------------------------------------

struct AlpnCase {
  std::vector<std::string> server;
  bool strict;
  std::vector<std::string> client;
  bool ok;
  std::string chosen;
};

class TlsContextAlpnTest : public TlsContextTest, public ::testing::WithParamInterface<AlpnCase> {};

TEST_P(TlsContextAlpnTest, Negotiates) {
  const AlpnCase& c = GetParam();
  ServerCert a = load("a.test", {.alpn = c.server, .alpn_strict = c.strict});
  auto cctx = client_ctx({.alpn = c.client});
  MemHandshake hs(test::new_test_client(cctx.get(), "a.test"),
                  new_server_ssl(a.ctx.get(), "a.test"));
  auto r = hs.run();
  ASSERT_EQ(r.ok(), c.ok) << r.server_error;
  if (c.ok) {
    EXPECT_EQ(selected_alpn(hs.server()), c.chosen);
    EXPECT_EQ(selected_alpn(hs.client()), c.chosen);
  } else {
    EXPECT_EQ(r.server_alert_sent, code(TlsAlert::kNoApplicationProtocol));
  }
}

INSTANTIATE_TEST_SUITE_P(
    TlsContextAlpn, TlsContextAlpnTest,
    ::testing::Values(
        // Server preference wins over the client's order.
        AlpnCase{{"h2", "http/1.1"}, false, {"http/1.1", "h2"}, true, "h2"},
        AlpnCase{{"h2", "http/1.1"}, false, {"h2"}, true, "h2"},
        AlpnCase{{"h2", "http/1.1"}, false, {"http/1.1"}, true, "http/1.1"},
        AlpnCase{{"h2", "http/1.1"}, false, {"spdy/3", "h2c"}, true, ""},     // no overlap
        AlpnCase{{"h2", "http/1.1"}, false, {}, true, ""},                    // client has none
        AlpnCase{{"h2", "http/1.1"}, true, {"spdy/3"}, false, ""},            // strict
        AlpnCase{{"h2", "http/1.1"}, true, {}, true, ""},                     // strict, no ALPN
        AlpnCase{{}, false, {"h2"}, true, ""},                                // server ignores
        AlpnCase{{"http/1.1"}, false, {"http/1.1x", "http/1."}, true, ""}));  // near misses

// --- SNI re-check ----------------------------------------------------------------

TEST_F(TlsContextTest, SniEqualToTheRoutedNameIsAccepted) {
  ServerCert a = load("a.test");
  // No verification on the client: the SNI is odd on purpose. OpenSSL reads
  // "A.TEST" or "a.test." and the re-check normalizes it like the worker does.
  auto plain = test::make_test_client_ctx({});
  for (const char* sent : {"a.test", "A.TEST", "a.test."}) {
    MemHandshake hs(test::new_test_client(plain.get(), sent),
                    new_server_ssl(a.ctx.get(), "a.test"));
    auto r = hs.run();
    EXPECT_TRUE(r.ok()) << sent << ": " << r.server_error;
    EXPECT_FALSE(sni_mismatch(hs.server()));
  }
}

TEST_F(TlsContextTest, SniDifferentFromTheRoutedNameIsRefused) {
  ServerCert a = load("a.test");
  auto plain = test::make_test_client_ctx({});
  for (const char* sent : {"b.test", "a.test.evil", "a.tes", "127.0.0.1", "xa.test"}) {
    MemHandshake hs(test::new_test_client(plain.get(), sent),
                    new_server_ssl(a.ctx.get(), "a.test"));
    auto r = hs.run();
    EXPECT_FALSE(r.ok()) << sent;
    EXPECT_FALSE(r.server_done) << sent;
    EXPECT_EQ(r.server_alert_sent, code(TlsAlert::kUnrecognizedName)) << sent;
    EXPECT_EQ(r.client_alert_received, code(TlsAlert::kUnrecognizedName)) << sent;
    EXPECT_TRUE(sni_mismatch(hs.server())) << sent;
    EXPECT_EQ(SSL_get0_peer_certificate(hs.client()), nullptr) << "no certificate was sent";
  }
}

TEST_F(TlsContextTest, SniAbsentButRoutedByNameIsRefused) {
  ServerCert a = load("a.test");
  auto plain = test::make_test_client_ctx({});
  MemHandshake hs(test::new_test_client(plain.get(), ""), new_server_ssl(a.ctx.get(), "a.test"));
  auto r = hs.run();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.server_alert_sent, code(TlsAlert::kUnrecognizedName));
  EXPECT_TRUE(sni_mismatch(hs.server()));
}

TEST_F(TlsContextTest, NoSniOnADefaultRouteIsAccepted) {
  ServerCert a = load("a.test");
  auto plain = test::make_test_client_ctx({});
  MemHandshake hs(test::new_test_client(plain.get(), ""), new_server_ssl(a.ctx.get(), ""));
  auto r = hs.run();
  EXPECT_TRUE(r.ok()) << r.server_error;
  EXPECT_EQ(test::peer_cn(hs.client()), "a.test");
}

TEST_F(TlsContextTest, SniPresentButWorkerSawNoneIsRefused) {
  ServerCert a = load("a.test");
  auto plain = test::make_test_client_ctx({});
  MemHandshake hs(test::new_test_client(plain.get(), "a.test"), new_server_ssl(a.ctx.get(), ""));
  auto r = hs.run();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.server_alert_sent, code(TlsAlert::kUnrecognizedName));
}

TEST_F(TlsContextTest, ServerSslNotMadeByNewServerSslFailsClosed) {
  ServerCert a = load("a.test");
  auto plain = test::make_test_client_ctx({});
  SslPtr raw(SSL_new(a.ctx.get()));
  SSL_set_accept_state(raw.get());
  MemHandshake hs(test::new_test_client(plain.get(), "a.test"), std::move(raw));
  auto r = hs.run();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.server_alert_sent, code(TlsAlert::kInternalError));
}

TEST_F(TlsContextTest, NewServerSslRejectsBadInput) {
  ServerCert a = load("a.test");
  auto plain = test::make_test_client_ctx({});
  EXPECT_EQ(new_server_ssl(nullptr, "a.test"), nullptr);
  EXPECT_EQ(new_server_ssl(plain.get(), "a.test"), nullptr);  // not a server ctx made here
  EXPECT_EQ(new_server_ssl(a.ctx.get(), "bad name"), nullptr);
  EXPECT_EQ(new_server_ssl(a.ctx.get(), "10.0.0.1"), nullptr);
  EXPECT_EQ(new_server_ssl(a.ctx.get(), std::string(300, 'a')), nullptr);
  EXPECT_NE(new_server_ssl(a.ctx.get(), "A.TEST."), nullptr);
}

TEST_F(TlsContextTest, SessionTicketsOffIssuesNoTicket) {
  ServerCert a = load("a.test", {.session_tickets = false});
  auto cctx = client_ctx();
  MemHandshake hs(test::new_test_client(cctx.get(), "a.test"),
                  new_server_ssl(a.ctx.get(), "a.test"));
  ASSERT_TRUE(hs.run().ok());
  auto session = hs.client_session();
  ASSERT_NE(session, nullptr);
  EXPECT_FALSE(SSL_SESSION_has_ticket(session.get()));
  EXPECT_FALSE(SSL_SESSION_is_resumable(session.get()));
}

}  // namespace
}  // namespace lode::tls

#include "dataplane/tls/cert_store.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <chrono>
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

class CertStoreTest : public ::testing::Test {
 protected:
  const test::TestPki& pki = test::shared_test_pki();
  TempDir dir;
  SslCtxPtr client = test::make_test_client_ctx({.ca_pem = pki.root.cert_pem()});

  // Drops NAME.pem + NAME.key (default pattern) into `sub`.
  void drop(const std::string& sub, const std::string& file_name, const TestCert& leaf) {
    dir.write(sub + "/" + file_name + ".pem", pki.server_chain_pem(leaf));
    dir.write(sub + "/" + file_name + ".key", leaf.key_pem());
  }
  void drop(const std::string& sub, const std::string& name) { drop(sub, name, pki.leaf(name)); }

  CertStoreBuild build(const CertStoreConfig& config) {
    auto r = CertStore::build(config, {}, nullptr);
    if (!r) {
      ADD_FAILURE() << r.error();
      r = CertStore::build({}, {}, nullptr);  // an empty store, so the test goes on
    }
    return std::move(*r);
  }

  CertStoreConfig dir_config(const std::string& sub, std::string cert_pattern = "%n.pem",
                             std::string key_pattern = "%n.key") {
    CertStoreConfig c;
    c.add_directory("sites", dir.path() + "/" + sub, std::move(cert_pattern),
                    std::move(key_pattern));
    return c;
  }

  // The CN a verifying client sees when the worker serves `ctx` for `host`.
  std::string served_cn(SSL_CTX* ctx, const std::string& host) {
    if (ctx == nullptr) return "<none>";
    MemHandshake hs(test::new_test_client(client.get(), host), new_server_ssl(ctx, host));
    auto r = hs.run();
    if (!r.ok()) return "<failed: " + r.client_error + " / " + r.server_error + ">";
    return test::peer_cn(hs.client());
  }
};

bool has_warning(const std::vector<std::string>& warnings, const std::string& needle) {
  return std::any_of(warnings.begin(), warnings.end(),
                     [&](const std::string& w) { return w.find(needle) != std::string::npos; });
}

std::string all(const std::vector<std::string>& warnings) {
  std::string out;
  for (const auto& w : warnings) out += w + "\n";
  return out;
}

// --- named certificates ---------------------------------------------------------

TEST_F(CertStoreTest, NamedCertificatesServeTheirNames) {
  const TestCert a = pki.leaf("a.test");
  const TestCert b = pki.leaf("b.test");
  CertStoreConfig config;
  config.add_named("a",
                   {dir.write("a.pem", pki.server_chain_pem(a)), dir.write("a.key", a.key_pem())});
  config.add_named("b",
                   {dir.write("b.pem", pki.server_chain_pem(b)), dir.write("b.key", b.key_pem())});
  auto built = build(config);
  EXPECT_TRUE(built.warnings.empty()) << all(built.warnings);
  EXPECT_EQ(built.store.named_count(), 2u);
  EXPECT_EQ(served_cn(built.store.find_by_name("a"), "a.test"), "a.test");
  EXPECT_EQ(served_cn(built.store.find_by_name("b"), "b.test"), "b.test");
  EXPECT_EQ(built.store.find_by_name("c"), nullptr);
  EXPECT_EQ(built.store.find_by_name(""), nullptr);
  EXPECT_EQ(built.store.find_by_name("A"), nullptr);  // config names are exact
}

TEST_F(CertStoreTest, NamedCertificateThatFailsFailsTheBuild) {
  const TestCert a = pki.leaf("a.test");
  test::CertSpec other;
  other.key_slot = 1;
  CertStoreConfig config;
  const std::string cert = dir.write("a.pem", pki.server_chain_pem(a));
  const std::string key = dir.write("a.key", pki.leaf("z.test", other).key_pem());
  config.add_named("app", {cert, key});
  auto r = CertStore::build(config, {}, nullptr);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("certificate \"app\""), std::string::npos) << r.error();
  EXPECT_NE(r.error().find(key + ": key does not match certificate " + cert), std::string::npos)
      << r.error();
}

TEST_F(CertStoreTest, DuplicateNamesAndBadSettingsFailTheBuild) {
  const TestCert a = pki.leaf("a.test");
  const CertFiles files{dir.write("a.pem", pki.server_chain_pem(a)),
                        dir.write("a.key", a.key_pem())};
  CertStoreConfig twice;
  twice.add_named("a", files);
  twice.add_named("a", files);
  auto r = CertStore::build(twice, {}, nullptr);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("defined twice"), std::string::npos) << r.error();

  CertStoreConfig dirs;
  dirs.add_directory("d", dir.path());
  dirs.add_directory("d", dir.path());
  r = CertStore::build(dirs, {}, nullptr);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("defined twice"), std::string::npos) << r.error();

  CertStoreConfig ok;
  ok.add_named("a", files);
  r = CertStore::build(ok, {.cipher_list = "NOPE"}, nullptr);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("cipher_list"), std::string::npos) << r.error();
}

TEST_F(CertStoreTest, ExpiredNamedCertificateLoadsWithAWarning) {
  test::CertSpec old;
  old.not_before = -std::chrono::hours(48);
  old.not_after = -std::chrono::hours(24);
  const TestCert a = pki.leaf("old.test", old);
  CertStoreConfig config;
  const std::string cert = dir.write("old.pem", pki.server_chain_pem(a));
  config.add_named("old", {cert, dir.write("old.key", a.key_pem())});
  auto built = build(config);
  EXPECT_NE(built.store.find_by_name("old"), nullptr);
  EXPECT_TRUE(has_warning(built.warnings, cert + ": certificate expired at "))
      << all(built.warnings);
}

// --- directory mode ------------------------------------------------------------------

TEST_F(CertStoreTest, DirectoryServesEachFileUnderItsName) {
  drop("sites", "a.test");
  drop("sites", "b.test");
  auto built = build(dir_config("sites"));
  EXPECT_TRUE(built.warnings.empty()) << all(built.warnings);
  EXPECT_EQ(built.store.directory_cert_count("sites"), 2u);
  EXPECT_EQ(served_cn(built.store.find_for_host("sites", "a.test"), "a.test"), "a.test");
  EXPECT_EQ(served_cn(built.store.find_for_host("sites", "b.test"), "b.test"), "b.test");
  EXPECT_EQ(built.store.find_for_host("sites", "c.test"), nullptr);
  EXPECT_EQ(built.store.find_for_host("other", "a.test"), nullptr);
  EXPECT_EQ(built.store.find_for_host("sites", ""), nullptr);
  EXPECT_EQ(built.store.find_by_name("a.test"), nullptr);  // directories are not named certs
}

TEST_F(CertStoreTest, FileDroppedInIsServedAfterRebuild) {
  drop("sites", "a.test");
  auto before = build(dir_config("sites"));
  EXPECT_EQ(before.store.find_for_host("sites", "c.test"), nullptr);
  drop("sites", "c.test");
  auto after = build(dir_config("sites"));
  EXPECT_EQ(served_cn(after.store.find_for_host("sites", "c.test"), "c.test"), "c.test");
  // The old store is untouched and still serves what it had.
  EXPECT_EQ(before.store.find_for_host("sites", "c.test"), nullptr);
  EXPECT_EQ(served_cn(before.store.find_for_host("sites", "a.test"), "a.test"), "a.test");
}

TEST_F(CertStoreTest, CertificateWithoutKeyIsSkippedWithAWarning) {
  drop("sites", "a.test");
  const TestCert c = pki.leaf("c.test");
  const std::string cert = dir.write("sites/c.test.pem", pki.server_chain_pem(c));
  auto built = build(dir_config("sites"));
  EXPECT_EQ(built.store.find_for_host("sites", "c.test"), nullptr);
  EXPECT_NE(built.store.find_for_host("sites", "a.test"), nullptr);
  EXPECT_TRUE(has_warning(built.warnings,
                          cert + ": skipped: no key file " + dir.path() + "/sites/c.test.key"))
      << all(built.warnings);
}

TEST_F(CertStoreTest, FileNamesThatAreNotHostNamesAreSkipped) {
  drop("sites", "a.test");
  for (const char* bad : {"bad name", "a..b", "x!y.test", "127.0.0.1", "-", ".hidden"}) {
    drop("sites", bad, pki.leaf("a.test"));
  }
  auto built = build(dir_config("sites"));
  EXPECT_EQ(built.store.directory_cert_count("sites"), 1u) << all(built.warnings);
  EXPECT_TRUE(has_warning(built.warnings, "\"bad name\" is not a host name"))
      << all(built.warnings);
  EXPECT_TRUE(has_warning(built.warnings, "\"a..b\" is not a host name"));
  EXPECT_TRUE(has_warning(built.warnings, "\"x!y.test\" is not a host name"));
  EXPECT_TRUE(has_warning(built.warnings, "\"127.0.0.1\" is an IP address literal"));
  EXPECT_TRUE(has_warning(built.warnings, "\".hidden\" is not a host name"));
  // "-" is a host name of sorts, but the a.test certificate does not cover it.
  EXPECT_TRUE(has_warning(built.warnings, "do not cover -"));
}

TEST_F(CertStoreTest, FileWhoseCertificateDoesNotNameTheHostIsSkipped) {
  drop("sites", "d.test", pki.leaf("e.test"));
  auto built = build(dir_config("sites"));
  EXPECT_EQ(built.store.find_for_host("sites", "d.test"), nullptr);
  EXPECT_TRUE(has_warning(built.warnings, "the certificate's names (e.test) do not cover d.test"))
      << all(built.warnings);
}

TEST_F(CertStoreTest, MismatchedKeyInDirectoryIsAWarningNamingBothFiles) {
  const TestCert c = pki.leaf("c.test");
  test::CertSpec other;
  other.key_slot = 1;
  dir.write("sites/c.test.pem", pki.server_chain_pem(c));
  dir.write("sites/c.test.key", pki.leaf("c.test", other).key_pem());
  drop("sites", "a.test");
  auto built = build(dir_config("sites"));
  EXPECT_EQ(built.store.find_for_host("sites", "c.test"), nullptr);
  EXPECT_NE(built.store.find_for_host("sites", "a.test"), nullptr);
  const std::string base = dir.path() + "/sites/";
  EXPECT_TRUE(has_warning(
      built.warnings, base + "c.test.key: key does not match certificate " + base + "c.test.pem"))
      << all(built.warnings);
}

TEST_F(CertStoreTest, GarbageAndEncryptedFilesInDirectoryAreWarnings) {
  drop("sites", "a.test");
  dir.write("sites/g.test.pem", "garbage");
  dir.write("sites/g.test.key", pki.leaf("g.test").key_pem());
  const TestCert e = pki.leaf("e.test");
  dir.write("sites/e.test.pem", pki.server_chain_pem(e));
  dir.write("sites/e.test.key", e.encrypted_key_pem("secret"));
  auto built = build(dir_config("sites"));
  EXPECT_EQ(built.store.directory_cert_count("sites"), 1u);
  EXPECT_TRUE(has_warning(built.warnings, "g.test.pem: no certificate found"))
      << all(built.warnings);
  EXPECT_TRUE(has_warning(built.warnings, "e.test.key: the private key is encrypted"));
}

TEST_F(CertStoreTest, ExpiredCertificateInDirectoryIsServedWithAWarning) {
  test::CertSpec old;
  old.not_before = -std::chrono::hours(48);
  old.not_after = -std::chrono::hours(24);
  drop("sites", "old.test", pki.leaf("old.test", old));
  auto built = build(dir_config("sites"));
  EXPECT_NE(built.store.find_for_host("sites", "old.test"), nullptr);
  EXPECT_TRUE(has_warning(built.warnings, "old.test.pem: certificate expired at"))
      << all(built.warnings);
}

TEST_F(CertStoreTest, UpperCaseFileNameIsServedNormalizedAndDuplicatesWarn) {
  drop("sites", "C.TEST", pki.leaf("c.test"));
  drop("sites", "c.test");
  auto built = build(dir_config("sites"));
  EXPECT_EQ(served_cn(built.store.find_for_host("sites", "c.test"), "c.test"), "c.test");
  EXPECT_EQ(built.store.directory_cert_count("sites"), 1u);
  // Sorted scan: "C.TEST.pem" comes before "c.test.pem".
  EXPECT_TRUE(has_warning(built.warnings, "c.test.pem: skipped: c.test is already served by " +
                                              dir.path() + "/sites/C.TEST.pem"))
      << all(built.warnings);
}

TEST_F(CertStoreTest, WildcardFileServesOneLabelDeeperWhenNoExactFile) {
  test::CertSpec wild;
  wild.dns_names = {"*.example.test"};
  drop("sites", "_wildcard.example.test", pki.leaf("wild.example.test", wild));
  drop("sites", "y.example.test");
  auto built = build(dir_config("sites"));
  EXPECT_TRUE(built.warnings.empty()) << all(built.warnings);
  EXPECT_EQ(built.store.directory_cert_count("sites"), 2u);
  EXPECT_EQ(served_cn(built.store.find_for_host("sites", "x.example.test"), "x.example.test"),
            "wild.example.test");
  EXPECT_EQ(served_cn(built.store.find_for_host("sites", "y.example.test"), "y.example.test"),
            "y.example.test");  // the exact file wins
  EXPECT_EQ(built.store.find_for_host("sites", "example.test"), nullptr);
  EXPECT_EQ(built.store.find_for_host("sites", "a.b.example.test"), nullptr);
  EXPECT_EQ(built.store.find_for_host("sites", "x.other.test"), nullptr);
}

TEST_F(CertStoreTest, WildcardFileWithoutAWildcardCertificateIsSkipped) {
  drop("sites", "_wildcard.example.test", pki.leaf("example.test"));
  auto built = build(dir_config("sites"));
  EXPECT_EQ(built.store.find_for_host("sites", "x.example.test"), nullptr);
  EXPECT_TRUE(has_warning(built.warnings, "do not cover *.example.test")) << all(built.warnings);
}

TEST_F(CertStoreTest, StonePatternsAndCertbotLayoutWork) {
  // stone: -z certpat=%n-cert.pem -z keypat=%n-key.pem
  const TestCert s = pki.leaf("senri.test");
  dir.write("stone/senri.test-cert.pem", pki.server_chain_pem(s));
  dir.write("stone/senri.test-key.pem", s.key_pem());
  dir.write("stone/notes.txt", "ignored: matches no pattern");
  auto stone = build(dir_config("stone", "%n-cert.pem", "%n-key.pem"));
  EXPECT_TRUE(stone.warnings.empty()) << all(stone.warnings);
  EXPECT_EQ(served_cn(stone.store.find_for_host("sites", "senri.test"), "senri.test"),
            "senri.test");

  // certbot: live/NAME/fullchain.pem + live/NAME/privkey.pem
  const TestCert l = pki.leaf("asao.test");
  dir.write("live/asao.test/fullchain.pem", pki.server_chain_pem(l));
  dir.write("live/asao.test/privkey.pem", l.key_pem());
  dir.write("live/README", "not a directory of certificates");
  dir.mkdir("live/empty.test");  // no fullchain.pem inside: not a certificate
  auto certbot = build(dir_config("live", "%n/fullchain.pem", "%n/privkey.pem"));
  EXPECT_TRUE(certbot.warnings.empty()) << all(certbot.warnings);
  EXPECT_EQ(certbot.store.directory_cert_count("sites"), 1u);
  EXPECT_EQ(served_cn(certbot.store.find_for_host("sites", "asao.test"), "asao.test"), "asao.test");
}

TEST_F(CertStoreTest, SubdirectoriesAndOtherFilesAreIgnoredSilently) {
  drop("sites", "a.test");
  dir.mkdir("sites/x.test.pem");  // a directory named like a certificate
  dir.write("sites/a.test.key.bak", "old");
  dir.write("sites/README.md", "docs");
  auto built = build(dir_config("sites"));
  EXPECT_TRUE(built.warnings.empty()) << all(built.warnings);
  EXPECT_EQ(built.store.directory_cert_count("sites"), 1u);
}

TEST_F(CertStoreTest, BadPatternsAndMissingDirectoryFailTheBuild) {
  dir.mkdir("sites");
  auto err = [&](CertStoreConfig c) {
    auto r = CertStore::build(c, {}, nullptr);
    EXPECT_FALSE(r);
    return r ? std::string() : r.error();
  };
  EXPECT_NE(err(dir_config("sites", "cert.pem")).find("must contain %n exactly once"),
            std::string::npos);
  EXPECT_NE(err(dir_config("sites", "%n-%n.pem")).find("must contain %n exactly once"),
            std::string::npos);
  EXPECT_NE(err(dir_config("sites", "/etc/%n.pem")).find("relative"), std::string::npos);
  EXPECT_NE(err(dir_config("sites", "../%n.pem")).find(".."), std::string::npos);
  EXPECT_NE(err(dir_config("sites", "%n.pem", "")).find("key_pattern"), std::string::npos);
  const std::string missing = err(dir_config("nope"));
  EXPECT_NE(missing.find(dir.path() + "/nope"), std::string::npos) << missing;
  EXPECT_NE(missing.find("cannot read"), std::string::npos) << missing;
  CertStoreConfig unnamed;
  unnamed.add_directory("", dir.path() + "/sites");
  EXPECT_NE(err(unnamed).find("needs a name"), std::string::npos);
}

TEST_F(CertStoreTest, ScalesToManyCertificates) {
  constexpr int kCount = 300;
  for (int i = 0; i < kCount; ++i) drop("many", "host" + std::to_string(i) + ".test");
  auto built = build(dir_config("many"));
  EXPECT_TRUE(built.warnings.empty()) << all(built.warnings);
  ASSERT_EQ(built.store.directory_cert_count("sites"), static_cast<size_t>(kCount));
  for (int i = 0; i < kCount; ++i) {
    const std::string host = "host" + std::to_string(i) + ".test";
    SSL_CTX* ctx = built.store.find_for_host("sites", host);
    ASSERT_NE(ctx, nullptr) << host;
    const auto names = describe_server_ctx(ctx).names;
    ASSERT_FALSE(names.empty());
    EXPECT_EQ(names.front(), host);
  }
  EXPECT_EQ(served_cn(built.store.find_for_host("sites", "host137.test"), "host137.test"),
            "host137.test");
}

}  // namespace
}  // namespace lode::tls

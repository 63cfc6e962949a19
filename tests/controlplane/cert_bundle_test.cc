#include "controlplane/cert_bundle.h"

#include <gtest/gtest.h>
#include <openssl/x509.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "dataplane/tls/tls_context.h"
#include "tests/support/cert_fixtures.h"
#include "tests/support/mem_handshake.h"
#include "tests/support/test_pki.h"

namespace lode::cp {
namespace {

using namespace std::chrono_literals;
using test::CertSpec;
using test::TempDir;
using test::TestCert;

std::chrono::sys_seconds wall_now() {
  return std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
}

bool has(const std::vector<std::string>& lines, const std::string& needle) {
  return std::any_of(lines.begin(), lines.end(),
                     [&](const std::string& l) { return l.find(needle) != std::string::npos; });
}

std::string all(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

size_t pem_blocks(const std::string& pem) {
  size_t n = 0;
  for (size_t at = pem.find("BEGIN CERTIFICATE"); at != std::string::npos;
       at = pem.find("BEGIN CERTIFICATE", at + 1)) {
    ++n;
  }
  return n;
}

// A line of base64 from the middle of a key PEM: it must appear in no message.
std::string key_body_line(const std::string& key_pem) {
  const size_t first = key_pem.find('\n') + 1;
  return key_pem.substr(first, std::min<size_t>(40, key_pem.find('\n', first) - first));
}

class CertBundleTest : public ::testing::Test {
 protected:
  const test::TestPki& pki = test::shared_test_pki();
  const test::TestPki& other = test::other_test_pki();
  TempDir dir;
  std::chrono::sys_seconds now = wall_now();
  std::vector<std::string> warnings;

  // The shared test leaves are valid for 30 days, the default warning window:
  // the happy paths use a shorter one.
  static CertValidation plain() {
    CertValidation v;
    v.expiry_warning = 24h * 7;
    return v;
  }
  CertValidation anchored() {
    CertValidation v = plain();
    v.trusted_ca_file = dir.write("ca.pem", pki.root.cert_pem());
    return v;
  }
  CertValidation with_intermediates(CertValidation v = plain()) {
    v.intermediates_file = dir.write("intermediates.pem", pki.intermediate.cert_pem());
    return v;
  }

  Result<CertBundle, std::string> load(const std::string& chain, const std::string& key,
                                       const CertValidation& v = plain()) {
    return load_cert_bundle(dir.write("cert.pem", chain), dir.write("key.pem", key), v, now,
                            warnings);
  }
  Result<CertBundle, std::string> load(const TestCert& leaf, const CertValidation& v = plain()) {
    return load(pki.server_chain_pem(leaf), leaf.key_pem(), v);
  }

  TestCert leaf_valid(std::chrono::seconds not_before, std::chrono::seconds not_after) {
    CertSpec spec;
    spec.not_before = not_before;
    spec.not_after = not_after;
    return pki.leaf("a.test", spec);
  }
};

// --- accepted --------------------------------------------------------------------

TEST_F(CertBundleTest, GoodChainWithTrustedCaHasNoWarnings) {
  const TestCert leaf = pki.leaf("a.test");
  auto b = load(leaf, anchored());
  ASSERT_TRUE(b) << b.error();
  EXPECT_TRUE(warnings.empty()) << all(warnings);
  EXPECT_EQ(b->source, dir.path() + "/cert.pem + " + dir.path() + "/key.pem");
  EXPECT_EQ(X509_cmp(b->leaf.get(), leaf.cert.get()), 0);
  ASSERT_EQ(b->chain.size(), 1u);
  EXPECT_EQ(X509_cmp(b->chain[0].get(), pki.intermediate.cert.get()), 0);
  ASSERT_NE(b->issuer, nullptr);
  EXPECT_EQ(X509_cmp(b->issuer.get(), pki.intermediate.cert.get()), 0);
  EXPECT_EQ(b->chain_pem, pki.server_chain_pem(leaf));
  EXPECT_TRUE(b->key_pem.starts_with("-----BEGIN PRIVATE KEY-----")) << "PKCS#8";
  EXPECT_EQ(b->info.names, std::vector<std::string>{"a.test"});
  EXPECT_EQ(b->info.key_type, "EC P-256");
  EXPECT_NE(b->version, 0u);
}

TEST_F(CertBundleTest, GoodChainWithoutTrustedCaWarnsThatNoAnchorIsConfigured) {
  auto b = load(pki.leaf("a.test"));
  ASSERT_TRUE(b) << b.error();
  EXPECT_EQ(warnings.size(), 1u) << all(warnings);
  EXPECT_TRUE(has(warnings, "no trusted_ca_file configured")) << all(warnings);
  ASSERT_NE(b->issuer, nullptr);
  EXPECT_EQ(X509_cmp(b->issuer.get(), pki.intermediate.cert.get()), 0);
}

TEST_F(CertBundleTest, MissingIntermediateIsAppendedFromTheBundleWithTrustedCa) {
  const TestCert leaf = pki.leaf("a.test");
  auto b = load(leaf.cert_pem(), leaf.key_pem(), with_intermediates(anchored()));
  ASSERT_TRUE(b) << b.error();
  EXPECT_TRUE(warnings.empty()) << all(warnings);
  EXPECT_EQ(b->chain_pem, pki.server_chain_pem(leaf)) << "leaf first, then the intermediate";
  ASSERT_EQ(b->chain.size(), 1u);
  EXPECT_EQ(X509_cmp(b->issuer.get(), pki.intermediate.cert.get()), 0);
}

TEST_F(CertBundleTest, MissingIntermediateIsAppendedFromTheBundleWithoutTrustedCa) {
  const TestCert leaf = pki.leaf("a.test");
  auto b = load(leaf.cert_pem(), leaf.key_pem(), with_intermediates());
  ASSERT_TRUE(b) << b.error();
  EXPECT_EQ(pem_blocks(b->chain_pem), 2u);
  EXPECT_TRUE(b->chain_pem.starts_with(leaf.cert_pem()));
  EXPECT_EQ(X509_cmp(b->issuer.get(), pki.intermediate.cert.get()), 0);
}

TEST_F(CertBundleTest, SelfSignedRootFromTheBundleIsNotServed) {
  const TestCert leaf = pki.leaf("a.test");
  CertValidation v;
  v.intermediates_file = dir.write("bundle.pem", test::chain_pem({&pki.intermediate, &pki.root}));
  auto b = load(leaf.cert_pem(), leaf.key_pem(), v);
  ASSERT_TRUE(b) << b.error();
  ASSERT_EQ(b->chain.size(), 1u) << "the intermediate only";
  EXPECT_EQ(X509_cmp(b->chain[0].get(), pki.intermediate.cert.get()), 0);
}

TEST_F(CertBundleTest, ServedChainCompletesAHandshakeWithAVerifyingClient) {
  const TestCert leaf = pki.leaf("a.test");
  auto b = load(leaf.cert_pem(), leaf.key_pem(), with_intermediates(anchored()));
  ASSERT_TRUE(b) << b.error();
  auto server = tls::load_server_cert_pem(b->chain_pem, b->key_pem, {"chain", "key"}, {}, nullptr);
  ASSERT_TRUE(server) << server.error();
  auto client = test::make_test_client_ctx({.ca_pem = pki.root.cert_pem()});
  test::MemHandshake hs(test::new_test_client(client.get(), "a.test"),
                        tls::new_server_ssl(server->ctx.get(), "a.test"));
  auto r = hs.run();
  EXPECT_TRUE(r.ok()) << r.client_error << " / " << r.server_error;
}

TEST_F(CertBundleTest, VersionIsEqualForEqualContentAndDiffersOtherwise) {
  const TestCert a = pki.leaf("a.test");
  auto first = load(a);
  auto again = load(pki.server_chain_pem(a), a.traditional_key_pem());  // same key, other form
  auto b = load(pki.leaf("b.test"));
  ASSERT_TRUE(first && again && b);
  EXPECT_EQ(first->version, again->version);
  EXPECT_EQ(first->key_pem, again->key_pem) << "keys are normalized to PKCS#8";
  EXPECT_NE(first->version, b->version);
}

TEST_F(CertBundleTest, PemLoaderNamesItsLabel) {
  const TestCert leaf = pki.leaf("a.test");
  auto ok = load_cert_bundle_pem(pki.server_chain_pem(leaf), leaf.key_pem(), "push a.test", {}, now,
                                 warnings);
  ASSERT_TRUE(ok) << ok.error();
  EXPECT_EQ(ok->source, "push a.test");
  auto bad = load_cert_bundle_pem("junk", leaf.key_pem(), "push a.test", {}, now, warnings);
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.error().starts_with("push a.test: no certificate found")) << bad.error();
}

TEST_F(CertBundleTest, RsaKeyIsAccepted) {
  CertSpec spec;
  spec.key_kind = test::KeyKind::kRsa2048;
  auto b = load(pki.leaf("a.test", spec), anchored());
  ASSERT_TRUE(b) << b.error();
  EXPECT_EQ(b->info.key_type, "RSA 2048");
}

TEST_F(CertBundleTest, ExpiringSoonIsAWarning) {
  CertValidation v = anchored();
  v.expiry_warning = kDefaultExpiryWarning;
  auto b = load(leaf_valid(-1h, 24h * 10), v);
  ASSERT_TRUE(b) << b.error();
  EXPECT_TRUE(has(warnings, dir.path() + "/cert.pem: certificate ")) << all(warnings);
  EXPECT_TRUE(has(warnings, "expires at")) << all(warnings);
}

TEST_F(CertBundleTest, ExpiryWarningWindowIsConfigurable) {
  CertValidation v = anchored();
  v.expiry_warning = 24h * 5;
  auto b = load(leaf_valid(-1h, 24h * 10), v);
  ASSERT_TRUE(b) << b.error();
  EXPECT_TRUE(warnings.empty()) << all(warnings);
}

TEST_F(CertBundleTest, MissingSubjectAltNameIsAWarning) {
  CertSpec spec;
  spec.cn = "a.test";  // CN only
  const TestCert leaf = test::issue_cert(pki.intermediate, spec);
  auto b = load(leaf, anchored());
  ASSERT_TRUE(b) << b.error();
  EXPECT_TRUE(has(warnings, "has no subjectAltName")) << all(warnings);
}

TEST_F(CertBundleTest, SelfSignedLeafWithoutTrustedCaIsAcceptedWithAWarning) {
  const TestCert leaf = test::make_self_signed_leaf("self.test");
  auto b = load(leaf.cert_pem(), leaf.key_pem());
  ASSERT_TRUE(b) << b.error();
  EXPECT_TRUE(has(warnings, "is self-signed")) << all(warnings);
  ASSERT_NE(b->issuer, nullptr);
  EXPECT_EQ(X509_cmp(b->issuer.get(), leaf.cert.get()), 0);
  EXPECT_TRUE(b->chain.empty());
}

TEST_F(CertBundleTest, LeafWithUnknownIssuerWithoutTrustedCaWarnsThatClientsNeedIt) {
  const TestCert leaf = pki.leaf("a.test");
  auto b = load(leaf.cert_pem(), leaf.key_pem());
  ASSERT_TRUE(b) << b.error();
  EXPECT_EQ(b->issuer, nullptr);
  EXPECT_TRUE(has(warnings, "is in neither the chain file nor intermediates_file"))
      << all(warnings);
}

TEST_F(CertBundleTest, OutputOfMakeTestPkiScriptLoads) {
  ASSERT_TRUE(test::run_make_test_pki(dir.path() + "/pki", "cli.test"));
  CertValidation v;
  v.trusted_ca_file = dir.path() + "/pki/ca-bundle.pem";
  auto b = load_cert_bundle(dir.path() + "/pki/cli.test.pem", dir.path() + "/pki/cli.test.key", v,
                            now, warnings);
  ASSERT_TRUE(b) << b.error();
  EXPECT_TRUE(warnings.empty()) << all(warnings);
  EXPECT_EQ(b->info.names, std::vector<std::string>{"cli.test"});
  EXPECT_NE(b->issuer, nullptr);
}

TEST_F(CertBundleTest, MovedFromBundleHoldsNoKey) {
  auto b = load(pki.leaf("a.test"));
  ASSERT_TRUE(b) << b.error();
  CertBundle moved = std::move(*b);
  EXPECT_TRUE(b->key_pem.empty());  // NOLINT(bugprone-use-after-move): checked on purpose
  EXPECT_FALSE(moved.key_pem.empty());
  CertBundle assigned;
  assigned = std::move(moved);
  EXPECT_TRUE(moved.key_pem.empty());  // NOLINT(bugprone-use-after-move)
  EXPECT_NE(assigned.leaf, nullptr);
}

// --- refused: the chain --------------------------------------------------------------

TEST_F(CertBundleTest, LeafWithoutIntermediateFailsAgainstTrustedCa) {
  const TestCert leaf = pki.leaf("a.test");
  auto b = load(leaf.cert_pem(), leaf.key_pem(), anchored());
  ASSERT_FALSE(b);
  EXPECT_TRUE(b.error().starts_with(dir.path() + "/cert.pem: the chain does not verify against "
                                                 "trusted_ca_file"))
      << b.error();
  EXPECT_NE(b.error().find("unable to get local issuer certificate"), std::string::npos);
  EXPECT_NE(b.error().find("its issuer (CN=Lodestone Test Intermediate A,O=Lodestone Test) is in "
                           "neither the chain file, intermediates_file nor"),
            std::string::npos)
      << "says what is missing";
}

TEST_F(CertBundleTest, WrongIntermediateFails) {
  const TestCert leaf = pki.leaf("a.test");
  auto b = load(test::chain_pem({&leaf, &other.intermediate}), leaf.key_pem());
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().find("certificate #2"), std::string::npos) << b.error();
  EXPECT_NE(b.error().find("is not the issuer of certificate #1"), std::string::npos) << b.error();
}

TEST_F(CertBundleTest, WrongIntermediateFailsWithTrustedCa) {
  const TestCert leaf = pki.leaf("a.test");
  auto b = load(test::chain_pem({&leaf, &other.intermediate}), leaf.key_pem(),
                with_intermediates(anchored()));
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().find("is not the issuer of certificate #1"), std::string::npos) << b.error();
}

TEST_F(CertBundleTest, IntermediateWithTheSameNameButAnotherKeyFails) {
  CertSpec spec;
  spec.cn = "Lodestone Test Intermediate A";  // the real one's subject, another key
  spec.is_ca = true;
  spec.key_slot = 301;
  const TestCert impostor = test::issue_cert(pki.root, spec);
  const TestCert leaf = pki.leaf("a.test");
  ASSERT_EQ(X509_NAME_cmp(X509_get_subject_name(impostor.cert.get()),
                          X509_get_subject_name(pki.intermediate.cert.get())),
            0);
  auto b = load(test::chain_pem({&leaf, &impostor}), leaf.key_pem());
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().find("is not the issuer"), std::string::npos) << b.error();
}

TEST_F(CertBundleTest, ChainToAnotherRootFails) {
  CertValidation v;
  v.trusted_ca_file = dir.write("other-ca.pem", other.root.cert_pem());
  auto b = load(pki.leaf("a.test"), v);
  ASSERT_FALSE(b);
  EXPECT_NE(
      b.error().find("does not verify against trusted_ca_file " + dir.path() + "/other-ca.pem"),
      std::string::npos)
      << b.error();
}

TEST_F(CertBundleTest, SelfSignedLeafFailsWithTrustedCa) {
  const TestCert leaf = test::make_self_signed_leaf("self.test");
  auto b = load(leaf.cert_pem(), leaf.key_pem(), anchored());
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().find("self-signed certificate"), std::string::npos) << b.error();
}

TEST_F(CertBundleTest, MisorderedChainFailsAndSaysTheLeafMustComeFirst) {
  const TestCert leaf = pki.leaf("a.test");
  auto b = load(test::chain_pem({&pki.intermediate, &leaf}), leaf.key_pem());
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().find("matches certificate #2"), std::string::npos) << b.error();
  EXPECT_NE(b.error().find("must come first"), std::string::npos) << b.error();
}

TEST_F(CertBundleTest, CaCertificateAsLeafFails) {
  CertSpec spec;
  spec.cn = "ca.test";
  spec.dns_names = {"ca.test"};
  spec.is_ca = true;
  spec.key_slot = 302;
  const TestCert ca_leaf = test::issue_cert(pki.intermediate, spec);
  auto b = load(ca_leaf, anchored());
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().find("is a CA certificate"), std::string::npos) << b.error();
}

TEST_F(CertBundleTest, ExpiredIntermediateFails) {
  CertSpec spec;
  spec.cn = "Expired Intermediate";
  spec.is_ca = true;
  spec.key_slot = 303;
  spec.not_before = -48h;
  spec.not_after = -1h;
  const TestCert inter = test::issue_cert(pki.root, spec);
  CertSpec leaf_spec;
  leaf_spec.cn = "a.test";
  leaf_spec.dns_names = {"a.test"};
  const TestCert leaf = test::issue_cert(inter, leaf_spec);
  auto b = load(test::chain_pem({&leaf, &inter}), leaf.key_pem(), anchored());
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().find("certificate has expired"), std::string::npos) << b.error();
  EXPECT_NE(b.error().find("Expired Intermediate"), std::string::npos) << b.error();
}

// --- refused: the leaf and the key -------------------------------------------------------

TEST_F(CertBundleTest, KeyMismatchFailsNamingBothFilesAndNoKeyBytes) {
  const TestCert leaf = pki.leaf("a.test");
  CertSpec spec;
  spec.key_slot = 304;
  const TestCert stranger = pki.leaf("a.test", spec);
  auto b = load(pki.server_chain_pem(leaf), stranger.key_pem());
  ASSERT_FALSE(b);
  EXPECT_TRUE(b.error().starts_with(dir.path() +
                                    "/key.pem: the private key does not match the "
                                    "certificate in " +
                                    dir.path() + "/cert.pem"))
      << b.error();
  EXPECT_EQ(b.error().find(key_body_line(stranger.key_pem())), std::string::npos);
}

TEST_F(CertBundleTest, ExpiredLeafFails) {
  auto b = load(leaf_valid(-48h, -1h), anchored());
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().find("expired at"), std::string::npos) << b.error();
}

TEST_F(CertBundleTest, ExpiryIsJudgedAtTheGivenTime) {
  const TestCert leaf = pki.leaf("a.test");  // valid for 30 days
  now += 24h * 31;
  auto b = load(leaf, anchored());
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().find("expired at"), std::string::npos) << b.error();
}

TEST_F(CertBundleTest, NotYetValidLeafFails) {
  auto b = load(leaf_valid(24h, 24h * 60), anchored());
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().find("is not valid before"), std::string::npos) << b.error();
}

TEST_F(CertBundleTest, NotBeforeAMomentAheadIsToleratedButNotMinutes) {
  // A CA whose clock runs a minute ahead, or a certificate issued this
  // second: served. Ten minutes ahead is beyond kNotBeforeSkew (5 min).
  auto soon = load(leaf_valid(60s, 24h * 60), anchored());
  EXPECT_TRUE(soon) << (soon ? "" : soon.error());
  auto later = load(leaf_valid(10min, 24h * 60), anchored());
  ASSERT_FALSE(later);
  EXPECT_NE(later.error().find("is not valid before"), std::string::npos) << later.error();
}

TEST_F(CertBundleTest, GarbageCertificateFails) {
  auto b = load("this is not PEM\n", pki.leaf("a.test").key_pem());
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error(), dir.path() +
                           "/cert.pem: no certificate found (expected a PEM 'BEGIN "
                           "CERTIFICATE' block)");
}

TEST_F(CertBundleTest, TruncatedCertificateFails) {
  const TestCert leaf = pki.leaf("a.test");
  const std::string pem = pki.server_chain_pem(leaf);
  auto b = load(pem.substr(0, pem.size() - 100), leaf.key_pem());
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().find("certificate #2 is not a valid PEM certificate"), std::string::npos)
      << b.error();
}

TEST_F(CertBundleTest, GarbageKeyFails) {
  const TestCert leaf = pki.leaf("a.test");
  auto b = load(pki.server_chain_pem(leaf),
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
  ASSERT_FALSE(b);
  EXPECT_TRUE(b.error().starts_with(dir.path() + "/key.pem: not a valid PEM private key"))
      << b.error();
}

TEST_F(CertBundleTest, EmptyCertificateFileFails) {
  auto b = load("", pki.leaf("a.test").key_pem());
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().find("cert.pem: no certificate found"), std::string::npos) << b.error();
}

TEST_F(CertBundleTest, EmptyKeyFileFails) {
  auto b = load(pki.server_chain_pem(pki.leaf("a.test")), "");
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().find("key.pem: no private key found"), std::string::npos) << b.error();
}

TEST_F(CertBundleTest, MissingCertificateFileFails) {
  auto b =
      load_cert_bundle(dir.path() + "/absent.pem", dir.write("key.pem", "x"), {}, now, warnings);
  ASSERT_FALSE(b);
  EXPECT_TRUE(b.error().starts_with(dir.path() + "/absent.pem: cannot open")) << b.error();
}

TEST_F(CertBundleTest, EncryptedKeyFails) {
  const TestCert leaf = pki.leaf("a.test");
  auto b = load(pki.server_chain_pem(leaf), leaf.encrypted_key_pem("secret"));
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().find("the private key is encrypted"), std::string::npos) << b.error();
}

TEST_F(CertBundleTest, UnsupportedKeyTypeFails) {
  CertSpec spec;
  spec.key_kind = test::KeyKind::kEd25519;
  auto b = load(pki.leaf("a.test", spec), anchored());
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().find("unsupported key type ED25519"), std::string::npos) << b.error();
}

TEST_F(CertBundleTest, MissingTrustedCaFileFails) {
  CertValidation v;
  v.trusted_ca_file = dir.path() + "/nope.pem";
  auto b = load(pki.leaf("a.test"), v);
  ASSERT_FALSE(b);
  EXPECT_TRUE(b.error().starts_with("trusted_ca_file " + dir.path() + "/nope.pem: cannot open"))
      << b.error();
}

TEST_F(CertBundleTest, GarbageTrustedCaFileFails) {
  CertValidation v;
  v.trusted_ca_file = dir.write("ca.pem", "garbage");
  auto b = load(pki.leaf("a.test"), v);
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().find("trusted_ca_file " + dir.path() + "/ca.pem: no certificate found"),
            std::string::npos)
      << b.error();
}

TEST_F(CertBundleTest, MissingIntermediatesFileFails) {
  CertValidation v;
  v.intermediates_file = dir.path() + "/nope.pem";
  auto b = load(pki.leaf("a.test"), v);
  ASSERT_FALSE(b);
  EXPECT_TRUE(b.error().starts_with("intermediates_file " + dir.path() + "/nope.pem")) << b.error();
}

TEST_F(CertBundleTest, NoMessageEverHoldsKeyBytes) {
  const TestCert leaf = pki.leaf("a.test");
  const std::string key = leaf.key_pem();
  const std::string line = key_body_line(key);
  std::vector<std::string> messages;
  for (const std::string& chain :
       {std::string("junk"), test::chain_pem({&leaf, &other.intermediate}),
        test::chain_pem({&pki.intermediate, &leaf}), key /* key as the cert */}) {
    auto b = load(chain, key, anchored());
    if (!b) messages.push_back(b.error());
  }
  auto wrong = load(pki.server_chain_pem(pki.leaf("b.test")), key);
  if (!wrong) messages.push_back(wrong.error());
  messages.insert(messages.end(), warnings.begin(), warnings.end());
  EXPECT_GE(messages.size(), 5u);
  EXPECT_FALSE(has(messages, line)) << all(messages);
}

// --- uncovered_names -----------------------------------------------------------------------

tls::CertInfo info_naming(std::vector<std::string> names) {
  tls::CertInfo info;
  info.names = std::move(names);
  return info;
}

TEST(CertBundleNames, ExactNamesCompareNormalized) {
  const auto info = info_naming({"a.test", "www.a.test"});
  EXPECT_EQ(uncovered_names(info, {"a.test", "A.Test.", "WWW.a.test", "b.test"}),
            std::vector<std::string>{"b.test"});
}

TEST(CertBundleNames, WildcardCoversOneLabel) {
  const auto info = info_naming({"*.example.com"});
  EXPECT_TRUE(uncovered_names(info, {"x.example.com", "Y.EXAMPLE.COM", "*.example.com"}).empty());
}

TEST(CertBundleNames, WildcardCoversNeitherTheApexNorTwoLabels) {
  const auto info = info_naming({"*.example.com"});
  EXPECT_EQ(uncovered_names(info, {"example.com", "a.b.example.com", "*.b.example.com"}),
            (std::vector<std::string>{"example.com", "a.b.example.com", "*.b.example.com"}));
}

TEST(CertBundleNames, RouteWildcardNeedsTheSameCertificateWildcard) {
  EXPECT_EQ(uncovered_names(info_naming({"a.example.com", "example.com"}), {"*.example.com"}),
            std::vector<std::string>{"*.example.com"});
}

TEST(CertBundleNames, WildcardOverOneLabelDomainCoversNothing) {
  EXPECT_EQ(uncovered_names(info_naming({"*.com"}), {"example.com"}),
            std::vector<std::string>{"example.com"});
}

// A certificate with DNS subjectAltNames is valid for those only: clients
// ignore its CN (RFC 6125 6.4.4). CN www.x.test with SAN x.test does not
// cover www.x.test (it was counted, and a route for that name got no
// warning while every client refused the certificate); without any DNS SAN
// the CN is its name.
TEST(CertBundleNames, TheCnCountsOnlyWithoutDnsSubjectAltNames) {
  const auto& pki = test::shared_test_pki();
  const test::TestCert with_san = test::issue_cert(pki.intermediate, {.cn = "www.x.test", .dns_names = {"x.test"}});
  const tls::CertInfo a = tls::describe_cert(with_san.cert.get());
  EXPECT_EQ(a.names, std::vector<std::string>{"x.test"});
  EXPECT_EQ(uncovered_names(a, {"www.x.test", "x.test"}), std::vector<std::string>{"www.x.test"});
  const test::TestCert cn_only = test::issue_cert(pki.intermediate, {.cn = "www.y.test"});
  EXPECT_EQ(tls::describe_cert(cn_only.cert.get()).names, std::vector<std::string>{"www.y.test"});
}

TEST(CertBundleNames, InvalidRouteNamesAreUncovered) {
  const auto info = info_naming({"a.test"});
  EXPECT_EQ(uncovered_names(info, {"", "bad name", "a..test", "127.0.0.1"}),
            (std::vector<std::string>{"", "bad name", "a..test", "127.0.0.1"}));
}

TEST(CertBundleNames, CertificateWithoutNamesCoversNothing) {
  EXPECT_EQ(uncovered_names(info_naming({}), {"a.test"}), std::vector<std::string>{"a.test"});
}

}  // namespace
}  // namespace lode::cp

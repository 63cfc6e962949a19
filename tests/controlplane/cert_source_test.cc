#include "controlplane/cert_source.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "tests/support/test_pki.h"

namespace lode::cp {
namespace {

using namespace std::chrono_literals;
using test::CertSpec;
using test::TempDir;
using test::TestCert;

bool has(const std::vector<std::string>& lines, const std::string& needle) {
  return std::any_of(lines.begin(), lines.end(),
                     [&](const std::string& l) { return l.find(needle) != std::string::npos; });
}

std::string all(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

class CertSourceTest : public ::testing::Test {
 protected:
  const test::TestPki& pki = test::shared_test_pki();
  TempDir dir;
  std::chrono::sys_seconds now =
      std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
  std::vector<std::string> warnings;
  CertValidation v;

  CertSourceTest() {
    v.trusted_ca_file = dir.write("ca.pem", pki.root.cert_pem());
    v.expiry_warning = 24h * 7;  // the test leaves are valid for 30 days
  }

  DirectorySpec spec(std::string cert_pattern = "%n.pem", std::string key_pattern = "%n.key") {
    return DirectorySpec{"sites", dir.path() + "/sites", std::move(cert_pattern),
                         std::move(key_pattern)};
  }
  // Writes NAME.pem + NAME.key (or the given relative paths) under sites/.
  void drop(const std::string& file_name, const TestCert& leaf, std::string cert_rel = "",
            std::string key_rel = "") {
    if (cert_rel.empty()) cert_rel = file_name + ".pem";
    if (key_rel.empty()) key_rel = file_name + ".key";
    dir.write("sites/" + cert_rel, pki.server_chain_pem(leaf));
    dir.write("sites/" + key_rel, leaf.key_pem());
  }
  void drop(const std::string& name) { drop(name, pki.leaf(name)); }

  std::vector<DirectoryEntry> scan(const DirectorySpec& s) {
    auto r = scan_cert_directory(s, v, now, warnings);
    if (!r) {
      ADD_FAILURE() << r.error();
      return {};
    }
    return std::move(*r);
  }
  std::vector<DirectoryEntry> scan() { return scan(spec()); }
};

std::vector<std::string> hosts(const std::vector<DirectoryEntry>& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries) out.push_back((e.wildcard ? "*." : "") + e.host);
  return out;
}

// --- scanning ------------------------------------------------------------------

// A directory entry's record key back to its name: the host after the last
// '/' (a directory's name may hold '/'; a host name never does).
TEST(CertSourceKeys, EntryNameOfAKey) {
  auto a = entry_name_of("dir:sites/eu/a.test");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->host, "a.test");
  EXPECT_FALSE(a->wildcard);
  auto w = entry_name_of("dir:x/*.b.test");
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->host, "b.test");
  EXPECT_TRUE(w->wildcard);
  EXPECT_FALSE(entry_name_of("name:a").has_value());
  EXPECT_FALSE(entry_name_of("dir:/").has_value());
  EXPECT_FALSE(entry_name_of("dir:x/").has_value());
}

TEST_F(CertSourceTest, ScanLoadsExactAndWildcardFiles) {
  drop("a.test");
  CertSpec wild;
  wild.dns_names = {"*.example.com"};
  wild.cn = "*.example.com";
  drop("_wildcard.example.com", test::issue_cert(pki.intermediate, wild));
  dir.write("sites/README", "not a certificate");
  const auto entries = scan();
  EXPECT_EQ(hosts(entries), (std::vector<std::string>{"*.example.com", "a.test"}));
  EXPECT_TRUE(warnings.empty()) << all(warnings);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[1].cert_path, dir.path() + "/sites/a.test.pem");
  EXPECT_EQ(entries[1].key_path, dir.path() + "/sites/a.test.key");
  EXPECT_FALSE(entries[1].bundle.chain_pem.empty());
}

TEST_F(CertSourceTest, HostNamesAreNormalized) {
  drop("A.Test", pki.leaf("a.test"));
  const auto entries = scan();
  EXPECT_EQ(hosts(entries), std::vector<std::string>{"a.test"});
}

TEST_F(CertSourceTest, SubdirectoryPatternLikeCertbot) {
  drop("a.test", pki.leaf("a.test"), "a.test/fullchain.pem", "a.test/privkey.pem");
  dir.mkdir("sites/empty.test");  // a directory without a certificate: nothing, no warning
  const auto entries = scan(spec("%n/fullchain.pem", "%n/privkey.pem"));
  EXPECT_EQ(hosts(entries), std::vector<std::string>{"a.test"});
  EXPECT_TRUE(warnings.empty()) << all(warnings);
}

TEST_F(CertSourceTest, WithoutTrustedCaOneWarningForTheDirectory) {
  v.trusted_ca_file.clear();
  drop("a.test");
  drop("b.test");
  EXPECT_EQ(scan().size(), 2u);
  EXPECT_EQ(warnings.size(), 1u) << all(warnings);
  EXPECT_TRUE(has(warnings, "cert directory " + dir.path() + "/sites: no trusted_ca_file"));
}

TEST_F(CertSourceTest, MissingKeyIsSkipped) {
  drop("a.test");
  dir.write("sites/b.test.pem", pki.server_chain_pem(pki.leaf("b.test")));
  EXPECT_EQ(hosts(scan()), std::vector<std::string>{"a.test"});
  EXPECT_TRUE(has(warnings, "b.test.pem: no key file " + dir.path() + "/sites/b.test.key"))
      << all(warnings);
}

TEST_F(CertSourceTest, FileNameThatIsNotAHostNameIsSkipped) {
  drop("a.test");
  drop("bad name", pki.leaf("b.test"));
  drop("10.0.0.1", pki.leaf("c.test"));
  EXPECT_EQ(hosts(scan()), std::vector<std::string>{"a.test"});
  EXPECT_TRUE(has(warnings, "bad name.pem: skipped: \"bad name\" is not a host name"))
      << all(warnings);
  EXPECT_TRUE(has(warnings, "is an IP address literal")) << all(warnings);
}

TEST_F(CertSourceTest, ExpiredCertificateIsRefusedNotServed) {
  CertSpec old;
  old.not_before = -48h;
  old.not_after = -1h;
  drop("a.test", pki.leaf("a.test", old));
  drop("b.test");
  EXPECT_EQ(hosts(scan()), std::vector<std::string>{"b.test"});
  EXPECT_TRUE(has(warnings, "a.test.pem: certificate")) << all(warnings);
  EXPECT_TRUE(has(warnings, "expired at")) << all(warnings);
}

TEST_F(CertSourceTest, CertificateForAnotherNameIsSkipped) {
  drop("a.test", pki.leaf("b.test"));
  EXPECT_TRUE(scan().empty());
  EXPECT_TRUE(has(warnings, "the certificate's names (b.test) do not cover a.test"))
      << all(warnings);
}

TEST_F(CertSourceTest, WildcardFileNeedsAWildcardCertificate) {
  drop("_wildcard.example.com", pki.leaf("example.com"));
  EXPECT_TRUE(scan().empty());
  EXPECT_TRUE(has(warnings, "do not cover *.example.com")) << all(warnings);
}

TEST_F(CertSourceTest, InvalidCertificateIsSkippedOthersLoad) {
  drop("a.test");
  dir.write("sites/b.test.pem", "garbage");
  dir.write("sites/b.test.key", pki.leaf("b.test").key_pem());
  EXPECT_EQ(hosts(scan()), std::vector<std::string>{"a.test"});
  EXPECT_TRUE(has(warnings, "b.test.pem: no certificate found")) << all(warnings);
}

TEST_F(CertSourceTest, SecondFileForTheSameHostIsSkipped) {
  drop("A.TEST", pki.leaf("a.test"));
  drop("a.test");
  const auto entries = scan();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].cert_path, dir.path() + "/sites/A.TEST.pem") << "byte order decides";
  EXPECT_TRUE(has(warnings, "a.test is already served by")) << all(warnings);
}

TEST_F(CertSourceTest, UnreadableDirectoryFails) {
  auto r = scan_cert_directory(spec(), v, now, warnings);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().starts_with("cert directory " + dir.path() + "/sites: cannot read"))
      << r.error();
}

TEST_F(CertSourceTest, BadPatternsFail) {
  for (const auto& [cert, key, what] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"cert.pem", "%n.key", "must contain %n exactly once"},
           {"%n/%n.pem", "%n.key", "must contain %n exactly once"},
           {"/abs/%n.pem", "%n.key", "must be relative"},
           {"../%n.pem", "%n.key", "must not contain \"..\""},
           {"%n.pem", "", "key_pattern"},
           {"%n.pem", "../%n.key", "key_pattern"}}) {
    auto r = check_directory_spec(spec(cert, key));
    ASSERT_FALSE(r) << cert << " " << key;
    EXPECT_NE(r.error().find(what), std::string::npos) << r.error();
  }
  EXPECT_TRUE(check_directory_spec(spec("live/%n/fullchain.pem", "keys/%n.key")));
}

TEST_F(CertSourceTest, BadTrustedCaFileFailsTheScan) {
  v.trusted_ca_file = dir.path() + "/missing.pem";
  drop("a.test");
  auto r = scan_cert_directory(spec(), v, now, warnings);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("trusted_ca_file"), std::string::npos) << r.error();
}

// --- one file at a time ------------------------------------------------------------------

TEST_F(CertSourceTest, LoadDirectoryFileReloadsOneEntry) {
  drop("a.test");
  auto r = load_directory_file(spec(), "a.test.pem", v, now, warnings);
  ASSERT_TRUE(r) << r.error();
  ASSERT_TRUE(*r);
  EXPECT_EQ((*r)->host, "a.test");
  EXPECT_FALSE((*r)->wildcard);
  const uint64_t first = (*r)->bundle.version;

  drop("a.test");  // a new certificate for the same name
  auto again = load_directory_file(spec(), "a.test.pem", v, now, warnings);
  ASSERT_TRUE(again && *again) << (again ? "" : again.error());
  EXPECT_NE((*again)->bundle.version, first);
}

TEST_F(CertSourceTest, LoadDirectoryFileReportsADeletedCertificateAsGone) {
  drop("a.test");
  dir.remove("sites/a.test.pem");
  auto r = load_directory_file(spec(), "a.test.pem", v, now, warnings);
  ASSERT_TRUE(r) << r.error();
  EXPECT_FALSE(*r);
}

TEST_F(CertSourceTest, LoadDirectoryFileRefusesAnInvalidReplacement) {
  drop("a.test");
  dir.write("sites/a.test.key", pki.leaf("a.test", CertSpec{.key_slot = 305}).key_pem());
  auto r = load_directory_file(spec(), "a.test.pem", v, now, warnings);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("does not match"), std::string::npos) << r.error();
}

TEST_F(CertSourceTest, LoadDirectoryFileRefusesAMissingKey) {
  drop("a.test");
  dir.remove("sites/a.test.key");
  auto r = load_directory_file(spec(), "a.test.pem", v, now, warnings);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("no key file"), std::string::npos) << r.error();
}

TEST_F(CertSourceTest, LoadDirectoryFileRefusesNamesOutsideThePattern) {
  drop("a.test");
  auto other = load_directory_file(spec(), "a.test.crt", v, now, warnings);
  ASSERT_FALSE(other);
  EXPECT_NE(other.error().find("does not fit cert_pattern"), std::string::npos) << other.error();
  auto bad = load_directory_file(spec(), "bad name.pem", v, now, warnings);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("is not a host name"), std::string::npos) << bad.error();
  auto nested = load_directory_file(spec(), "x/a.test.pem", v, now, warnings);
  EXPECT_FALSE(nested);
}

TEST_F(CertSourceTest, LoadDirectoryFileLoadsAWildcardEntry) {
  CertSpec wild;
  wild.dns_names = {"*.example.com"};
  wild.cn = "*.example.com";
  drop("_wildcard.example.com", test::issue_cert(pki.intermediate, wild));
  auto r = load_directory_file(spec(), "_wildcard.example.com.pem", v, now, warnings);
  ASSERT_TRUE(r && *r) << (r ? "" : r.error());
  EXPECT_EQ((*r)->host, "example.com");
  EXPECT_TRUE((*r)->wildcard);
}

// --- changed paths ------------------------------------------------------------------------

std::vector<std::string> entries_of(const std::vector<DirectoryName>& names) {
  std::vector<std::string> out;
  for (const auto& n : names) out.push_back(n.entry + "=" + (n.wildcard ? "*." : "") + n.host);
  return out;
}

TEST_F(CertSourceTest, ChangedCertOrKeyFileMapsToItsEntry) {
  const DirectorySpec s = spec();
  EXPECT_EQ(entries_of(names_for_changed_path(s, "a.test.pem")),
            std::vector<std::string>{"a.test.pem=a.test"});
  EXPECT_EQ(entries_of(names_for_changed_path(s, "A.Test.key")),
            std::vector<std::string>{"A.Test.pem=a.test"});
  EXPECT_EQ(entries_of(names_for_changed_path(s, dir.path() + "/sites/a.test.key")),
            std::vector<std::string>{"a.test.pem=a.test"});
  EXPECT_EQ(entries_of(names_for_changed_path(s, "_wildcard.example.com.pem")),
            std::vector<std::string>{"_wildcard.example.com.pem=*.example.com"});
}

TEST_F(CertSourceTest, ChangedPathInASubdirectoryMapsToItsEntry) {
  const DirectorySpec s = spec("%n/fullchain.pem", "%n/privkey.pem");
  EXPECT_EQ(entries_of(names_for_changed_path(s, "a.test/fullchain.pem")),
            std::vector<std::string>{"a.test=a.test"});
  EXPECT_EQ(entries_of(names_for_changed_path(s, "a.test/privkey.pem")),
            std::vector<std::string>{"a.test=a.test"});
  EXPECT_EQ(entries_of(names_for_changed_path(s, "a.test")),
            std::vector<std::string>{"a.test=a.test"})
      << "the subdirectory itself (created or renamed)";
  EXPECT_TRUE(names_for_changed_path(s, "a.test/chain.pem").empty());
}

TEST_F(CertSourceTest, KeyPatternWithTheNameTwice) {
  const DirectorySpec s = spec("%n.crt", "keys/%n/%n.key");
  EXPECT_EQ(entries_of(names_for_changed_path(s, "keys/a.test/a.test.key")),
            std::vector<std::string>{"a.test.crt=a.test"});
  EXPECT_TRUE(names_for_changed_path(s, "keys/a.test/b.test.key").empty());
}

TEST_F(CertSourceTest, PathFittingBothPatternsMapsToBothEntries) {
  const DirectorySpec s = spec("%n.pem", "%n-key.pem");
  EXPECT_EQ(entries_of(names_for_changed_path(s, "a-key.pem")),
            (std::vector<std::string>{"a-key.pem=a-key", "a.pem=a"}));
}

TEST_F(CertSourceTest, UnrelatedOrInvalidChangedPathsMapToNothing) {
  const DirectorySpec s = spec();
  EXPECT_TRUE(names_for_changed_path(s, "README").empty());
  EXPECT_TRUE(names_for_changed_path(s, ".pem").empty());
  EXPECT_TRUE(names_for_changed_path(s, "bad name.pem").empty());
  EXPECT_TRUE(names_for_changed_path(s, "sub/a.test.pem").empty());
  EXPECT_TRUE(names_for_changed_path(s, ".a.test.pem.swp").empty());
  EXPECT_TRUE(names_for_changed_path(spec("nope", "%n.key"), "a.test.pem").empty());
}

TEST_F(CertSourceTest, ParseDirectoryEntryDistinguishesOtherFilesFromBadNames) {
  auto fits = parse_directory_entry(spec(), "a.test.pem");
  ASSERT_TRUE(fits && *fits);
  EXPECT_EQ((*fits)->raw, "a.test");
  auto other = parse_directory_entry(spec(), "notes.txt");
  ASSERT_TRUE(other);
  EXPECT_FALSE(*other);
  EXPECT_FALSE(parse_directory_entry(spec(), "a..test.pem"));
}

TEST_F(CertSourceTest, DirectoriesToWatchCoverTheBaseAndEachEntry) {
  drop("a.test", pki.leaf("a.test"), "live/a.test/fullchain.pem", "live/a.test/privkey.pem");
  const DirectorySpec s = spec("live/%n/fullchain.pem", "live/%n/privkey.pem");
  const auto entries = scan(s);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(
      directories_to_watch(s, entries),
      (std::vector<std::string>{dir.path() + "/sites/live", dir.path() + "/sites/live/a.test"}));
  EXPECT_EQ(directories_to_watch(spec("%n.pem", "keys/%n.key"), {}),
            (std::vector<std::string>{dir.path() + "/sites", dir.path() + "/sites/keys"}));
}

}  // namespace
}  // namespace lode::cp

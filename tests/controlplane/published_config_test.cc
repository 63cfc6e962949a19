#include "controlplane/published_config.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "controlplane/config.h"

namespace lode::cp {
namespace {

constexpr const char* kFile = R"([[listener]]
name = "https"
listen = ["127.0.0.1:8443"]

[[pool]]
name = "app"
backends = ["127.0.0.1:9001"]

[[certificate]]
name = "a"
cert = "a.pem"
key = "a.key"

[[route]]
name = "b"
names = ["b.test"]
action = "terminate"
pool = "app"
certificate = "added"

[log]
access = "off")";  // no final newline: the trailer must still start a line

const std::vector<RuntimeCertificate> kAdded = {{"added", "/run/l/x.sock.certs/added.pem", "/run/l/x.sock.certs/added.key"}};

TEST(PublishedConfig, ARouteMayNameARuntimeCertificate) {
  // Without the trailer the file alone does not load: the route names a
  // certificate only the control plane knows.
  EXPECT_FALSE(config::load_config_string(kFile, "/etc/l/lode.toml").has_value());
  const std::string text = compose_published_config(kFile, "/etc/l/lode.toml", kAdded);
  auto cfg = config::load_config_string(text, "/etc/l/lode.toml");
  ASSERT_TRUE(cfg.has_value()) << cfg.error().front().to_string();
  ASSERT_EQ(cfg->certificates.size(), 2u);
  EXPECT_EQ(cfg->certificates[1].name, "added");
  EXPECT_EQ(cfg->certificates[1].cert, "/run/l/x.sock.certs/added.pem");
  EXPECT_EQ(cfg->certificates[0].cert, "/etc/l/a.pem");  // the file's own paths as before
  EXPECT_EQ(cfg->access_log, "off");                     // the file's last table is closed, not extended
}

TEST(PublishedConfig, SplitGivesBackTheFileAndItsPath) {
  const std::string path = "/etc/we\"ird\\dir/lode.toml";
  const std::string text = compose_published_config(std::string(kFile) + "\n", path, kAdded);
  const PublishedConfig p = split_published_config(text);
  EXPECT_EQ(p.file_text, std::string(kFile) + "\n");
  EXPECT_EQ(p.path, path);
  // Composing again from what was split gives the same text (a re-attach
  // publishes what was in service).
  EXPECT_EQ(compose_published_config(p.file_text, p.path, kAdded), text);
}

TEST(PublishedConfig, TextWithoutATrailerIsTheFile) {
  const PublishedConfig p = split_published_config(kFile);
  EXPECT_EQ(p.file_text, kFile);
  EXPECT_EQ(p.path, "");
  // The marker inside a line (not at its start) is not a trailer.
  const std::string inside = std::string("x = 1 # lodestone control plane: run-time state (generated; not in the file)\n");
  EXPECT_EQ(split_published_config(inside).path, "");
  EXPECT_EQ(split_published_config(inside).file_text, inside);
}

TEST(PublishedConfig, TheFileWinsOverARuntimeCertificateOfTheSameName) {
  std::string file = kFile;
  file += "\n[[certificate]]\nname = \"added\"\ncert = \"added.pem\"\nkey = \"added.key\"\n";
  std::vector<std::string> superseded;
  const std::string text = compose_published_config(file, "/etc/l/lode.toml", kAdded, &superseded);
  EXPECT_EQ(superseded, std::vector<std::string>{"added"});
  auto cfg = config::load_config_string(text, "/etc/l/lode.toml");
  ASSERT_TRUE(cfg.has_value()) << cfg.error().front().to_string();
  ASSERT_EQ(cfg->certificates.size(), 2u);
  EXPECT_EQ(cfg->certificates[1].cert, "/etc/l/added.pem");
}

TEST(PublishedConfig, AnInlineCertificateArrayTakesRuntimeCertificates) {
  // `certificate = [ {...} ]` cannot be extended by a later [[certificate]]
  // in TOML: the trailer is parsed apart and appended.
  constexpr const char* kInline = R"(certificate = [ { name = "a", cert = "a.pem", key = "a.key" } ]

[[listener]]
name = "https"
listen = ["127.0.0.1:8443"]

[[pool]]
name = "app"
backends = ["127.0.0.1:9001"]

[[route]]
name = "b"
names = ["b.test"]
action = "terminate"
pool = "app"
certificate = "added"
)";
  const std::string text = compose_published_config(kInline, "/etc/l/lode.toml", kAdded);
  auto cfg = config::load_config_string(text, "/etc/l/lode.toml");
  ASSERT_TRUE(cfg.has_value()) << cfg.error().front().to_string();
  ASSERT_EQ(cfg->certificates.size(), 2u);
  EXPECT_EQ(cfg->certificates[0].cert, "/etc/l/a.pem");
  EXPECT_EQ(cfg->certificates[1].name, "added");
  // A file with no certificate of its own.
  std::string none = kInline;
  none.erase(0, none.find('\n') + 1);
  cfg = config::load_config_string(compose_published_config(none, "/etc/l/lode.toml", kAdded), "/etc/l/lode.toml");
  ASSERT_TRUE(cfg.has_value()) << cfg.error().front().to_string();
  ASSERT_EQ(cfg->certificates.size(), 1u);
  EXPECT_EQ(cfg->certificates[0].name, "added");
  // A syntax error in the file keeps its own line number.
  cfg = config::load_config_string(compose_published_config("[[pool]]\nname = \n", "/etc/l/lode.toml", kAdded),
                                   "/etc/l/lode.toml");
  ASSERT_FALSE(cfg.has_value());
  EXPECT_EQ(cfg.error().front().loc.line, 2u) << cfg.error().front().to_string();
}

TEST(PublishedConfig, DefinedNames) {
  std::string file = kFile;
  file += "\n[[certificate_dir]]\nname = \"sites\"\npath = \"sites\"\n";
  EXPECT_EQ(defined_certificate_names(file), (std::set<std::string>{"a", "sites"}));
  EXPECT_TRUE(defined_certificate_names("[[certificate]\nname=").empty());  // not TOML
  EXPECT_TRUE(defined_certificate_names("certificate = 5\n").empty());
}

TEST(PublishedConfig, RuntimeCertificateNames) {
  for (const char* ok : {"a", "A1", "site.example-com_2", "0"}) EXPECT_TRUE(valid_runtime_certificate_name(ok)) << ok;
  for (const char* bad : {"", ".hidden", "-x", "_x", "a/b", "../x", "a b", "a\"b", "é", "a\n"}) {
    EXPECT_FALSE(valid_runtime_certificate_name(bad)) << bad;
  }
  EXPECT_TRUE(valid_runtime_certificate_name(std::string(64, 'a')));
  EXPECT_FALSE(valid_runtime_certificate_name(std::string(65, 'a')));
}

TEST(PublishedConfig, TomlQuoteRoundTrips) {
  const std::string raw = std::string("a\"b\\c\nd\te") + '\x01' + '\x7f';
  // Read back through the same parser the loader uses.
  const PublishedConfig p = split_published_config(compose_published_config("", raw, {}));
  EXPECT_EQ(p.path, raw);
}

}  // namespace
}  // namespace lode::cp

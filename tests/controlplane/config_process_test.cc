// [process] (who Lodestone runs as) and a key pasted where a key path goes.
#include <gtest/gtest.h>

#include <string>

#include "controlplane/config.h"

namespace lode::config {
namespace {

const char* kBase = R"(
[[listener]]
name = "https"
listen = ["127.0.0.1:8443"]

[[pool]]
name = "a"
backends = ["127.0.0.1:9001"]

[[route]]
name = "a"
names = ["a.test"]
action = "terminate"
pool = "a"
certificate = "a"
)";

std::string with(const std::string& more, const std::string& key = "\"a.key\"") {
  return std::string(kBase) + "\n[[certificate]]\nname = \"a\"\ncert = \"a.pem\"\nkey = " + key + "\n" + more;
}

std::string errors_of(const std::string& text) {
  auto r = load_config_string(text, "t.toml");
  if (r) return "";
  std::string out;
  for (const auto& e : r.error()) out += e.to_string() + "\n";
  return out;
}

TEST(ProcessConfig, DefaultsToWhoStartedIt) {
  auto r = load_config_string(with(""), "t.toml");
  ASSERT_TRUE(r) << errors_of(with(""));
  EXPECT_EQ(r->process.user, "");
  EXPECT_EQ(r->process.group, "");
}

TEST(ProcessConfig, UserAndGroup) {
  auto r = load_config_string(with("[process]\nuser = \"lodestone\"\ngroup = \"ssl-cert\"\n"), "t.toml");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->process.user, "lodestone");
  EXPECT_EQ(r->process.group, "ssl-cert");
}

TEST(ProcessConfig, Refusals) {
  EXPECT_NE(errors_of(with("[process]\ngroup = \"g\"\n")).find("process.group"), std::string::npos);
  EXPECT_NE(errors_of(with("[process]\nuser = \"\"\n")).find("process.user"), std::string::npos);
  EXPECT_NE(errors_of(with("[process]\nuser = 7\n")).find("expected a string"), std::string::npos);
  EXPECT_NE(errors_of(with("[process]\nuid = 7\n")).find("uid"), std::string::npos);
}

TEST(CertificateKey, PastedPemIsRefusedWithoutBeingRepeated) {
  const std::string secret = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgSECRETSECRETSECRET";
  for (const std::string& key : {"'''-----BEGIN PRIVATE KEY-----\n" + secret + "\n-----END PRIVATE KEY-----\n'''",
                                 "\"-----BEGIN PRIVATE KEY----- " + secret + "\"",
                                 "\"a.key\\n" + secret + "\""}) {
    const std::string errors = errors_of(with("", key));
    EXPECT_NE(errors.find("certificate[0].key: expected the path of a key file"), std::string::npos) << errors;
    EXPECT_EQ(errors.find("SECRET"), std::string::npos) << errors;
  }
}

}  // namespace
}  // namespace lode::config

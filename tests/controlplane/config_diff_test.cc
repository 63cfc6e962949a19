#include "controlplane/config_diff.h"

#include <gtest/gtest.h>

#include <string>

namespace lode::config {
namespace {

constexpr const char* kBase = R"(
[[listener]]
name = "https"
listen = ["127.0.0.1:8443"]

[[pool]]
name = "app"
backends = ["127.0.0.1:9001"]

[[certificate]]
name = "a"
cert = "/etc/a.pem"
key = "/etc/a.key"

[[route]]
name = "a"
names = ["a.test"]
action = "terminate"
pool = "app"
certificate = "a"
)";

Config load(const std::string& text) {
  auto r = load_config_string(text, "/t/lode.toml");
  EXPECT_TRUE(r.has_value()) << (r ? std::string() : r.error().front().to_string());
  return r ? std::move(*r) : Config{};
}

TEST(ConfigDiff, SameConfigIsEmpty) {
  const Config a = load(kBase);
  EXPECT_TRUE(diff_configs(a, a).empty());
}

TEST(ConfigDiff, AddedRouteCertificateAndChangedPool) {
  std::string next = kBase;
  next.replace(next.find("127.0.0.1:9001"), 14, "127.0.0.1:9002");
  next += R"(
[[certificate]]
name = "b"
cert = "/etc/b.pem"
key = "/etc/b.key"

[[route]]
name = "b"
names = ["b.test", "*.b.test"]
action = "terminate"
pool = "app"
certificate = "b"
)";
  const ConfigDiff d = diff_configs(load(kBase), load(next));
  EXPECT_EQ(d.routes.added, std::vector<std::string>{"b"});
  EXPECT_TRUE(d.routes.removed.empty());
  EXPECT_TRUE(d.routes.changed.empty());
  ASSERT_EQ(d.pools.changed.size(), 1u);
  EXPECT_EQ(d.pools.changed[0].name, "app");
  EXPECT_EQ(d.pools.changed[0].changes, std::vector<std::string>{"backends: 127.0.0.1:9001 -> 127.0.0.1:9002"});
  EXPECT_EQ(d.certificates.added, std::vector<std::string>{"b"});
  // And the other way round: removed.
  const ConfigDiff back = diff_configs(load(next), load(kBase));
  EXPECT_EQ(back.routes.removed, std::vector<std::string>{"b"});
  EXPECT_EQ(back.certificates.removed, std::vector<std::string>{"b"});
  EXPECT_TRUE(back.routes.added.empty());
}

TEST(ConfigDiff, ChangedRouteFieldsAndCertificateFiles) {
  std::string next = kBase;
  next.replace(next.find("names = [\"a.test\"]"), 18, "names = [\"a.test\", \"www.a.test\"]");
  next.replace(next.find("/etc/a.pem"), 10, "/etc/a2.pem");
  const ConfigDiff d = diff_configs(load(kBase), load(next));
  ASSERT_EQ(d.routes.changed.size(), 1u);
  EXPECT_EQ(d.routes.changed[0].changes, std::vector<std::string>{"names: a.test -> a.test,www.a.test"});
  ASSERT_EQ(d.certificates.changed.size(), 1u);
  EXPECT_EQ(d.certificates.changed[0].changes, std::vector<std::string>{"cert: /etc/a.pem -> /etc/a2.pem"});
  EXPECT_TRUE(d.pools.empty());
}

TEST(ConfigDiff, RouteToPassthroughChangesActionAndCertificate) {
  std::string next = kBase;
  next.replace(next.find("action = \"terminate\""), 20, "action = \"passthrough\"");
  next.replace(next.find("certificate = \"a\"\n"), 18, "");
  auto r = load_config_string(next, "/t/lode.toml");
  ASSERT_TRUE(r.has_value()) << r.error().front().to_string();
  const ConfigDiff d = diff_configs(load(kBase), *r);
  ASSERT_EQ(d.routes.changed.size(), 1u);
  EXPECT_EQ(d.routes.changed[0].changes,
            (std::vector<std::string>{"action: terminate -> passthrough", "certificate: a -> (none)"}));
}

}  // namespace
}  // namespace lode::config

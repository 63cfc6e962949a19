// [pool.health] and when_all_down in the configuration (controlplane/
// config.h): defaults, every key, and errors that name file, line and key.
#include <gtest/gtest.h>

#include "controlplane/config.h"

namespace lode::config {
namespace {

// The pool, used by a passthrough route unless it speaks TLS to its
// backends (only a terminate route may use such a pool).
std::string with_pool(const std::string& pool_extra) {
  const bool tls = pool_extra.find("tls = {") != std::string::npos;
  return "[[listener]]\nlisten = [\"127.0.0.1:8443\"]\n"
         "[[pool]]\nname = \"app\"\nbackends = [\"127.0.0.1:9001\", \"[::1]:9002\"]\n" +
         pool_extra +
         (tls ? "" : "\n[[route]]\nname = \"r\"\nnames = [\"a.example\"]\naction = \"passthrough\"\npool = \"app\"\n");
}

Config ok(const std::string& extra) {
  auto c = load_config_string(with_pool(extra), "/etc/l.toml");
  EXPECT_TRUE(c.has_value()) << (c ? "" : c.error().front().to_string());
  return c ? *c : Config{};
}

// The errors, each as file:line:col: key: message.
std::string errors(const std::string& extra) {
  auto c = load_config_string(with_pool(extra), "/etc/l.toml");
  EXPECT_FALSE(c.has_value()) << extra;
  std::string all;
  if (!c) {
    for (const auto& e : c.error()) all += e.to_string() + "\n";
  }
  return all;
}

TEST(ConfigHealth, DefaultsAreNoCheckAndFailOpen) {
  const Config c = ok("");
  EXPECT_EQ(c.pools[0].health.type, HealthType::kNone);
  EXPECT_EQ(c.pools[0].when_all_down, AllDown::kFailOpen);
  EXPECT_EQ(backend_id(c.pools[0].backends[0]), "127.0.0.1:9001");
  EXPECT_EQ(backend_id(c.pools[0].backends[1]), "[::1]:9002");
}

TEST(ConfigHealth, EveryKey) {
  const Config c = ok(
      "when_all_down = \"reject\"\n"
      "[pool.health]\ntype = \"http\"\ninterval_ms = 500\ntimeout_ms = 200\nrise = 4\nfall = 5\n"
      "path = \"/healthz?x=1\"\nhost = \"app.internal\"\nexpect_status = 204\n");
  const HealthCheckConfig& h = c.pools[0].health;
  EXPECT_EQ(c.pools[0].when_all_down, AllDown::kReject);
  EXPECT_EQ(h.type, HealthType::kHttp);
  EXPECT_EQ(h.interval_ms, 500u);
  EXPECT_EQ(h.timeout_ms, 200u);
  EXPECT_EQ(h.rise, 4u);
  EXPECT_EQ(h.fall, 5u);
  EXPECT_EQ(h.path, "/healthz?x=1");
  EXPECT_EQ(h.host, "app.internal");
  EXPECT_EQ(h.expect_status, 204u);
  const Config inl = ok("health = { type = \"tcp\" }");
  EXPECT_EQ(inl.pools[0].health.type, HealthType::kTcp);
  EXPECT_EQ(inl.pools[0].health.interval_ms, 2000u);
  EXPECT_EQ(inl.pools[0].health.fall, 3u);
  EXPECT_EQ(ok("health = { type = \"tls\", host = \"b.internal\" }").pools[0].health.host, "b.internal");
}

TEST(ConfigHealth, ErrorsNameTheKeyAndLine) {
  EXPECT_NE(errors("when_all_down = \"close\"").find("/etc/l.toml:6:17: pool[0].when_all_down: 'close' is not one of "
                                                      "fail_open | reject"),
            std::string::npos)
      << errors("when_all_down = \"close\"");
  EXPECT_NE(errors("health = { interval_ms = 100 }").find("pool[0].health.type: missing"), std::string::npos);
  EXPECT_NE(errors("health = { type = \"icmp\" }").find("pool[0].health.type: 'icmp' is not one of tcp | tls | http"),
            std::string::npos);
  EXPECT_NE(errors("health = \"tcp\"").find("pool[0].health: expected a table"), std::string::npos);
  EXPECT_NE(errors("health = { type = \"tcp\", bogus = 1 }").find("pool[0].health.bogus: unknown key"),
            std::string::npos);
  EXPECT_NE(errors("health = { type = \"tcp\", interval_ms = 50 }").find("pool[0].health.interval_ms: expected an "
                                                                          "integer in 100..3600000"),
            std::string::npos);
  EXPECT_NE(errors("health = { type = \"tcp\", interval_ms = 1000, timeout_ms = 2000 }")
                .find("pool[0].health.timeout_ms: must not exceed interval_ms (1000)"),
            std::string::npos);
  EXPECT_NE(errors("health = { type = \"tcp\", rise = 0 }").find("pool[0].health.rise: expected an integer in 1..100"),
            std::string::npos);
  EXPECT_NE(errors("health = { type = \"tcp\", fall = 101 }").find("pool[0].health.fall"), std::string::npos);
  EXPECT_NE(errors("health = { type = \"http\", expect_status = 600 }").find("pool[0].health.expect_status"),
            std::string::npos);
  EXPECT_NE(errors("health = { type = \"http\", path = \"healthz\" }").find("pool[0].health.path: 'healthz': expected "
                                                                          "a path starting with '/'"),
            std::string::npos);
  EXPECT_NE(errors("health = { type = \"http\", path = \"/a b\" }").find("pool[0].health.path"), std::string::npos);
  EXPECT_NE(errors("health = { type = \"http\", host = \"a\\r\\nX-Injected: 1\" }").find("pool[0].health.host"),
            std::string::npos);
  EXPECT_NE(errors("health = { type = \"tcp\", path = \"/x\" }").find("pool[0].health.path: only for type = \"http\""),
            std::string::npos);
  EXPECT_NE(errors("health = { type = \"tcp\", host = \"x\" }").find("pool[0].health.host: only for"),
            std::string::npos);
  EXPECT_NE(errors("health = { type = \"tls\", expect_status = 200 }").find("pool[0].health.expect_status"),
            std::string::npos);
}

TEST(ConfigHealth, ATlsCheckOfAVerifyingPoolNeedsAName) {
  const std::string tls = "tls = { ca_file = \"/etc/ca.pem\" }\n";
  EXPECT_NE(errors(tls + "health = { type = \"tls\" }").find("pool[0].health.host: required"), std::string::npos);
  EXPECT_NE(errors(tls + "health = { type = \"http\" }").find("pool[0].health.host: required"), std::string::npos);
  ok(tls + "health = { type = \"tls\", host = \"b.internal\" }");
  ok(tls + "health = { type = \"tcp\" }");
  ok("tls = { ca_file = \"/etc/ca.pem\", server_name = \"b.internal\" }\nhealth = { type = \"http\" }");
  ok("tls = { verify = false }\nhealth = { type = \"tls\" }");
  ok("health = { type = \"tls\" }");  // passthrough pool: the handshake alone
}

}  // namespace
}  // namespace lode::config

#include "controlplane/config.h"
#include "controlplane/route_tables.h"
#include "lodestone/route_table.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace lode::config {
namespace {

const char* kGood = R"(
[[listener]]
name = "https"
listen = ["127.0.0.1:8443", "[::1]:8443"]
default_route = "fallback"

[[pool]]
name = "a"
backends = ["127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 3 }]
algorithm = "maglev_sni"
send_proxy_v2 = true

[[route]]
name = "a"
names = ["a.test", "*.a.test"]
action = "terminate"
pool = "a"
certificate = "a"

[[route]]
name = "fallback"
action = "reject"
reject_with = "reset"

[[certificate]]
name = "a"
cert = "certs/a.pem"
key = "/abs/a.key"

[[certificate_dir]]
name = "sites"
path = "sites//"

[tls]
min_version = "1.3"
alpn = ["http/1.1"]
ticket_rotation_s = 600

[timeouts]
hello_ms = 2000

[workers]
count = 2
cpus = [0, 1]

[limits]
connections_per_worker = 100
connections_per_client = 64

[log]
access = "off"
)";

// The errors of a config that must not load, as "line:key: message" lines.
std::string errors_of(const std::string& text) {
  auto r = load_config_string(text, "t.toml");
  EXPECT_FALSE(r.has_value()) << "config unexpectedly loaded";
  if (r.has_value()) return "";
  std::string out;
  for (const auto& e : r.error()) out += e.to_string() + "\n";
  return out;
}

TEST(Config, LoadsEverySection) {
  auto r = load_config_string(kGood, "good.toml");
  ASSERT_TRUE(r.has_value()) << r.error()[0].to_string();
  const Config& c = *r;
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].name, "https");
  ASSERT_EQ(c.listeners[0].listen.size(), 2u);
  EXPECT_EQ(c.listeners[0].listen[0].to_string(), "127.0.0.1:8443");
  EXPECT_EQ(c.listeners[0].listen[1].to_string(), "[::1]:8443");
  EXPECT_EQ(c.listeners[0].default_route, "fallback");
  EXPECT_EQ(c.listeners[0].max_hello_bytes, 65536u);
  ASSERT_EQ(c.pools.size(), 1u);
  ASSERT_EQ(c.pools[0].backends.size(), 2u);
  EXPECT_EQ(c.pools[0].backends[1].weight, 3u);
  EXPECT_EQ(c.pools[0].backends[0].weight, 1u);
  EXPECT_EQ(c.pools[0].algorithm, Algorithm::kMaglevSni);
  EXPECT_TRUE(c.pools[0].send_proxy_v2);
  ASSERT_EQ(c.routes.size(), 2u);
  EXPECT_EQ(c.routes[0].listener, "https");  // the only listener is implied
  ASSERT_EQ(c.routes[0].names.size(), 2u);
  EXPECT_EQ(c.routes[0].names[1].pattern, "*.a.test");
  EXPECT_EQ(c.routes[0].names[1].loc.line, 15u);  // "*.a.test" is on line 15
  EXPECT_EQ(c.routes[0].action, route::Action::kTerminate);
  EXPECT_EQ(c.routes[1].action, route::Action::kReject);
  EXPECT_TRUE(c.routes[1].reject_with_reset);
  EXPECT_EQ(c.routes[0].certificate, "a");
  ASSERT_EQ(c.certificates.size(), 1u);
  EXPECT_EQ(c.certificates[0].cert, "./certs/a.pem");  // relative to the config's directory
  EXPECT_EQ(c.certificates[0].key, "/abs/a.key");
  ASSERT_EQ(c.certificate_dirs.size(), 1u);
  EXPECT_EQ(c.certificate_dirs[0].cert_pattern, "%n.pem");
  // Without its trailing slashes: the file watcher's events name the
  // directory so, and are matched against this path.
  EXPECT_EQ(c.certificate_dirs[0].path, "./sites");
  EXPECT_EQ(c.tls.min_version, "1.3");
  EXPECT_EQ(c.tls.alpn, std::vector<std::string>{"http/1.1"});
  EXPECT_EQ(c.tls.ticket_rotation_s, 600u);
  EXPECT_EQ(c.timeouts.hello_ms, 2000u);
  EXPECT_EQ(c.timeouts.idle_ms, 300000u);
  EXPECT_EQ(c.timeouts.half_closed_or_idle_ms(), 300000u) << "half_closed_ms not set: idle_ms";
  EXPECT_EQ(c.workers.count, 2u);
  EXPECT_EQ(c.workers.cpus, (std::vector<int>{0, 1}));
  EXPECT_EQ(c.limits.connections_per_worker, 100u);
  EXPECT_EQ(c.limits.connections_per_client, 64u);
  EXPECT_EQ(c.access_log, "off");
}

// Each listener's table gets a random hash seed (names cannot be chosen to
// collide), unless one is given: then the same config builds the same bytes
// (the config fuzz target relies on it for reproducible paths).
TEST(Config, RouteTablesTakeAGivenHashSeed) {
  auto c = load_config_string(kGood, "t.toml");
  ASSERT_TRUE(c.has_value());
  auto a = build_route_tables(*c, 42);
  auto b = build_route_tables(*c, 42);
  auto r1 = build_route_tables(*c);
  auto r2 = build_route_tables(*c);
  ASSERT_TRUE(a && b && r1 && r2);
  ASSERT_EQ(a->size(), 1u);
  const auto bytes = [](const ListenerTable& t) {
    auto s = t.table.bytes();
    return std::string(reinterpret_cast<const char*>(s.data()), s.size());
  };
  EXPECT_EQ(bytes((*a)[0]), bytes((*b)[0]));
  auto view = route::RouteTableView::open((*a)[0].table.bytes());
  ASSERT_TRUE(view.has_value());
  EXPECT_EQ(view->hash_seed(), 42u);
  EXPECT_EQ(view->route((view->find("x.a.test")).route).name, "a");
  auto v1 = route::RouteTableView::open((*r1)[0].table.bytes());
  auto v2 = route::RouteTableView::open((*r2)[0].table.bytes());
  ASSERT_TRUE(v1 && v2);
  EXPECT_NE(v1->hash_seed(), v2->hash_seed()) << "two random seeds alike (1 in 2^64)";
}

TEST(Config, RelativePathsFollowTheConfigFile) {
  auto r = load_config_string(R"(
[[listener]]
listen = ["127.0.0.1:1"]
[[certificate]]
name = "a"
cert = "a.pem"
key = "k/a.key"
[log]
access = "access.log"
)",
                              "/etc/lodestone/main.toml");
  ASSERT_TRUE(r.has_value()) << r.error()[0].to_string();
  EXPECT_EQ(r->certificates[0].cert, "/etc/lodestone/a.pem");
  EXPECT_EQ(r->certificates[0].key, "/etc/lodestone/k/a.key");
  EXPECT_EQ(r->access_log, "/etc/lodestone/access.log");
}

TEST(Config, CertificateReferences) {
  const std::string e = errors_of(R"(
[[listener]]
listen = ["127.0.0.1:1"]
[[pool]]
name = "p"
backends = ["127.0.0.1:2"]
[[route]]
name = "t"
names = ["a.test"]
action = "terminate"
pool = "p"
[[route]]
name = "u"
names = ["b.test"]
action = "terminate"
pool = "p"
certificate = "nope"
[[route]]
name = "v"
names = ["c.test"]
action = "passthrough"
pool = "p"
certificate = "x"
[[certificate]]
name = "x"
cert = "x.pem"
[[certificate_dir]]
name = "x"
path = "d"
cert_pattern = "cert.pem"
)");
  EXPECT_NE(e.find("route[0].certificate: required for action 'terminate'"), std::string::npos) << e;
  EXPECT_NE(e.find("no [[certificate]] or [[certificate_dir]] named 'nope'"), std::string::npos) << e;
  EXPECT_NE(e.find("route[2].certificate: only a terminate route takes a certificate"), std::string::npos) << e;
  EXPECT_NE(e.find("certificate[0].key: missing"), std::string::npos) << e;
  EXPECT_NE(e.find("duplicate certificate name 'x'"), std::string::npos) << e;
  EXPECT_NE(e.find("'cert.pem' must contain %n"), std::string::npos) << e;
}

// [listener] proxy_from: who may send the PROXY header, as prefixes; only
// with proxy_protocol; never an empty list (it would refuse everyone).
TEST(Config, ListenerProxyFrom) {
  auto r = load_config_string(R"(
[[listener]]
listen = ["127.0.0.1:1"]
proxy_protocol = "v2"
proxy_from = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]
)", "/x/c.toml");
  ASSERT_TRUE(r.has_value()) << r.error()[0].to_string();
  ASSERT_EQ(r->listeners[0].proxy_from.size(), 3u);
  EXPECT_EQ(r->listeners[0].proxy_from[0].len, 8);
  EXPECT_EQ(r->listeners[0].proxy_from[1].family, AF_INET6);
  EXPECT_EQ(r->listeners[0].proxy_from[2].len, 32);
  const std::string e = errors_of(R"(
[[listener]]
name = "a"
listen = ["127.0.0.1:1"]
proxy_from = ["10.0.0.0/8"]
[[listener]]
name = "b"
listen = ["127.0.0.1:2"]
proxy_protocol = "v1"
proxy_from = ["10.0.0.1/8", 5]
[[listener]]
name = "c"
listen = ["127.0.0.1:3"]
proxy_protocol = "any"
proxy_from = []
)");
  EXPECT_NE(e.find("listener[0].proxy_from: only with proxy_protocol"), std::string::npos) << e;
  EXPECT_NE(e.find("listener[1].proxy_from[0]: '10.0.0.1/8'"), std::string::npos) << e;
  EXPECT_NE(e.find("listener[1].proxy_from[1]: expected a prefix string"), std::string::npos) << e;
  EXPECT_NE(e.find("listener[2].proxy_from: an empty list would refuse everyone"), std::string::npos) << e;
}

TEST(Config, BackendTls) {
  auto r = load_config_string(R"(
[[listener]]
listen = ["127.0.0.1:1"]
[[pool]]
name = "p"
backends = ["127.0.0.1:2"]
tls = { server_name = "b.internal", ca_file = "ca.pem" }
[[pool]]
name = "q"
backends = ["127.0.0.1:3"]
tls = { verify = false }
)",
                              "/x/c.toml");
  ASSERT_TRUE(r.has_value()) << r.error()[0].to_string();
  EXPECT_TRUE(r->pools[0].tls.enabled);
  EXPECT_TRUE(r->pools[0].tls.server_name_set);
  EXPECT_EQ(r->pools[0].tls.server_name, "b.internal");
  EXPECT_EQ(r->pools[0].tls.ca_file, "/x/ca.pem");
  EXPECT_FALSE(r->pools[1].tls.server_name_set);
  EXPECT_FALSE(r->pools[1].tls.verify);
  const std::string e = errors_of(R"(
[[listener]]
listen = ["127.0.0.1:1"]
[[pool]]
name = "p"
backends = ["127.0.0.1:2"]
tls = { server_name = "b" }
[[pool]]
name = "q"
backends = ["127.0.0.1:2"]
tls = "yes"
[[pool]]
name = "r"
backends = ["127.0.0.1:2"]
tls = { sni = "x", verify = false }
)");
  EXPECT_NE(e.find("verify = true needs ca_file or ca_path"), std::string::npos) << e;
  EXPECT_NE(e.find("pool[1].tls: expected a table"), std::string::npos) << e;
  EXPECT_NE(e.find("pool[2].tls.sni: unknown key"), std::string::npos) << e;
  // A passthrough route to a pool that speaks TLS to its backends: the
  // kernel front would wrap the client's TLS in another, the dpdk front
  // would not. Refused; a terminate route to it is what re-encrypts.
  const std::string pass = errors_of(R"(
[[listener]]
listen = ["127.0.0.1:1"]
[[pool]]
name = "p"
backends = ["127.0.0.1:2"]
tls = { verify = false }
[[route]]
name = "through"
names = ["a.test"]
action = "passthrough"
pool = "p"
)");
  EXPECT_NE(pass.find("pool 'p' speaks TLS to its backends"), std::string::npos) << pass;
}

TEST(Config, RouteMaxConnections) {
  auto cfg = load_config_string(R"(
[[listener]]
name = "l"
listen = ["127.0.0.1:1"]
[[route]]
name = "capped"
names = ["a.test"]
action = "reject"
max_connections = 500
[[route]]
name = "open"
names = ["b.test"]
action = "reject"
)", "t.toml");
  ASSERT_TRUE(cfg.has_value()) << cfg.error()[0].to_string();
  EXPECT_EQ(cfg->routes[0].max_connections, 500u);
  EXPECT_EQ(cfg->routes[1].max_connections, 0u);  // no cap
  const std::string e = errors_of(R"(
[[listener]]
name = "l"
listen = ["127.0.0.1:1"]
[[route]]
name = "r"
names = ["a.test"]
action = "reject"
max_connections = -1
)");
  EXPECT_NE(e.find("route[0].max_connections"), std::string::npos) << e;
}

TEST(Config, NamesArePrintableAsciiWithoutSpaces) {
  // Names become snapshot keys, metric labels and lodectl columns.
  const std::string e = errors_of(R"(
[[listener]]
name = "front door"
listen = ["127.0.0.1:1"]
[[pool]]
name = "caf\u00e9"
backends = ["127.0.0.1:2"]
[[route]]
name = ")" + std::string(101, 'r') + R"("
names = ["a.test"]
action = "reject"
)");
  EXPECT_NE(e.find("listener[0].name: must be 1 to 100 printable ASCII characters without spaces"), std::string::npos)
      << e;
  EXPECT_NE(e.find("pool[0].name: must be 1 to 100"), std::string::npos) << e;
  EXPECT_NE(e.find("route[0].name: must be 1 to 100"), std::string::npos) << e;
  auto ok = load_config_string(R"(
[[listener]]
name = "https-v4:443"
listen = ["127.0.0.1:1"]
[[route]]
name = ")" + std::string(100, 'r') + R"("
names = ["a.test"]
action = "reject"
)", "t.toml");
  EXPECT_TRUE(ok.has_value()) << (ok ? "" : ok.error().front().to_string());
}

TEST(Config, RouteSteering) {
  auto ok = load_config_string(R"(
[[listener]]
listen = ["127.0.0.1:1"]
[[route]]
name = "a"
names = ["a.test"]
action = "reject"
steer = "client"
[[route]]
name = "b"
names = ["b.test"]
action = "reject"
)", "t.toml");
  ASSERT_TRUE(ok.has_value()) << ok.error().front().to_string();
  EXPECT_TRUE(ok->routes[0].steer_by_client);
  EXPECT_FALSE(ok->routes[1].steer_by_client) << "by name unless told";
  const std::string e = errors_of(R"(
[[listener]]
listen = ["127.0.0.1:1"]
[[route]]
name = "a"
names = ["a.test"]
action = "reject"
steer = "random"
)");
  EXPECT_NE(e.find("route[0].steer"), std::string::npos) << e;
}

// [timeouts] half_closed_ms: idle_ms when not set; 0 allowed (the
// connection ends with its first direction); bounded like idle_ms.
TEST(Config, HalfClosedMsFollowsIdleUnlessSetAndMayBeZero) {
  const std::string base = std::string(kGood);
  const auto with = [&](const std::string& timeouts) {
    std::string t = base;
    const size_t at = t.find("hello_ms = 2000\n");
    t.insert(at, timeouts);
    return t;
  };
  auto unset = load_config_string(with("idle_ms = 60000\n"), "t.toml");
  ASSERT_TRUE(unset.has_value()) << unset.error()[0].to_string();
  EXPECT_EQ(unset->timeouts.half_closed_or_idle_ms(), 60000u);
  auto zero = load_config_string(with("half_closed_ms = 0\n"), "t.toml");
  ASSERT_TRUE(zero.has_value()) << zero.error()[0].to_string();
  EXPECT_EQ(zero->timeouts.half_closed_or_idle_ms(), 0u);
  auto set = load_config_string(with("half_closed_ms = 2500\n"), "t.toml");
  ASSERT_TRUE(set.has_value()) << set.error()[0].to_string();
  EXPECT_EQ(set->timeouts.half_closed_or_idle_ms(), 2500u);
  for (const char* bad : {"half_closed_ms = -1\n", "half_closed_ms = 86400001\n", "half_closed_ms = \"5s\"\n"}) {
    const std::string e = errors_of(with(bad));
    EXPECT_NE(e.find("timeouts.half_closed_ms: expected an integer in 0..86400000"), std::string::npos) << bad << e;
  }
}

// connections_per_client counts the client a PROXY header names: a listener
// that reads one must say who may send it.
TEST(Config, AClientLimitNeedsProxyFromOnProxyListeners) {
  const std::string base = R"(
[[listener]]
name = "lb"
listen = ["127.0.0.1:1"]
proxy_protocol = "v2"
)";
  const std::string e = errors_of(base + "[limits]\nconnections_per_client = 10\n");
  EXPECT_NE(e.find("listener[0].proxy_from: required with [limits] connections_per_client"), std::string::npos) << e;
  auto with_from = load_config_string(base + "proxy_from = [\"10.0.0.0/8\"]\n[limits]\nconnections_per_client = 10\n",
                                      "t.toml");
  ASSERT_TRUE(with_from.has_value()) << with_from.error()[0].to_string();
  EXPECT_EQ(with_from->limits.connections_per_client, 10u);
  auto no_limit = load_config_string(base, "t.toml");
  ASSERT_TRUE(no_limit.has_value()) << no_limit.error()[0].to_string();
}

TEST(Config, GlobalSectionsAreValidated) {
  const std::string e = errors_of(R"(
tls = 5
[[listener]]
listen = ["127.0.0.1:1"]
[timeouts]
hello_ms = 1
idle = 5
[workers]
cpus = [0, -1]
[limits]
connect_retries = 99
connections_per_client = 1000001
)");
  EXPECT_NE(e.find("tls: expected a table ([tls])"), std::string::npos) << e;
  EXPECT_NE(e.find("timeouts.hello_ms: expected an integer in 100..600000"), std::string::npos) << e;
  EXPECT_NE(e.find("timeouts.idle: unknown key"), std::string::npos) << e;
  EXPECT_NE(e.find("workers.cpus[1]: expected a CPU number"), std::string::npos) << e;
  EXPECT_NE(e.find("limits.connect_retries: expected an integer in 0..16"), std::string::npos) << e;
  EXPECT_NE(e.find("limits.connections_per_client: expected an integer in 0..1000000"), std::string::npos) << e;
  const std::string v = errors_of(R"(
[[listener]]
listen = ["127.0.0.1:1"]
[tls]
min_version = "1.3"
max_version = "1.2"
alpn = ["", "h2"]
)");
  EXPECT_NE(v.find("tls.min_version: is above max_version"), std::string::npos) << v;
  EXPECT_NE(v.find("tls.alpn[0]: expected a protocol name"), std::string::npos) << v;
}

TEST(Config, LogSample) {
  const std::string head = "[[listener]]\nlisten = [\"127.0.0.1:1\"]\n[log]\n";
  auto def = load_config_string(head, "t.toml");
  ASSERT_TRUE(def.has_value());
  EXPECT_EQ(def->access_log_sample, 1.0);
  for (const auto& [text, want] : std::vector<std::pair<std::string, double>>{
           {"sample = 0.25", 0.25}, {"sample = 0", 0.0}, {"sample = 1", 1.0}, {"sample = 0.0", 0.0}}) {
    auto c = load_config_string(head + text + "\n", "t.toml");
    ASSERT_TRUE(c.has_value()) << text;
    EXPECT_EQ(c->access_log_sample, want) << text;
  }
  for (const std::string bad : {"sample = 1.5", "sample = -0.1", "sample = nan", "sample = \"0.5\"", "sample = true",
                                "sample = 2"}) {
    const std::string e = errors_of(head + bad + "\n");
    EXPECT_NE(e.find("t.toml:4:10: log.sample: expected a number in 0.0..1.0"), std::string::npos) << bad << ": " << e;
  }
}

TEST(Config, SyntaxErrorNamesFileLineAndColumn) {
  const std::string e = errors_of("[[listener]]\nlisten = [\"127.0.0.1:1\"\n");
  EXPECT_NE(e.find("t.toml:2:"), std::string::npos) << e;
  EXPECT_NE(e.find("TOML syntax"), std::string::npos) << e;
}

TEST(Config, MissingFileIsAClearError) {
  auto r = load_config_file("/nonexistent/lodestone.toml");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error()[0].to_string(), "/nonexistent/lodestone.toml: cannot open the file");
}

TEST(Config, NoListener) { EXPECT_NE(errors_of("").find("no [[listener]] is defined"), std::string::npos); }

TEST(Config, UnknownKeysAreRefusedWithTheirLine) {
  const std::string e = errors_of("[[listener]]\nlisten = [\"127.0.0.1:1\"]\nlisen = 1\n[global]\n");
  EXPECT_NE(e.find("t.toml:3:9: listener[0].lisen: unknown key"), std::string::npos) << e;
  EXPECT_NE(e.find("global: unknown key"), std::string::npos) << e;
}

TEST(Config, BadAddresses) {
  const std::string e = errors_of(
      "[[listener]]\nlisten = [\"127.0.0.1\", \"1.2.3.4:0\", \"::1:443\", \"[::1]:99999\", \"host:443\", 7]\n");
  EXPECT_NE(e.find("listen[0]: '127.0.0.1': expected HOST:PORT"), std::string::npos) << e;
  EXPECT_NE(e.find("listen[1]: '1.2.3.4:0': port out of range"), std::string::npos) << e;
  EXPECT_NE(e.find("listen[2]: '::1:443': not an IPv4 address"), std::string::npos) << e;
  EXPECT_NE(e.find("listen[3]: '[::1]:99999'"), std::string::npos) << e;
  EXPECT_NE(e.find("listen[4]: 'host:443': not an IPv4"), std::string::npos) << e;
  EXPECT_NE(e.find("listen[5]: expected an address string"), std::string::npos) << e;
}

TEST(Config, EmptyListenList) {
  EXPECT_NE(errors_of("[[listener]]\nlisten = []\n").find("non-empty list"), std::string::npos);
  EXPECT_NE(errors_of("[[listener]]\nname = \"x\"\n").find("listener[0].listen: missing"), std::string::npos);
}

TEST(Config, BadEnumsListTheChoices) {
  const std::string e = errors_of(R"(
[[listener]]
listen = ["127.0.0.1:1"]
proxy_protocol = "v3"
[[pool]]
name = "p"
backends = ["127.0.0.1:2"]
algorithm = "random"
[[route]]
name = "r"
names = ["a.test"]
action = "forward"
)");
  EXPECT_NE(e.find("'v3' is not one of none | v1 | v2 | any"), std::string::npos) << e;
  EXPECT_NE(e.find("'random' is not one of round_robin"), std::string::npos) << e;
  EXPECT_NE(e.find("route[0].action: 'forward' is not one of terminate | passthrough | reject"), std::string::npos) << e;
}

TEST(Config, WrongTypes) {
  const std::string e = errors_of(R"(
[[listener]]
listen = "127.0.0.1:1"
max_hello_bytes = 10
[[pool]]
name = 5
backends = ["127.0.0.1:2"]
send_proxy_v2 = "yes"
[[route]]
name = "r"
names = "a.test"
action = "reject"
)");
  EXPECT_NE(e.find("listener[0].listen: expected a non-empty list"), std::string::npos) << e;
  EXPECT_NE(e.find("max_hello_bytes: expected an integer in 512..1048576"), std::string::npos) << e;
  EXPECT_NE(e.find("pool[0].name: expected a string"), std::string::npos) << e;
  EXPECT_NE(e.find("send_proxy_v2: expected true or false"), std::string::npos) << e;
  EXPECT_NE(e.find("route[0].names: expected a list of host names"), std::string::npos) << e;
}

// The front's settings are set up at start: a reload may change
// cookie_secret_file (read again) and everything outside [dpdk], but not
// the front, the EAL, the port, the next hops, the backends' VLAN or the
// exception link.
TEST(Config, TheFrontsSettingsButTheCookieSecretNeedARestart) {
  const std::string base = "[[listener]]\nlisten = [\"10.0.0.1:443\"]\n"
                           "[[route]]\nname = \"r\"\nnames = [\"a.test\"]\naction = \"reject\"\n";
  const std::string dpdk = "[dpdk]\neal = [\"-l\", \"0-1\"]\ngateway = \"10.0.0.254\"\n"
                           "networks = [\"10.0.0.0/24\"]\n";
  auto a = load_config_string(base + dpdk, "t.toml");
  ASSERT_TRUE(a.has_value()) << a.error()[0].to_string();
  EXPECT_TRUE(same_front(*a, *a));
  auto other_routes = load_config_string(base + "[[route]]\nname = \"s\"\nnames = [\"b.test\"]\naction = \"reject\"\n" +
                                             dpdk, "t.toml");
  ASSERT_TRUE(other_routes.has_value());
  EXPECT_TRUE(same_front(*a, *other_routes)) << "routes reload";
  auto secret = load_config_string(base + dpdk + "cookie_secret_file = \"/etc/lodestone/cookie.hex\"\n", "t.toml");
  ASSERT_TRUE(secret.has_value()) << secret.error()[0].to_string();
  EXPECT_TRUE(same_front(*a, *secret)) << "the cookie secret is read again by a reload";
  for (const std::string& changed :
       {std::string("backend_vlan = 7\n"), std::string("port = 1\n"), std::string("max_flows = 1024\n"),
        std::string("gateway6 = \"fd00::fe\"\n")}) {
    auto b = load_config_string(base + dpdk + changed, "t.toml");
    ASSERT_TRUE(b.has_value()) << changed << b.error()[0].to_string();
    EXPECT_FALSE(same_front(*a, *b)) << changed;
  }
  auto other_gateway = load_config_string(
      base + "[dpdk]\neal = [\"-l\", \"0-1\"]\ngateway = \"10.0.0.253\"\nnetworks = [\"10.0.0.0/24\"]\n", "t.toml");
  ASSERT_TRUE(other_gateway.has_value());
  EXPECT_FALSE(same_front(*a, *other_gateway));
  auto other_eal = load_config_string(
      base + "[dpdk]\neal = [\"-l\", \"0-2\"]\ngateway = \"10.0.0.254\"\nnetworks = [\"10.0.0.0/24\"]\n", "t.toml");
  ASSERT_TRUE(other_eal.has_value());
  EXPECT_FALSE(same_front(*a, *other_eal));
  auto exception = load_config_string(base + dpdk + "[dpdk.exception]\nvdev = \"net_tap1,iface=x\"\ninterface = \"x\"\n",
                                      "t.toml");
  ASSERT_TRUE(exception.has_value()) << exception.error()[0].to_string();
  EXPECT_FALSE(same_front(*a, *exception));
  auto kernel = load_config_string(base, "t.toml");
  ASSERT_TRUE(kernel.has_value());
  EXPECT_FALSE(same_front(*a, *kernel)) << "[dpdk] gone";
  auto dpdk_front = load_config_string("front = \"dpdk\"\n" + base + dpdk, "t.toml");
  ASSERT_TRUE(dpdk_front.has_value()) << dpdk_front.error()[0].to_string();
  EXPECT_FALSE(same_front(*a, *dpdk_front)) << "front changed";
}

// defer_accept: off unless asked; a boolean; changing it is a listener
// change (a restart, as for the addresses).
TEST(Config, DeferAcceptIsAListenerSettingThatNeedsARestart) {
  const std::string base = "[[listener]]\nlisten = [\"127.0.0.1:1\"]\n";
  const std::string rest = "[[route]]\nname = \"r\"\nnames = [\"a.test\"]\naction = \"reject\"\n";
  auto off = load_config_string(base + rest, "t.toml");
  ASSERT_TRUE(off.has_value()) << off.error()[0].to_string();
  EXPECT_FALSE(off->listeners[0].defer_accept);
  auto on = load_config_string(base + "defer_accept = true\n" + rest, "t.toml");
  ASSERT_TRUE(on.has_value()) << on.error()[0].to_string();
  EXPECT_TRUE(on->listeners[0].defer_accept);
  EXPECT_FALSE(same_listeners(*off, *on));
  EXPECT_TRUE(same_listeners(*on, *on));
  const std::string e = errors_of(base + "defer_accept = 1\n" + rest);
  EXPECT_NE(e.find("defer_accept: expected true or false"), std::string::npos) << e;
}

TEST(Config, DanglingReferences) {
  const std::string e = errors_of(R"(
[[listener]]
name = "l"
listen = ["127.0.0.1:1"]
default_route = "nope"
[[route]]
name = "r"
listener = "other"
names = ["a.test"]
action = "passthrough"
pool = "missing"
[[route]]
name = "t"
names = ["b.test"]
action = "terminate"
[[route]]
name = "x"
names = ["c.test"]
action = "reject"
pool = "missing"
)");
  EXPECT_NE(e.find("listener[0].default_route: no route named 'nope'"), std::string::npos) << e;
  EXPECT_NE(e.find("route[0].listener: no listener named 'other'"), std::string::npos) << e;
  EXPECT_NE(e.find("route[0].pool: no pool named 'missing'"), std::string::npos) << e;
  EXPECT_NE(e.find("route[1].pool: required for action 'terminate'"), std::string::npos) << e;
  EXPECT_NE(e.find("route[2].pool: a reject route takes no pool"), std::string::npos) << e;
}

TEST(Config, DuplicatesAreRefused) {
  const std::string e = errors_of(R"(
[[listener]]
name = "l"
listen = ["127.0.0.1:1"]
[[listener]]
name = "l"
listen = ["127.0.0.1:2"]
[[pool]]
name = "p"
backends = ["127.0.0.1:2"]
[[pool]]
name = "p"
backends = ["127.0.0.1:3"]
[[route]]
name = "r"
listener = "l"
names = ["a.test"]
action = "reject"
[[route]]
name = "r"
listener = "l"
names = ["b.test"]
action = "reject"
)");
  EXPECT_NE(e.find("duplicate listener name 'l'"), std::string::npos) << e;
  EXPECT_NE(e.find("duplicate pool name 'p'"), std::string::npos) << e;
  EXPECT_NE(e.find("duplicate route name 'r'"), std::string::npos) << e;
}

TEST(Config, ListenerRequiredWithSeveralListeners) {
  const std::string e = errors_of(R"(
[[listener]]
name = "a"
listen = ["127.0.0.1:1"]
[[listener]]
name = "b"
listen = ["127.0.0.1:2"]
[[route]]
name = "r"
names = ["a.test"]
action = "reject"
)");
  EXPECT_NE(e.find("route[0].listener: required when there is more than one listener"), std::string::npos) << e;
}

TEST(Config, DefaultRouteOfAnotherListener) {
  const std::string e = errors_of(R"(
[[listener]]
name = "a"
listen = ["127.0.0.1:1"]
default_route = "r"
[[listener]]
name = "b"
listen = ["127.0.0.1:2"]
[[route]]
name = "r"
listener = "b"
names = ["a.test"]
action = "reject"
)");
  EXPECT_NE(e.find("route 'r' belongs to listener 'b'"), std::string::npos) << e;
}

TEST(Config, RouteWithoutNamesMustBeADefault) {
  const std::string e = errors_of(R"(
[[listener]]
listen = ["127.0.0.1:1"]
[[route]]
name = "r"
action = "reject"
)");
  EXPECT_NE(e.find("a route needs names unless it is a listener's default_route"), std::string::npos) << e;
}

TEST(Config, EveryErrorIsReportedNotJustTheFirst) {
  auto r = load_config_string(R"(
[[listener]]
listen = ["x"]
[[pool]]
backends = []
[[route]]
action = "nope"
)",
                              "t.toml");
  ASSERT_FALSE(r.has_value());
  EXPECT_GE(r.error().size(), 4u);
}

}  // namespace
}  // namespace lode::config

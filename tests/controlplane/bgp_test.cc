#include "controlplane/bgp.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace lode::cp {
namespace {

using namespace std::chrono_literals;

SocketAddress addr(const char* text) {
  auto a = parse_socket_address(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a ? *a : SocketAddress{};
}

// ------------------------------------------------------------ prefixes

TEST(VipPrefix, ParsesAndCanonicalises) {
  auto p = parse_vip_prefix("10.99.0.100/32");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->text, "10.99.0.100/32");
  EXPECT_TRUE(p->contains(addr("10.99.0.100:443")));
  EXPECT_FALSE(p->contains(addr("10.99.0.101:443")));
  auto bare = parse_vip_prefix("2001:DB8:0:0::10");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->text, "2001:db8::10/128");
  auto net = parse_vip_prefix("192.0.2.0/24");
  ASSERT_TRUE(net);
  EXPECT_TRUE(net->contains(addr("192.0.2.77:8443")));
  EXPECT_FALSE(net->contains(addr("192.0.3.1:8443")));
  EXPECT_FALSE(net->contains(addr("[::1]:8443")));
  // A dual-stack socket's IPv4 peer (::ffff:a.b.c.d) is its IPv4 address;
  // other IPv6 addresses are never inside an IPv4 prefix.
  EXPECT_TRUE(net->contains(addr("[::ffff:192.0.2.77]:8443")));
  EXPECT_FALSE(net->contains(addr("[::ffff:192.0.3.1]:8443")));
  EXPECT_FALSE(net->contains(addr("[::c000:24d]:8443")));  // 192.0.2.77, not mapped
  auto v6 = parse_vip_prefix("2001:db8::/32");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->contains(addr("[2001:db8:5::1]:443")));
  EXPECT_FALSE(v6->contains(addr("[2001:db9::1]:443")));
  EXPECT_FALSE(v6->contains(addr("192.0.2.77:443")));
}

TEST(VipPrefix, RefusesWhatIsNotAPrefix) {
  for (const char* bad : {"", "/32", "10.0.0.1/33", "10.0.0.1/", "10.0.0.1/3x", "10.0.0.1/-1", "::1/129",
                          "10.0.0.300/32", "example.com/32", "10.0.0.1 /32", "10.0.0.1/32/1"}) {
    EXPECT_FALSE(parse_vip_prefix(bad)) << bad;
  }
  auto host_bits = parse_vip_prefix("10.0.0.1/24");
  ASSERT_FALSE(host_bits);
  EXPECT_NE(host_bits.error().find("host bits"), std::string::npos);
}

TEST(VipPrefix, ListenerAddressesBecomeHostPrefixes) {
  EXPECT_EQ(vip_prefix_of(addr("10.1.2.3:443"))->text, "10.1.2.3/32");
  EXPECT_EQ(vip_prefix_of(addr("[2001:db8::1]:443"))->text, "2001:db8::1/128");
  EXPECT_FALSE(vip_prefix_of(addr("0.0.0.0:443")));
  EXPECT_FALSE(vip_prefix_of(addr("[::]:443")));
}

// ------------------------------------------------------------ [bgp]

const char* kBase = R"(
[[listener]]
name = "https"
listen = ["10.99.0.100:8443", "[2001:db8::100]:8443"]

[[listener]]
name = "other"
listen = ["0.0.0.0:9443", "10.99.0.100:9443"]

[[pool]]
name = "app"
backends = ["127.0.0.1:9001"]

[[pool]]
name = "api"
backends = ["127.0.0.1:9002"]

[[route]]
name = "app"
listener = "https"
names = ["app.test"]
action = "passthrough"
pool = "app"

[[route]]
name = "api"
listener = "other"
names = ["api.test"]
action = "passthrough"
pool = "api"
)";

Result<config::Config, config::ConfigErrors> load(const std::string& bgp) {
  return config::load_config_string(std::string(kBase) + bgp, "/etc/lodestone/lodestone.toml");
}

std::string errors_of(const config::ConfigErrors& e) {
  std::string s;
  for (const auto& x : e) s += x.to_string() + "\n";
  return s;
}

TEST(BgpConfig, DefaultsToTheListenersConcreteAddresses) {
  auto c = load("[bgp]\nenabled = true\n");
  ASSERT_TRUE(c) << errors_of(c.error());
  ASSERT_EQ(c->bgp.announce.size(), 2u);  // the wildcard is not a VIP; 10.99.0.100 once
  EXPECT_EQ(c->bgp.announce[0].prefix, "10.99.0.100/32");
  EXPECT_EQ(c->bgp.announce[1].prefix, "2001:db8::100/128");
  EXPECT_FALSE(c->bgp.announce[0].require_healthy_backend);
  EXPECT_EQ(c->bgp.include, "/run/lodestone/bird-vips.conf");
  EXPECT_EQ(c->bgp.liveness_interface, "lodealive0");
  EXPECT_EQ(c->bgp.convergence_ms, 2000u);
}

TEST(BgpConfig, ExplicitVipsPathsAndConditions) {
  auto c = load(R"(
[bgp]
enabled = true
socket = "bird.ctl"
include = "run/vips.conf"
liveness_interface = ""
convergence_ms = 0
birdc_timeout_ms = 250
require_healthy_backend = true
announce = ["10.99.0.0/24", { prefix = "2001:db8::100/128", require_healthy_backend = false }]
)");
  ASSERT_TRUE(c) << errors_of(c.error());
  EXPECT_EQ(c->bgp.socket, "/etc/lodestone/bird.ctl");
  EXPECT_EQ(c->bgp.include, "/etc/lodestone/run/vips.conf");
  EXPECT_EQ(c->bgp.liveness_interface, "");
  EXPECT_EQ(c->bgp.convergence_ms, 0u);
  ASSERT_EQ(c->bgp.announce.size(), 2u);
  EXPECT_TRUE(c->bgp.announce[0].require_healthy_backend);
  EXPECT_FALSE(c->bgp.announce[1].require_healthy_backend);
}

TEST(BgpConfig, RefusesWithTheKeyAndWhatWasExpected) {
  struct Case {
    const char* text;
    const char* key;
    const char* says;
  } cases[] = {
      {"[bgp]\nenabled = true\nannounce = [\"10.0.0.1/24\"]\n", "bgp.announce[0]", "host bits"},
      {"[bgp]\nannounce = [\"10.0.0.1\", \"10.0.0.1/32\"]\n", "bgp.announce[1]", "listed twice"},
      {"[bgp]\nannounce = [42]\n", "bgp.announce[0]", "expected a prefix"},
      {"[bgp]\nannounce = [{ prefix = \"10.0.0.1\", health = true }]\n", "bgp.announce[0].health", "unknown key"},
      {"[bgp]\nannounce = \"10.0.0.1\"\n", "bgp.announce", "list"},
      {"[bgp]\nliveness_interface = \"much-too-long-name0\"\n", "bgp.liveness_interface", "15 characters"},
      {"[bgp]\nconvergence_ms = -1\n", "bgp.convergence_ms", "0..600000"},
      {"[bgp]\nbirdc_timeout_ms = 10\n", "bgp.birdc_timeout_ms", "100..60000"},
      {"[bgp]\nenabeld = true\n", "bgp.enabeld", "unknown key"},
      {"[bgp]\nenabled = \"yes\"\n", "bgp.enabled", "true or false"},
  };
  for (const auto& k : cases) {
    auto c = load(k.text);
    ASSERT_FALSE(c) << k.text;
    const std::string all = errors_of(c.error());
    EXPECT_NE(all.find(k.key), std::string::npos) << all;
    EXPECT_NE(all.find(k.says), std::string::npos) << all;
  }
  // Only wildcard listeners: nothing to announce unless listed.
  auto wild = config::load_config_string(R"(
[[listener]]
listen = ["0.0.0.0:443"]
[bgp]
enabled = true
)", "x.toml");
  ASSERT_FALSE(wild);
  EXPECT_NE(errors_of(wild.error()).find("bgp.announce"), std::string::npos);
}

TEST(BgpConfig, AbsentMeansOff) {
  auto c = load("");
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->bgp.enabled);
  EXPECT_TRUE(c->bgp.announce.empty());
}

// ------------------------------------------------------------ the decision

struct Node {
  NodeView view;
  std::map<std::string, uint32_t> listening;  // address -> LISTEN sockets
  std::set<std::string> usable_pools;
  Node() {
    view.attached = true;
    view.snapshot_in_service = true;
    view.workers = 2;
    view.listening = [this](const SocketAddress& a) {
      auto it = listening.find(a.to_string());
      return it == listening.end() ? 0u : it->second;
    };
    view.pool_usable = [this](const config::PoolConfig& p) { return usable_pools.count(p.name) != 0; };
    for (const char* a : {"10.99.0.100:8443", "[2001:db8::100]:8443", "0.0.0.0:9443", "10.99.0.100:9443"}) {
      listening[a] = 2;
    }
    usable_pools = {"app", "api"};
  }
};

config::Config vip_config(const std::string& announce) {
  auto c = load("[bgp]\nenabled = true\nannounce = " + announce + "\n");
  EXPECT_TRUE(c) << (c ? "" : errors_of(c.error()));
  return c ? *c : config::Config{};
}

TEST(DecideVips, AnnouncesOnlyAReadyNode) {
  const auto cfg = vip_config(R"(["10.99.0.100/32", "2001:db8::100/128"])");
  Node n;
  auto d = decide_vips(cfg, n.view);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_TRUE(d[0].announce) << d[0].reason;
  EXPECT_TRUE(d[1].announce) << d[1].reason;

  n.view.attached = false;
  d = decide_vips(cfg, n.view);
  EXPECT_FALSE(d[0].announce);
  EXPECT_NE(d[0].reason.find("not attached"), std::string::npos);

  n.view.attached = true;
  n.view.snapshot_in_service = false;
  d = decide_vips(cfg, n.view);
  EXPECT_FALSE(d[0].announce);
  EXPECT_NE(d[0].reason.find("snapshot"), std::string::npos);

  n.view.snapshot_in_service = true;
  n.view.draining = true;
  d = decide_vips(cfg, n.view);
  EXPECT_FALSE(d[0].announce);
  EXPECT_FALSE(d[1].announce);
  EXPECT_NE(d[1].reason.find("draining"), std::string::npos);
}

TEST(DecideVips, EveryWorkerMustListenOnTheVipsListeners) {
  const auto cfg = vip_config(R"(["10.99.0.100/32", "2001:db8::100/128"])");
  Node n;
  n.listening["10.99.0.100:9443"] = 1;  // one of two workers
  auto d = decide_vips(cfg, n.view);
  EXPECT_FALSE(d[0].announce);
  EXPECT_NE(d[0].reason.find("1 of 2 workers"), std::string::npos) << d[0].reason;
  EXPECT_TRUE(d[1].announce) << "the IPv6 VIP has its own listeners";
  // The wildcard listener receives the VIP's traffic too.
  n.listening["10.99.0.100:9443"] = 2;
  n.listening["0.0.0.0:9443"] = 0;
  d = decide_vips(cfg, n.view);
  EXPECT_FALSE(d[0].announce);
  EXPECT_NE(d[0].reason.find("0.0.0.0:9443"), std::string::npos) << d[0].reason;
  // The dpdk front has no kernel listeners to look at.
  n.view.kernel_listeners = false;
  EXPECT_TRUE(decide_vips(cfg, n.view)[0].announce);
}

TEST(DecideVips, HealthyBackendConditionIsPerVip) {
  const auto cfg = vip_config(
      R"([{ prefix = "10.99.0.100/32", require_healthy_backend = true }, "2001:db8::100/128"])");
  Node n;
  n.usable_pools = {"api"};  // app (https) down, api (other) up: 10.99.0.100 serves both listeners
  auto d = decide_vips(cfg, n.view);
  EXPECT_TRUE(d[0].announce) << d[0].reason;
  n.usable_pools = {};
  d = decide_vips(cfg, n.view);
  EXPECT_FALSE(d[0].announce);
  EXPECT_NE(d[0].reason.find("no backend up in pool(s) api, app"), std::string::npos) << d[0].reason;
  EXPECT_TRUE(d[1].announce) << "no condition on the IPv6 VIP";
  const auto v6 = vip_config(R"([{ prefix = "2001:db8::100/128", require_healthy_backend = true }])");
  EXPECT_FALSE(decide_vips(v6, n.view)[0].announce);
  n.usable_pools = {"app"};
  EXPECT_TRUE(decide_vips(v6, n.view)[0].announce);
}

TEST(DecideVips, AVipNoListenerServesIsNotAnnounced) {
  const auto cfg = vip_config(R"(["2001:db8::999/128", "10.99.0.0/24", "198.51.100.7/32"])");
  Node n;
  auto d = decide_vips(cfg, n.view);
  EXPECT_FALSE(d[0].announce);
  EXPECT_NE(d[0].reason.find("no listener"), std::string::npos) << d[0].reason;
  EXPECT_TRUE(d[1].announce) << d[1].reason;
  // The IPv4 wildcard listener (0.0.0.0:9443) serves any IPv4 VIP routed here.
  EXPECT_TRUE(d[2].announce) << d[2].reason;
  n.listening["0.0.0.0:9443"] = 1;
  EXPECT_FALSE(decide_vips(cfg, n.view)[2].announce);
}

TEST(CountListening, ReadsProcNetTcp) {
  // 10.99.0.100:8443 LISTEN twice (SO_REUSEPORT), once ESTABLISHED; 127.0.0.1:8443.
  const std::string tcp =
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
      "   0: 6400630A:20FB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n"
      "   1: 6400630A:20FB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1\n"
      "   2: 6400630A:20FB 0200000A:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n"
      "   3: 0100007F:20FB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1\n"
      "   4: garbage\n"
      "   5: 6400630A:ZZZZ 00000000:0000 0A\n"
      "  sl  local_address                         remote_address                        st\n"
      "   0: B80D0120000000000000000000010000:20FB 00000000000000000000000000000000:0000 0A 0\n";
  const auto sockets = parse_proc_net_tcp(tcp);
  EXPECT_EQ(sockets.size(), 4u);
  EXPECT_EQ(count_listening(sockets, addr("10.99.0.100:8443")), 2u);
  EXPECT_EQ(count_listening(sockets, addr("127.0.0.1:8443")), 1u);
  EXPECT_EQ(count_listening(sockets, addr("10.99.0.100:8444")), 0u);
  EXPECT_EQ(count_listening(sockets, addr("[2001:db8::100]:8443")), 1u);
  EXPECT_EQ(count_listening(sockets, addr("[2001:db8::101]:8443")), 0u);
}

TEST(CountListening, SeesRealListenersThroughSockDiagAndProc) {
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(s, 0);
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&in), sizeof in), 0);
  socklen_t len = sizeof in;
  getsockname(s, reinterpret_cast<sockaddr*>(&in), &len);
  const SocketAddress where = addr(("127.0.0.1:" + std::to_string(ntohs(in.sin_port))).c_str());
  auto proc = [] {
    std::ifstream f("/proc/net/tcp");
    std::stringstream ss;
    ss << f.rdbuf();
    return parse_proc_net_tcp(ss.str());
  };
  EXPECT_EQ(count_listening(listening_sockets(), where), 0u);
  EXPECT_EQ(count_listening(proc(), where), 0u);
  ASSERT_EQ(listen(s, 4), 0);
  EXPECT_EQ(count_listening(listening_sockets(), where), 1u);
  EXPECT_EQ(count_listening(proc(), where), 1u);
  close(s);
  EXPECT_EQ(count_listening(listening_sockets(), where), 0u);
}

TEST(BirdInclude, OneStaticProtocolPerFamily) {
  const std::string text = bird_include({"10.99.0.100/32", "2001:db8::100/128"}, "lodealive0");
  EXPECT_NE(text.find("protocol static lodestone4 {\n  ipv4;\n  check link yes;\n"
                      "  route 10.99.0.100/32 via \"lodealive0\";\n}"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("protocol static lodestone6 {\n  ipv6;\n  check link yes;\n"
                      "  route 2001:db8::100/128 via \"lodealive0\";\n}"),
            std::string::npos)
      << text;
  const std::string none = bird_include({}, "");
  EXPECT_NE(none.find("protocol static lodestone4 {\n  ipv4;\n}"), std::string::npos) << none;
  EXPECT_EQ(none.find("  route "), std::string::npos);
  EXPECT_NE(bird_include({"10.0.0.1/32"}, "").find("route 10.0.0.1/32 blackhole;"), std::string::npos);
}

// ------------------------------------------------------------ the Announcer and a real BIRD

struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/tmp/lode-bgp-test.XXXXXX";
    path = mkdtemp(t);
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

config::BgpConfig settings(const TempDir& d, const std::string& socket) {
  config::BgpConfig b;
  b.enabled = true;
  b.socket = socket;
  b.include = d.path + "/vips.conf";
  b.liveness_interface = "";  // no link in the test's namespace
  b.birdc_timeout_ms = 3000;
  b.announce = {{"10.99.0.100/32", false}};
  return b;
}

std::vector<std::string> events;
Announcer::Event record() {
  return [](const std::string& j) { events.push_back(j); };
}

TEST(Announcer, BirdcFailuresAreCountedLoggedAndRetried) {
  TempDir d;
  events.clear();
  Announcer a(record());
  a.configure(settings(d, d.path + "/no-such-bird.ctl"));
  a.want({{"10.99.0.100/32", true, ""}});
  a.settle(5s);
  EXPECT_EQ(a.failures(), 1u);
  EXPECT_TRUE(a.failing());
  EXPECT_FALSE(a.in_sync());
  EXPECT_FALSE(a.vips().at("10.99.0.100/32").announced);
  ASSERT_FALSE(events.empty());
  EXPECT_NE(events.back().find("bgp_configure_failed"), std::string::npos) << events.back();
  EXPECT_NE(events.back().find("no-such-bird.ctl"), std::string::npos) << events.back();
  // The include was written even so: BIRD reads it whenever it reconfigures.
  EXPECT_NE(slurp(d.path + "/vips.conf").find("route 10.99.0.100/32 blackhole;"), std::string::npos);
  // Backoff: not retried at once, retried once it has passed.
  a.tick(Announcer::Clock::now());
  EXPECT_EQ(a.configures(), 1u);
  EXPECT_GE(a.timeout_ms(Announcer::Clock::now()), 100);
  a.tick(Announcer::Clock::now() + 1s);
  a.settle(5s);
  EXPECT_EQ(a.failures(), 2u);
}

TEST(Announcer, AMissingBirdcIsAFailureToo) {
  TempDir d;
  Announcer a(record());
  auto b = settings(d, d.path + "/bird.ctl");
  b.birdc = d.path + "/no-birdc-here";
  a.configure(b);
  a.want({{"10.99.0.100/32", true, ""}});
  a.settle(2s);
  EXPECT_EQ(a.failures(), 1u);
  EXPECT_FALSE(a.vips().at("10.99.0.100/32").announced);
}

TEST(Announcer, AHungBirdIsKilledAtTheTimeout) {
  TempDir d;
  // A control socket that accepts connections (the kernel does) but never
  // says a word: birdc waits for BIRD's greeting forever.
  const std::string path = d.path + "/hung.ctl";
  const int s = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  std::snprintf(un.sun_path, sizeof un.sun_path, "%s", path.c_str());
  ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&un), sizeof un), 0);
  ASSERT_EQ(listen(s, 8), 0);
  Announcer a(record());
  auto b = settings(d, path);
  b.birdc_timeout_ms = 300;
  a.configure(b);
  a.want({{"10.99.0.100/32", true, ""}});
  a.settle(5s);
  EXPECT_EQ(a.timeouts(), 1u);
  EXPECT_EQ(a.failures(), 1u);
  EXPECT_FALSE(a.vips().at("10.99.0.100/32").announced);
  close(s);
}

// BIRD 2 from the distribution (bird2), in the foreground, on a private
// control socket; ended by PID.
class Bird {
 public:
  explicit Bird(const TempDir& d) : socket_(d.path + "/bird.ctl") {
    const std::string conf = d.path + "/bird.conf";
    std::ofstream(conf) << "router id 192.0.2.1;\ninclude \"" << d.path << "/vips.conf\";\n";
    std::ofstream(d.path + "/vips.conf") << bird_include({}, "");
    const char* argv[] = {"bird", "-f", "-c", conf.c_str(), "-s", socket_.c_str(), nullptr};
    if (posix_spawnp(&pid_, "bird", nullptr, nullptr, const_cast<char* const*>(argv), environ) != 0) pid_ = -1;
    for (int i = 0; i < 100 && pid_ > 0 && access(socket_.c_str(), F_OK) != 0; ++i) std::this_thread::sleep_for(20ms);
  }
  ~Bird() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool up() const { return pid_ > 0 && access(socket_.c_str(), F_OK) == 0; }
  const std::string& socket() const { return socket_; }
  std::string routes() const {
    std::string out;
    if (FILE* p = popen(("birdc -s '" + socket_ + "' show route 2>&1").c_str(), "r")) {
      char buf[512];
      while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
      pclose(p);
    }
    return out;
  }

 private:
  std::string socket_;
  pid_t pid_ = -1;
};

TEST(Announcer, DrivesARealBird) {
  TempDir d;
  Bird bird(d);
  ASSERT_TRUE(bird.up()) << "bird (Debian package bird2) must be installed: tools/install-deps.sh";
  events.clear();
  Announcer a(record());
  a.configure(settings(d, bird.socket()));
  a.want({{"10.99.0.100/32", true, ""}, {"10.99.0.101/32", false, "the node is draining"}});
  a.settle(5s);
  ASSERT_TRUE(a.in_sync()) << (events.empty() ? "" : events.back());
  EXPECT_EQ(a.failures(), 0u);
  EXPECT_TRUE(a.vips().at("10.99.0.100/32").announced);
  EXPECT_GT(a.vips().at("10.99.0.100/32").last_change_unix, 0);
  EXPECT_FALSE(a.vips().at("10.99.0.101/32").announced);
  EXPECT_EQ(a.vips().at("10.99.0.101/32").last_change_unix, 0);
  std::string routes = bird.routes();
  EXPECT_NE(routes.find("10.99.0.100/32"), std::string::npos) << routes;
  EXPECT_EQ(routes.find("10.99.0.101/32"), std::string::npos) << routes;
  // Only a change runs birdc.
  const uint64_t runs = a.configures();
  a.want({{"10.99.0.100/32", true, ""}, {"10.99.0.101/32", false, "the node is draining"}});
  a.settle(1s);
  EXPECT_EQ(a.configures(), runs);
  // Withdrawn.
  a.want({{"10.99.0.100/32", false, "the node is draining"}});
  a.settle(5s);
  EXPECT_TRUE(a.withdrawn());
  EXPECT_FALSE(a.vips().at("10.99.0.100/32").announced);
  routes = bird.routes();
  EXPECT_EQ(routes.find("10.99.0.100/32"), std::string::npos) << routes;
  // Turned off by a reload: nothing more to do, nothing announced.
  auto off = settings(d, bird.socket());
  off.enabled = false;
  a.configure(off);
  a.want({});
  a.settle(1s);
  EXPECT_EQ(a.timeout_ms(Announcer::Clock::now()), -1);
}

TEST(Announcer, TurningBgpOffByAReloadWithdraws) {
  TempDir d;
  Bird bird(d);
  ASSERT_TRUE(bird.up());
  Announcer a(record());
  a.configure(settings(d, bird.socket()));
  a.want({{"10.99.0.100/32", true, ""}});
  a.settle(5s);
  ASSERT_TRUE(a.vips().at("10.99.0.100/32").announced);
  auto off = settings(d, bird.socket());
  off.enabled = false;
  a.configure(off);
  a.settle(5s);
  EXPECT_TRUE(a.withdrawn());
  EXPECT_EQ(bird.routes().find("10.99.0.100/32"), std::string::npos);
}

}  // namespace
}  // namespace lode::cp

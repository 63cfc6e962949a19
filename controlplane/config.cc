#include "controlplane/config.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <tuple>
#include <toml++/toml.h>

#include "controlplane/bgp.h"
#include "controlplane/published_config.h"
#include "dataplane/front/cookie_secret.h"
#include "dataplane/route/backend_pool.h"

namespace lode::config {

std::string ConfigError::to_string() const {
  std::string s = file;
  if (loc.line != 0) s += ":" + std::to_string(loc.line) + ":" + std::to_string(loc.column);
  s += ": ";
  if (!key.empty()) s += key + ": ";
  s += message;
  return s;
}

std::string_view to_string(ProxyAccept p) noexcept {
  switch (p) {
    case ProxyAccept::kNone: return "none";
    case ProxyAccept::kV1: return "v1";
    case ProxyAccept::kV2: return "v2";
    case ProxyAccept::kAny: return "any";
  }
  return "?";
}

std::string_view to_string(Algorithm a) noexcept {
  switch (a) {
    case Algorithm::kRoundRobin: return "round_robin";
    case Algorithm::kLeastConn: return "least_conn";
    case Algorithm::kMaglevClient: return "maglev_client";
    case Algorithm::kMaglevSni: return "maglev_sni";
  }
  return "?";
}

std::string_view to_string(route::Action a) noexcept {
  switch (a) {
    case route::Action::kTerminate: return "terminate";
    case route::Action::kPassthrough: return "passthrough";
    case route::Action::kReject: return "reject";
  }
  return "?";
}

// route::BackendPool's default id of the backend, which this must equal.
std::string backend_id(const BackendConfig& b) { return route::address_identity(b.address); }

std::string_view to_string(HealthType t) noexcept {
  switch (t) {
    case HealthType::kNone: return "none";
    case HealthType::kTcp: return "tcp";
    case HealthType::kTls: return "tls";
    case HealthType::kHttp: return "http";
  }
  return "?";
}

const PoolConfig* Config::find_pool(std::string_view name) const noexcept {
  for (const auto& p : pools) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

const RouteConfig* Config::find_route(std::string_view name) const noexcept {
  for (const auto& r : routes) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

namespace {

SourceLoc loc_of(const toml::node& n) {
  return {static_cast<uint32_t>(n.source().begin.line), static_cast<uint32_t>(n.source().begin.column)};
}

// Collects errors while walking one document.
class Loader {
 public:
  explicit Loader(std::string file) : file_(std::move(file)) {}

  void error(SourceLoc loc, std::string key, std::string msg) {
    errors_.push_back({file_, loc, std::move(key), std::move(msg)});
  }
  ConfigErrors take_errors() { return std::move(errors_); }
  bool ok() const { return errors_.empty(); }

  // Every key of `t` must be one of `known`.
  void only_keys(const toml::table& t, const std::string& where, std::initializer_list<std::string_view> known) {
    for (auto&& [k, v] : t) {
      bool found = false;
      for (auto name : known) found = found || k.str() == name;
      if (!found) {
        std::string expected;
        for (auto name : known) expected += (expected.empty() ? "" : ", ") + std::string(name);
        error(loc_of(v), where.empty() ? std::string(k.str()) : where + "." + std::string(k.str()), "unknown key (expected one of: " + expected + ")");
      }
    }
  }

  // An array of tables: [[name]].
  template <class F>
  void each_table(const toml::table& root, std::string_view name, F&& f) {
    const toml::node* n = root.get(name);
    if (n == nullptr) return;
    const toml::array* arr = n->as_array();
    if (arr == nullptr) {
      error(loc_of(*n), std::string(name), "expected an array of tables ([[" + std::string(name) + "]])");
      return;
    }
    size_t i = 0;
    for (const toml::node& e : *arr) {
      const std::string where = std::string(name) + "[" + std::to_string(i++) + "]";
      if (const toml::table* t = e.as_table()) {
        f(*t, where);
      } else {
        error(loc_of(e), where, "expected a table");
      }
    }
  }

  bool get_string(const toml::table& t, const std::string& where, std::string_view key, std::string& out,
                  bool required) {
    const toml::node* n = t.get(key);
    const std::string path = where + "." + std::string(key);
    if (n == nullptr) {
      if (required) error(loc_of(t), path, "missing (a string is required)");
      return false;
    }
    if (const auto* s = n->as_string()) {
      out = s->get();
      if (out.empty()) error(loc_of(*n), path, "must not be empty");
      return !out.empty();
    }
    error(loc_of(*n), path, "expected a string");
    return false;
  }

  // A name (listener, pool, route, certificate): it becomes a snapshot key,
  // a metric label and a column in lodectl's output, so printable ASCII
  // without spaces, at most kMaxNameLen bytes.
  bool get_name(const toml::table& t, const std::string& where, std::string& out, bool required) {
    if (!get_string(t, where, "name", out, required)) return false;
    const bool ok = out.size() <= kMaxNameLen &&
                    std::all_of(out.begin(), out.end(), [](char c) { return c > 0x20 && c < 0x7f; });
    if (!ok) {
      error(loc_of(*t.get("name")), where + ".name",
            "must be 1 to " + std::to_string(kMaxNameLen) + " printable ASCII characters without spaces");
    }
    return ok;
  }

  bool get_bool(const toml::table& t, const std::string& where, std::string_view key, bool& out) {
    const toml::node* n = t.get(key);
    if (n == nullptr) return false;
    if (const auto* b = n->as_boolean()) {
      out = b->get();
      return true;
    }
    error(loc_of(*n), where + "." + std::string(key), "expected true or false");
    return false;
  }

  bool get_uint(const toml::table& t, const std::string& where, std::string_view key, uint32_t& out, int64_t lo,
                int64_t hi) {
    const toml::node* n = t.get(key);
    if (n == nullptr) return false;
    const auto* i = n->as_integer();
    if (i == nullptr || i->get() < lo || i->get() > hi) {
      error(loc_of(*n), where + "." + std::string(key),
            "expected an integer in " + std::to_string(lo) + ".." + std::to_string(hi));
      return false;
    }
    out = static_cast<uint32_t>(i->get());
    return true;
  }

  // A string that must be one of `choices`; returns its index.
  template <size_t N>
  int get_choice(const toml::table& t, const std::string& where, std::string_view key,
                 const std::array<std::string_view, N>& choices, bool required) {
    std::string v;
    if (!get_string(t, where, key, v, required)) return -1;
    for (size_t i = 0; i < N; ++i) {
      if (v == choices[i]) return static_cast<int>(i);
    }
    std::string expected;
    for (auto c : choices) expected += (expected.empty() ? "" : " | ") + std::string(c);
    error(loc_of(*t.get(key)), where + "." + std::string(key), "'" + v + "' is not one of " + expected);
    return -1;
  }

  std::optional<SocketAddress> address(const toml::node& n, const std::string& path) {
    const auto* s = n.as_string();
    if (s == nullptr) {
      error(loc_of(n), path, "expected an address string \"HOST:PORT\"");
      return std::nullopt;
    }
    auto a = parse_socket_address(s->get());
    if (!a) {
      error(loc_of(n), path, "'" + s->get() + "': " + std::string(a.error()));
      return std::nullopt;
    }
    return *a;
  }

  // [dpdk] gateway = "IPv4", gateway6 = "IPv6", networks = ["PREFIX", ...]:
  // where the passthrough backends are (see DpdkConfig).
  void dpdk_next_hops(const toml::table& t, DpdkConfig& d) {
    for (auto [key, family, out] : {std::tuple<std::string_view, int, DpdkPrefix*>{"gateway", AF_INET, &d.gateway},
                                    std::tuple<std::string_view, int, DpdkPrefix*>{"gateway6", AF_INET6, &d.gateway6}}) {
      std::string v;
      if (!get_string(t, "dpdk", key, v, false)) continue;
      d.routed = true;
      const std::string where = "dpdk." + std::string(key);
      DpdkPrefix g;
      g.family = family;
      g.len = family == AF_INET ? 32 : 128;
      if (inet_pton(family, v.c_str(), g.addr) != 1) {
        error(loc_of(*t.get(key)), where,
              "'" + v + "': expected an " + (family == AF_INET ? "IPv4" : "IPv6") + " address");
        continue;
      }
      const bool zero = std::all_of(g.addr, g.addr + g.len / 8, [](uint8_t b) { return b == 0; });
      const bool multicast = family == AF_INET ? (g.addr[0] & 0xf0) == 0xe0 || (g.addr[0] & g.addr[1] & g.addr[2] & g.addr[3]) == 0xff
                                               : g.addr[0] == 0xff;
      if (zero || multicast) {
        error(loc_of(*t.get(key)), where, "'" + v + "': expected a unicast address (the gateway's)");
        continue;
      }
      *out = g;
    }
    const toml::node* n = t.get("networks");
    if (n == nullptr) return;
    d.routed = true;
    for (const AddressPrefix& p : prefixes(*n, "dpdk.networks")) {
      DpdkPrefix x;
      x.family = p.family;
      std::copy(p.addr.begin(), p.addr.end(), x.addr);
      x.len = p.len;
      d.networks.push_back(x);
    }
  }

  // A list of "PREFIX" strings ("10.0.0.0/24", "fd00::/64"; an address
  // alone is /32 or /128); each bad one is an error at its place.
  std::vector<AddressPrefix> prefixes(const toml::node& n, const std::string& where) {
    std::vector<AddressPrefix> out;
    const toml::array* arr = n.as_array();
    if (arr == nullptr) {
      error(loc_of(n), where, "expected a list of prefixes, e.g. [\"10.0.0.0/24\", \"fd00::/64\"]");
      return out;
    }
    for (size_t i = 0; i < arr->size(); ++i) {
      const std::string at = where + "[" + std::to_string(i) + "]";
      const auto* s = (*arr)[i].as_string();
      if (s == nullptr) {
        error(loc_of((*arr)[i]), at, "expected a prefix string such as \"10.0.0.0/24\"");
        continue;
      }
      auto p = cp::parse_vip_prefix(s->get());
      if (!p) {
        error(loc_of((*arr)[i]), at, "'" + s->get() + "': " + p.error());
        continue;
      }
      out.push_back(*p);
    }
    return out;
  }

  // [dpdk.exception] (or exception = { ... }): the link to the workers' kernel TCP stack.
  void dpdk_exception(const toml::node& n, DpdkExceptionConfig& x) {
    const std::string where = "dpdk.exception";
    const toml::table* t = n.as_table();
    if (t == nullptr) {
      error(loc_of(n), where, "expected a table { vdev = \"...\", interface = \"...\", ... }");
      return;
    }
    only_keys(*t, where, {"vdev", "interface", "kernel_address", "address", "first_port"});
    get_string(*t, where, "vdev", x.vdev, true);
    if (get_string(*t, where, "interface", x.interface, true) && x.interface.size() >= 16) {  // IFNAMSIZ
      error(loc_of(*t->get("interface")), where + ".interface", "at most 15 characters");
    }
    for (auto [key, out] : {std::pair<std::string_view, uint32_t*>{"kernel_address", &x.kernel_address},
                            std::pair<std::string_view, uint32_t*>{"address", &x.address}}) {
      std::string v;
      if (!get_string(*t, where, key, v, false)) continue;
      in_addr a{};
      if (inet_pton(AF_INET, v.c_str(), &a) != 1) {
        error(loc_of(*t->get(key)), where + "." + std::string(key), "'" + v + "': expected an IPv4 address");
      } else {
        *out = ntohl(a.s_addr);
      }
    }
    get_uint(*t, where, "first_port", x.first_port, 1024, 65535);
    const uint32_t differ = x.kernel_address ^ x.address;
    x.prefix_len = differ == 0 ? 32 : std::min(30, __builtin_clz(differ));
    if (differ == 0) {
      error(loc_of(*t), where + ".address", "must differ from kernel_address");
    } else if (x.prefix_len < 16) {
      error(loc_of(*t), where + ".address", "kernel_address and address must share a prefix of 16 bits or more");
    }
  }

  void listener(const toml::table& t, const std::string& where, Config& cfg) {
    only_keys(t, where,
              {"name", "listen", "proxy_protocol", "proxy_from", "default_route", "max_hello_bytes", "defer_accept"});
    ListenerConfig l;
    l.loc = loc_of(t);
    if (!get_name(t, where, l.name, false)) l.name = "listener" + std::to_string(cfg.listeners.size());
    const toml::node* listen = t.get("listen");
    if (listen == nullptr) {
      error(l.loc, where + ".listen", "missing (a list of \"HOST:PORT\" addresses is required)");
    } else if (const toml::array* arr = listen->as_array(); arr == nullptr || arr->empty()) {
      error(loc_of(*listen), where + ".listen", "expected a non-empty list of \"HOST:PORT\" addresses");
    } else {
      size_t i = 0;
      for (const toml::node& e : *arr) {
        if (auto a = address(e, where + ".listen[" + std::to_string(i++) + "]")) l.listen.push_back(*a);
      }
    }
    static constexpr std::array<std::string_view, 4> kProxy = {"none", "v1", "v2", "any"};
    if (int p = get_choice(t, where, "proxy_protocol", kProxy, false); p >= 0) l.proxy_protocol = ProxyAccept(p);
    if (const toml::node* from = t.get("proxy_from")) {
      l.proxy_from = prefixes(*from, where + ".proxy_from");
      if (l.proxy_protocol == ProxyAccept::kNone) {
        error(loc_of(*from), where + ".proxy_from", "only with proxy_protocol (v1, v2 or any): it names who may send the header");
      } else if (l.proxy_from.empty() && from->as_array() != nullptr) {
        error(loc_of(*from), where + ".proxy_from", "an empty list would refuse everyone; leave it out to trust any peer");
      }
    }
    get_string(t, where, "default_route", l.default_route, false);
    get_uint(t, where, "max_hello_bytes", l.max_hello_bytes, 512, 1 << 20);
    get_bool(t, where, "defer_accept", l.defer_accept);
    cfg.listeners.push_back(std::move(l));
  }

  void pool(const toml::table& t, const std::string& where, Config& cfg) {
    only_keys(t, where, {"name", "backends", "algorithm", "send_proxy_v2", "tls", "health", "when_all_down"});
    PoolConfig p;
    p.loc = loc_of(t);
    get_name(t, where, p.name, true);
    const toml::node* backends = t.get("backends");
    if (backends == nullptr) {
      error(p.loc, where + ".backends", "missing (a list of backends is required)");
    } else if (const toml::array* arr = backends->as_array(); arr == nullptr || arr->empty()) {
      error(loc_of(*backends), where + ".backends", "expected a non-empty list of backends");
    } else {
      size_t i = 0;
      for (const toml::node& e : *arr) {
        const std::string path = where + ".backends[" + std::to_string(i++) + "]";
        BackendConfig b;
        if (const toml::table* bt = e.as_table()) {
          only_keys(*bt, path, {"address", "weight"});
          const toml::node* addr = bt->get("address");
          if (addr == nullptr) {
            error(loc_of(e), path + ".address", "missing");
            continue;
          }
          auto a = address(*addr, path + ".address");
          get_uint(*bt, path, "weight", b.weight, 1, 65535);
          if (!a) continue;
          b.address = *a;
        } else {
          auto a = address(e, path);
          if (!a) continue;
          b.address = *a;
        }
        p.backends.push_back(b);
      }
    }
    static constexpr std::array<std::string_view, 4> kAlgo = {"round_robin", "least_conn", "maglev_client",
                                                              "maglev_sni"};
    if (int a = get_choice(t, where, "algorithm", kAlgo, false); a >= 0) p.algorithm = Algorithm(a);
    get_bool(t, where, "send_proxy_v2", p.send_proxy_v2);
    static constexpr std::array<std::string_view, 2> kAllDown = {"fail_open", "reject"};
    if (int a = get_choice(t, where, "when_all_down", kAllDown, false); a >= 0) p.when_all_down = AllDown(a);
    if (const toml::node* hn = t.get("health")) health(*hn, where + ".health", p.health);
    if (const toml::node* tn = t.get("tls")) {
      if (const toml::table* tt = tn->as_table()) {
        const std::string tw = where + ".tls";
        only_keys(*tt, tw, {"server_name", "verify", "ca_file", "ca_path"});
        p.tls.enabled = true;
        if (const toml::node* sn = tt->get("server_name"); sn != nullptr && sn->as_string() != nullptr) {
          p.tls.server_name_set = true;
          p.tls.server_name = sn->as_string()->get();
        } else if (sn != nullptr) {
          error(loc_of(*sn), tw + ".server_name", "expected a string");
        }
        get_bool(*tt, tw, "verify", p.tls.verify);
        if (get_string(*tt, tw, "ca_file", p.tls.ca_file, false)) p.tls.ca_file = resolve(p.tls.ca_file);
        if (get_string(*tt, tw, "ca_path", p.tls.ca_path, false)) p.tls.ca_path = resolve(p.tls.ca_path);
        if (p.tls.verify && p.tls.ca_file.empty() && p.tls.ca_path.empty()) {
          error(loc_of(*tn), tw, "verify = true needs ca_file or ca_path (or set verify = false explicitly)");
        }
      } else {
        error(loc_of(*tn), where + ".tls", "expected a table, e.g. tls = { server_name = \"b.internal\", ca_file = \"ca.pem\" }");
      }
    }
    // A TLS check verifies like the pool; it has no client SNI to verify.
    const bool check_tls = p.health.type == HealthType::kTls || (p.health.type == HealthType::kHttp && p.tls.enabled);
    if (check_tls && p.tls.enabled && p.tls.verify && !p.tls.server_name_set && p.health.host.empty()) {
      error(loc_of(*t.get("health")), where + ".health.host",
            "required: the pool verifies its backends by the client's SNI, which a health check does not have "
            "(set health.host or tls.server_name to the name the backends' certificates carry)");
    }
    cfg.pools.push_back(std::move(p));
  }

  // [pool.health]: a check type and its bounds. Strings go into an HTTP
  // request line and header: printable ASCII, no spaces, bounded.
  void health(const toml::node& n, const std::string& where, HealthCheckConfig& h) {
    const toml::table* t = n.as_table();
    if (t == nullptr) {
      error(loc_of(n), where, "expected a table, e.g. health = { type = \"tcp\", interval_ms = 2000 }");
      return;
    }
    only_keys(*t, where, {"type", "interval_ms", "timeout_ms", "rise", "fall", "path", "host", "expect_status"});
    static constexpr std::array<std::string_view, 3> kType = {"tcp", "tls", "http"};
    const int type = get_choice(*t, where, "type", kType, true);
    if (type >= 0) h.type = HealthType(type + 1);
    get_uint(*t, where, "interval_ms", h.interval_ms, 100, 3'600'000);
    get_uint(*t, where, "timeout_ms", h.timeout_ms, 10, 60'000);
    get_uint(*t, where, "rise", h.rise, 1, 100);
    get_uint(*t, where, "fall", h.fall, 1, 100);
    get_uint(*t, where, "expect_status", h.expect_status, 100, 599);
    if (h.timeout_ms > h.interval_ms) {
      error(loc_of(t->get("timeout_ms") != nullptr ? *t->get("timeout_ms") : n), where + ".timeout_ms",
            "must not exceed interval_ms (" + std::to_string(h.interval_ms) + "): one check in flight per backend");
    }
    auto token = [&](std::string_view key, std::string& out, size_t max, bool slash) {
      if (!get_string(*t, where, key, out, false)) return;
      bool ok = out.size() <= max && (!slash || out[0] == '/');
      for (const char c : out) ok = ok && static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
      if (!ok) {
        error(loc_of(*t->get(key)), where + "." + std::string(key),
              "'" + out + "': expected " + (slash ? "a path starting with '/'" : "a host name") + " of printable " +
                  "ASCII without spaces, at most " + std::to_string(max) + " bytes");
      }
    };
    token("path", h.path, 1024, true);
    token("host", h.host, 255, false);
    if (h.type != HealthType::kHttp) {
      for (const char* key : {"path", "expect_status"}) {
        if (t->get(key) != nullptr) error(loc_of(*t->get(key)), where + "." + key, "only for type = \"http\"");
      }
    }
    if (h.type == HealthType::kTcp && t->get("host") != nullptr) {
      error(loc_of(*t->get("host")), where + ".host", "only for type = \"http\" or \"tls\"");
    }
  }

  void route(const toml::table& t, const std::string& where, Config& cfg) {
    only_keys(t, where, {"name", "listener", "names", "action", "pool", "reject_with", "certificate", "steer",
                         "max_connections"});
    RouteConfig r;
    r.loc = loc_of(t);
    get_name(t, where, r.name, true);
    get_string(t, where, "listener", r.listener, false);
    if (const toml::node* names = t.get("names")) {
      if (const toml::array* arr = names->as_array()) {
        size_t i = 0;
        for (const toml::node& e : *arr) {
          if (const auto* s = e.as_string()) {
            r.names.push_back({s->get(), loc_of(e)});
          } else {
            error(loc_of(e), where + ".names[" + std::to_string(i) + "]", "expected a host name string");
          }
          ++i;
        }
      } else {
        error(loc_of(*names), where + ".names", "expected a list of host names");
      }
    }
    static constexpr std::array<std::string_view, 3> kAction = {"terminate", "passthrough", "reject"};
    if (int a = get_choice(t, where, "action", kAction, true); a >= 0) r.action = route::Action(a);
    get_string(t, where, "pool", r.pool, false);
    static constexpr std::array<std::string_view, 2> kReject = {"alert", "reset"};
    if (int rw = get_choice(t, where, "reject_with", kReject, false); rw >= 0) r.reject_with_reset = rw == 1;
    static constexpr std::array<std::string_view, 2> kSteer = {"name", "client"};
    if (int st = get_choice(t, where, "steer", kSteer, false); st >= 0) r.steer_by_client = st == 1;
    get_string(t, where, "certificate", r.certificate, false);
    get_uint(t, where, "max_connections", r.max_connections, 0, 10'000'000);
    cfg.routes.push_back(std::move(r));
  }

  std::string resolve(const std::string& path) const {
    if (path.empty() || path[0] == '/' || base_dir_.empty()) return path;
    return base_dir_ + "/" + path;
  }
  void set_base_dir(std::string d) { base_dir_ = std::move(d); }

  void certificate(const toml::table& t, const std::string& where, Config& cfg) {
    only_keys(t, where, {"name", "cert", "key", "ocsp_url", "ocsp_policy"});
    CertificateConfig c;
    c.loc = loc_of(t);
    get_name(t, where, c.name, true);
    if (get_string(t, where, "cert", c.cert, true)) c.cert = resolve(c.cert);
    if (get_string(t, where, "key", c.key, true)) {
      // A key pasted where its path goes must not come back in an error, a
      // log line or an admin answer ("cannot open <path>"): refused unread.
      if (c.key.find('\n') != std::string::npos || c.key.find("-----BEGIN") != std::string::npos) {
        error(loc_of(*t.get("key")), where + ".key",
              "expected the path of a key file, saw PEM text (not repeated here: it may be a private key)");
        c.key.clear();
      } else {
        c.key = resolve(c.key);
      }
    }
    get_string(t, where, "ocsp_url", c.ocsp_url, false);
    if (!c.ocsp_url.empty() && c.ocsp_url.rfind("http://", 0) != 0 && c.ocsp_url.rfind("https://", 0) != 0) {
      error(c.loc, where + ".ocsp_url", "expected an http:// or https:// URL");
    }
    static constexpr std::array<std::string_view, 2> kPolicy = {"lenient", "strict"};
    if (int p = get_choice(t, where, "ocsp_policy", kPolicy, false); p >= 0) {
      c.ocsp_policy = p == 0 ? OcspPolicy::kLenient : OcspPolicy::kStrict;
    }
    cfg.certificates.push_back(std::move(c));
  }

  void certificate_dir(const toml::table& t, const std::string& where, Config& cfg) {
    only_keys(t, where, {"name", "path", "cert_pattern", "key_pattern"});
    CertificateDirConfig d;
    d.loc = loc_of(t);
    get_name(t, where, d.name, true);
    if (get_string(t, where, "path", d.path, true)) d.path = resolve(d.path);
    // "certs/" is "certs": the file watcher names events by the directory
    // without its slash, and they are matched against this path.
    while (d.path.size() > 1 && d.path.back() == '/') d.path.pop_back();
    get_string(t, where, "cert_pattern", d.cert_pattern, false);
    get_string(t, where, "key_pattern", d.key_pattern, false);
    for (const auto* pat : {&d.cert_pattern, &d.key_pattern}) {
      if (pat->find("%n") == std::string::npos || pat->find('/') != std::string::npos) {
        error(d.loc, where + (pat == &d.cert_pattern ? ".cert_pattern" : ".key_pattern"),
              "'" + *pat + "' must contain %n (the host name) and no '/'");
      }
    }
    if (d.cert_pattern == d.key_pattern) error(d.loc, where + ".key_pattern", "must differ from cert_pattern");
    cfg.certificate_dirs.push_back(std::move(d));
  }

  const toml::table* section(const toml::table& root, std::string_view name) {
    const toml::node* n = root.get(name);
    if (n == nullptr) return nullptr;
    if (const toml::table* t = n->as_table()) return t;
    error(loc_of(*n), std::string(name), "expected a table ([" + std::string(name) + "])");
    return nullptr;
  }

  void globals(const toml::table& root, Config& cfg) {
    if (const toml::table* t = section(root, "tls")) {
      only_keys(*t, "tls", {"min_version", "max_version", "ciphers", "ciphersuites", "groups", "alpn",
                            "session_tickets", "ticket_rotation_s", "ticket_key_file", "ktls", "own_records"});
      if (get_string(*t, "tls", "ticket_key_file", cfg.tls.ticket_key_file, false)) {
        cfg.tls.ticket_key_file = resolve(cfg.tls.ticket_key_file);
      }
      static constexpr std::array<std::string_view, 2> kVersions = {"1.2", "1.3"};
      if (int v = get_choice(*t, "tls", "min_version", kVersions, false); v >= 0) cfg.tls.min_version = kVersions[v];
      if (int v = get_choice(*t, "tls", "max_version", kVersions, false); v >= 0) cfg.tls.max_version = kVersions[v];
      if (cfg.tls.min_version > cfg.tls.max_version) error(loc_of(*t), "tls.min_version", "is above max_version");
      get_string(*t, "tls", "ciphers", cfg.tls.ciphers, false);
      get_string(*t, "tls", "ciphersuites", cfg.tls.ciphersuites, false);
      get_string(*t, "tls", "groups", cfg.tls.groups, false);
      if (const toml::node* a = t->get("alpn")) {
        cfg.tls.alpn.clear();
        const toml::array* arr = a->as_array();
        if (arr == nullptr) error(loc_of(*a), "tls.alpn", "expected a list of protocol names");
        for (size_t i = 0; arr != nullptr && i < arr->size(); ++i) {
          const auto* s = (*arr)[i].as_string();
          if (s == nullptr || s->get().empty() || s->get().size() > 255) {
            error(loc_of((*arr)[i]), "tls.alpn[" + std::to_string(i) + "]", "expected a protocol name of 1..255 bytes");
          } else {
            cfg.tls.alpn.push_back(s->get());
          }
        }
      }
      get_bool(*t, "tls", "session_tickets", cfg.tls.session_tickets);
      get_bool(*t, "tls", "ktls", cfg.tls.ktls);
      get_bool(*t, "tls", "own_records", cfg.tls.own_records);
      get_uint(*t, "tls", "ticket_rotation_s", cfg.tls.ticket_rotation_s, 60, 7 * 86400);
    }
    if (const toml::table* t = section(root, "timeouts")) {
      only_keys(*t, "timeouts", {"hello_ms", "connect_ms", "idle_ms", "drain_ms", "half_closed_ms"});
      get_uint(*t, "timeouts", "hello_ms", cfg.timeouts.hello_ms, 100, 600'000);
      get_uint(*t, "timeouts", "connect_ms", cfg.timeouts.connect_ms, 10, 600'000);
      get_uint(*t, "timeouts", "idle_ms", cfg.timeouts.idle_ms, 100, 86'400'000);
      get_uint(*t, "timeouts", "drain_ms", cfg.timeouts.drain_ms, 0, 3'600'000);
      get_uint(*t, "timeouts", "half_closed_ms", cfg.timeouts.half_closed_ms, 0, 86'400'000);
    }
    if (const toml::table* t = section(root, "workers")) {
      only_keys(*t, "workers", {"count", "cpus"});
      get_uint(*t, "workers", "count", cfg.workers.count, 1, 1024);
      if (const toml::node* c = t->get("cpus")) {
        const toml::array* arr = c->as_array();
        if (arr == nullptr) error(loc_of(*c), "workers.cpus", "expected a list of CPU numbers");
        for (size_t i = 0; arr != nullptr && i < arr->size(); ++i) {
          const auto* v = (*arr)[i].as_integer();
          if (v == nullptr || v->get() < 0 || v->get() > 4095) {
            error(loc_of((*arr)[i]), "workers.cpus[" + std::to_string(i) + "]", "expected a CPU number 0..4095");
          } else {
            cfg.workers.cpus.push_back(static_cast<int>(v->get()));
          }
        }
      }
    }
    if (const toml::table* t = section(root, "limits")) {
      only_keys(*t, "limits", {"connections_per_worker", "connect_retries", "memory_per_worker_mb",
                               "connections_per_client"});
      get_uint(*t, "limits", "connections_per_worker", cfg.limits.connections_per_worker, 1, 1'000'000);
      get_uint(*t, "limits", "connect_retries", cfg.limits.connect_retries, 0, 16);
      get_uint(*t, "limits", "connections_per_client", cfg.limits.connections_per_client, 0, 1'000'000);
      get_uint(*t, "limits", "memory_per_worker_mb", cfg.limits.memory_per_worker_mb, 1, 1'048'576);
    }
    if (const toml::table* t = section(root, "control")) {
      only_keys(*t, "control", {"run_dir", "state_dir", "start_timeout_s", "trusted_ca", "intermediates",
                                "expiry_warning_days"});
      if (get_string(*t, "control", "run_dir", cfg.control.run_dir, false)) cfg.control.run_dir = resolve(cfg.control.run_dir);
      if (get_string(*t, "control", "state_dir", cfg.control.state_dir, false)) {
        cfg.control.state_dir = resolve(cfg.control.state_dir);
      }
      get_uint(*t, "control", "start_timeout_s", cfg.control.start_timeout_s, 1, 3600);
      if (get_string(*t, "control", "trusted_ca", cfg.control.trusted_ca, false)) {
        cfg.control.trusted_ca = resolve(cfg.control.trusted_ca);
      }
      if (get_string(*t, "control", "intermediates", cfg.control.intermediates, false)) {
        cfg.control.intermediates = resolve(cfg.control.intermediates);
      }
      get_uint(*t, "control", "expiry_warning_days", cfg.control.expiry_warning_days, 0, 365);
    }
    if (const toml::table* t = section(root, "admin")) {
      only_keys(*t, "admin", {"socket", "group", "metrics"});
      if (get_string(*t, "admin", "socket", cfg.admin.socket, false)) cfg.admin.socket = resolve(cfg.admin.socket);
      get_string(*t, "admin", "group", cfg.admin.group, false);
      if (get_string(*t, "admin", "metrics", cfg.admin.metrics, false) && !cfg.admin.metrics.empty()) {
        if (!parse_socket_address(cfg.admin.metrics)) {
          error(loc_of(*t->get("metrics")), "admin.metrics", "'" + cfg.admin.metrics + "' is not an address:port");
        }
      }
    }
    if (const toml::table* t = section(root, "ocsp")) {
      only_keys(*t, "ocsp", {"enabled", "policy", "on_revoked", "method", "timeout_ms", "startup_wait_ms"});
      get_bool(*t, "ocsp", "enabled", cfg.ocsp.enabled);
      static constexpr std::array<std::string_view, 2> kPolicy = {"lenient", "strict"};
      if (int p = get_choice(*t, "ocsp", "policy", kPolicy, false); p >= 0) {
        cfg.ocsp.policy = p == 0 ? OcspPolicy::kLenient : OcspPolicy::kStrict;
      }
      static constexpr std::array<std::string_view, 2> kRevoked = {"withhold", "serve"};
      if (int r = get_choice(*t, "ocsp", "on_revoked", kRevoked, false); r >= 0) cfg.ocsp.withhold_revoked = r == 0;
      static constexpr std::array<std::string_view, 2> kMethod = {"post", "get"};
      if (int m = get_choice(*t, "ocsp", "method", kMethod, false); m >= 0) cfg.ocsp.use_get = m == 1;
      get_uint(*t, "ocsp", "timeout_ms", cfg.ocsp.timeout_ms, 100, 60'000);
      get_uint(*t, "ocsp", "startup_wait_ms", cfg.ocsp.startup_wait_ms, 0, 600'000);
    }
    static constexpr std::array<std::string_view, 2> kFronts = {"kernel", "dpdk"};
    if (int f = get_choice(root, "", "front", kFronts, false); f >= 0) cfg.front = kFronts[f];
    if (const toml::table* t = section(root, "dpdk")) {
      only_keys(*t, "dpdk", {"eal", "port", "max_flows", "exception", "gateway", "gateway6", "networks", "backend_vlan",
                             "cookie_secret_file"});
      if (const toml::node* e = t->get("eal")) {
        const toml::array* arr = e->as_array();
        if (arr == nullptr) error(loc_of(*e), "dpdk.eal", "expected a list of EAL arguments");
        for (size_t i = 0; arr != nullptr && i < arr->size(); ++i) {
          const auto* s = (*arr)[i].as_string();
          if (s == nullptr || s->get().empty()) {
            error(loc_of((*arr)[i]), "dpdk.eal[" + std::to_string(i) + "]", "expected a non-empty string");
          } else {
            cfg.dpdk.eal.push_back(s->get());
          }
        }
      }
      get_uint(*t, "dpdk", "port", cfg.dpdk.port, 0, 1023);
      get_uint(*t, "dpdk", "max_flows", cfg.dpdk.max_flows, 16, 16'777'216);
      get_uint(*t, "dpdk", "backend_vlan", cfg.dpdk.backend_vlan, 0, 4094);
      // The dataplane reads it (dataplane/front/cookie_secret.h) at start and
      // on every reload; checked here too, so `lodestone check` and a reload
      // refuse a file it would refuse (the key itself is dropped at once).
      if (get_string(*t, "dpdk", "cookie_secret_file", cfg.dpdk.cookie_secret_file, false)) {
        cfg.dpdk.cookie_secret_file = resolve(cfg.dpdk.cookie_secret_file);
        if (cfg.front == "dpdk") {
          auto secret = front::load_cookie_secret(cfg.dpdk.cookie_secret_file);
          if (!secret) {
            error(loc_of(*t->get("cookie_secret_file")), "dpdk.cookie_secret_file", secret.error());
          } else {
            secret->fill(0);
          }
        }
      }
      if (const toml::node* n = t->get("exception")) dpdk_exception(*n, cfg.dpdk.exception);
      dpdk_next_hops(*t, cfg.dpdk);
    }
    if (cfg.front == "dpdk") {
      if (cfg.dpdk.eal.empty()) error({}, "dpdk.eal", "required with front = \"dpdk\" (at least the lcores, e.g. [\"-l\", \"0-1\"])");
      for (const auto& l : cfg.listeners) {
        for (const auto& a : l.listen) {
          const bool any = (a.family() == AF_INET &&
                            reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr.s_addr == htonl(INADDR_ANY)) ||
                           (a.family() == AF_INET6 &&
                            IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr));
          if (any) error(l.loc, "listener " + l.name, "front = \"dpdk\" needs concrete VIP addresses, not " + a.to_string());
        }
        // The dataplane reads the ClientHello itself; the workers behind it
        // get the PROXY v2 header from the front, whatever this says.
        if (l.proxy_protocol != ProxyAccept::kNone) {
          error(l.loc, "listener " + l.name + ".proxy_protocol", "not with front = \"dpdk\" (the dataplane parses the hello)");
        }
      }
    }
    if (const toml::table* t = section(root, "process")) {
      only_keys(*t, "process", {"user", "group"});
      get_string(*t, "process", "user", cfg.process.user, false);
      get_string(*t, "process", "group", cfg.process.group, false);
      if (cfg.process.user.empty() && !cfg.process.group.empty()) error(loc_of(*t), "process.group", "needs process.user");
    }
    if (const toml::table* t = section(root, "log")) {
      only_keys(*t, "log", {"access", "sample"});
      if (get_string(*t, "log", "access", cfg.access_log, false) && cfg.access_log != "stderr" &&
          cfg.access_log != "off") {
        cfg.access_log = resolve(cfg.access_log);
      }
      if (const toml::node* n = t->get("sample")) {
        // 1 and 0 are fine as integers too; NaN fails both comparisons.
        const std::optional<double> v = n->value<double>();
        if (!v || !(*v >= 0.0 && *v <= 1.0)) {
          error(loc_of(*n), "log.sample", "expected a number in 0.0..1.0 (the fraction of successful connections logged)");
        } else {
          cfg.access_log_sample = *v;
        }
      }
    }
  }

  // [bgp] (after the listeners: the default VIPs are their addresses).
  void bgp(const toml::table& root, Config& cfg) {
    const toml::table* t = section(root, "bgp");
    if (t == nullptr) return;
    BgpConfig& b = cfg.bgp;
    only_keys(*t, "bgp", {"enabled", "birdc", "socket", "include", "liveness_interface", "convergence_ms",
                          "birdc_timeout_ms", "require_healthy_backend", "announce"});
    get_bool(*t, "bgp", "enabled", b.enabled);
    get_string(*t, "bgp", "birdc", b.birdc, false);
    if (get_string(*t, "bgp", "socket", b.socket, false)) b.socket = resolve(b.socket);
    if (get_string(*t, "bgp", "include", b.include, false)) b.include = resolve(b.include);
    if (const toml::node* n = t->get("liveness_interface")) {
      const auto* s = n->as_string();
      if (s == nullptr || s->get().size() >= 16 || s->get().find_first_of("/ \t") != std::string::npos) {
        error(loc_of(*n), "bgp.liveness_interface", "expected an interface name of at most 15 characters, or \"\"");
      } else {
        b.liveness_interface = s->get();
      }
    }
    get_uint(*t, "bgp", "convergence_ms", b.convergence_ms, 0, 600'000);
    get_uint(*t, "bgp", "birdc_timeout_ms", b.birdc_timeout_ms, 100, 60'000);
    bool require = false;
    get_bool(*t, "bgp", "require_healthy_backend", require);
    if (const toml::node* n = t->get("announce")) {
      const toml::array* arr = n->as_array();
      if (arr == nullptr) error(loc_of(*n), "bgp.announce", "expected a list of prefixes");
      for (size_t i = 0; arr != nullptr && i < arr->size(); ++i) {
        const toml::node& e = (*arr)[i];
        const std::string where = "bgp.announce[" + std::to_string(i) + "]";
        BgpVipConfig v{.prefix = {}, .require_healthy_backend = require};
        std::string text;
        if (const auto* s = e.as_string()) {
          text = s->get();
        } else if (const toml::table* vt = e.as_table()) {
          only_keys(*vt, where, {"prefix", "require_healthy_backend"});
          if (!get_string(*vt, where, "prefix", text, true)) continue;
          get_bool(*vt, where, "require_healthy_backend", v.require_healthy_backend);
        } else {
          error(loc_of(e), where, "expected a prefix string or { prefix = \"...\", require_healthy_backend = ... }");
          continue;
        }
        auto p = cp::parse_vip_prefix(text);
        if (!p) {
          error(loc_of(e), where, "'" + text + "': " + p.error());
          continue;
        }
        v.prefix = p->text;
        const bool dup = std::any_of(b.announce.begin(), b.announce.end(), [&](const auto& x) { return x.prefix == v.prefix; });
        if (dup) {
          error(loc_of(e), where, "'" + v.prefix + "' is listed twice");
        } else {
          b.announce.push_back(std::move(v));
        }
      }
    }
    if (!b.enabled || t->get("announce") != nullptr) return;
    for (const auto& l : cfg.listeners) {
      for (const auto& a : l.listen) {
        auto p = cp::vip_prefix_of(a);
        const bool dup = !p || std::any_of(b.announce.begin(), b.announce.end(),
                                           [&](const auto& x) { return x.prefix == p->text; });
        if (!dup) b.announce.push_back({p->text, require});
      }
    }
    if (b.announce.empty()) {
      error(loc_of(*t), "bgp.announce", "required: the listeners have no concrete address to announce (list the VIP "
                                        "prefixes, e.g. [\"192.0.2.10/32\"])");
    }
  }

  // Cross references: names unique, pools and listeners exist.
  void check_references(Config& cfg) {
    if (cfg.listeners.empty()) error({}, "listener", "no [[listener]] is defined");
    std::set<std::string> seen;
    for (size_t i = 0; i < cfg.listeners.size(); ++i) {
      if (!seen.insert(cfg.listeners[i].name).second) {
        error(cfg.listeners[i].loc, "listener[" + std::to_string(i) + "].name",
              "duplicate listener name '" + cfg.listeners[i].name + "'");
      }
    }
    seen.clear();
    for (size_t i = 0; i < cfg.pools.size(); ++i) {
      if (!cfg.pools[i].name.empty() && !seen.insert(cfg.pools[i].name).second) {
        error(cfg.pools[i].loc, "pool[" + std::to_string(i) + "].name", "duplicate pool name '" + cfg.pools[i].name + "'");
      }
    }
    seen.clear();
    for (size_t i = 0; i < cfg.certificates.size(); ++i) {
      if (!cfg.certificates[i].name.empty() && !seen.insert(cfg.certificates[i].name).second) {
        error(cfg.certificates[i].loc, "certificate[" + std::to_string(i) + "].name",
              "duplicate certificate name '" + cfg.certificates[i].name + "'");
      }
    }
    for (size_t i = 0; i < cfg.certificate_dirs.size(); ++i) {
      if (!cfg.certificate_dirs[i].name.empty() && !seen.insert(cfg.certificate_dirs[i].name).second) {
        error(cfg.certificate_dirs[i].loc, "certificate_dir[" + std::to_string(i) + "].name",
              "duplicate certificate name '" + cfg.certificate_dirs[i].name + "'");
      }
    }
    const std::set<std::string> cert_names = std::move(seen);  // [[certificate]]s and [[certificate_dir]]s
    seen.clear();
    for (size_t i = 0; i < cfg.routes.size(); ++i) {
      RouteConfig& r = cfg.routes[i];
      const std::string where = "route[" + std::to_string(i) + "]";
      if (!r.name.empty() && !seen.insert(r.name).second) {
        error(r.loc, where + ".name", "duplicate route name '" + r.name + "'");
      }
      if (r.listener.empty()) {
        if (cfg.listeners.size() == 1) {
          r.listener = cfg.listeners[0].name;
        } else if (cfg.listeners.size() > 1) {
          error(r.loc, where + ".listener", "required when there is more than one listener");
        }
      } else {
        bool found = false;
        for (const auto& l : cfg.listeners) found = found || l.name == r.listener;
        if (!found) error(r.loc, where + ".listener", "no listener named '" + r.listener + "'");
      }
      if (r.action == route::Action::kTerminate) {
        const bool found = cert_names.count(r.certificate) > 0;
        if (r.certificate.empty()) {
          error(r.loc, where + ".certificate", "required for action 'terminate'");
        } else if (!found) {
          error(r.loc, where + ".certificate", "no [[certificate]] or [[certificate_dir]] named '" + r.certificate + "'");
        }
      } else if (!r.certificate.empty()) {
        error(r.loc, where + ".certificate", "only a terminate route takes a certificate");
      }
      if (r.action == route::Action::kReject) {
        if (!r.pool.empty()) error(r.loc, where + ".pool", "a reject route takes no pool");
      } else if (r.pool.empty()) {
        error(r.loc, where + ".pool", "required for action '" + std::string(to_string(r.action)) + "'");
      } else if (const PoolConfig* pool = cfg.find_pool(r.pool); pool == nullptr) {
        error(r.loc, where + ".pool", "no pool named '" + r.pool + "'");
      } else if (r.action == route::Action::kPassthrough && pool->tls.enabled) {
        // The kernel front would wrap the client's TLS in another, the dpdk
        // front would not: neither is what a backend of such a pool expects.
        error(r.loc, where + ".pool",
              "pool '" + r.pool + "' speaks TLS to its backends ([pool.tls]): a passthrough route passes the "
              "client's own TLS through (use action 'terminate' to re-encrypt)");
      }
    }
    for (size_t i = 0; i < cfg.listeners.size(); ++i) {
      const ListenerConfig& l = cfg.listeners[i];
      if (l.default_route.empty()) continue;
      const RouteConfig* r = cfg.find_route(l.default_route);
      const std::string key = "listener[" + std::to_string(i) + "].default_route";
      if (r == nullptr) {
        error(l.loc, key, "no route named '" + l.default_route + "'");
      } else if (r->listener != l.name) {
        error(l.loc, key, "route '" + l.default_route + "' belongs to listener '" + r->listener + "'");
      }
    }
    // A PROXY header's client is counted by connections_per_client: from
    // anyone, any client could name any address (a fresh one per
    // connection, or a victim's, whose connections it would then refuse).
    if (cfg.limits.connections_per_client > 0) {
      for (size_t i = 0; i < cfg.listeners.size(); ++i) {
        const ListenerConfig& l = cfg.listeners[i];
        if (l.proxy_protocol == ProxyAccept::kNone || !l.proxy_from.empty()) continue;
        error(l.loc, "listener[" + std::to_string(i) + "].proxy_from",
              "required with [limits] connections_per_client: the limit counts the client the PROXY header "
              "names, which without proxy_from any peer may choose");
      }
    }
    for (size_t i = 0; i < cfg.routes.size(); ++i) {
      const RouteConfig& r = cfg.routes[i];
      if (!r.names.empty()) continue;
      bool is_default = false;
      for (const auto& l : cfg.listeners) is_default = is_default || (l.default_route == r.name && !r.name.empty());
      if (!is_default) {
        error(r.loc, "route[" + std::to_string(i) + "].names",
              "a route needs names unless it is a listener's default_route");
      }
    }
  }

 private:
  std::string file_;
  std::string base_dir_;
  ConfigErrors errors_;
};

}  // namespace

Result<Config, ConfigErrors> load_config_string(std::string_view text, std::string_view source_name) {
  Loader ld{std::string(source_name)};
  // A published configuration (published_config.h) is the file, then the
  // control plane's trailer: parsed apart and its certificates appended to
  // the file's, so a file that writes `certificate = [ {...} ]` inline (an
  // array TOML cannot extend later) takes run-time certificates too. The
  // file's line numbers are unchanged.
  const cp::PublishedConfig published = cp::split_published_config(text);
  toml::table root;
  try {
    root = toml::parse(published.file_text, source_name);
    if (!published.tables.empty()) {
      toml::table extra = toml::parse(published.tables, std::string(source_name) + " (run-time state)");
      if (toml::array* added = extra["certificate"].as_array(); added != nullptr && !added->empty()) {
        toml::array* certs = root["certificate"].as_array();
        if (certs == nullptr && !root.contains("certificate")) {
          root.insert("certificate", toml::array{});
          certs = root["certificate"].as_array();
        }
        if (certs != nullptr) {
          for (toml::node& n : *added) {
            if (toml::table* t = n.as_table()) certs->push_back(std::move(*t));
          }
        }
      }
    }
  } catch (const toml::parse_error& e) {
    ld.error(SourceLoc{static_cast<uint32_t>(e.source().begin.line), static_cast<uint32_t>(e.source().begin.column)},
             "", "TOML syntax: " + std::string(e.description()));
    return unexpected(ld.take_errors());
  }
  Config cfg;
  cfg.path = std::string(source_name);
  ld.only_keys(root, "", {"listener", "pool", "route", "certificate", "certificate_dir", "tls", "timeouts",
                          "workers", "limits", "control", "admin", "ocsp", "log", "front", "dpdk", "bgp", "process"});
  const size_t slash = cfg.path.rfind('/');
  ld.set_base_dir(slash == std::string::npos ? std::string(".") : cfg.path.substr(0, slash));
  ld.each_table(root, "listener", [&](const toml::table& t, const std::string& w) { ld.listener(t, w, cfg); });
  ld.each_table(root, "pool", [&](const toml::table& t, const std::string& w) { ld.pool(t, w, cfg); });
  ld.each_table(root, "route", [&](const toml::table& t, const std::string& w) { ld.route(t, w, cfg); });
  ld.each_table(root, "certificate", [&](const toml::table& t, const std::string& w) { ld.certificate(t, w, cfg); });
  ld.each_table(root, "certificate_dir",
                [&](const toml::table& t, const std::string& w) { ld.certificate_dir(t, w, cfg); });
  ld.globals(root, cfg);
  ld.bgp(root, cfg);
  ld.check_references(cfg);
  if (!ld.ok()) return unexpected(ld.take_errors());
  return cfg;
}

bool same_listeners(const Config& a, const Config& b) noexcept {
  if (a.listeners.size() != b.listeners.size()) return false;
  for (size_t i = 0; i < a.listeners.size(); ++i) {
    const auto& x = a.listeners[i];
    const auto& y = b.listeners[i];
    if (x.name != y.name || !(x.listen == y.listen) || x.proxy_protocol != y.proxy_protocol ||
        x.defer_accept != y.defer_accept) {
      return false;
    }
  }
  return true;
}

bool same_front(const Config& a, const Config& b) {
  // Every [dpdk] key counts (a key added later too), but the cookie secret's file.
  DpdkConfig x = a.dpdk;
  x.cookie_secret_file = b.dpdk.cookie_secret_file;
  return a.front == b.front && x == b.dpdk;
}

Result<Config, ConfigErrors> load_config_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return unexpected(ConfigErrors{{path, {}, "", "cannot open the file"}});
  std::stringstream ss;
  ss << in.rdbuf();
  return load_config_string(ss.str(), path);
}

}  // namespace lode::config

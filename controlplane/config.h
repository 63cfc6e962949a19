// Lodestone's configuration file (TOML), loaded and validated completely
// before anything uses it. Every problem is reported, each with the file,
// line, column and key, and what was expected.
//
//   [[listener]]
//   name = "https"                       # optional; default "listener0", ...
//   listen = ["127.0.0.1:8443", "[::1]:8443"]
//   proxy_protocol = "none"              # none | v1 | v2 | any (from an upstream LB)
//   proxy_from = ["10.0.0.0/8"]          # who may send it (others cut at accept); default: anyone
//   default_route = "fallback"           # optional; unknown names are rejected without it
//   max_hello_bytes = 65536              # optional, 512..1048576
//   defer_accept = false                 # accept when the first bytes arrive (nginx `deferred`)
//
//   [[pool]]
//   name = "app"
//   backends = ["127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 2 }]
//   algorithm = "round_robin"            # round_robin | least_conn | maglev_client | maglev_sni
//   send_proxy_v2 = false
//   when_all_down = "fail_open"          # fail_open (a down backend still gets it) | reject
//
//   [pool.health] (inline: health = { ... })   # active health checks, run by the control plane
//   type = "http"                        # tcp (connect) | tls (handshake) | http (GET, status)
//   interval_ms = 2000, timeout_ms = 1000  # timeout_ms <= interval_ms
//   rise = 2, fall = 3                   # consecutive results to go up / down
//   path = "/healthz", expect_status = 200  # http only; over TLS when the pool has tls
//   host = "app.internal"                # http: Host (default: the backend address); tls and
//                                        # http over TLS: SNI and the name verified (default:
//                                        # tls.server_name)
//
//   [[route]]
//   name = "app"
//   listener = "https"                   # optional when there is one listener
//   names = ["app.example.com", "*.app.example.com"]
//   action = "terminate"                 # terminate | passthrough | reject
//   pool = "app"                         # required unless action = "reject"
//   reject_with = "alert"                # alert (unrecognized_name) | reset
//   steer = "name"                       # dpdk front, terminate: the worker by the SNI's hash (its
//                                        # session and certificate caches stay warm) | "client" (spread
//                                        # one busy name over every worker)
//   certificate = "app"                  # terminate: a [[certificate]] or [[certificate_dir]] name
//
//   [[certificate]]                      # one certificate chain (leaf first) and its key
//   name = "app"
//   cert = "certs/app.pem"               # relative paths: to this file's directory
//   key = "certs/app.key"
//   ocsp_url = "http://ocsp.example/"    # optional: overrides the certificate's AIA OCSP URL
//   ocsp_policy = "strict"               # optional: lenient | strict (default: [ocsp] policy)
//
//   [[certificate_dir]]                  # stone's certpat: NAME's files serve NAME
//   name = "sites"
//   path = "certs/sites"
//   cert_pattern = "%n.pem"              # %n = the host name
//   key_pattern = "%n.key"
//
//   [pool.tls] (inline: tls = { ... })   # re-encrypt to the backend (terminate routes only)
//   server_name = "backend.internal"     # SNI sent; "" = none; default: the client's SNI
//   verify = true
//   ca_file = "ca.pem"                   # and/or ca_path = "/etc/ssl/certs"
//
//   [tls]      min_version = "1.2", max_version = "1.3", ciphers = "...", ciphersuites = "...",
//              groups = "X25519:P-256", alpn = ["h2", "http/1.1"] (default: none), session_tickets = true,
//              ticket_rotation_s = 3600,
//              ktls = true       # kernel TLS where the kernel has the tls ULP (false: user space only)
//              own_records = true  # without kTLS: after the handshake Lodestone seals and opens the client's
//                                  # records itself and frees OpenSSL's connection state (AEAD suites)
//              ticket_key_file = "tickets.key"   # optional: N x 80-byte keys (nginx's layout), the first
//                                                # encrypts; shared by nodes that resume each other's sessions
//   front = "kernel"                       # kernel (sockets, the default) | dpdk (top level, before any table)
//   [dpdk]     eal = ["-l", "0-1", "--no-huge", "--no-pci", "--vdev=net_tap0,iface=lode0"],
//              port = 0, max_flows = 65536   # per lcore; listeners must be concrete VIP addresses
//              networks = ["10.0.0.0/24", "fd00::/64"]  # on-link prefixes (passthrough backends resolved directly)
//              gateway = "10.0.0.254", gateway6 = "fd00::fe"  # next hop of backends outside `networks`
//              cookie_secret_file = "cookie.secret"  # optional: 32-128 hex digits, the SYN cookies' secret
//                                                    # (shared by the nodes of an ECMP group); re-read on reload
//   [dpdk.exception]                     # terminate routes: flows handed to the TLS workers' kernel TCP
//              vdev = "net_tap1,iface=lodex0"  # the exception port (virtio_user0,path=/dev/vhost-net,iface=...
//                                              # in production), added to the EAL; absent: terminate is reset
//              interface = "lodex0"            # the kernel side of that vdev: Lodestone addresses it, brings it up
//              kernel_address = "169.254.77.1" # where the workers listen (PROXY v2 in front of the hello)
//              address = "169.254.77.2"        # the front's side of the link; both in one /prefix_len (>= 16)
//              first_port = 20443              # worker w of listener l listens on first_port + l * workers + w
//   [control]  run_dir = "/run/lodestone"        # the control socket (dataplane <-> control plane)
//              state_dir = "/var/lib/lodestone"  # the OCSP response cache (survives restarts)
//              start_timeout_s = 120             # wait this long for the first snapshot
//              trusted_ca = "ca.pem"             # optional: chains must verify to these roots
//              intermediates = "chain.pem"       # optional: intermediates a chain file may lack
//              expiry_warning_days = 30
//   [admin]    socket = "/run/lodestone/admin.sock"  # lodectl's unix socket (default: run_dir/admin.sock),
//                                                    # mode 0600 unless group is set
//              group = "lodestone-ops"             # optional: group allowed to use it (mode 0660)
//              metrics = "127.0.0.1:9180"          # Prometheus text on http://ADDR/metrics; "" = off
//   [ocsp]     enabled = true, policy = "lenient" (lenient | strict; must-staple certificates are
//              strict), on_revoked = "withhold" (withhold | serve), method = "post" (post | get),
//              timeout_ms = 3000, startup_wait_ms = 10000 (fetch before first serving, at most this long)
//   [timeouts] hello_ms = 10000, connect_ms = 5000, idle_ms = 300000, drain_ms = 10000
//              half_closed_ms = idle_ms  # quiet allowed once one direction has ended (its end of
//                                        # stream passed on); 0: end the connection with it
//   [workers]  count = 2, cpus = [0, 1]
//   [limits]   connections_per_worker = 16384, connect_retries = 2, memory_per_worker_mb = 1024
//              connections_per_client = 0   # open connections of one client address (IPv4; IPv6: its /64)
//                                           # over all workers, the PROXY header's address where one is
//                                           # read (such listeners need proxy_from); more are closed at
//                                           # once; 0 = no limit
//   [bgp]      enabled = false            # announce the VIPs through BIRD (controlplane/bgp.h)
//              birdc = "birdc"              # the BIRD client run as `birdc -s SOCKET configure`
//              socket = "/run/bird/bird.ctl"
//              include = "/run/lodestone/bird-vips.conf"  # bird.conf includes it in a `protocol static`
//              liveness_interface = "lodealive0"  # a TUN link held open by the control plane; the routes
//                                                 # go via it, so BIRD drops them when Lodestone dies; "" = none
//              convergence_ms = 2000        # after a withdrawal, before the connections are drained
//              birdc_timeout_ms = 5000
//              require_healthy_backend = false  # default for each VIP: a pool of its routes has a backend up
//              announce = ["10.0.0.100/32", { prefix = "2001:db8::1/128", require_healthy_backend = true }]
//                                           # default: every concrete listener address, as /32 or /128
//   [process]  user = "lodestone", group = "lodestone"  # drop to them after binding (started as root)
//   [log]      access = "stderr"         # stderr | off | a file path (reopened on SIGUSR1, for logrotate)
//              sample = 1.0              # fraction of successful connections logged, 0.0..1.0; a connection
//                                        # that ended in an error, reject, timeout or reset is always logged
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lodestone/result.h"
#include "lodestone/route_table.h"
#include "lodestone/socket_address.h"

namespace lode::config {

// Listener, pool, route and certificate names: printable ASCII, no spaces.
inline constexpr size_t kMaxNameLen = 100;

struct SourceLoc {
  uint32_t line = 0;
  uint32_t column = 0;
};

struct ConfigError {
  std::string file;
  SourceLoc loc;
  std::string key;      // dotted path, e.g. "route[2].pool"
  std::string message;  // what is wrong and what was expected
  std::string to_string() const;
};
using ConfigErrors = std::vector<ConfigError>;

enum class ProxyAccept : uint8_t { kNone, kV1, kV2, kAny };
enum class Algorithm : uint8_t { kRoundRobin, kLeastConn, kMaglevClient, kMaglevSni };

std::string_view to_string(ProxyAccept p) noexcept;
std::string_view to_string(Algorithm a) noexcept;
std::string_view to_string(route::Action a) noexcept;

struct ListenerConfig {
  std::string name;
  std::vector<SocketAddress> listen;
  ProxyAccept proxy_protocol = ProxyAccept::kNone;
  // Who may send the PROXY header (its addresses are believed: the client
  // logged, hashed and told to backends); a peer outside is cut at accept.
  // Empty: any peer (as HAProxy's accept-proxy).
  std::vector<AddressPrefix> proxy_from;
  std::string default_route;  // empty: none
  uint32_t max_hello_bytes = 64 * 1024;
  bool defer_accept = false;  // TCP_DEFER_ACCEPT: accepted once the client's first bytes are in
  SourceLoc loc;
};

struct BackendConfig {
  SocketAddress address;
  uint32_t weight = 1;
};

// The identity a backend is named by in the admin API, metrics and the
// snapshot's backend states: its address ("10.0.0.1:443", "[::1]:443").
std::string backend_id(const BackendConfig& b);

enum class AllDown : uint8_t { kFailOpen, kReject };
enum class HealthType : uint8_t { kNone, kTcp, kTls, kHttp };
std::string_view to_string(HealthType t) noexcept;

struct HealthCheckConfig {
  HealthType type = HealthType::kNone;  // kNone: no active check
  uint32_t interval_ms = 2000;
  uint32_t timeout_ms = 1000;
  uint32_t rise = 2;
  uint32_t fall = 3;
  std::string path = "/";
  std::string host;  // empty: the backend's address
  uint32_t expect_status = 200;
  bool operator==(const HealthCheckConfig&) const = default;
};

struct BackendTlsConfig {
  bool enabled = false;
  bool server_name_set = false;  // false: send the client's SNI
  std::string server_name;
  bool verify = true;
  std::string ca_file;
  std::string ca_path;
};

struct PoolConfig {
  BackendTlsConfig tls;
  std::string name;
  std::vector<BackendConfig> backends;
  Algorithm algorithm = Algorithm::kRoundRobin;
  bool send_proxy_v2 = false;
  HealthCheckConfig health;
  AllDown when_all_down = AllDown::kFailOpen;
  SourceLoc loc;
};

struct RouteName {
  std::string pattern;  // as written
  SourceLoc loc;
};

struct RouteConfig {
  std::string name;
  std::string listener;
  std::vector<RouteName> names;
  route::Action action = route::Action::kReject;
  std::string pool;  // empty for reject
  bool reject_with_reset = false;
  bool steer_by_client = false;  // steer = "client" (dpdk front: terminate flows to a worker)
  std::string certificate;  // a [[certificate]] or [[certificate_dir]] name
  // Connections of the route open at once, over all workers; 0: no cap.
  // Above it a new connection is reset right after its hello (counted).
  uint32_t max_connections = 0;
  SourceLoc loc;
};

enum class OcspPolicy : uint8_t { kInherit, kLenient, kStrict };

struct CertificateConfig {
  std::string name;
  std::string cert;  // absolute after loading
  std::string key;
  std::string ocsp_url;  // empty: the certificate's AIA
  OcspPolicy ocsp_policy = OcspPolicy::kInherit;
  SourceLoc loc;
};

struct CertificateDirConfig {
  std::string name;
  std::string path;
  std::string cert_pattern = "%n.pem";
  std::string key_pattern = "%n.key";
  SourceLoc loc;
};

struct TlsConfig {
  std::string min_version = "1.2";
  std::string max_version = "1.3";
  std::string ciphers;       // TLS 1.2 list; empty: Lodestone's AEAD-only default
  std::string ciphersuites;  // TLS 1.3; empty: OpenSSL's default
  std::string groups;        // empty: default
  std::vector<std::string> alpn;  // empty: no ALPN (the relay is protocol-agnostic)
  bool session_tickets = true;
  bool ktls = true;  // kernel TLS where the kernel has it (the tls ULP)
  bool own_records = true;  // else: Lodestone's record layer after the handshake (AEAD suites)
  uint32_t ticket_rotation_s = 3600;
  std::string ticket_key_file;  // empty: keys generated and rotated by the control plane
};

struct ControlConfig {
  std::string run_dir = "/run/lodestone";
  std::string state_dir = "/var/lib/lodestone";
  uint32_t start_timeout_s = 120;
  std::string trusted_ca;
  std::string intermediates;
  uint32_t expiry_warning_days = 30;
};

// [process]: who Lodestone runs as once its listeners are bound. Started as
// root with `user` set, the dataplane binds, then drops to user:group with no
// capability left; the control plane runs as user:group from its start (it
// reads the key files: they must be readable by that user). Read at start
// only (a reload does not change it).
struct ProcessConfig {
  std::string user;   // empty: stay who started it
  std::string group;  // empty: the user's primary group
};

struct AdminConfig {
  std::string socket;  // empty: run_dir/admin.sock
  std::string group;
  std::string metrics = "127.0.0.1:9180";
};

struct OcspConfig {
  bool enabled = true;
  OcspPolicy policy = OcspPolicy::kLenient;
  bool withhold_revoked = true;
  bool use_get = false;
  uint32_t timeout_ms = 3000;
  uint32_t startup_wait_ms = 10'000;
};

struct TimeoutsConfig {
  uint32_t hello_ms = 10'000;
  uint32_t connect_ms = 5'000;
  uint32_t idle_ms = 300'000;
  uint32_t drain_ms = 10'000;
  // kHalfClosedAsIdle: not set, idle_ms applies to half-closed connections too.
  static constexpr uint32_t kHalfClosedAsIdle = UINT32_MAX;
  uint32_t half_closed_ms = kHalfClosedAsIdle;
  uint32_t half_closed_or_idle_ms() const noexcept {
    return half_closed_ms == kHalfClosedAsIdle ? idle_ms : half_closed_ms;
  }
};

struct WorkersConfig {
  uint32_t count = 0;         // 0: one per online CPU
  std::vector<int> cpus;      // pin worker i to cpus[i]; empty: not pinned
};

// front = "dpdk": the dataplane polls a DPDK port instead of kernel sockets.
struct DpdkExceptionConfig {
  std::string vdev;              // empty: no exception path (terminate flows are reset)
  std::string interface;         // the kernel interface the vdev creates
  uint32_t kernel_address = 0xa9fe4d01;  // 169.254.77.1 (host order): the workers listen here
  uint32_t address = 0xa9fe4d02;         // 169.254.77.2: the front's own address on the link
  uint32_t prefix_len = 30;      // the link's prefix: the longest one holding both addresses, at most 30
  uint32_t first_port = 20443;
  bool enabled() const noexcept { return !vdev.empty(); }
  bool operator==(const DpdkExceptionConfig&) const = default;
};

// An IPv4 or IPv6 address, or a prefix of one ([dpdk] gateway, networks).
struct DpdkPrefix {
  int family = 0;        // AF_INET | AF_INET6; 0: none
  uint8_t addr[16] = {};  // network order (IPv4 in the first 4)
  uint8_t len = 0;       // prefix length (32 / 128 for an address)
  bool operator==(const DpdkPrefix&) const = default;
};

struct DpdkConfig {
  std::vector<std::string> eal;  // EAL arguments (lcores, vdevs or PCI devices, --no-huge ...)
  uint32_t port = 0;
  uint32_t max_flows = 65536;    // per lcore
  // The passthrough backends' next hops: a backend inside `networks` is on
  // the link, any other one is reached through the gateway of its family
  // (none: the flow is reset). routed = false (none of the three keys set):
  // every backend is on the link.
  bool routed = false;
  DpdkPrefix gateway, gateway6;
  // The 802.1Q VLAN of the backends' link (1-4094; 0: untagged): frames to
  // passthrough backends and gateways carry it, their ARP / neighbour
  // answers are taken from it only. Clients may come on any VLAN.
  uint32_t backend_vlan = 0;
  std::vector<DpdkPrefix> networks;
  DpdkExceptionConfig exception;
  // The SYN cookies' master secret (dataplane/front/cookie_secret.h): the
  // same file on every node of an ECMP group lets one node complete the
  // cookies another made. Empty: a random secret per process.
  std::string cookie_secret_file;
  bool operator==(const DpdkConfig&) const = default;
};

struct LimitsConfig {
  uint32_t connections_per_worker = 16'384;
  uint32_t connect_retries = 2;
  uint32_t connections_per_client = 0;  // 0: no limit
  // What a worker's connection buffers (relay queues) may hold, MiB; above
  // it new connections are refused at accept.
  uint32_t memory_per_worker_mb = 1024;
};

// [bgp]: the VIPs this node announces through BIRD (controlplane/bgp.h).
struct BgpVipConfig {
  std::string prefix;  // canonical "10.0.0.100/32", "2001:db8::1/128"
  bool require_healthy_backend = false;
  bool operator==(const BgpVipConfig&) const = default;
};

struct BgpConfig {
  bool enabled = false;
  std::string birdc = "birdc";
  std::string socket = "/run/bird/bird.ctl";
  std::string include = "/run/lodestone/bird-vips.conf";
  std::string liveness_interface = "lodealive0";  // empty: none (routes are blackholes)
  uint32_t convergence_ms = 2000;
  uint32_t birdc_timeout_ms = 5000;
  std::vector<BgpVipConfig> announce;  // never empty when enabled (defaults filled in)
  bool operator==(const BgpConfig&) const = default;
};

struct Config {
  std::string path;
  std::vector<ListenerConfig> listeners;
  std::vector<PoolConfig> pools;
  std::vector<RouteConfig> routes;
  std::vector<CertificateConfig> certificates;
  std::vector<CertificateDirConfig> certificate_dirs;
  TlsConfig tls;
  TimeoutsConfig timeouts;
  WorkersConfig workers;
  LimitsConfig limits;
  ControlConfig control;
  AdminConfig admin;
  OcspConfig ocsp;
  std::string access_log = "stderr";
  double access_log_sample = 1.0;  // [log] sample
  std::string front = "kernel";  // kernel | dpdk
  DpdkConfig dpdk;
  BgpConfig bgp;
  ProcessConfig process;

  const PoolConfig* find_pool(std::string_view name) const noexcept;
  const RouteConfig* find_route(std::string_view name) const noexcept;
};

// Whether two configurations bind the same listeners (names, addresses,
// order, PROXY setting): the workers own their sockets from the start, so a
// reload may change everything else but not these.
bool same_listeners(const Config& a, const Config& b) noexcept;

// Whether two configurations run the same front: `front` and every [dpdk]
// key but cookie_secret_file (which a reload reads again). The EAL, the
// port, the lcores' engines and the exception link are set up at start, so
// a reload that changes these is refused, as for the listeners.
bool same_front(const Config& a, const Config& b);

// Parses and validates; on failure returns every error found.
Result<Config, ConfigErrors> load_config_file(const std::string& path);
Result<Config, ConfigErrors> load_config_string(std::string_view text, std::string_view source_name);

}  // namespace lode::config

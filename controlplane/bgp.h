// Scale-out: the VIPs this node serves, announced over BGP by BIRD (bird2).
//
// Lodestone does not speak BGP. It writes an include file for the node's
// BIRD with one `protocol static` per address family holding the routes to
// announce, and runs `birdc -s SOCKET configure` when that set changes. The
// operator's bird.conf includes the file at its top level and exports
// `proto = "lodestone4"` / `"lodestone6"` to the router (README, "Scale-out
// with BGP").
//
// Each VIP is announced only while this node can serve it (decide_vips):
// the dataplane is attached, its first snapshot is in service, every worker
// listens on the VIP's listeners, the node is not draining and, when the VIP
// asks for it, a pool of its routes has a backend that is up and not drained.
//
// A Lodestone that is killed cannot withdraw anything, so the routes do not
// depend on it being polite: they go `via` a TUN link (liveness_interface)
// that the control plane holds open. The kernel deletes that link when the
// process ends, however it ends, and BIRD drops static routes whose
// interface is gone at once (netlink), so the router hears the withdrawal
// within its BGP update time of the process's death.
//
// birdc runs as a child process (posix_spawn), its output read from a pipe
// and the child reaped from the control plane's poll loop; a run is killed
// at birdc_timeout_ms. Failures are counted, logged and retried with backoff.
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/config.h"
#include "lodestone/result.h"
#include "lodestone/socket_address.h"

namespace lode::cp {

// An IPv4 or IPv6 prefix; `text` is canonical ("10.0.0.0/24", host bits
// zero, IPv6 compressed).
struct VipPrefix : AddressPrefix {
  std::string text;
};

// "ADDRESS/LEN" (a bare address is /32 or /128). Host bits must be zero.
[[nodiscard]] Result<VipPrefix, std::string> parse_vip_prefix(std::string_view text);
// A concrete listener address as a host prefix; none for a wildcard.
[[nodiscard]] std::optional<VipPrefix> vip_prefix_of(const SocketAddress& a);

// What the control plane knows about this node, for the decision.
struct NodeView {
  bool attached = false;        // the dataplane said hello
  bool snapshot_in_service = false;
  bool kernel_listeners = true;  // false under the dpdk front (it answers on the port itself)
  uint32_t workers = 0;
  bool draining = false;
  // Kernel sockets in LISTEN state bound to exactly this address and port.
  std::function<uint32_t(const SocketAddress&)> listening;
  // Whether a pool has a backend that is up (or unchecked) and not drained.
  std::function<bool(const config::PoolConfig&)> pool_usable;
};

struct VipDecision {
  std::string prefix;
  bool announce = false;
  std::string reason;  // why not (empty when announced)
};

// One decision per [bgp] announce entry, in order.
[[nodiscard]] std::vector<VipDecision> decide_vips(const config::Config& cfg, const NodeView& node);

// A TCP socket in LISTEN state: its local address and port.
struct ListenSocket {
  int family = 0;
  std::array<uint8_t, 16> addr{};
  uint16_t port = 0;
};
// This network namespace's TCP listeners, from sock_diag (the kernel filters
// them: cheap whatever the number of connections), else from /proc/net/tcp
// and tcp6.
[[nodiscard]] std::vector<ListenSocket> listening_sockets();
// The listeners in /proc/net/tcp or tcp6 text.
[[nodiscard]] std::vector<ListenSocket> parse_proc_net_tcp(std::string_view text);
// How many of them are bound to exactly this address and port.
[[nodiscard]] uint32_t count_listening(const std::vector<ListenSocket>& sockets, const SocketAddress& a);

// The include file's text for these prefixes.
[[nodiscard]] std::string bird_include(const std::vector<std::string>& prefixes, std::string_view liveness_interface);

// Writes the include, drives birdc, holds the liveness link.
class Announcer {
 public:
  using Clock = std::chrono::steady_clock;
  using Event = std::function<void(const std::string& json)>;

  explicit Announcer(Event event) : event_(std::move(event)) {}
  ~Announcer();
  Announcer(const Announcer&) = delete;
  Announcer& operator=(const Announcer&) = delete;

  // After a (re)load. Opens (or renames) the liveness link; an error there
  // is logged and counted, and the routes become blackholes instead.
  void configure(const config::BgpConfig& bgp);
  bool enabled() const noexcept { return bgp_.enabled; }
  const config::BgpConfig& settings() const noexcept { return bgp_; }

  // The VIPs that should be announced now; applied by the next tick().
  void want(const std::vector<VipDecision>& decisions);
  // Starts birdc when the wanted set differs from the applied one (and no
  // run is going, and the retry backoff has passed); kills a run past its
  // timeout.
  void tick(Clock::time_point now);

  void fill_poll(std::vector<pollfd>& fds) const;
  void on_poll(const std::vector<pollfd>& fds, size_t first, Clock::time_point now);
  int timeout_ms(Clock::time_point now) const;  // -1: none

  // Runs until the wanted set is applied or `limit` passes (shutdown).
  void settle(std::chrono::milliseconds limit);

  // Whether BIRD has the wanted set (no run going, none due).
  bool in_sync() const noexcept { return child_ < 0 && wanted_ == applied_ && !dirty_; }
  // Whether BIRD announces nothing of ours (in sync with an empty set).
  bool withdrawn() const noexcept { return in_sync() && applied_.empty(); }
  // The last run failed (and will be retried).
  bool failing() const noexcept { return last_failed_; }

  struct VipState {
    bool wanted = false;
    bool announced = false;  // in the set BIRD last accepted
    int64_t last_change_unix = 0;  // when `announced` last changed (0: never)
    std::string reason;
  };
  const std::map<std::string, VipState>& vips() const noexcept { return vips_; }
  uint64_t configures() const noexcept { return configures_; }
  uint64_t failures() const noexcept { return failures_; }
  uint64_t timeouts() const noexcept { return timeouts_; }
  uint64_t liveness_errors() const noexcept { return liveness_errors_; }
  const std::string& liveness_link() const noexcept { return link_name_; }  // empty: none held
  // Closes the liveness link now: BIRD drops the routes through it without
  // being told (the way out when birdc fails while stopping). False: none.
  bool drop_link() {
    const bool had = tun_ >= 0;
    close_link();
    return had;
  }

 private:
  void start_run(Clock::time_point now);
  void finish_run(int status, bool timed_out, Clock::time_point now);
  void drain_pipe();
  void open_link(const std::string& name);
  void close_link();

  Event event_;
  config::BgpConfig bgp_;
  std::vector<std::string> wanted_, applied_, running_;  // sorted prefixes
  bool dirty_ = true;  // the include was never written by this process
  std::map<std::string, VipState> vips_;
  // The birdc run in progress.
  pid_t child_ = -1;
  int pipe_ = -1;
  std::string output_;
  Clock::time_point deadline_{};
  // Retries.
  bool last_failed_ = false;
  int failed_runs_ = 0;
  Clock::time_point retry_at_{};
  uint64_t configures_ = 0, failures_ = 0, timeouts_ = 0, liveness_errors_ = 0;
  // The liveness link.
  int tun_ = -1;
  std::string link_name_;
};

}  // namespace lode::cp

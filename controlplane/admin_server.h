// The control plane's admin endpoints, served from its event loop without
// blocking it:
//  - the admin API on a unix socket (mode 0600, or 0660 with a group; the
//    peer's uid and groups checked with SO_PEERCRED and SO_PEERGROUPS:
//    admin_peer_allowed below): one JSON request per line, one
//    JSON response per line, version 1 ({"v":1,"cmd":"status",...});
//  - Prometheus text exposition on http://ADDR/metrics (loopback by default),
//    and beside it the status page (GET /status, controlplane/status_page.h)
//    with the JSON it reads (GET /status.json). HTTP is read-only: GET only.
// Connections are nonblocking with a deadline (2 s until the request is
// read, 2 s more to take the answer once it is made) and size caps (64 KiB of
// request); a slow or silent client costs one slot, never the loop.
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lodestone/result.h"

namespace lode::cp {

// A request: a flat JSON object of strings, numbers and booleans (values
// kept as text). Nested values are refused.
// The longest request line the admin API reads (its newline included): a
// longer one is dropped unanswered (lodectl refuses to send one).
inline constexpr size_t kMaxAdminRequest = 64 * 1024;

struct AdminRequest {
  std::map<std::string, std::string, std::less<>> fields;
  std::string get(std::string_view key, std::string_view fallback = "") const;
  bool flag(std::string_view key) const;  // "true"
};
[[nodiscard]] Result<AdminRequest, std::string> parse_admin_request(std::string_view line);

// A peer of the admin socket, as the kernel had it when it connected.
struct AdminPeer {
  uid_t uid = 0;
  gid_t gid = 0;                // primary
  std::vector<gid_t> groups;    // supplementary
};
// The peer of a connected unix socket: SO_PEERCRED, and its supplementary
// groups from SO_PEERGROUPS (Linux 4.13; before it, getgrouplist() of the
// peer's user). nullopt: the kernel would not say.
std::optional<AdminPeer> admin_peer(int fd);
// Who may use the admin API: root, the control plane's own uid, and members
// of [admin] group (`group`; nullopt: none) by their primary group or a
// supplementary one (`usermod -aG lodestone-admin alice` is the usual way in).
[[nodiscard]] bool admin_peer_allowed(const AdminPeer& peer, uid_t own_uid, std::optional<gid_t> group);

class AdminServer {
 public:
  using Handler = std::function<std::string(const AdminRequest&)>;  // returns one JSON object
  using Metrics = std::function<std::string()>;
  using StatusJson = std::function<std::string()>;  // GET /status.json; empty: no status page

  struct Options {
    std::string socket_path;  // empty: no admin socket
    std::string group;        // allowed besides root and our own uid
    std::string metrics;      // "127.0.0.1:9180"; empty: none
  };
  // Errors are per endpoint and not fatal: `warnings` says what is not served.
  AdminServer(const Options& opt, Handler handler, Metrics metrics, std::vector<std::string>& warnings,
              StatusJson status_json = {});
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // The loop's part: descriptors to poll, then the results handed back.
  void fill_poll(std::vector<pollfd>& fds) const;
  void on_poll(const std::vector<pollfd>& fds, size_t first);
  int timeout_ms() const;  // until the next deadline; -1: none

  uint64_t refused_peers() const noexcept { return refused_; }

 private:
  struct Conn {
    int fd = -1;
    bool http = false;
    bool refused = false;  // peer not allowed: its request is read, then refused
    std::string in, out;
    size_t sent = 0;
    std::chrono::steady_clock::time_point deadline;
    // A /metrics answer, shared by the connections that asked for it in the
    // same poll pass (out is empty then).
    std::shared_ptr<const std::string> shared_out;
  };
  void accept_on(int listen_fd, bool http);
  void on_readable(Conn& c);
  void on_writable(Conn& c);
  void answer(Conn& c);
  std::string http_reply(std::string_view request_line, std::string_view host) const;
  // The /metrics answer of this poll pass: rendered once however many ask
  // in it (64 scrapes at once were 64 renders, each held whole until sent:
  // gigabytes at 100,000 certificates), never older than the pass.
  std::shared_ptr<const std::string> metrics_answer();
  bool peer_allowed(int fd) const;

  Handler handler_;
  Metrics metrics_;
  std::shared_ptr<const std::string> metrics_answer_;  // this pass's; reset by on_poll
  StatusJson status_json_;
  std::string socket_path_;
  int admin_fd_ = -1;
  int metrics_fd_ = -1;
  unsigned group_gid_ = ~0u;
  std::vector<Conn> conns_;
  uint64_t refused_ = 0;
};

}  // namespace lode::cp

// Active health checks of backends ([pool.health]), run by the control plane
// from its event loop: nonblocking sockets, one probe in flight per backend at
// most, each bounded by timeout_ms; a probe starts every interval_ms.
//
//   tcp   connect() succeeds
//   tls   connect, then a TLS handshake that verifies like the pool's
//         re-encrypt settings ([pool.tls]: CA file/path, the name), or
//         unverified when the pool has none (a passthrough backend's key is
//         its own business)
//   http  connect (TLS as above when the pool re-encrypts), send
//         "GET path HTTP/1.1" with Host and Connection: close, read the status
//         line (at most 1 KiB): ok when the status is expect_status
//
// Results go through HealthRun (rise/fall): a backend goes down after `fall`
// consecutive failures and up again after `rise` consecutive successes. A
// backend starts up (as it was before checks existed) until it has failed
// `fall` times. The checker says when a state changed; what the dataplane
// gets is decided by the caller (controlplane/backend_state.h).
#pragma once

#include <openssl/ssl.h>
#include <poll.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "controlplane/config.h"
#include "lodestone/result.h"
#include "lodestone/socket_address.h"

namespace lode::cp {

using HealthClock = std::chrono::steady_clock;

// Consecutive results against rise/fall. Pure.
struct HealthRun {
  bool up = true;
  uint32_t ok_run = 0;    // consecutive successes
  uint32_t fail_run = 0;  // consecutive failures
  // Records one result; true when `up` changed.
  bool record(bool ok, uint32_t rise, uint32_t fall) noexcept;
};

// The TLS side of a check: a client SSL_CTX and the name to send and verify.
struct HealthTls {
  std::shared_ptr<SSL_CTX> ctx;
  std::string name;  // SNI and (when verifying) the name the certificate must carry; empty: none
};

// A pool's check TLS, from its [pool.tls] (verify, CA file/path, server_name)
// and the check's host. Errors name the setting.
[[nodiscard]] Result<HealthTls, std::string> make_health_tls(const config::BackendTlsConfig& pool_tls,
                                                             const config::HealthCheckConfig& check);

struct ProbeSpec {
  config::HealthType type = config::HealthType::kTcp;
  SocketAddress address;
  std::chrono::milliseconds timeout{1000};
  std::shared_ptr<const HealthTls> tls;  // type tls; http over TLS; null: plaintext
  std::string request;             // http: the whole request
  uint32_t expect_status = 200;
};

// "GET path HTTP/1.1" with Host, User-Agent and Connection: close.
std::string http_check_request(std::string_view path, std::string_view host);

// The status code of an HTTP/1.x status line at the start of `head`
// ("HTTP/1.1 200 OK\r\n"): 0 when more bytes are needed, -1 when it is not
// one. Pure.
int parse_status_line(std::string_view head) noexcept;

struct ProbeResult {
  bool ok = false;
  std::string detail;  // "ok", "connect: Connection refused", "timeout", "status 503", ...
};

// One probe in flight: a nonblocking state machine over one socket.
class Probe {
 public:
  // Starts connecting; a probe that fails at once is done() already.
  Probe(const ProbeSpec& spec, HealthClock::time_point now);
  ~Probe();
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;

  int fd() const noexcept { return fd_; }
  short events() const noexcept { return events_; }
  HealthClock::time_point deadline() const noexcept { return deadline_; }
  bool done() const noexcept { return done_; }
  const ProbeResult& result() const noexcept { return result_; }

  // The socket is ready (revents), or time passed: advance. Past the
  // deadline the socket is looked at once more (an answer that came while
  // nobody polled counts), then the probe fails with "timeout".
  void advance(short revents, HealthClock::time_point now);

 private:
  enum class Step : uint8_t { kConnect, kHandshake, kSend, kRead };
  void finish(bool ok, std::string detail);
  void step();
  bool tls_io(int r);  // SSL result: true when it may continue later (WANT_*)

  ProbeSpec spec_;
  int fd_ = -1;
  SSL* ssl_ = nullptr;
  Step step_ = Step::kConnect;
  short events_ = POLLOUT;
  HealthClock::time_point deadline_;
  size_t sent_ = 0;
  std::string head_;
  bool done_ = false;
  ProbeResult result_;
};

// Every checked backend of every pool, scheduled.
class HealthChecker {
 public:
  struct Target {
    std::string pool;
    std::string backend;  // the backend id
    SocketAddress address;
    config::HealthCheckConfig check;
    std::shared_ptr<const HealthTls> tls;  // the pool's; null: plaintext
  };
  struct Status {
    HealthRun run;
    uint64_t ok_total = 0;
    uint64_t fail_total = 0;
    std::string last_detail;  // empty: no result yet
    HealthClock::time_point last_at{};
    uint64_t transitions = 0;
  };

  // The targets from now on. A backend (pool, id) whose address and check
  // are unchanged keeps its state, its schedule and its probe in flight;
  // the others start afresh (up), their first probe now.
  void set_targets(std::vector<Target> targets, HealthClock::time_point now);

  // The loop's part: descriptors of the probes in flight, then their events;
  // tick() starts the probes that are due and fails the ones past their
  // deadline. Both return true when some backend went up or down.
  void fill_poll(std::vector<pollfd>& fds);
  bool on_poll(const std::vector<pollfd>& fds, size_t first, HealthClock::time_point now);
  bool tick(HealthClock::time_point now);
  // Milliseconds until the next probe or deadline; -1: nothing checked.
  int timeout_ms(HealthClock::time_point now) const;

  // null: not checked.
  const Status* status(std::string_view pool, std::string_view backend) const;
  size_t in_flight() const noexcept;

 private:
  struct Entry {
    Target target;
    Status status;
    std::string request;
    HealthClock::time_point next_due{};
    std::unique_ptr<Probe> probe;
  };
  bool complete(Entry& e, HealthClock::time_point now);

  std::map<std::pair<std::string, std::string>, Entry, std::less<>> entries_;
  std::vector<Entry*> polled_;  // the entries fill_poll() listed, in order
};

}  // namespace lode::cp

#include "controlplane/health_check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "dataplane/tls/backend_tls.h"

namespace lode::cp {

bool HealthRun::record(bool ok, uint32_t rise, uint32_t fall) noexcept {
  if (ok) {
    fail_run = 0;
    if (ok_run < rise) ++ok_run;
    if (!up && ok_run >= rise) {
      up = true;
      return true;
    }
    return false;
  }
  ok_run = 0;
  if (fail_run < fall) ++fail_run;
  if (up && fail_run >= fall) {
    up = false;
    return true;
  }
  return false;
}

namespace {

bool is_ip_literal(const std::string& name) {
  in6_addr a6;
  in_addr a4;
  return inet_pton(AF_INET, name.c_str(), &a4) == 1 || inet_pton(AF_INET6, name.c_str(), &a6) == 1;
}

std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "closed by the backend";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

}  // namespace

Result<HealthTls, std::string> make_health_tls(const config::BackendTlsConfig& pool_tls,
                                               const config::HealthCheckConfig& check) {
  HealthTls t;
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  if (!ctx) return unexpected("health check TLS: SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  // The name: the pool's fixed server_name, else the check's host.
  t.name = pool_tls.server_name_set ? pool_tls.server_name : check.host;
  if (pool_tls.enabled && pool_tls.verify) {
    // As the workers' backend context does (a FIFO named here would block
    // the control plane's loop; no CA named: the system's trust store).
    if (auto cas = tls::load_verify_cas(ctx.get(), pool_tls.ca_file, pool_tls.ca_path); !cas) {
      return unexpected("health check TLS: " + cas.error());
    }
    if (t.name.empty()) {
      return unexpected(
          "health check TLS: the pool verifies its backends but sends the client's SNI: set tls.server_name or "
          "health.host (the name the check verifies)");
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  }
  t.ctx = std::move(ctx);
  return t;
}

std::string http_check_request(std::string_view path, std::string_view host) {
  std::string r = "GET ";
  r.append(path).append(" HTTP/1.1\r\nHost: ").append(host);
  r.append("\r\nUser-Agent: lodestone-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n");
  return r;
}

//   status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF
//   HTTP-version = "HTTP/" DIGIT "." DIGIT            (RFC 9112 section 4)
int parse_status_line(std::string_view head) noexcept {
  static constexpr std::string_view kPrefix = "HTTP/1.";
  const size_t have = std::min(head.size(), kPrefix.size());
  if (head.substr(0, have) != kPrefix.substr(0, have)) return -1;
  if (head.size() < 13) return 0;  // "HTTP/1.x NNN" and one more byte
  if (head[7] < '0' || head[7] > '9' || head[8] != ' ') return -1;
  int code = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (head[i] < '0' || head[i] > '9') return -1;
    code = code * 10 + (head[i] - '0');
  }
  if (head[12] != ' ' && head[12] != '\r') return -1;
  return code >= 100 ? code : -1;
}

// --- Probe -------------------------------------------------------------------

Probe::Probe(const ProbeSpec& spec, HealthClock::time_point now) : spec_(spec), deadline_(now + spec.timeout) {
  fd_ = socket(spec_.address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    finish(false, std::string("socket: ") + std::strerror(errno));
    return;
  }
  const int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd_, spec_.address.sa(), spec_.address.len) != 0 && errno != EINPROGRESS) {
    finish(false, std::string("connect: ") + std::strerror(errno));
  }
}

Probe::~Probe() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (fd_ >= 0) close(fd_);
}

void Probe::finish(bool ok, std::string detail) {
  done_ = true;
  events_ = 0;
  result_ = {ok, std::move(detail)};
  // Nothing more to say to the backend: close now, not at destruction.
  if (ssl_ != nullptr) {
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
}

void Probe::advance(short revents, HealthClock::time_point now) {
  if (done_) return;
  if (revents == 0 && now >= deadline_) {
    // The loop may have been busy past the deadline (an admin call waiting
    // for the dataplane): what the backend sent meanwhile still counts.
    pollfd p{fd_, events_, 0};
    if (poll(&p, 1, 0) == 1) revents = p.revents;
  }
  if (revents != 0) step();
  if (!done_ && now >= deadline_) finish(false, "timeout");
}

bool Probe::tls_io(int r) {
  const int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ) {
    events_ = POLLIN;
    return true;
  }
  if (e == SSL_ERROR_WANT_WRITE) {
    events_ = POLLOUT;
    return true;
  }
  std::string why = openssl_error();
  if (const long v = SSL_get_verify_result(ssl_); v != X509_V_OK) why = X509_verify_cert_error_string(v);
  finish(false, (step_ == Step::kHandshake ? "tls: " : "tls io: ") + why);
  return false;
}

// Runs the state machine as far as the socket allows.
void Probe::step() {
  for (;;) {
    switch (step_) {
      case Step::kConnect: {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        if (err != 0) return finish(false, std::string("connect: ") + std::strerror(err));
        if (spec_.type == config::HealthType::kTcp) return finish(true, "ok");
        if (spec_.tls != nullptr) {
          ssl_ = SSL_new(spec_.tls->ctx.get());
          if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_) != 1) return finish(false, "tls: " + openssl_error());
          const std::string& name = spec_.tls->name;
          if (!name.empty()) {
            if (!is_ip_literal(name)) SSL_set_tlsext_host_name(ssl_, name.c_str());
            if (SSL_CTX_get_verify_mode(spec_.tls->ctx.get()) & SSL_VERIFY_PEER) {
              if (is_ip_literal(name)) {
                X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), name.c_str());
              } else {
                SSL_set1_host(ssl_, name.c_str());
              }
            }
          }
          SSL_set_connect_state(ssl_);
          step_ = Step::kHandshake;
        } else {
          step_ = Step::kSend;
        }
        continue;
      }
      case Step::kHandshake: {
        const int r = SSL_do_handshake(ssl_);
        if (r != 1) {
          tls_io(r);
          return;
        }
        if (spec_.type == config::HealthType::kTls) return finish(true, "ok");
        step_ = Step::kSend;
        continue;
      }
      case Step::kSend: {
        while (sent_ < spec_.request.size()) {
          const char* p = spec_.request.data() + sent_;
          const size_t left = spec_.request.size() - sent_;
          if (ssl_ != nullptr) {
            const int r = SSL_write(ssl_, p, static_cast<int>(left));
            if (r <= 0) {
              tls_io(r);
              return;
            }
            sent_ += static_cast<size_t>(r);
          } else {
            const ssize_t n = send(fd_, p, left, MSG_NOSIGNAL);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
              events_ = POLLOUT;
              return;
            }
            if (n < 0) return finish(false, std::string("send: ") + std::strerror(errno));
            sent_ += static_cast<size_t>(n);
          }
        }
        step_ = Step::kRead;
        events_ = POLLIN;
        continue;
      }
      case Step::kRead: {
        char buf[512];
        ssize_t n;
        if (ssl_ != nullptr) {
          const int r = SSL_read(ssl_, buf, sizeof buf);
          if (r <= 0) {
            if (SSL_get_error(ssl_, r) == SSL_ERROR_ZERO_RETURN) {
              n = 0;
            } else {
              tls_io(r);
              return;
            }
          } else {
            n = r;
          }
        } else {
          n = recv(fd_, buf, sizeof buf, 0);
          if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            events_ = POLLIN;
            return;
          }
          if (n < 0) return finish(false, std::string("recv: ") + std::strerror(errno));
        }
        if (n == 0) return finish(false, head_.empty() ? "closed without an answer" : "truncated status line");
        head_.append(buf, static_cast<size_t>(std::min<ssize_t>(n, static_cast<ssize_t>(1024 - head_.size()))));
        const int code = parse_status_line(head_);
        if (code < 0) return finish(false, "not an HTTP/1.x answer");
        if (code > 0) {
          if (static_cast<uint32_t>(code) == spec_.expect_status) return finish(true, "ok");
          return finish(false, "status " + std::to_string(code));
        }
        if (head_.size() >= 1024) return finish(false, "no status line in 1 KiB");
        continue;
      }
    }
  }
}

// --- HealthChecker ---------------------------------------------------------------

void HealthChecker::set_targets(std::vector<Target> targets, HealthClock::time_point now) {
  decltype(entries_) next;
  for (auto& t : targets) {
    auto key = std::make_pair(t.pool, t.backend);
    auto old = entries_.find(key);
    Entry e;
    if (old != entries_.end() && old->second.target.address == t.address && old->second.target.check == t.check) {
      e = std::move(old->second);
    } else {
      e.next_due = now;
    }
    const config::HealthCheckConfig& c = t.check;
    e.request = c.type == config::HealthType::kHttp
                    ? http_check_request(c.path, c.host.empty() ? t.backend : c.host)
                    : std::string();
    e.target = std::move(t);
    next.emplace(std::move(key), std::move(e));
  }
  entries_ = std::move(next);  // dropped entries close their probes
  polled_.clear();
}

void HealthChecker::fill_poll(std::vector<pollfd>& fds) {
  polled_.clear();
  for (auto& [k, e] : entries_) {
    if (!e.probe || e.probe->done() || e.probe->fd() < 0) continue;
    fds.push_back({e.probe->fd(), e.probe->events(), 0});
    polled_.push_back(&e);
  }
}

bool HealthChecker::complete(Entry& e, HealthClock::time_point now) {
  const ProbeResult& r = e.probe->result();
  Status& s = e.status;
  (r.ok ? s.ok_total : s.fail_total) += 1;
  s.last_detail = r.detail;
  s.last_at = now;
  const bool changed = s.run.record(r.ok, e.target.check.rise, e.target.check.fall);
  if (changed) ++s.transitions;
  e.probe.reset();
  return changed;
}

bool HealthChecker::on_poll(const std::vector<pollfd>& fds, size_t first, HealthClock::time_point now) {
  bool changed = false;
  for (size_t i = 0; i < polled_.size() && first + i < fds.size(); ++i) {
    Entry& e = *polled_[i];
    if (!e.probe || fds[first + i].fd != e.probe->fd()) continue;  // replaced meanwhile
    if (fds[first + i].revents == 0) continue;
    e.probe->advance(fds[first + i].revents, now);
    if (e.probe->done()) changed = complete(e, now) || changed;
  }
  polled_.clear();
  return changed;
}

bool HealthChecker::tick(HealthClock::time_point now) {
  bool changed = false;
  for (auto& [k, e] : entries_) {
    if (e.probe) {
      e.probe->advance(0, now);
      if (e.probe->done()) changed = complete(e, now) || changed;
    }
    if (e.probe || now < e.next_due) continue;  // one probe in flight at most
    ProbeSpec spec;
    spec.type = e.target.check.type;
    spec.address = e.target.address;
    spec.timeout = std::chrono::milliseconds(e.target.check.timeout_ms);
    spec.tls = e.target.tls;
    spec.request = e.request;
    spec.expect_status = e.target.check.expect_status;
    e.probe = std::make_unique<Probe>(spec, now);
    e.next_due = now + std::chrono::milliseconds(e.target.check.interval_ms);
    if (e.probe->done()) changed = complete(e, now) || changed;
  }
  polled_.clear();
  return changed;
}

int HealthChecker::timeout_ms(HealthClock::time_point now) const {
  if (entries_.empty()) return -1;
  HealthClock::time_point next = HealthClock::time_point::max();
  for (const auto& [k, e] : entries_) next = std::min(next, e.probe ? e.probe->deadline() : e.next_due);
  if (next <= now) return 0;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count() + 1;
  return static_cast<int>(std::min<int64_t>(ms, 60'000));
}

const HealthChecker::Status* HealthChecker::status(std::string_view pool, std::string_view backend) const {
  auto it = entries_.find(std::make_pair(std::string(pool), std::string(backend)));
  return it == entries_.end() ? nullptr : &it->second.status;
}

size_t HealthChecker::in_flight() const noexcept {
  size_t n = 0;
  for (const auto& [k, e] : entries_) n += e.probe ? 1 : 0;
  return n;
}

}  // namespace lode::cp

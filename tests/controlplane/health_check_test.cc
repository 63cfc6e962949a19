// Active health checks (controlplane/health_check.h): rise/fall, the status
// line parser, and probes against real in-process listeners: a TCP listener,
// HTTP servers answering 200 and 503, a listener that accepts and never
// answers (timeout), a TLS server with the right, a wrong and an unknown
// certificate, HTTP over TLS.
#include "controlplane/health_check.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <future>
#include <string_view>
#include <thread>

#include "support/loopback.h"
#include "support/test_pki.h"

namespace lode::cp {
namespace {

using namespace std::chrono_literals;

TEST(HealthRun, GoesDownAfterFallFailuresAndUpAfterRiseSuccesses) {
  HealthRun r;
  EXPECT_TRUE(r.up);
  EXPECT_FALSE(r.record(false, 2, 3));
  EXPECT_FALSE(r.record(false, 2, 3));
  EXPECT_TRUE(r.record(false, 2, 3));  // third failure: down
  EXPECT_FALSE(r.up);
  EXPECT_FALSE(r.record(false, 2, 3));
  EXPECT_FALSE(r.record(true, 2, 3));  // one success is not enough
  EXPECT_FALSE(r.up);
  EXPECT_FALSE(r.record(false, 2, 3));  // the run is broken
  EXPECT_FALSE(r.record(true, 2, 3));
  EXPECT_TRUE(r.record(true, 2, 3));
  EXPECT_TRUE(r.up);
  // A success resets the failure run.
  EXPECT_FALSE(r.record(false, 2, 3));
  EXPECT_FALSE(r.record(false, 2, 3));
  EXPECT_FALSE(r.record(true, 2, 3));
  EXPECT_FALSE(r.record(false, 2, 3));
  EXPECT_TRUE(r.up);
}

TEST(HealthRun, RiseAndFallOfOne) {
  HealthRun r;
  EXPECT_TRUE(r.record(false, 1, 1));
  EXPECT_TRUE(r.record(true, 1, 1));
  EXPECT_FALSE(r.record(true, 1, 1));
}

TEST(StatusLine, ParsesCodesAndRefusesOthers) {
  EXPECT_EQ(parse_status_line("HTTP/1.1 200 OK\r\n"), 200);
  EXPECT_EQ(parse_status_line("HTTP/1.0 503 Service Unavailable\r\n"), 503);
  EXPECT_EQ(parse_status_line("HTTP/1.1 204\r\n"), 204);
  EXPECT_EQ(parse_status_line(""), 0);
  EXPECT_EQ(parse_status_line("HTTP/1."), 0);
  EXPECT_EQ(parse_status_line("HTTP/1.1 20"), 0);
  EXPECT_EQ(parse_status_line("HTTP/2 200 OK\r\n"), -1);
  EXPECT_EQ(parse_status_line("SSH-2.0-OpenSSH\r\n"), -1);
  EXPECT_EQ(parse_status_line("HTTP/1.1 2x0 OK\r\n"), -1);
  EXPECT_EQ(parse_status_line("HTTP/1.1 099 OK\r\n"), -1);
  EXPECT_EQ(parse_status_line("HTTP/1.1  200 OK\r\n"), -1);
  EXPECT_EQ(parse_status_line("HTTP/1.1 2000 OK\r\n"), -1);
}

TEST(HttpRequest, IsAGetWithHostAndClose) {
  EXPECT_EQ(http_check_request("/healthz", "app.internal"),
            "GET /healthz HTTP/1.1\r\nHost: app.internal\r\nUser-Agent: lodestone-health-check\r\nAccept: */*\r\n"
            "Connection: close\r\n\r\n");
}

// A loopback server on its own thread: each accepted connection is handed to
// `serve` (which may block until stop). Bounded: the destructor stops it.
class TestServer {
 public:
  using Serve = std::function<void(int fd, const std::atomic<bool>& stop)>;
  explicit TestServer(Serve serve, uint16_t port = 0) : serve_(std::move(serve)) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~TestServer() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  uint16_t port() const { return port_; }
  int accepted() const { return accepted_.load(); }
  int max_open() const { return max_open_.load(); }
  SocketAddress address() const { return *parse_socket_address("127.0.0.1:" + std::to_string(port_)); }

 private:
  void run() {
    std::vector<std::thread> conns;
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      ++accepted_;
      const int now = ++open_;
      int seen = max_open_.load();
      while (now > seen && !max_open_.compare_exchange_weak(seen, now)) {
      }
      conns.emplace_back([this, c] {
        serve_(c, stop_);
        close(c);
        --open_;
      });
    }
    for (auto& t : conns) t.join();
  }

  Serve serve_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0}, open_{0}, max_open_{0};
  std::thread thread_;
};

// Reads until the request's blank line (or stop, or 2 s).
void read_request(int fd, const std::atomic<bool>& stop) {
  std::string in;
  char buf[512];
  for (int i = 0; i < 100 && !stop && in.find("\r\n\r\n") == std::string::npos; ++i) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 20) <= 0) continue;
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return;
    in.append(buf, static_cast<size_t>(n));
  }
}

TestServer::Serve http_answer(int status) {
  return [status](int fd, const std::atomic<bool>& stop) {
    read_request(fd, stop);
    const std::string resp = "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    (void)send(fd, resp.data(), resp.size(), MSG_NOSIGNAL);
  };
}

// Reads and never answers, until the peer closes (or stop).
void hold_silently(int fd, const std::atomic<bool>& stop) {
  char buf[512];
  while (!stop) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 10) <= 0) continue;
    if (recv(fd, buf, sizeof buf, 0) <= 0) return;
  }
}

// A TLS server with `leaf` (issued by the shared test PKI); `then` runs on
// the established SSL (e.g. an HTTP answer).
TestServer::Serve tls_server(const test::TestCert& leaf, std::function<void(SSL*)> then = {}) {
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  SSL_CTX_use_certificate(ctx.get(), leaf.cert.get());
  SSL_CTX_use_PrivateKey(ctx.get(), leaf.key.get());
  X509_up_ref(test::shared_test_pki().intermediate.cert.get());
  SSL_CTX_add_extra_chain_cert(ctx.get(), test::shared_test_pki().intermediate.cert.get());
  return [ctx, then](int fd, const std::atomic<bool>&) {
    timeval tv{2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    SSL* ssl = SSL_new(ctx.get());
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1 && then) then(ssl);
    SSL_free(ssl);
  };
}

// Runs the checker until `done` or 5 s; returns whether `done` held.
bool run_until(HealthChecker& hc, const std::function<bool()>& done) {
  const auto end = HealthClock::now() + 5s;
  while (HealthClock::now() < end) {
    hc.tick(HealthClock::now());
    if (done()) return true;
    std::vector<pollfd> fds;
    hc.fill_poll(fds);
    const int t = hc.timeout_ms(HealthClock::now());
    poll(fds.data(), fds.size(), t < 0 ? 20 : std::min(t, 20));
    hc.on_poll(fds, 0, HealthClock::now());
    if (done()) return true;
  }
  return false;
}

config::HealthCheckConfig check(config::HealthType type, uint32_t fall = 1, uint32_t rise = 1) {
  config::HealthCheckConfig c;
  c.type = type;
  c.interval_ms = 100;
  c.timeout_ms = 100;
  c.fall = fall;
  c.rise = rise;
  return c;
}

// One target; returns its status after the first result.
HealthChecker::Status probe_once(const SocketAddress& addr, const config::HealthCheckConfig& c,
                                 std::shared_ptr<const HealthTls> tls = nullptr) {
  HealthChecker hc;
  hc.set_targets({{"app", "b1", addr, c, std::move(tls)}}, HealthClock::now());
  const bool got = run_until(hc, [&] { return hc.status("app", "b1")->ok_total + hc.status("app", "b1")->fail_total > 0; });
  EXPECT_TRUE(got) << "no result within 5 s";
  return *hc.status("app", "b1");
}

TEST(HealthProbe, TcpConnectToAListenerSucceeds) {
  TestServer s(hold_silently);
  const auto st = probe_once(s.address(), check(config::HealthType::kTcp));
  EXPECT_EQ(st.ok_total, 1u);
  EXPECT_EQ(st.last_detail, "ok");
  EXPECT_TRUE(st.run.up);
}

TEST(HealthProbe, TcpConnectToAClosedPortFails) {
  const uint16_t port = test::free_port();
  const auto st = probe_once(*parse_socket_address("127.0.0.1:" + std::to_string(port)), check(config::HealthType::kTcp));
  EXPECT_EQ(st.fail_total, 1u);
  EXPECT_EQ(st.last_detail.rfind("connect: ", 0), 0u) << st.last_detail;
  EXPECT_FALSE(st.run.up);  // fall = 1
}

TEST(HealthProbe, HttpStatusIsCompared) {
  TestServer ok(http_answer(200)), unavailable(http_answer(503));
  const auto a = probe_once(ok.address(), check(config::HealthType::kHttp));
  EXPECT_EQ(a.ok_total, 1u) << a.last_detail;
  const auto b = probe_once(unavailable.address(), check(config::HealthType::kHttp));
  EXPECT_EQ(b.fail_total, 1u);
  EXPECT_EQ(b.last_detail, "status 503");
  auto want503 = check(config::HealthType::kHttp);
  want503.expect_status = 503;
  EXPECT_EQ(probe_once(unavailable.address(), want503).ok_total, 1u);
}

TEST(HealthProbe, SilentListenerTimesOut) {
  TestServer s(hold_silently);
  const auto st = probe_once(s.address(), check(config::HealthType::kHttp));
  EXPECT_EQ(st.fail_total, 1u);
  EXPECT_EQ(st.last_detail, "timeout");
}

TEST(HealthProbe, NotHttpIsAFailure) {
  TestServer s([](int fd, const std::atomic<bool>& stop) {
    read_request(fd, stop);
    (void)send(fd, "SSH-2.0-x\r\n", 11, MSG_NOSIGNAL);
  });
  const auto st = probe_once(s.address(), check(config::HealthType::kHttp));
  EXPECT_EQ(st.last_detail, "not an HTTP/1.x answer");
}

TEST(HealthProbe, ClosedWithoutAnswerIsAFailure) {
  TestServer s([](int, const std::atomic<bool>&) {});
  const auto st = probe_once(s.address(), check(config::HealthType::kHttp));
  EXPECT_EQ(st.fail_total, 1u);
  EXPECT_NE(st.last_detail, "ok");
}

struct TlsFiles {
  test::TempDir dir;
  std::string ca;
  TlsFiles() {
    // SSL writes to a peer that has gone (a refused handshake) raise SIGPIPE;
    // the control plane process ignores it (tools/lodestone/main.cc), so
    // does this one.
    signal(SIGPIPE, SIG_IGN);
    ca = dir.write("ca.pem", test::shared_test_pki().root.cert_pem());
  }
};

config::BackendTlsConfig verifying(const std::string& ca, std::string server_name) {
  config::BackendTlsConfig t;
  t.enabled = true;
  t.verify = true;
  t.ca_file = ca;
  t.server_name_set = !server_name.empty();
  t.server_name = std::move(server_name);
  return t;
}

std::shared_ptr<const HealthTls> health_tls(const config::BackendTlsConfig& t, const config::HealthCheckConfig& c) {
  auto r = make_health_tls(t, c);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error());
  return r ? std::make_shared<const HealthTls>(std::move(*r)) : nullptr;
}

TEST(HealthProbe, TlsHandshakeVerifiesLikeThePool) {
  TlsFiles f;
  TestServer s(tls_server(test::shared_test_pki().leaf("backend.test")));
  // A TLS handshake under ASan on a busy 2-core machine can take more than
  // the default test timeout of 100 ms: this test is about verification.
  auto c = check(config::HealthType::kTls);
  c.interval_ms = c.timeout_ms = 3000;
  const auto good = probe_once(s.address(), c, health_tls(verifying(f.ca, "backend.test"), c));
  EXPECT_EQ(good.ok_total, 1u) << good.last_detail;
  // The certificate does not carry the name the pool verifies.
  const auto wrong_name = probe_once(s.address(), c, health_tls(verifying(f.ca, "other.test"), c));
  EXPECT_EQ(wrong_name.fail_total, 1u);
  EXPECT_EQ(wrong_name.last_detail.rfind("tls: ", 0), 0u) << wrong_name.last_detail;
  // Another CA.
  test::TempDir d2;
  const std::string other = d2.write("other.pem", test::other_test_pki().root.cert_pem());
  const auto wrong_ca = probe_once(s.address(), c, health_tls(verifying(other, "backend.test"), c));
  EXPECT_EQ(wrong_ca.fail_total, 1u);
  // A pool without [pool.tls] (passthrough): the handshake alone.
  const auto unverified = probe_once(s.address(), c, health_tls(config::BackendTlsConfig{}, c));
  EXPECT_EQ(unverified.ok_total, 1u) << unverified.last_detail;
  // Plain TCP to it is not a TLS check: a TLS check of a plain listener fails.
  TestServer plain(http_answer(200));
  EXPECT_EQ(probe_once(plain.address(), c, health_tls(config::BackendTlsConfig{}, c)).fail_total, 1u);
}

TEST(HealthProbe, HttpOverTls) {
  TlsFiles f;
  TestServer s(tls_server(test::shared_test_pki().leaf("backend.test"), [](SSL* ssl) {
    char buf[1024];
    (void)SSL_read(ssl, buf, sizeof buf);
    const std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    SSL_write(ssl, resp.data(), static_cast<int>(resp.size()));
    SSL_shutdown(ssl);
  }));
  auto c = check(config::HealthType::kHttp);
  c.interval_ms = c.timeout_ms = 3000;  // a TLS handshake under ASan on a busy machine
  c.host = "backend.test";
  const auto st = probe_once(s.address(), c, health_tls(verifying(f.ca, ""), c));  // name from health.host
  EXPECT_EQ(st.ok_total, 1u) << st.last_detail;
}

TEST(HealthTlsSettings, VerifyWithoutANameIsRefused) {
  TlsFiles f;
  auto r = make_health_tls(verifying(f.ca, ""), check(config::HealthType::kTls));
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().find("health.host"), std::string::npos);
  auto missing = make_health_tls(verifying("/nonexistent/ca.pem", "x.test"), check(config::HealthType::kTls));
  EXPECT_FALSE(missing.has_value());
}

// A ca_file that is not a regular file is refused at once, as the workers'
// backend context refuses it: before, a FIFO blocked the control plane's
// loop in OpenSSL's open until a writer came, /dev/zero never ended.
TEST(HealthTlsSettings, ACaFileThatIsNoRegularFileIsRefusedWithoutWaiting) {
  test::TempDir d;
  const std::string fifo = d.path() + "/ca.pem";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  for (const std::string& ca : {fifo, std::string("/dev/zero")}) {
    auto r = std::async(std::launch::async,
                        [&] { return make_health_tls(verifying(ca, "x.test"), check(config::HealthType::kTls)); });
    if (r.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
      // Let the blocked open go (a writer appears), then fail.
      const int w = open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
      if (w >= 0) close(w);
      FAIL() << ca << ": still loading after 5 s";
    }
    auto got = r.get();
    ASSERT_FALSE(got.has_value()) << ca;
    EXPECT_NE(got.error().find("not a readable file"), std::string::npos) << got.error();
  }
}

TEST(HealthChecker, BackendGoesDownAndComesBackWithRiseAndFall) {
  const uint16_t port = test::free_port();
  const SocketAddress addr = *parse_socket_address("127.0.0.1:" + std::to_string(port));
  HealthChecker hc;
  hc.set_targets({{"app", "b1", addr, check(config::HealthType::kTcp, 2, 2)}}, HealthClock::now());
  EXPECT_TRUE(hc.status("app", "b1")->run.up);  // up until it has failed `fall` times
  ASSERT_TRUE(run_until(hc, [&] { return !hc.status("app", "b1")->run.up; }));
  EXPECT_GE(hc.status("app", "b1")->fail_total, 2u);
  EXPECT_EQ(hc.status("app", "b1")->transitions, 1u);
  {
    TestServer s(hold_silently, port);
    ASSERT_TRUE(run_until(hc, [&] { return hc.status("app", "b1")->run.up; }));
    EXPECT_GE(hc.status("app", "b1")->ok_total, 2u);
    EXPECT_EQ(hc.status("app", "b1")->transitions, 2u);
  }
  ASSERT_TRUE(run_until(hc, [&] { return !hc.status("app", "b1")->run.up; }));
}

// Holds a probe's connection silently; answers "ok" to "mark" (a barrier:
// see accepted_before).
void hold_or_mark(int fd, const std::atomic<bool>& stop) {
  char buf[512];
  while (!stop) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 10) <= 0) continue;
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return;
    if (std::string_view(buf, static_cast<size_t>(n)).starts_with("mark")) {
      (void)send(fd, "ok", 2, MSG_NOSIGNAL);
      return;
    }
  }
}

// The connections `s` accepted before this call's own, which it makes and
// waits (at most 5 s) to be answered: the listen queue is first in, first
// out, so by then every earlier connection was accepted. `marks`: the calls
// made before on `s`.
int accepted_before(const TestServer& s, int& marks) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const SocketAddress a = s.address();
  EXPECT_EQ(connect(fd, a.sa(), a.len), 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  (void)send(fd, "mark", 4, MSG_NOSIGNAL);
  char buf[2];
  EXPECT_EQ(recv(fd, buf, sizeof buf, MSG_WAITALL), 2) << "the barrier was not answered";
  close(fd);
  return s.accepted() - ++marks;
}

TEST(HealthChecker, OneProbeInFlightPerBackend) {
  // A server per backend that never answers; the clock is explicit, so the
  // intervals pass while each backend's first probe is still in flight.
  TestServer s1(hold_or_mark), s2(hold_or_mark);
  HealthChecker hc;
  auto c = check(config::HealthType::kHttp);
  c.interval_ms = 50;
  c.timeout_ms = 300;
  const auto t0 = HealthClock::now();
  hc.set_targets({{"app", "b1", s1.address(), c}, {"app", "b2", s2.address(), c}}, t0);
  for (int ms = 0; ms < 300; ms += 50) {
    const auto now = t0 + std::chrono::milliseconds(ms);
    hc.tick(now);
    std::vector<pollfd> fds;
    hc.fill_poll(fds);
    poll(fds.data(), fds.size(), 0);
    hc.on_poll(fds, 0, now);
  }
  int marks1 = 0, marks2 = 0;
  EXPECT_EQ(accepted_before(s1, marks1), 1);
  EXPECT_EQ(accepted_before(s2, marks2), 1);
  EXPECT_EQ(hc.status("app", "b1")->fail_total, 0u);
  // Past the deadline: both time out, and the next probes start.
  hc.tick(t0 + 301ms);
  EXPECT_EQ(hc.status("app", "b1")->last_detail, "timeout");
  EXPECT_EQ(hc.status("app", "b2")->last_detail, "timeout");
  hc.tick(t0 + 400ms);
  EXPECT_EQ(accepted_before(s1, marks1), 2);
  EXPECT_EQ(accepted_before(s2, marks2), 2);
  EXPECT_EQ(hc.in_flight(), 2u);
}

// `serve` once `open` is set (waiting at most 5 s): the test decides when
// the backend answers.
TestServer::Serve gated(const std::atomic<bool>& open, TestServer::Serve serve) {
  return [&open, serve](int fd, const std::atomic<bool>& stop) {
    for (int i = 0; i < 5000 && !open && !stop; ++i) usleep(1000);
    serve(fd, stop);
  };
}

// Steps the only probe with the clock standing at `at` until it waits for
// the backend's answer (connected, for tcp; readable otherwise), opens the
// gate, then waits (at most 5 s) until the answer is there, without taking
// it. False when the probe finished meanwhile or nothing came.
bool until_answer_waits(HealthChecker& hc, HealthClock::time_point at, bool tcp, std::atomic<bool>& gate) {
  for (int i = 0; i < 100; ++i) {
    std::vector<pollfd> fds;
    hc.fill_poll(fds);
    if (fds.size() != 1) return false;
    if (tcp || fds[0].events == POLLIN) {
      gate = true;
      return poll(fds.data(), 1, 5000) == 1;
    }
    if (poll(fds.data(), 1, 5000) != 1) return false;
    hc.on_poll(fds, 0, at);
  }
  return false;
}

// The loop can be busy past a probe's deadline (an admin call waiting for the
// dataplane): an answer that arrived meanwhile counts, and a probe whose
// backend said nothing still times out.
TEST(HealthChecker, AnswerThatArrivedBeforeALateTickCounts) {
  TlsFiles f;
  std::atomic<bool> http_gate{false}, tls_gate{false}, no_gate{false};
  TestServer tcp(hold_silently), http(gated(http_gate, http_answer(200))), silent(hold_silently);
  TestServer tls(gated(tls_gate, tls_server(test::shared_test_pki().leaf("backend.test"), [](SSL* ssl) {
    char buf[16];
    (void)SSL_read(ssl, buf, sizeof buf);  // until the probe closes
  })));
  struct Case {
    const char* name;
    const TestServer& server;
    config::HealthType type;
    std::atomic<bool>& gate;
    bool answers;
  };
  for (const Case& k : {Case{"tcp", tcp, config::HealthType::kTcp, no_gate, true},
                        Case{"http", http, config::HealthType::kHttp, http_gate, true},
                        Case{"tls", tls, config::HealthType::kTls, tls_gate, true},
                        Case{"silent", silent, config::HealthType::kHttp, no_gate, false}}) {
    SCOPED_TRACE(k.name);
    auto c = check(k.type);
    c.interval_ms = 10'000;
    c.timeout_ms = 100;
    std::shared_ptr<const HealthTls> t;
    if (k.type == config::HealthType::kTls) t = health_tls(verifying(f.ca, "backend.test"), c);
    HealthChecker hc;
    const auto t0 = HealthClock::now();
    hc.set_targets({{"app", "b1", k.server.address(), c, t}}, t0);
    hc.tick(t0);
    ASSERT_EQ(hc.in_flight(), 1u);
    if (k.answers) {
      ASSERT_TRUE(until_answer_waits(hc, t0, k.type == config::HealthType::kTcp, k.gate));
    } else {
      // The request goes out; nothing comes back.
      std::vector<pollfd> fds;
      hc.fill_poll(fds);
      ASSERT_EQ(poll(fds.data(), fds.size(), 5000), 1);
      hc.on_poll(fds, 0, t0);
    }
    ASSERT_EQ(hc.in_flight(), 1u);
    hc.tick(t0 + 1s);  // long past the deadline
    const HealthChecker::Status* st = hc.status("app", "b1");
    EXPECT_EQ(st->last_detail, k.answers ? "ok" : "timeout");
    EXPECT_EQ(st->ok_total + st->fail_total, 1u);
    EXPECT_TRUE(st->last_at == t0 + 1s);  // the tick's clock, not the wall's
    EXPECT_EQ(hc.in_flight(), 0u);
  }
}

TEST(HealthChecker, SetTargetsKeepsStateOfUnchangedBackendsOnly) {
  const uint16_t port = test::free_port();
  const SocketAddress addr = *parse_socket_address("127.0.0.1:" + std::to_string(port));
  HealthChecker hc;
  const auto c = check(config::HealthType::kTcp, 1, 1);
  hc.set_targets({{"app", "b1", addr, c}, {"app", "b2", addr, c}}, HealthClock::now());
  ASSERT_TRUE(run_until(hc, [&] { return !hc.status("app", "b1")->run.up && !hc.status("app", "b2")->run.up; }));
  auto c2 = c;
  c2.fall = 3;
  hc.set_targets({{"app", "b1", addr, c}, {"app", "b2", addr, c2}}, HealthClock::now());
  EXPECT_FALSE(hc.status("app", "b1")->run.up);  // kept
  EXPECT_TRUE(hc.status("app", "b2")->run.up);   // its check changed: afresh
  EXPECT_EQ(hc.status("app", "b2")->fail_total, 0u);
  hc.set_targets({}, HealthClock::now());
  EXPECT_EQ(hc.status("app", "b1"), nullptr);
  EXPECT_EQ(hc.timeout_ms(HealthClock::now()), -1);
}

}  // namespace
}  // namespace lode::cp

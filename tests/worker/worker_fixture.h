// The worker test fixture: one worker in-process on real loopback sockets,
// an echo backend, and helpers. Shared by worker_test.cc and
// worker_ktls_test.cc.
#pragma once

#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/config.h"
#include "dataplane/worker/worker.h"
#include "support/fixtures.h"
#include "support/loopback.h"
#include "support/snapshot_fixture.h"
#include "support/test_pki.h"
#include "tools/lodestone/runtime_builder.h"

namespace lode::worker::fixture {

using namespace std::chrono_literals;

using lode::test::free_port;

// To 127.0.0.1:port, from 127.0.0.1 or the loopback address `from`.
inline int connect_to(uint16_t port, const char* from = nullptr) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (from != nullptr) {
    sockaddr_in src{};
    src.sin_family = AF_INET;
    inet_pton(AF_INET, from, &src.sin_addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
      close(fd);
      return -1;
    }
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads until EOF, reset or timeout; returns the bytes and how it ended.
struct Drained {
  std::string bytes;
  bool eof = false;
  bool reset = false;
};
inline Drained drain(int fd, std::chrono::milliseconds limit = 5000ms) {
  Drained d;
  const auto end = std::chrono::steady_clock::now() + limit;
  char buf[65536];
  while (std::chrono::steady_clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      d.bytes.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) d.eof = true;
    if (n < 0) d.reset = errno == ECONNRESET;
    break;
  }
  return d;
}

// A listening socket on 127.0.0.1 with a kernel-chosen port.
inline int listen_loopback(int backlog, uint16_t& port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  listen(fd, backlog);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

// A loopback listener served on its own thread, one connection at a time:
// `serve` has each accepted socket (a 5 s receive timeout set), which is
// closed after it returns. The destructor shuts the listener down and joins.
class LoopbackServer {
 public:
  explicit LoopbackServer(std::function<void(int)> serve) : serve_(std::move(serve)) {
    fd_ = listen_loopback(16, port_);
    thread_ = std::thread([this] {
      while (true) {
        const int c = accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        timeval tv{5, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        serve_(c);
        close(c);
      }
    });
  }
  ~LoopbackServer() {
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
    close(fd_);
  }
  LoopbackServer(const LoopbackServer&) = delete;
  LoopbackServer& operator=(const LoopbackServer&) = delete;
  uint16_t port() const { return port_; }

 private:
  std::function<void(int)> serve_;
  int fd_;
  uint16_t port_;
  std::thread thread_;
};

// A plaintext echo backend on its own thread. `reset_after` > 0: abort the
// connection with a RST after echoing that many bytes.
class EchoBackend {
 public:
  explicit EchoBackend(size_t reset_after = 0) : reset_after_(reset_after) {
    fd_ = listen_loopback(128, port_);
    thread_ = std::thread([this] { loop(); });
  }
  ~EchoBackend() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
    close(fd_);
  }
  uint16_t port() const { return port_; }
  size_t connections() const { return conns_.load(); }
  std::string first_bytes() {
    std::lock_guard lock(mu_);
    return first_;
  }

 private:
  void loop() {
    while (!stop_) {
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      ++conns_;
      timeval tv{5, 0};
      setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      std::string seen;
      char buf[65536];
      size_t echoed = 0;
      bool reset = false;
      while (true) {
        const ssize_t n = recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        if (seen.size() < 4096) seen.append(buf, static_cast<size_t>(std::min<ssize_t>(n, 4096)));
        if (send(c, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
        echoed += static_cast<size_t>(n);
        if (reset_after_ > 0 && echoed >= reset_after_) {
          const linger lg{1, 0};
          setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
          reset = true;
          break;
        }
      }
      {
        std::lock_guard lock(mu_);
        if (first_.empty()) first_ = seen;
      }
      // A reset is a reset alone: a FIN first would let the proxy finish
      // the relay cleanly before the RST arrives (a flake seen under TSan).
      if (!reset) shutdown(c, SHUT_WR);
      close(c);
    }
  }
  int fd_;
  uint16_t port_;
  size_t reset_after_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> conns_{0};
  std::mutex mu_;
  std::string first_;
  std::thread thread_;
};

class WorkerTest : public ::testing::Test {
 protected:
  // Starts one worker with the given extra TOML (routes to the echo backend
  // on `backend_port`).
  void start(uint16_t backend_port, const std::string& extra = "", const std::string& timeouts = "") {
    const auto& pki = test::shared_test_pki();
    const auto a = pki.leaf("a.test");
    dir_.write("certs/a.test.pem", pki.server_chain_pem(a));
    dir_.write("certs/a.test.key", a.key_pem());
    ca_pem_ = pki.root.cert_pem();
    port_ = free_port();
    backend_port_ = backend_port;
    timeouts_ = timeouts;
    auto keys = tls::TicketKeys::create(1);
    ASSERT_TRUE(keys.has_value());
    ASSERT_TRUE((*keys)->rotate().has_value());
    keys_ = *keys;
    Built b = build(extra, 1);
    ASSERT_TRUE(b.runtime && b.snapshot);
    slot_.publish(b.runtime);
    snapshots_.publish(b.snapshot);
    WorkerOptions opt;
    opt.recv_buffers = 64;
    if (ring_entries_ != 0) opt.ring_entries = ring_entries_;
    opt.splice_after = splice_after_;
    opt.splice_pipe_max = splice_pipe_max_;
    opt.splice_grow_budget = splice_grow_budget_;
    opt.ring_calls = ring_calls_;
    opt.key_update_after = key_update_after_;
    opt.snapshots = &snapshots_;
    opt.client_counts = client_counts_;
    worker_ = std::make_unique<Worker>(opt, slot_, [this](uint32_t, const std::string& lines) {
      std::lock_guard lock(log_mu_);
      for (size_t at = 0, nl; (nl = lines.find('\n', at)) != std::string::npos; at = nl + 1) {
        log_.push_back(lines.substr(at, nl - at));
      }
    });
    auto ok = worker_->open();
    ASSERT_TRUE(ok.has_value()) << ok.error();
    auto started = worker_->start();
    ASSERT_TRUE(started.has_value()) << started.error();
  }
  // start()'s configuration with other `extra` TOML, as a reload would
  // bring it: its runtime (`generation`) and the snapshot of its
  // certificates (generation and config version `generation`).
  struct Built {
    std::shared_ptr<Runtime> runtime;
    std::shared_ptr<const control::Snapshot> snapshot;
  };
  Built build(const std::string& extra, uint64_t generation) {
    const std::string toml = "[[listener]]\nname = \"l\"\nlisten = [\"127.0.0.1:" + std::to_string(port_) +
                             "\"]\n" + listener_extra_ +
                             "[[pool]]\nname = \"echo\"\nbackends = [\"127.0.0.1:" +
                             std::to_string(backend_port_) +
                             "\"]\n"
                             "[[certificate_dir]]\nname = \"sites\"\npath = \"certs\"\n"
                             "[[route]]\nname = \"a\"\nnames = [\"a.test\"]\naction = \"terminate\"\npool = \"echo\"\n"
                             "certificate = \"sites\"\n"
                             "[[route]]\nname = \"p\"\nnames = [\"p.test\"]\naction = \"passthrough\"\npool = \"echo\"\n"
                             "[[route]]\nname = \"r\"\nnames = [\"r.test\"]\naction = \"reject\"\nreject_with = \"reset\"\n" +
                             extra + "[timeouts]\n" + (timeouts_.empty() ? "hello_ms = 1000\n" : timeouts_) +
                             "drain_ms = 500\n";
    const std::string path = dir_.write("lode-" + std::to_string(generation) + ".toml", toml);
    auto cfg = config::load_config_file(path);
    EXPECT_TRUE(cfg.has_value()) << cfg.error()[0].to_string();
    if (!cfg) return {};
    auto built = app::build_runtime(*cfg, keys_, generation);
    EXPECT_TRUE(built.has_value()) << built.error()[0];
    auto snap = test::snapshot_for(*cfg, generation);
    EXPECT_TRUE(snap.has_value()) << snap.error();
    if (!built || !snap) return {};
    built->runtime->config_version = (*snap)->config_version;
    return {built->runtime, *snap};
  }

  void TearDown() override {
    if (worker_) {
      worker_->stop();
      worker_->join();
      EXPECT_EQ(worker_->stats().active.load(), 0u) << "connections left open after the drain";
    }
  }
  std::vector<std::string> log() {
    std::lock_guard lock(log_mu_);
    return log_;
  }
  // Waits until the access log has n lines.
  bool wait_log(size_t n, std::chrono::milliseconds limit = 3000ms) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      if (log().size() >= n) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  const WorkerStats& stats() const { return worker_->stats(); }

  // A TLS client on a connected socket.
  struct Client {
    SSL_CTX* ctx = nullptr;
    SSL* ssl = nullptr;
    int fd = -1;
    ~Client() {
      if (ssl) SSL_free(ssl);
      if (ctx) SSL_CTX_free(ctx);
      if (fd >= 0) close(fd);
    }
  };
  std::unique_ptr<Client> tls_connect(const std::string& sni, const std::string& verify_name = "") {
    return tls_handshake(connect_to(port_), sni, verify_name);
  }
  // The TLS handshake on a connected socket (taken over; -1: none).
  std::unique_ptr<Client> tls_handshake(int fd, const std::string& sni, const std::string& verify_name = "") {
    auto c = std::make_unique<Client>();
    c->fd = fd;
    if (c->fd < 0) return nullptr;
    c->ctx = SSL_CTX_new(TLS_client_method());
    BIO* bio = BIO_new_mem_buf(ca_pem_.data(), static_cast<int>(ca_pem_.size()));
    X509* ca = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(c->ctx), ca);
    X509_free(ca);
    BIO_free(bio);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, nullptr);
    c->ssl = SSL_new(c->ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, sni.c_str());
    SSL_set1_host(c->ssl, verify_name.empty() ? sni.c_str() : verify_name.c_str());
    // A blocking socket with SO_RCVTIMEO: a wait interrupted (io_uring task
    // work of a ring an earlier test in this process tore down is delivered
    // like a signal) fails with EINTR instead of restarting: go on.
    int rc;
    while ((rc = SSL_connect(c->ssl)) != 1) {
      const int err = SSL_get_error(c->ssl, rc);
      if ((err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) && errno == EINTR) continue;
      ERR_clear_error();
      return nullptr;
    }
    return c;
  }

  test::TempDir dir_;
  std::string listener_extra_;  // more keys for the [[listener]]
  ClientCounts* client_counts_ = nullptr;  // the worker's [limits] connections_per_client table
  unsigned ring_entries_ = 0;   // the worker's io_uring SQ size; 0: the default
  uint64_t splice_after_ = WorkerOptions{}.splice_after;  // passthrough: copied before splicing
  uint32_t splice_pipe_max_ = WorkerOptions{}.splice_pipe_max;
  uint64_t splice_grow_budget_ = WorkerOptions{}.splice_grow_budget;
  bool ring_calls_ = true;      // false: close/setsockopt as direct calls (an older kernel's way)
  uint64_t key_update_after_ = WorkerOptions{}.key_update_after;  // our layer: records per send key
  std::string ca_pem_;
  uint16_t port_ = 0;
  uint16_t backend_port_ = 0;
  std::string timeouts_;
  std::shared_ptr<tls::TicketKeys> keys_;
  RuntimeSlot slot_;
  control::SnapshotSlot snapshots_;
  // A test's own client table (client_counts_ points at it): outlives the
  // worker, which may still release into it at TearDown.
  std::unique_ptr<ClientCounts> owned_counts_;
  std::unique_ptr<Worker> worker_;
  std::mutex log_mu_;
  std::vector<std::string> log_;
};

inline bool has(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

}  // namespace lode::worker::fixture

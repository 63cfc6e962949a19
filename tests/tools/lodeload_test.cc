// lodeload's core (tools/lodeload/run.h) against a real TLS server on
// loopback, in process: an echo server, and servers that misbehave (garbage,
// silence, alerts, short or wrong echoes, early closes). Plus the pure parts:
// histogram, options, SNI weights, report.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/tls/tls_context.h"
#include "lodestone/json_reader.h"
#include "support/loopback.h"
#include "support/mem_handshake.h"
#include "support/test_pki.h"
#include "tools/lodeload/histogram.h"
#include "tools/lodeload/options.h"
#include "tools/lodeload/run.h"
#include "tools/lodeload/sni_list.h"

namespace lode::load {
namespace {

using namespace std::chrono_literals;

// ------------------------------------------------------------------ server

// What the test server does with each connection.
enum class Behavior {
  kEcho,         // TLS handshake, echo every byte, answer close_notify
  kGarbage,      // plaintext junk instead of a ServerHello
  kSilent,       // accepts, reads, never answers
  kRejectName,   // the unrecognized_name alert (112) for every SNI
  kHalfEcho,     // echoes half of its first read, then close_notify
  kCorruptEcho,  // echoes with the first byte changed
  kCloseAtOnce,  // handshake, then close_notify and close
};

// Session tickets from the test server: issued and accepted; none; or
// issued but never accepted (a new SSL_CTX, so new ticket keys, for every
// connection).
enum class Tickets { kOn, kOff, kUnresumable };

// A TLS server on 127.0.0.1 with one thread per connection (blocking I/O,
// 5 s socket timeouts), certificate for a.test and b.test from the shared
// test PKI. Counts what it saw; stops and joins everything on destruction.
class TlsServer {
 public:
  explicit TlsServer(Behavior behavior, int max_version = TLS1_3_VERSION,
                     Tickets tickets = Tickets::kOn)
      : behavior_(behavior), max_version_(max_version), tickets_(tickets) {
    ctx_ = make_ctx();
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(fd_, 512), 0);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~TlsServer() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    acceptor_.join();
    {
      std::lock_guard lock(mu_);
      for (int c : open_fds_) shutdown(c, SHUT_RDWR);
    }
    for (auto& t : threads_) t.join();
    close(fd_);
  }
  TlsServer(const TlsServer&) = delete;
  TlsServer& operator=(const TlsServer&) = delete;

  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int accepted() const { return accepted_.load(); }
  int handshakes() const { return handshakes_.load(); }
  int resumed() const { return resumed_.load(); }
  int max_concurrent() const { return max_concurrent_.load(); }

 private:
  void accept_loop() {
    while (!stop_) {
      const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      ++accepted_;
      timeval tv{5, 0};
      setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      std::lock_guard lock(mu_);
      open_fds_.push_back(c);
      threads_.emplace_back([this, c] {
        // OpenSSL writes with write(2): a client that hung up must give
        // EPIPE here, not SIGPIPE to the test process.
        sigset_t pipe;
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
        serve(c);
        std::lock_guard inner(mu_);
        std::erase(open_fds_, c);
        close(c);
      });
    }
  }

  tls::SslCtxPtr make_ctx() const {
    const auto& pki = test::shared_test_pki();
    test::CertSpec spec;
    spec.dns_names = {"b.test"};
    static const auto leaf = pki.leaf("a.test", spec);
    tls::SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    SSL_CTX_use_certificate(ctx.get(), leaf.cert.get());
    SSL_CTX_add1_chain_cert(ctx.get(), pki.intermediate.cert.get());
    SSL_CTX_use_PrivateKey(ctx.get(), leaf.key.get());
    SSL_CTX_set_max_proto_version(ctx.get(), max_version_);
    if (tickets_ == Tickets::kOff) {
      SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
      SSL_CTX_set_num_tickets(ctx.get(), 0);
      SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
    }
    if (behavior_ == Behavior::kRejectName) {
      SSL_CTX_set_tlsext_servername_callback(
          ctx.get(), +[](SSL*, int* alert, void*) {
            *alert = SSL_AD_UNRECOGNIZED_NAME;
            return SSL_TLSEXT_ERR_ALERT_FATAL;
          });
    }
    return ctx;
  }

  void serve(int fd) {
    char buf[16384];
    if (behavior_ == Behavior::kGarbage) {
      static constexpr char kJunk[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
      (void)!send(fd, kJunk, sizeof kJunk - 1, MSG_NOSIGNAL);
      (void)!recv(fd, buf, sizeof buf, 0);
      return;
    }
    if (behavior_ == Behavior::kSilent) {
      while (!stop_ && recv(fd, buf, sizeof buf, 0) > 0) {
      }
      return;
    }
    const tls::SslCtxPtr fresh = tickets_ == Tickets::kUnresumable ? make_ctx() : nullptr;
    tls::SslPtr ssl(SSL_new(fresh ? fresh.get() : ctx_.get()));
    SSL_set_fd(ssl.get(), fd);
    if (SSL_accept(ssl.get()) != 1) {
      ERR_clear_error();
      return;
    }
    ++handshakes_;
    if (SSL_session_reused(ssl.get())) ++resumed_;
    const int now = ++concurrent_;
    for (int seen = max_concurrent_.load();
         now > seen && !max_concurrent_.compare_exchange_weak(seen, now);) {
    }
    echo(ssl.get());
    --concurrent_;
    ERR_clear_error();
  }

  void echo(SSL* ssl) {
    if (behavior_ == Behavior::kCloseAtOnce) {
      SSL_shutdown(ssl);
      return;
    }
    char buf[16384];
    size_t total = 0;
    while (!stop_) {
      size_t n = 0;
      if (SSL_read_ex(ssl, buf, sizeof buf, &n) != 1) break;
      if (behavior_ == Behavior::kHalfEcho) {
        // Answers the first read with half of it and close_notify, then
        // takes whatever still comes until the client hangs up (closing
        // with unread bytes would turn the close into a reset).
        SSL_write(ssl, buf, static_cast<int>(n / 2));
        SSL_shutdown(ssl);
        while (recv(SSL_get_fd(ssl), buf, sizeof buf, 0) > 0) {
        }
        return;
      }
      if (behavior_ == Behavior::kCorruptEcho && total == 0)
        buf[0] = static_cast<char>(buf[0] ^ 0x55);
      total += n;
      if (SSL_write(ssl, buf, static_cast<int>(n)) <= 0) return;
    }
    SSL_shutdown(ssl);
  }

  Behavior behavior_;
  int max_version_;
  Tickets tickets_;
  tls::SslCtxPtr ctx_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::atomic<int> handshakes_{0};
  std::atomic<int> resumed_{0};
  std::atomic<int> concurrent_{0};
  std::atomic<int> max_concurrent_{0};
  std::mutex mu_;
  std::vector<int> open_fds_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

// ------------------------------------------------------------------ helpers

class LodeloadRun : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = dir_.write("ca.pem", test::shared_test_pki().root.cert_pem());
    other_ca_ = dir_.write("other-ca.pem", test::other_test_pki().root.cert_pem());
  }

  // Options parsed from a command line, so the tests go through the same
  // checks as the tool.
  Options parse(std::vector<std::string> args) {
    auto o = parse_options(args);
    EXPECT_TRUE(o.has_value()) << o.error();
    return o.has_value() ? *o : Options{};
  }
  Report run_ok(const Options& o) {
    auto r = run(o);
    EXPECT_TRUE(r.has_value()) << r.error();
    return r.has_value() ? std::move(*r) : Report{};
  }
  // A run against `server` with SNI a.test, verified by the test root.
  Report load(const TlsServer& server, const std::string& mode,
              const std::vector<std::string>& more) {
    std::vector<std::string> args = {mode,   "--connect", server.address(), "--sni", "a.test",
                                     "--ca", ca_};
    args.insert(args.end(), more.begin(), more.end());
    return run_ok(parse(args));
  }
  static uint64_t errors(const Report& r, const std::string& kind) {
    const auto it = r.errors.find(kind);
    return it == r.errors.end() ? 0 : it->second;
  }

  test::TempDir dir_;
  std::string ca_;
  std::string other_ca_;
};

std::string sha256_hex(const std::vector<uint8_t>& data) {
  unsigned char d[32];
  unsigned n = 0;
  EVP_Digest(data.data(), data.size(), d, &n, EVP_sha256(), nullptr);
  return test::hex(d, n);
}

// ------------------------------------------------------------------ modes

TEST_F(LodeloadRun, BulkEchoesEveryByteWithEqualDigests) {
  TlsServer server(Behavior::kEcho);
  constexpr uint64_t kBytes = 2 * 1024 * 1024;  // a whole number of 16 KiB chunks
  const Report r = load(server, "bulk", {"--bytes", std::to_string(kBytes), "--seed", "7"});
  ASSERT_EQ(r.bulk.size(), 1u);
  const BulkStream& s = r.bulk[0];
  EXPECT_TRUE(s.equal);
  EXPECT_EQ(s.bytes_sent, kBytes);
  EXPECT_EQ(s.bytes_received, kBytes);
  EXPECT_EQ(s.sent_sha256, s.received_sha256);
  // The stream is the documented generator's: the same seed, the same bytes.
  std::vector<uint8_t> expected(kBytes);
  Prng(7).fill(expected.data(), expected.size());
  EXPECT_EQ(s.sent_sha256, sha256_hex(expected));
  EXPECT_TRUE(r.bulk_ok());
  EXPECT_EQ(r.error_total(), 0u);
  EXPECT_EQ(r.close_clean, 1u);
  EXPECT_EQ(exit_status(r), 0);
}

TEST_F(LodeloadRun, BulkSeveralStreamsEachOwnData) {
  TlsServer server(Behavior::kEcho);
  const Report r = load(server, "bulk", {"--bytes", "300000", "--concurrency", "3"});
  ASSERT_EQ(r.bulk.size(), 3u);
  for (const auto& s : r.bulk) {
    EXPECT_TRUE(s.equal);
    EXPECT_EQ(s.bytes_received, 300000u);
  }
  EXPECT_NE(r.bulk[0].sent_sha256, r.bulk[1].sent_sha256);
  EXPECT_EQ(r.bytes_sent, 900000u);
  EXPECT_EQ(r.bytes_received, 900000u);
  EXPECT_EQ(exit_status(r), 0);
}

TEST_F(LodeloadRun, BulkShortEchoIsAFailure) {
  TlsServer server(Behavior::kHalfEcho);
  const Report r = load(server, "bulk", {"--bytes", "100000"});
  ASSERT_EQ(r.bulk.size(), 1u);
  EXPECT_FALSE(r.bulk[0].equal);
  EXPECT_LT(r.bulk[0].bytes_received, 100000u);
  EXPECT_NE(r.bulk[0].sent_sha256, r.bulk[0].received_sha256);
  EXPECT_EQ(errors(r, err::kShortRead), 1u);
  EXPECT_EQ(exit_status(r), 1);
}

TEST_F(LodeloadRun, HandshakesCountIsExact) {
  TlsServer server(Behavior::kEcho);
  const Report r = load(server, "handshakes", {"--count", "30", "--concurrency", "4"});
  EXPECT_EQ(r.connections_started, 30u);
  EXPECT_EQ(r.connections_ok, 30u);
  EXPECT_EQ(r.handshakes_full, 30u);
  EXPECT_EQ(r.handshakes_resumed, 0u);
  EXPECT_EQ(r.error_total(), 0u);
  EXPECT_LE(r.peak_open, 4u);
  EXPECT_EQ(r.handshake_us.count(), 30u);
  EXPECT_EQ(r.connect_us.count(), 30u);
  EXPECT_EQ(r.close_clean, 30u);
  EXPECT_EQ(r.versions.at("TLSv1.3"), 30u);
  EXPECT_EQ(server.handshakes(), 30);
}

TEST_F(LodeloadRun, HandshakesWithEchoedRequest) {
  TlsServer server(Behavior::kEcho);
  const Report r = load(server, "handshakes", {"--count", "10", "--request", "1000"});
  EXPECT_EQ(r.connections_ok, 10u);
  EXPECT_EQ(r.requests, 10u);
  EXPECT_EQ(r.bytes_sent, 10000u);
  EXPECT_EQ(r.bytes_received, 10000u);
  EXPECT_EQ(r.ttfb_us.count(), 10u);
  EXPECT_EQ(r.response_us.count(), 10u);
  EXPECT_EQ(r.error_total(), 0u);
}

TEST_F(LodeloadRun, ResumeCountsOneFullHandshakePerName) {
  for (const char* version : {"1.3", "1.2"}) {
    SCOPED_TRACE(version);
    TlsServer server(Behavior::kEcho);
    const Report r = run_ok(
        parse({"handshakes", "--connect", server.address(), "--sni", "a.test", "--sni", "b.test",
               "--ca", ca_, "--count", "20", "--concurrency", "4", "--resume", "--tls", version}));
    EXPECT_EQ(r.connections_ok, 20u);
    EXPECT_EQ(r.handshakes_full, 2u);
    EXPECT_EQ(r.handshakes_resumed, 18u);
    EXPECT_EQ(server.resumed(), 18);
    EXPECT_EQ(r.error_total(), 0u);
    EXPECT_EQ(r.sni.at("a.test") + r.sni.at("b.test"), 20u);
  }
}

TEST_F(LodeloadRun, ResumeWithoutTicketsDoesFullHandshakes) {
  TlsServer server(Behavior::kEcho, TLS1_3_VERSION, Tickets::kOff);
  const Report r = load(server, "handshakes", {"--count", "8", "--concurrency", "4", "--resume"});
  EXPECT_EQ(r.connections_ok, 8u);
  EXPECT_EQ(r.handshakes_full, 8u);
  EXPECT_EQ(r.tickets_received, 0u);
  EXPECT_EQ(r.resumptions_refused, 0u);  // nothing to offer
  EXPECT_EQ(r.peak_open, 4u);            // not one at a time once the first is over
}

TEST_F(LodeloadRun, RefusedTicketsAreCounted) {
  TlsServer server(Behavior::kEcho, TLS1_3_VERSION, Tickets::kUnresumable);
  const Report r = load(server, "handshakes", {"--count", "6", "--concurrency", "1", "--resume"});
  EXPECT_EQ(r.connections_ok, 6u);
  EXPECT_EQ(r.handshakes_full, 6u);
  EXPECT_EQ(r.handshakes_resumed, 0u);
  EXPECT_EQ(r.resumptions_refused, 5u);  // all but the first offered a ticket
}

TEST_F(LodeloadRun, WithoutResumeEveryHandshakeIsFull) {
  TlsServer server(Behavior::kEcho);
  const Report r = load(server, "handshakes", {"--count", "6", "--concurrency", "1"});
  EXPECT_EQ(r.handshakes_full, 6u);
  EXPECT_EQ(r.handshakes_resumed, 0u);
  EXPECT_EQ(r.tickets_received, 12u);  // OpenSSL's server sends two per full TLS 1.3 handshake
  EXPECT_EQ(server.resumed(), 0);
}

TEST_F(LodeloadRun, RequestsOnKeptConnections) {
  TlsServer server(Behavior::kEcho);
  const Report r =
      load(server, "requests", {"--concurrency", "4", "--count", "100", "--request", "32"});
  EXPECT_EQ(r.requests, 100u);
  EXPECT_EQ(r.connections_started, 4u);
  EXPECT_EQ(r.connections_ok, 4u);
  EXPECT_EQ(r.handshakes_full, 4u);
  EXPECT_EQ(r.ttfb_us.count(), 100u);
  EXPECT_EQ(r.bytes_received, 3200u);
  EXPECT_EQ(r.error_total(), 0u);
  EXPECT_EQ(server.accepted(), 4);
}

TEST_F(LodeloadRun, RequestsWithExplicitResponseSize) {
  TlsServer server(Behavior::kEcho);  // the echo is as long as the request
  const Report r =
      load(server, "requests",
           {"--concurrency", "2", "--count", "10", "--request", "50", "--response", "50"});
  EXPECT_EQ(r.requests, 10u);
  EXPECT_EQ(r.error_total(), 0u);
}

TEST_F(LodeloadRun, RateSpacesTheConnections) {
  TlsServer server(Behavior::kEcho);
  const Report r = load(server, "handshakes", {"--count", "6", "--rate", "50"});
  EXPECT_EQ(r.connections_ok, 6u);
  EXPECT_GE(r.elapsed_s, 0.099);  // five intervals of 20 ms between six starts
}

TEST_F(LodeloadRun, DurationEndsTheRun) {
  TlsServer server(Behavior::kEcho);
  const Report r =
      load(server, "requests",
           {"--concurrency", "2", "--duration", "0.3", "--request", "10", "--rate", "100"});
  EXPECT_GE(r.elapsed_s, 0.3);
  EXPECT_LT(r.elapsed_s, 5.0);
  EXPECT_GE(r.requests, 1u);
  EXPECT_LE(r.requests, 33u);  // 100/s for 0.3 s, and the first token at once
  EXPECT_EQ(r.connections_ok, 2u);
}

TEST_F(LodeloadRun, IdleHoldsEveryConnection) {
  TlsServer server(Behavior::kEcho);
  const Report r = load(server, "idle", {"--concurrency", "20", "--hold", "0.4"});
  EXPECT_EQ(r.idle_held, 20u);
  EXPECT_EQ(r.connections_ok, 20u);
  EXPECT_EQ(r.peak_open, 20u);
  EXPECT_EQ(server.max_concurrent(), 20);
  EXPECT_GE(r.elapsed_s, 0.4);
  EXPECT_EQ(r.close_clean, 20u);
  EXPECT_EQ(r.error_total(), 0u);
}

TEST_F(LodeloadRun, IdleServerClosingEarlyIsCounted) {
  TlsServer server(Behavior::kCloseAtOnce);
  const Report r = load(server, "idle", {"--concurrency", "3", "--hold", "5"});
  EXPECT_EQ(errors(r, err::kClosedEarly), 3u);
  EXPECT_EQ(r.idle_held, 0u);
  EXPECT_LT(r.elapsed_s, 4.0);
}

TEST_F(LodeloadRun, StopRequestEndsTheRunWithAReport) {
  TlsServer server(Behavior::kEcho);
  std::atomic<bool> stop{false};
  Options o = parse({"idle", "--connect", server.address(), "--sni", "a.test", "--ca", ca_,
                     "--concurrency", "5", "--hold", "60"});
  o.stop = &stop;
  std::thread stopper([&] {
    std::this_thread::sleep_for(300ms);
    stop = true;
  });
  const Report r = run_ok(o);
  stopper.join();
  EXPECT_EQ(r.connections_aborted, 5u);
  EXPECT_EQ(r.handshakes_full, 5u);
  EXPECT_EQ(r.error_total(), 0u);
  EXPECT_LT(r.elapsed_s, 5.0);
}

// ------------------------------------------------------------------ failures

TEST_F(LodeloadRun, UnreachablePortCountsConnectRefused) {
  const uint16_t port = test::free_port();
  const Report r =
      run_ok(parse({"handshakes", "--connect", "127.0.0.1:" + std::to_string(port), "--sni",
                    "a.test", "--ca", ca_, "--count", "5", "--concurrency", "2"}));
  EXPECT_EQ(errors(r, err::kConnectRefused), 5u);
  EXPECT_EQ(r.connections_failed, 5u);
  EXPECT_EQ(r.connections_ok, 0u);
  EXPECT_EQ(r.handshake_us.count(), 0u);
  EXPECT_EQ(exit_status(r), 1);
}

TEST_F(LodeloadRun, Ipv6TargetIsDialled) {
  // Nothing listens on [::1] here: the refusal shows the IPv6 socket and
  // address went all the way to connect().
  const Report r =
      run_ok(parse({"handshakes", "--connect", "[::1]:" + std::to_string(test::free_port()),
                    "--insecure", "--count", "2"}));
  EXPECT_EQ(errors(r, err::kConnectRefused), 2u);
}

TEST_F(LodeloadRun, GarbageFromTheServerIsATlsError) {
  TlsServer server(Behavior::kGarbage);
  const Report r = load(server, "handshakes", {"--count", "3"});
  EXPECT_EQ(errors(r, err::kTls), 3u);
  EXPECT_EQ(r.error_total(), 3u);
  EXPECT_FALSE(r.error_samples.at(err::kTls).empty());
}

TEST_F(LodeloadRun, SilentServerTimesOut) {
  TlsServer server(Behavior::kSilent);
  const auto start = std::chrono::steady_clock::now();
  const Report r = load(server, "handshakes", {"--count", "2", "--timeout-ms", "200"});
  EXPECT_EQ(errors(r, err::kHandshakeTimeout), 2u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

TEST_F(LodeloadRun, AlertFromTheServerIsCountedByNumber) {
  TlsServer server(Behavior::kRejectName);
  const Report r = load(server, "handshakes", {"--count", "3"});
  EXPECT_EQ(errors(r, "tls_alert_112"), 3u);
  EXPECT_EQ(r.error_samples.at("tls_alert_112"), "unrecognized name");
}

TEST_F(LodeloadRun, VersionMismatchIsAnAlert) {
  TlsServer server(Behavior::kEcho, TLS1_2_VERSION);
  const Report r = load(server, "handshakes", {"--count", "2", "--tls", "1.3"});
  EXPECT_EQ(errors(r, "tls_alert_70"), 2u);  // protocol_version
}

TEST_F(LodeloadRun, UntrustedCertificateIsAVerifyFailure) {
  TlsServer server(Behavior::kEcho);
  const Report r = run_ok(parse({"handshakes", "--connect", server.address(), "--sni", "a.test",
                                 "--ca", other_ca_, "--count", "2"}));
  EXPECT_EQ(errors(r, err::kVerify), 2u);
  EXPECT_EQ(server.handshakes(), 0);
}

TEST_F(LodeloadRun, NameNotInTheCertificateIsAVerifyFailure) {
  TlsServer server(Behavior::kEcho);
  const Report r = run_ok(parse({"handshakes", "--connect", server.address(), "--sni", "c.test",
                                 "--ca", ca_, "--count", "2"}));
  EXPECT_EQ(errors(r, err::kVerify), 2u);
  // --insecure takes the same certificate.
  const Report r2 = run_ok(parse({"handshakes", "--connect", server.address(), "--sni", "c.test",
                                  "--insecure", "--count", "2"}));
  EXPECT_EQ(r2.error_total(), 0u);
  EXPECT_EQ(r2.connections_ok, 2u);
}

TEST_F(LodeloadRun, WrongEchoIsAMismatch) {
  TlsServer server(Behavior::kCorruptEcho);
  const Report r =
      load(server, "requests", {"--concurrency", "1", "--count", "5", "--request", "64"});
  EXPECT_EQ(errors(r, err::kResponseMismatch), 1u);
  EXPECT_EQ(r.requests, 0u);
}

TEST_F(LodeloadRun, ShortResponseIsAShortRead) {
  TlsServer server(Behavior::kHalfEcho);
  const Report r = load(server, "handshakes", {"--count", "2", "--request", "100"});
  EXPECT_EQ(errors(r, err::kShortRead), 2u);
  EXPECT_EQ(r.requests, 0u);
}

TEST_F(LodeloadRun, SetupErrorsAreReported) {
  Options o = parse({"handshakes", "--connect", "127.0.0.1:9", "--ca", dir_.path() + "/missing.pem",
                     "--count", "1"});
  auto r = run(o);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().find("--ca"), std::string::npos) << r.error();
  o = parse({"handshakes", "--connect", "127.0.0.1:9", "--insecure", "--cipher", "NOT-A-CIPHER",
             "--count", "1"});
  r = run(o);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().find("--cipher"), std::string::npos) << r.error();
}

TEST_F(LodeloadRun, ReportJsonIsOneObject) {
  TlsServer server(Behavior::kEcho);
  const Report r = load(server, "handshakes", {"--count", "3", "--request", "10"});
  const std::string text = report_json(r);
  auto json = parse_json(text);
  ASSERT_TRUE(json.has_value()) << json.error() << "\n" << text;
  EXPECT_EQ(json->str("mode"), "handshakes");
  ASSERT_NE(json->find("handshakes"), nullptr);
  EXPECT_EQ(json->find("handshakes")->str("full"), "3");
  EXPECT_EQ(json->find("errors")->str("total"), "0");
  const JsonValue* lat = json->find("latency_us");
  ASSERT_NE(lat, nullptr);
  for (const char* h : {"connect", "handshake", "ttfb", "response"}) {
    ASSERT_NE(lat->find(h), nullptr) << h;
    for (const char* q : {"count", "p50", "p90", "p99", "p99_9", "max"})
      EXPECT_NE(lat->find(h)->find(q), nullptr);
  }
  EXPECT_EQ(lat->find("ttfb")->str("count"), "3");
  EXPECT_NE(report_table(r).find("handshake"), std::string::npos);
}

// ------------------------------------------------------------------ pure parts

TEST(LodeloadHistogram, BucketsAreMonotonicAndTight) {
  size_t last = 0;
  for (uint64_t v = 0; v < 1'000'000; v += 1 + v / 50) {
    const size_t b = Histogram::bucket_of(v);
    EXPECT_GE(b, last);
    last = b;
    EXPECT_GE(Histogram::bucket_high(b), v);
    EXPECT_LE(Histogram::bucket_high(b) - v, v / 128) << v;
  }
  EXPECT_LT(Histogram::bucket_of(UINT64_MAX), Histogram::kBuckets);
  EXPECT_EQ(Histogram::bucket_high(Histogram::bucket_of(UINT64_MAX)), UINT64_MAX);
}

TEST(LodeloadHistogram, QuantilesMinMaxMean) {
  Histogram h;
  EXPECT_EQ(h.quantile(0.5), 0u);
  EXPECT_EQ(h.min(), 0u);
  for (uint64_t v = 1; v <= 10000; ++v) h.record(v);
  EXPECT_EQ(h.count(), 10000u);
  EXPECT_EQ(h.min(), 1u);
  EXPECT_EQ(h.max(), 10000u);
  EXPECT_DOUBLE_EQ(h.mean(), 5000.5);
  const std::pair<double, uint64_t> expect[] = {
      {0.5, 5000}, {0.9, 9000}, {0.99, 9900}, {0.999, 9990}};
  for (const auto& [q, v] : expect) {
    EXPECT_GE(h.quantile(q), v) << q;
    EXPECT_LE(h.quantile(q), v + v / 128) << q;
  }
  EXPECT_EQ(h.quantile(1.0), 10000u);
  EXPECT_EQ(h.quantile(0.0), 1u);
  Histogram other;
  other.record(1'000'000);
  h.merge(other);
  EXPECT_EQ(h.max(), 1'000'000u);
  EXPECT_EQ(h.quantile(1.0), 1'000'000u);
}

TEST(LodeloadOptions, ModesAndDefaults) {
  auto o = parse_options({"handshakes", "--connect", "127.0.0.1:443"});
  ASSERT_TRUE(o.has_value()) << o.error();
  EXPECT_EQ(o->mode, Mode::kHandshakes);
  EXPECT_EQ(o->concurrency, 8u);
  EXPECT_EQ(o->duration_ms, 10'000u);
  EXPECT_EQ(o->timeout_ms, 5000u);
  o = parse_options({"--mode=bulk", "--connect=[::1]:8443", "--bytes", "100M"});
  ASSERT_TRUE(o.has_value()) << o.error();
  EXPECT_EQ(o->mode, Mode::kBulk);
  EXPECT_EQ(o->concurrency, 1u);
  EXPECT_EQ(o->bulk_bytes, 100'000'000u);
  EXPECT_EQ(o->target.family(), AF_INET6);
  o = parse_options({"idle", "--connect", "127.0.0.1:443", "--hold", "1.5", "--bytes", "1Ki"});
  EXPECT_FALSE(o.has_value());  // --bytes is bulk's
  o = parse_options(
      {"idle", "--connect", "127.0.0.1:443", "--hold", "1.5", "--alpn", "h2,http/1.1"});
  ASSERT_TRUE(o.has_value()) << o.error();
  EXPECT_EQ(o->hold_ms, 1500u);
  EXPECT_EQ(o->concurrency, 100u);
  EXPECT_EQ(o->alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  o = parse_options({"requests", "--connect", "127.0.0.1:443", "--request", "1k", "--count", "5"});
  ASSERT_TRUE(o.has_value()) << o.error();
  EXPECT_EQ(o->request_bytes, 1000u);
  EXPECT_FALSE(o->duration_ms.has_value());
  EXPECT_FALSE(o->response_bytes.has_value());
  EXPECT_EQ(parse_options({"--help"}).error(), kHelpRequested);
  EXPECT_NE(std::string(usage()).find("--sni-file"), std::string::npos);
}

TEST(LodeloadOptions, BadArgumentsAreNamed) {
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{}, "no mode"},
      {{"flood", "--connect", "127.0.0.1:1"}, "unknown mode"},
      {{"bulk", "bulk", "--connect", "127.0.0.1:1"}, "twice"},
      {{"bulk"}, "--connect: required"},
      {{"bulk", "--connect", "localhost:443"}, "--connect"},
      {{"bulk", "--connect", "127.0.0.1:0"}, "port"},
      {{"bulk", "--connect", "127.0.0.1:1", "--frobnicate"}, "unknown option '--frobnicate'"},
      {{"bulk", "--connect", "127.0.0.1:1", "--bytes"}, "--bytes: needs a value"},
      {{"bulk", "--connect", "127.0.0.1:1", "--bytes", "ten"}, "--bytes: expected"},
      {{"bulk", "--connect", "127.0.0.1:1", "--bytes", "10X"}, "unknown unit"},
      {{"bulk", "--connect", "127.0.0.1:1", "--rate", "5"},
       "--rate: does not apply to the bulk mode"},
      {{"idle", "--connect", "127.0.0.1:1", "--resume"}, "--resume: does not apply"},
      {{"handshakes", "--connect", "127.0.0.1:1", "--concurrency", "0"},
       "--concurrency: must be 1.."},
      {{"handshakes", "--connect", "127.0.0.1:1", "--duration", "-1"}, "--duration"},
      {{"handshakes", "--connect", "127.0.0.1:1", "--duration", "0"}, "--duration"},
      {{"handshakes", "--connect", "127.0.0.1:1", "--tls", "1.1"}, "--tls: expected 1.2 or 1.3"},
      {{"handshakes", "--connect", "127.0.0.1:1", "--ca", "x", "--insecure"},
       "--insecure: contradicts --ca"},
      {{"handshakes", "--connect", "127.0.0.1:1", "--tls", "1.3", "--cipher", "AES128-SHA"},
       "--ciphersuites"},
      {{"handshakes", "--connect", "127.0.0.1:1", "--insecure=yes"}, "takes no value"},
      {{"handshakes", "--connect", "127.0.0.1:1", "--sni", ""}, "--sni"},
      {{"handshakes", "--connect", "127.0.0.1:1", "--alpn", "h2,,x"}, "--alpn"},
      {{"handshakes", "--connect", "127.0.0.1:1", "--sni-file", "/nonexistent/names"},
       "cannot read"},
      {{"requests", "--connect", "127.0.0.1:1"}, "--request: the requests mode needs"},
      {{"handshakes", "--connect", "127.0.0.1:1", "--timeout-ms", "0"}, "--timeout-ms"},
  };
  for (const auto& [args, needle] : cases) {
    const auto o = parse_options(args);
    ASSERT_FALSE(o.has_value()) << needle;
    EXPECT_NE(o.error().find(needle), std::string::npos)
        << "'" << o.error() << "' lacks '" << needle << "'";
  }
}

TEST(LodeloadSni, FileWithWeights) {
  auto e = parse_sni_file("# names\na.example 5\n\n  b.example\t2\nc.example\n", "names.txt");
  ASSERT_TRUE(e.has_value()) << e.error();
  ASSERT_EQ(e->size(), 3u);
  EXPECT_EQ((*e)[0].name, "a.example");
  EXPECT_EQ((*e)[0].weight, 5u);
  EXPECT_EQ((*e)[1].weight, 2u);
  EXPECT_EQ((*e)[2].weight, 1u);
  const std::pair<std::string, std::string> bad[] = {
      {"a.example 0\n", "names.txt:1: the weight"},
      {"a.example\nb.example five\n", "names.txt:2: the weight"},
      {"a.example 1 2\n", "names.txt:1: expected 'NAME [WEIGHT]'"},
      {"# nothing\n\n", "no server names"},
      {"a.example 99999999999\n", "names.txt:1"},
  };
  for (const auto& [text, needle] : bad) {
    const auto r = parse_sni_file(text, "names.txt");
    ASSERT_FALSE(r.has_value()) << text;
    EXPECT_NE(r.error().find(needle), std::string::npos) << r.error();
  }
}

TEST(LodeloadSni, PicksByWeight) {
  const SniList list({{"a", 1}, {"b", 3}, {"c", 0 + 1}});
  Prng rng(42);
  size_t counts[3] = {};
  for (int i = 0; i < 50000; ++i) ++counts[list.pick(rng)];
  EXPECT_NEAR(static_cast<double>(counts[0]) / 50000, 0.2, 0.02);
  EXPECT_NEAR(static_cast<double>(counts[1]) / 50000, 0.6, 0.02);
  EXPECT_NEAR(static_cast<double>(counts[2]) / 50000, 0.2, 0.02);
  EXPECT_EQ(SniList().pick(rng), 0u);
}

TEST_F(LodeloadRun, SniFileSpreadsConnectionsByWeight) {
  TlsServer server(Behavior::kEcho);
  const std::string names = dir_.write("names.txt", "a.test 3\nb.test 1\n");
  const Report r = run_ok(parse({"handshakes", "--connect", server.address(), "--sni-file", names,
                                 "--ca", ca_, "--count", "40", "--concurrency", "8"}));
  EXPECT_EQ(r.error_total(), 0u);
  EXPECT_EQ(r.sni.at("a.test") + r.sni.at("b.test"), 40u);
  EXPECT_GT(r.sni.at("a.test"), r.sni.at("b.test"));
}

}  // namespace
}  // namespace lode::load

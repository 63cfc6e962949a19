// The TLS worker in-process, on real loopback sockets, with OpenSSL clients
// and echo backends run by the test: every path's defined answer, and no fd
// or memory leak (this binary also runs under ASan+LSan).
#include "dataplane/worker/worker.h"

#include <gtest/gtest.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/config.h"
#include "controlplane/snapshot_writer.h"
#include "dataplane/tls/proxy_protocol.h"
#include "support/fixtures.h"
#include "support/hello_builder.h"
#include "support/loopback.h"
#include "support/snapshot_fixture.h"
#include "support/test_pki.h"
#include "tools/lodestone/runtime_builder.h"

#include "worker/mem_client.h"
#include "worker/worker_fixture.h"

namespace lode::worker {
namespace {

using namespace std::chrono_literals;
using namespace fixture;

// A TLS backend on its own thread (blocking OpenSSL): sends a greeting as
// soon as its handshake is done, then echoes.
class TlsGreeterBackend {
 public:
  TlsGreeterBackend(const std::string& chain_pem, const std::string& key_pem) {
    ctx_ = SSL_CTX_new(TLS_server_method());
    BIO* b = BIO_new_mem_buf(chain_pem.data(), static_cast<int>(chain_pem.size()));
    X509* cert = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
    SSL_CTX_use_certificate(ctx_, cert);
    while (X509* extra = PEM_read_bio_X509(b, nullptr, nullptr, nullptr)) SSL_CTX_add1_chain_cert(ctx_, extra), X509_free(extra);
    X509_free(cert);
    BIO_free(b);
    b = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
    EVP_PKEY* key = PEM_read_bio_PrivateKey(b, nullptr, nullptr, nullptr);
    SSL_CTX_use_PrivateKey(ctx_, key);
    EVP_PKEY_free(key);
    BIO_free(b);
    ERR_clear_error();
    server_.emplace([this](int c) {
      SSL* ssl = SSL_new(ctx_);
      SSL_set_fd(ssl, c);
      if (SSL_accept(ssl) == 1) {
        sni_ = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) ? SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) : "";
        SSL_write(ssl, "hello from the backend\n", 23);
        char buf[4096];
        int n;
        while ((n = SSL_read(ssl, buf, sizeof buf)) > 0) SSL_write(ssl, buf, n);
        SSL_shutdown(ssl);
      }
      ERR_clear_error();
      SSL_free(ssl);
    });
  }
  ~TlsGreeterBackend() {
    server_.reset();  // its thread uses ctx_
    SSL_CTX_free(ctx_);
  }
  uint16_t port() const { return server_->port(); }
  std::string sni() const { return sni_; }

 private:
  SSL_CTX* ctx_;
  std::string sni_;
  std::optional<LoopbackServer> server_;
};

// SSL_read and SSL_write on a blocking client socket, going on where a wait
// was interrupted (EINTR: see tls_connect). A timeout or a close still ends them.
int ssl_read(SSL* ssl, char* buf, int len) {
  int n;
  do {
    n = SSL_read(ssl, buf, len);
  } while (n <= 0 && SSL_get_error(ssl, n) == SSL_ERROR_WANT_READ && errno == EINTR);
  return n;
}
int ssl_write(SSL* ssl, const std::string& bytes) {
  int n;
  do {
    n = SSL_write(ssl, bytes.data(), static_cast<int>(bytes.size()));
  } while (n <= 0 && SSL_get_error(ssl, n) == SSL_ERROR_WANT_WRITE && errno == EINTR);
  return n;
}

// An access log line of a connection that ended clean.
void expect_ok_line(const std::string& line, const std::string& sni, const std::string& action) {
  EXPECT_TRUE(has(line, R"("sni":")" + sni + '"')) << line;
  EXPECT_TRUE(has(line, R"("action":")" + action + '"')) << line;
  EXPECT_TRUE(has(line, R"("result":"ok")")) << line;
}

// 300 KiB through a terminated connection to the echo backend and back,
// then the client's close_notify: the backend sees a half-close and closes,
// and so does the worker.
void expect_tls_echo_then_clean_close(SSL* ssl) {
  std::string big(300 * 1024, 'x');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  ASSERT_EQ(ssl_write(ssl, big), static_cast<int>(big.size()));
  std::string back;
  char buf[16384];
  while (back.size() < big.size()) {
    const int n = ssl_read(ssl, buf, sizeof buf);
    ASSERT_GT(n, 0);
    back.append(buf, static_cast<size_t>(n));
  }
  EXPECT_EQ(back, big);
  SSL_shutdown(ssl);  // close_notify: the backend sees a half-close and closes
  const int n = ssl_read(ssl, buf, sizeof buf);
  EXPECT_LE(n, 0);
}

TEST_F(WorkerTest, TerminateRelaysBothWaysAndClosesCleanly) {
  EchoBackend backend;
  start(backend.port());
  auto c = tls_connect("a.test");
  ASSERT_NE(c, nullptr);
  X509* peer = SSL_get1_peer_certificate(c->ssl);
  ASSERT_NE(peer, nullptr);
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
  X509_free(peer);
  EXPECT_STREQ(cn, "a.test");
  expect_tls_echo_then_clean_close(c->ssl);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(wait_log(1));
  expect_ok_line(log()[0], "a.test", "terminate");
  EXPECT_EQ(stats().handshakes.load(), 1u);
  EXPECT_EQ(stats().ktls_unavailable.load() > 0, !kernel_has_tls_ulp());
  // Without the kernel's record layer, ours takes over after the handshake.
  EXPECT_EQ(stats().own_records.load(), kernel_has_tls_ulp() ? 0u : 1u);
}

std::string peer_cn(SSL* ssl) {
  X509* peer = SSL_get1_peer_certificate(ssl);
  if (peer == nullptr) return "";
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
  X509_free(peer);
  return cn;
}

// Two certificate names swapped by a reload ([[certificate]] cx = x's file,
// cy = y's; then cx = y's, cy = x's, and the routes follow): a name never
// gets the other one's certificate, whenever its hello comes.
//  - A connection accepted before the reload whose hello comes after it is
//    routed by the new configuration (it was routed by the one of its
//    accept, whose certificate names the new snapshot gives other files).
//  - A reload whose runtime the worker has taken before its snapshot (main
//    publishes them one after the other): hellos route by the previous
//    runtime, which the snapshot in service matches.
//  - Two reloads' runtimes ahead of the snapshot: refused (alert), counted.
TEST_F(WorkerTest, CertificateNamesAReloadSwapsNeverServeTheOtherNamesFile) {
  EchoBackend backend;
  const auto& pki = test::shared_test_pki();
  for (const char* n : {"x.test", "y.test"}) {
    const auto leaf = pki.leaf(n);
    dir_.write(std::string("named/") + n + ".pem", pki.server_chain_pem(leaf));
    dir_.write(std::string("named/") + n + ".key", leaf.key_pem());
  }
  const auto config = [](const char* cx, const char* cy) {
    return std::string("[[certificate]]\nname = \"cx\"\ncert = \"named/") + cx + ".pem\"\nkey = \"named/" + cx +
           ".key\"\n[[certificate]]\nname = \"cy\"\ncert = \"named/" + cy + ".pem\"\nkey = \"named/" + cy +
           ".key\"\n[[route]]\nname = \"x\"\nnames = [\"x.test\"]\naction = \"terminate\"\npool = \"echo\"\n"
           "certificate = \"" + (std::string(cx) == "x.test" ? "cx" : "cy") +
           "\"\n[[route]]\nname = \"y\"\nnames = [\"y.test\"]\naction = \"terminate\"\npool = \"echo\"\n"
           "certificate = \"" + (std::string(cx) == "x.test" ? "cy" : "cx") + "\"\n";
  };
  const std::string straight = config("x.test", "y.test"), swapped = config("y.test", "x.test");
  start(backend.port(), straight);
  const auto served = [&](int fd, const std::string& name) {
    auto c = tls_handshake(fd, name);  // verifies the name too
    return c ? peer_cn(c->ssl) : std::string("(refused)");
  };
  // Publishes a runtime (when given) then a snapshot, as main does, and
  // waits for the worker to have taken the snapshot (it takes snapshots
  // first, then runtimes, in the same pass).
  const auto publish = [&](const std::shared_ptr<Runtime>& rt, std::shared_ptr<const control::Snapshot> snap,
                           uint64_t generation) {
    if (rt) slot_.publish(rt);
    if (snap->generation != generation) {
      auto copy = std::make_shared<control::Snapshot>(*snap);
      copy->generation = generation;
      snap = copy;
    }
    snapshots_.publish(snap);
    worker_->wake();
    for (int i = 0; i < 300 && worker_->snapshot_generation() < generation; ++i) std::this_thread::sleep_for(10ms);
    return worker_->snapshot_generation() == generation;
  };
  EXPECT_EQ(served(connect_to(port_), "x.test"), "x.test");

  // Accepted, then the reload, then the hello.
  const int early = connect_to(port_);
  ASSERT_GE(early, 0);
  std::this_thread::sleep_for(50ms);  // accepted under generation 1
  Built g2 = build(swapped, 2);
  ASSERT_TRUE(g2.runtime && g2.snapshot);
  ASSERT_TRUE(publish(g2.runtime, g2.snapshot, 2));
  EXPECT_EQ(served(early, "x.test"), "x.test");
  EXPECT_EQ(served(connect_to(port_), "y.test"), "y.test");

  // Generation 3's runtime out, its snapshot not yet: a snapshot that keeps
  // generation 2's configuration (as a certificate rotation would) shows
  // when the worker has taken the runtime.
  Built g3 = build(straight, 3);
  ASSERT_TRUE(g3.runtime);
  ASSERT_TRUE(publish(g3.runtime, g2.snapshot, 3));
  EXPECT_EQ(served(connect_to(port_), "x.test"), "x.test");
  EXPECT_EQ(served(connect_to(port_), "y.test"), "y.test");
  EXPECT_EQ(stats().cert_config_mismatch.load(), 0u);

  // Generation 4's runtime too: neither runtime matches the snapshot.
  Built g4 = build(swapped, 4);
  ASSERT_TRUE(g4.runtime);
  ASSERT_TRUE(publish(g4.runtime, g2.snapshot, 4));
  EXPECT_EQ(served(connect_to(port_), "x.test"), "(refused)");
  EXPECT_EQ(stats().cert_config_mismatch.load(), 1u);

  // Its snapshot: served again.
  Built g5 = build(swapped, 5);
  ASSERT_TRUE(g5.runtime && g5.snapshot);
  ASSERT_TRUE(publish(g5.runtime, g5.snapshot, 5));
  EXPECT_EQ(served(connect_to(port_), "x.test"), "x.test");
  EXPECT_EQ(served(connect_to(port_), "y.test"), "y.test");
}

// A hello whose length fits (40 KB, max_hello_bytes 64 KiB) sent one byte
// per record: 240 KB on the wire, more than the worker reads for a hello
// (max_hello_bytes + 16 KiB, and a recv). Answered at once with decode_error, counted
// as too large; it used to wait for the rest that the worker would not
// read, and got a reset at hello_ms.
TEST_F(WorkerTest, AHelloInRecordsTooSmallForItsRoomGetsAnAlertNotATimeout) {
  EchoBackend backend;
  start(backend.port(), "", "hello_ms = 10000\n");
  const test::Bytes wire = test::HelloBuilder().sni("p.test").padding(40000).records(1);
  ASSERT_GT(wire.size(), 64u * 1024 + 16 * 1024);
  const int fd = connect_to(port_);
  ASSERT_GE(fd, 0);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(send(fd, wire.data(), wire.size(), MSG_NOSIGNAL), static_cast<ssize_t>(wire.size()));
  const Drained d = drain(fd, 5000ms);
  close(fd);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s) << "not at hello_ms";
  ASSERT_GE(d.bytes.size(), 7u) << (d.reset ? "reset" : "nothing");
  EXPECT_EQ(static_cast<uint8_t>(d.bytes[0]), 21);  // an alert
  EXPECT_EQ(static_cast<uint8_t>(d.bytes[6]), 50);  // decode_error
  EXPECT_EQ(stats().hello_errors_by_reason[static_cast<size_t>(tls::HelloError::kHelloTooLarge)].load(), 1u);
  EXPECT_EQ(stats().hello_timeouts.load(), 0u);
}

// A certificate whose SSL_CTX cannot be built (its key is another
// certificate's): every handshake for it is refused and counted, but the
// reason is said on stderr once for that version, not once per handshake
// (a client flood to the name was a flood of lines).
TEST_F(WorkerTest, ACertificateThatFailsToBuildIsSaidOncePerVersion) {
  EchoBackend backend;
  start(backend.port());
  const auto& pki = test::shared_test_pki();
  const auto a = pki.leaf("a.test");
  const auto stranger = pki.leaf("b.test", {.key_slot = 7});
  const auto not_after = std::chrono::duration_cast<std::chrono::seconds>(
      (std::chrono::system_clock::now() + std::chrono::hours(24)).time_since_epoch());
  cp::SegmentBuilder b;
  b.add_certificate(control::dir_cert_key("sites", "a.test"), 99, snapshot::CertState::kServe, not_after.count(),
                    pki.server_chain_pem(a), stranger.key_pem());
  auto seg = control::MappedSegment::from_bytes(b.bytes(2, 1));
  ASSERT_TRUE(seg.has_value()) << seg.error();
  auto applied = control::apply_segment(snapshots_.get(), *seg);
  ASSERT_TRUE(applied.has_value());
  snapshots_.publish(applied->snapshot);
  worker_->wake();
  for (int i = 0; i < 300 && worker_->snapshot_generation() < 2; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(worker_->snapshot_generation(), 2u);
  testing::internal::CaptureStderr();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(tls_connect("a.test"), nullptr);
  const std::string err = testing::internal::GetCapturedStderr();
  size_t lines = 0;
  for (size_t at = 0; (at = err.find("lodestone worker 0: certificate", at)) != std::string::npos; ++at) ++lines;
  EXPECT_EQ(lines, 1u) << err;
  EXPECT_EQ(stats().cert_ctx_errors.load(), 5u);
  EXPECT_EQ(stats().no_certificate.load(), 5u);
}

// The hello and bytes right behind it, then the client's FIN: the echo
// backend gets them untouched and echoes them back, and the FIN comes back.
void expect_passthrough_hello_untouched(uint16_t port, EchoBackend& backend) {
  const test::Bytes hello = test::HelloBuilder::typical("p.test").records();
  std::string wire(hello.begin(), hello.end());
  wire += "early-bytes-after-the-hello";
  const int fd = connect_to(port);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(send(fd, wire.data(), wire.size(), 0), static_cast<ssize_t>(wire.size()));
  shutdown(fd, SHUT_WR);
  const Drained d = drain(fd);
  close(fd);
  EXPECT_EQ(d.bytes, wire);  // echoed back byte for byte
  EXPECT_TRUE(d.eof);
  EXPECT_EQ(backend.first_bytes(), wire);
}

TEST_F(WorkerTest, PassthroughForwardsTheHelloBytesUntouched) {
  EchoBackend backend;
  splice_after_ = 0;  // spliced from the first byte after the hello
  start(backend.port());
  expect_passthrough_hello_untouched(port_, backend);
  if (HasFatalFailure()) return;
  EXPECT_EQ(stats().splice_relays.load(), 1u) << "after the hello, passthrough bytes move by splice";
  ASSERT_TRUE(wait_log(1));
  expect_ok_line(log()[0], "p.test", "passthrough");
}

TEST_F(WorkerTest, PassthroughHelloSplitIntoOneByteSegments) {
  EchoBackend backend;
  start(backend.port());
  const test::Bytes hello = test::HelloBuilder::typical("p.test").records();
  const int fd = connect_to(port_);
  ASSERT_GE(fd, 0);
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  for (uint8_t b : hello) {
    ASSERT_EQ(send(fd, &b, 1, 0), 1);
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  shutdown(fd, SHUT_WR);
  const Drained d = drain(fd);
  close(fd);
  EXPECT_EQ(d.bytes, std::string(hello.begin(), hello.end()));
}

TEST_F(WorkerTest, UnknownNameGetsUnrecognizedNameAlert) {
  EchoBackend backend;
  start(backend.port());
  const test::Bytes hello = test::HelloBuilder::typical("nobody.test").records();
  const int fd = connect_to(port_);
  send(fd, hello.data(), hello.size(), 0);
  const Drained d = drain(fd);
  close(fd);
  EXPECT_EQ(d.bytes, std::string("\x15\x03\x03\x00\x02\x02\x70", 7));
  EXPECT_TRUE(d.eof) << "the alert must arrive before an orderly close, not be destroyed by a reset";
  EXPECT_EQ(stats().no_route.load(), 1u);
  EXPECT_EQ(backend.connections(), 0u);
}

TEST_F(WorkerTest, RejectRouteWithResetResets) {
  EchoBackend backend;
  start(backend.port());
  const test::Bytes hello = test::HelloBuilder::typical("r.test").records();
  const int fd = connect_to(port_);
  send(fd, hello.data(), hello.size(), 0);
  const Drained d = drain(fd);
  close(fd);
  EXPECT_TRUE(d.bytes.empty());
  EXPECT_TRUE(d.reset);
  EXPECT_EQ(stats().routed_reject.load(), 1u);
}

TEST_F(WorkerTest, MalformedHellosGetTheirAlert) {
  EchoBackend backend;
  start(backend.port());
  struct Case {
    test::Bytes bytes;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {test::HelloBuilder().sni({"a.test", "b.test"}).records(), std::string("\x15\x03\x03\x00\x02\x02\x32", 7)},
      {test::HelloBuilder().sni(std::string("a\0.test", 7)).records(), std::string("\x15\x03\x03\x00\x02\x02\x2f", 7)},
      {{22, 3, 1, 0xff, 0xff}, std::string("\x15\x03\x03\x00\x02\x02\x16", 7)},
  };
  for (const Case& c : cases) {
    const int fd = connect_to(port_);
    send(fd, c.bytes.data(), c.bytes.size(), 0);
    const Drained d = drain(fd);
    close(fd);
    EXPECT_EQ(d.bytes, c.expect);
  }
  EXPECT_EQ(stats().hello_errors.load(), 3u);
}

TEST_F(WorkerTest, PlainHttpGets400AndSslv2IsClosed) {
  EchoBackend backend;
  start(backend.port());
  int fd = connect_to(port_);
  const std::string req = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
  send(fd, req.data(), req.size(), 0);
  Drained d = drain(fd);
  close(fd);
  EXPECT_TRUE(d.bytes.rfind("HTTP/1.1 400 Bad Request\r\n", 0) == 0) << d.bytes;
  fd = connect_to(port_);
  const uint8_t v2[] = {0x80, 0x2e, 0x01, 0x03, 0x01};
  send(fd, v2, sizeof v2, 0);
  d = drain(fd);
  close(fd);
  EXPECT_TRUE(d.bytes.empty());
  EXPECT_TRUE(d.eof || d.reset);
  EXPECT_EQ(stats().hello_not_tls.load(), 2u);
}

TEST_F(WorkerTest, SilentAndSlowClientsAreCutAtTheHelloTimeout) {
  EchoBackend backend;
  start(backend.port(), "", "hello_ms = 300\n");
  const int silent = connect_to(port_);
  const int slow = connect_to(port_);
  const test::Bytes hello = test::HelloBuilder::typical("a.test").records();
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < 4; ++i) {  // a slowloris: a byte every 100 ms
    send(slow, &hello[i], 1, MSG_NOSIGNAL);
    std::this_thread::sleep_for(100ms);
  }
  const Drained a = drain(silent, 3000ms);
  const Drained b = drain(slow, 3000ms);
  const auto took = std::chrono::steady_clock::now() - t0;
  close(silent);
  close(slow);
  EXPECT_TRUE(a.eof || a.reset);
  EXPECT_TRUE(b.eof || b.reset);
  EXPECT_LT(took, 2500ms);
  EXPECT_EQ(stats().hello_timeouts.load(), 2u);
}

TEST_F(WorkerTest, ClientGoneMidHandshakeAndWorkerKeepsServing) {
  EchoBackend backend;
  start(backend.port());
  for (int i = 0; i < 20; ++i) {
    const test::Bytes hello = test::HelloBuilder::typical("a.test").records();
    const int fd = connect_to(port_);
    send(fd, hello.data(), hello.size() / 2 + static_cast<size_t>(i), 0);
    if (i % 2) {
      const linger lg{1, 0};
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(fd);
  }
  auto c = tls_connect("a.test");
  ASSERT_NE(c, nullptr) << "the worker stopped serving";
  ASSERT_TRUE(wait_log(20));
}

TEST_F(WorkerTest, BackendDownClosesTheClientAndIsCounted) {
  const uint16_t dead = free_port();  // nothing listens there
  start(dead);
  const test::Bytes hello = test::HelloBuilder::typical("p.test").records();
  const int fd = connect_to(port_);
  send(fd, hello.data(), hello.size(), 0);
  const Drained d = drain(fd);
  close(fd);
  EXPECT_TRUE(d.bytes.empty());
  EXPECT_TRUE(d.eof || d.reset);
  EXPECT_GE(stats().backend_connect_errors.load(), 1u);
  ASSERT_TRUE(wait_log(1));
  EXPECT_TRUE(has(log()[0], R"("result":"backend_connect:)")) << log()[0];
}

TEST_F(WorkerTest, SecondBackendTakesOverWhenTheFirstIsDown) {
  EchoBackend backend;
  const uint16_t dead = free_port();
  // Two backends in the pool: round robin starts with the dead one.
  start(dead, "[[pool]]\nname = \"two\"\nbackends = [\"127.0.0.1:" + std::to_string(dead) + "\", \"127.0.0.1:" +
                  std::to_string(backend.port()) +
                  "\"]\n[[route]]\nname = \"q\"\nnames = [\"q.test\"]\naction = \"passthrough\"\npool = \"two\"\n");
  const test::Bytes hello = test::HelloBuilder::typical("q.test").records();
  const int fd = connect_to(port_);
  send(fd, hello.data(), hello.size(), 0);
  shutdown(fd, SHUT_WR);
  const Drained d = drain(fd);
  close(fd);
  EXPECT_EQ(d.bytes, std::string(hello.begin(), hello.end()));
  EXPECT_EQ(stats().backend_retries.load(), 1u);
}

TEST_F(WorkerTest, BackendResetMidStreamResetsTheClient) {
  EchoBackend backend(/*reset_after=*/1000);
  start(backend.port());
  test::Bytes wire = test::HelloBuilder::typical("p.test").records();
  wire.resize(wire.size() + 4 * 1024 * 1024, 'z');
  const int fd = connect_to(port_);
  std::thread sender([&] {
    size_t off = 0;
    while (off < wire.size()) {
      const ssize_t n = send(fd, wire.data() + off, wire.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
  });
  const Drained d = drain(fd);
  sender.join();
  close(fd);
  EXPECT_TRUE(d.reset || d.eof);
  EXPECT_LT(d.bytes.size(), wire.size());
  ASSERT_TRUE(wait_log(1));
  EXPECT_TRUE(has(log()[0], "backend_recv:") || has(log()[0], "backend_send:")) << log()[0];
  EXPECT_GE(stats().resets.load(), 1u);
}

TEST_F(WorkerTest, ProxyV2FromAnUpstreamIsConsumedAndItsClientLogged) {
  EchoBackend backend;
  listener_extra_ = "proxy_protocol = \"v2\"\n";
  start(backend.port());
  proxy::ProxyHeaderSpec spec;
  spec.source = proxy::Address::inet({203, 0, 113, 7}, 51000);
  spec.destination = proxy::Address::inet({198, 51, 100, 1}, 443);
  spec.authority = "p.test";
  uint8_t hdr[256];
  auto n = proxy::write_v2(spec, hdr);
  ASSERT_TRUE(n.has_value());
  const test::Bytes hello = test::HelloBuilder::typical("p.test").records();
  std::string wire(reinterpret_cast<const char*>(hdr), *n);
  wire.append(hello.begin(), hello.end());
  int fd = connect_to(port_);
  send(fd, wire.data(), wire.size(), 0);
  shutdown(fd, SHUT_WR);
  Drained d = drain(fd);
  close(fd);
  EXPECT_EQ(d.bytes, std::string(hello.begin(), hello.end())) << "the PROXY header must not reach the backend";
  ASSERT_TRUE(wait_log(1));
  EXPECT_TRUE(has(log()[0], R"("client":"203.0.113.7:51000")")) << log()[0];
  // A hello without the header the listener requires is refused.
  fd = connect_to(port_);
  send(fd, hello.data(), hello.size(), 0);
  d = drain(fd);
  close(fd);
  EXPECT_TRUE(d.bytes.empty());
  EXPECT_EQ(stats().proxy_errors.load(), 1u);
}

// [listener] proxy_from: a peer outside it is cut at accept (its header
// would be believed: the client logged, hashed and told to backends), one
// inside is served as before.
TEST_F(WorkerTest, OnlyTrustedPeersMaySendTheProxyHeader) {
  EchoBackend backend;
  listener_extra_ = "proxy_protocol = \"v1\"\nproxy_from = [\"192.0.2.0/24\", \"::1\"]\n";
  start(backend.port());
  const test::Bytes hello = test::HelloBuilder::typical("p.test").records();
  std::string wire = "PROXY TCP4 203.0.113.7 198.51.100.1 51000 443\r\n";
  wire.append(hello.begin(), hello.end());
  int fd = connect_to(port_);  // from 127.0.0.1: not trusted
  send(fd, wire.data(), wire.size(), 0);
  shutdown(fd, SHUT_WR);
  Drained d = drain(fd);
  close(fd);
  EXPECT_TRUE(d.bytes.empty());
  EXPECT_EQ(stats().proxy_errors.load(), 1u);
  EXPECT_EQ(backend.connections(), 0u) << "nothing reached a backend";

  worker_->stop();
  worker_->join();
  worker_.reset();
  listener_extra_ = "proxy_protocol = \"v1\"\nproxy_from = [\"127.0.0.0/8\"]\n";
  start(backend.port());
  fd = connect_to(port_);
  send(fd, wire.data(), wire.size(), 0);
  shutdown(fd, SHUT_WR);
  d = drain(fd);
  close(fd);
  EXPECT_EQ(d.bytes, std::string(hello.begin(), hello.end()));
  ASSERT_TRUE(wait_log(1));
  EXPECT_TRUE(has(log()[0], R"("client":"203.0.113.7:51000")")) << log()[0];
}

// A PROXY header cut by the client's FIN ends the connection at once
// (proxy_header:eof), not at hello_ms.
TEST_F(WorkerTest, AProxyHeaderCutByTheClientsFinEndsItAtOnce) {
  EchoBackend backend;
  listener_extra_ = "proxy_protocol = \"v1\"\n";
  start(backend.port());
  const int fd = connect_to(port_);
  const std::string part = "PROXY TCP4 192.0.2.1";
  send(fd, part.data(), part.size(), 0);
  shutdown(fd, SHUT_WR);
  const Drained d = drain(fd);
  close(fd);
  EXPECT_TRUE(d.bytes.empty());
  ASSERT_TRUE(wait_log(1));
  EXPECT_TRUE(has(log()[0], "proxy_header:eof")) << log()[0];
  EXPECT_EQ(stats().proxy_errors.load(), 1u);
}

// Route t.test (terminated with its own certificate) to a TLS backend that
// greets first, verified against `ca_pem`.
class WorkerBackendTlsTest : public WorkerTest {
 protected:
  void start_with_tls_backend(const std::string& ca_pem) {
    const auto& pki = test::shared_test_pki();
    const auto be = pki.leaf("backend.test");
    backend_ = std::make_unique<TlsGreeterBackend>(pki.server_chain_pem(be), be.key_pem());
    const std::string ca = dir_.write("backend-ca.pem", ca_pem);
    const auto t = pki.leaf("t.test");
    dir_.write("certs/t.test.pem", pki.server_chain_pem(t));
    dir_.write("certs/t.test.key", t.key_pem());
    start(unused_.port(), "[[pool]]\nname = \"tlsb\"\nbackends = [\"127.0.0.1:" + std::to_string(backend_->port()) +
                              "\"]\ntls = { server_name = \"backend.test\", ca_file = \"" + ca +
                              "\" }\n[[route]]\nname = \"t\"\nnames = [\"t.test\"]\naction = \"terminate\"\n"
                              "pool = \"tlsb\"\ncertificate = \"sites\"\n");
  }
  void TearDown() override {
    WorkerTest::TearDown();
    backend_.reset();
  }
  // t.test terminated to a round-robin pool of backends `a` then `b`
  // (`tls_extra`: more of its [pool.tls], before ca_file); 12 connections
  // one after the other: how many got the backend's greeting.
  int served_of_twelve(uint16_t a, uint16_t b, const std::string& tls_extra) {
    const auto& pki = test::shared_test_pki();
    const std::string ca = dir_.write("backend-ca.pem", pki.root.cert_pem());
    const auto t = pki.leaf("t.test");
    dir_.write("certs/t.test.pem", pki.server_chain_pem(t));
    dir_.write("certs/t.test.key", t.key_pem());
    start(unused_.port(), "[[pool]]\nname = \"tlsb\"\nalgorithm = \"round_robin\"\nbackends = [\"127.0.0.1:" +
                              std::to_string(a) + "\", \"127.0.0.1:" + std::to_string(b) + "\"]\ntls = { " + tls_extra +
                              "ca_file = \"" + ca +
                              "\" }\n[[route]]\nname = \"t\"\nnames = [\"t.test\"]\naction = \"terminate\"\n"
                              "pool = \"tlsb\"\ncertificate = \"sites\"\n");
    int served = 0;
    for (int i = 0; i < 12; ++i) {
      auto c = tls_connect("t.test");
      EXPECT_NE(c, nullptr);
      if (c == nullptr) continue;
      char buf[64] = {};
      if (SSL_read(c->ssl, buf, sizeof buf - 1) > 0) ++served;
    }
    return served;
  }
  // A connection to t.test gets nothing from a backend, and the access
  // log's `nth` line (0-based) says its backend's TLS failed.
  void expect_backend_tls_failure(size_t nth) {
    {
      auto c = tls_connect("t.test");
      ASSERT_NE(c, nullptr);
      char buf[64];
      EXPECT_LE(ssl_read(c->ssl, buf, sizeof buf), 0);
    }
    ASSERT_TRUE(wait_log(nth + 1));
    EXPECT_TRUE(has(log()[nth], R"("result":"backend_tls:)")) << log()[nth];
  }
  EchoBackend unused_;
  std::unique_ptr<TlsGreeterBackend> backend_;
};

TEST_F(WorkerBackendTlsTest, HandshakeStartsWithoutWaitingForTheClient) {
  // The client waits for the backend's greeting before sending anything, so
  // the worker must start the backend handshake by itself.
  start_with_tls_backend(test::shared_test_pki().root.cert_pem());
  auto c = tls_connect("t.test");
  ASSERT_NE(c, nullptr);
  char buf[256] = {};
  const int n = SSL_read(c->ssl, buf, sizeof buf - 1);
  ASSERT_GT(n, 0) << "no greeting: the backend handshake never started; " << (wait_log(1) ? log()[0] : "");
  EXPECT_STREQ(buf, "hello from the backend\n");
  ASSERT_EQ(SSL_write(c->ssl, "ping", 4), 4);
  char back[8] = {};
  ASSERT_EQ(SSL_read(c->ssl, back, 4), 4);
  EXPECT_STREQ(back, "ping");
  EXPECT_EQ(backend_->sni(), "backend.test");
  SSL_shutdown(c->ssl);
  ASSERT_TRUE(wait_log(1));
  EXPECT_TRUE(has(log()[0], R"("backend_chain":"0 s=)")) << log()[0];
  // Re-encrypted: the backend's plaintext goes through our record layer.
  if (!kernel_has_tls_ulp()) EXPECT_TRUE(has(log()[0], R"("records":"lodestone")")) << log()[0];
}

TEST_F(WorkerBackendTlsTest, WrongCaFailsAndSaysWhy) {
  start_with_tls_backend(test::other_test_pki().root.cert_pem());
  expect_backend_tls_failure(0);
  EXPECT_EQ(stats().backend_tls_errors.load(), 1u);
}

// A TLS backend whose handshake fails (here its certificate is of another
// CA) is a failure of that backend for passive health, as a refused connect
// is: three in a row eject it, and the next connections go to the other
// backend of the pool. Before, the TCP connect counted as its success and
// every other connection kept failing on it. Each failed handshake goes on
// to the next backend, as a refused connect does (nginx's
// proxy_next_upstream error): every client is served.
TEST_F(WorkerBackendTlsTest, ABackendWhoseHandshakeFailsIsEjected) {
  const auto& pki = test::shared_test_pki();
  const auto good_leaf = pki.leaf("backend.test");
  const auto bad_leaf = test::other_test_pki().leaf("backend.test");
  TlsGreeterBackend good(pki.server_chain_pem(good_leaf), good_leaf.key_pem());
  TlsGreeterBackend bad(test::other_test_pki().server_chain_pem(bad_leaf), bad_leaf.key_pem());
  const int served = served_of_twelve(bad.port(), good.port(), "server_name = \"backend.test\", ");
  EXPECT_EQ(stats().backend_tls_errors.load(), 3u) << "ejected after three failures in a row";
  EXPECT_EQ(stats().backend_retries.load(), 3u);
  EXPECT_EQ(served, 12);
}

// ... but not when the name checked is the client's (no server_name: the
// client's SNI is sent and checked): a backend whose certificate does not
// cover the name a client chose is not at fault, and clients must not eject
// healthy backends with names of their choice. Here the first backend's
// certificate is for backend.test, the second's for t.test (the SNI):
// round robin keeps alternating.
TEST_F(WorkerBackendTlsTest, TheClientsNameNotCoveredEjectsNoBackend) {
  const auto& pki = test::shared_test_pki();
  const auto other_name = pki.leaf("backend.test");
  const auto t = pki.leaf("t.test");
  TlsGreeterBackend named(pki.server_chain_pem(other_name), other_name.key_pem());
  TlsGreeterBackend covering(pki.server_chain_pem(t), t.key_pem());
  const int served = served_of_twelve(named.port(), covering.port(), "");
  EXPECT_EQ(stats().backend_tls_errors.load(), 6u) << "never ejected: every other connection";
  EXPECT_EQ(stats().backend_retries.load(), 6u) << "each went on to the covering backend";
  EXPECT_EQ(served, 12);
}

// A backend that takes the TLS hello and closes after a while fails its
// handshake; what the client sent meanwhile waits and reaches the next
// backend whole, after its greeting. Every backend failing ends the
// connection with the last failure, after [limits] connect_retries + 1
// attempts at most.
TEST_F(WorkerBackendTlsTest, AFailedHandshakeGoesOnToTheNextBackend) {
  const auto& pki = test::shared_test_pki();
  const auto leaf = pki.leaf("backend.test");
  std::atomic<int> slow_closes{0};
  // Takes the TLS hello, waits, hangs up.
  const auto hang_up = [&](std::chrono::milliseconds after) {
    return [&slow_closes, after](int fd) {
      char buf[4096];
      (void)recv(fd, buf, sizeof buf, 0);
      std::this_thread::sleep_for(after);
      ++slow_closes;
    };
  };
  LoopbackServer slow(hang_up(300ms));
  TlsGreeterBackend good(pki.server_chain_pem(leaf), leaf.key_pem());
  const std::string ca = dir_.write("backend-ca.pem", pki.root.cert_pem());
  const auto t = pki.leaf("t.test");
  dir_.write("certs/t.test.pem", pki.server_chain_pem(t));
  dir_.write("certs/t.test.key", t.key_pem());
  const auto config = [&](const std::string& backends, int retries) {
    return "[limits]\nconnect_retries = " + std::to_string(retries) +
           "\n[[pool]]\nname = \"tlsb\"\nalgorithm = \"round_robin\"\nbackends = [" + backends +
           "]\ntls = { server_name = \"backend.test\", ca_file = \"" + ca +
           "\" }\n[[route]]\nname = \"t\"\nnames = [\"t.test\"]\naction = \"terminate\"\n"
           "pool = \"tlsb\"\ncertificate = \"sites\"\n";
  };
  const auto at = [](uint16_t port) { return "\"127.0.0.1:" + std::to_string(port) + "\""; };
  start(unused_.port(), config(at(slow.port()) + ", " + at(good.port()), 2));
  {
    auto c = tls_connect("t.test");
    ASSERT_NE(c, nullptr);
    ASSERT_EQ(SSL_write(c->ssl, "ping", 4), 4);  // while the first backend stalls
    char buf[64] = {};
    ASSERT_EQ(ssl_read(c->ssl, buf, 23), 23) << (wait_log(1) ? log()[0] : "");
    EXPECT_STREQ(buf, "hello from the backend\n");
    char back[8] = {};
    ASSERT_EQ(ssl_read(c->ssl, back, 4), 4);
    EXPECT_STREQ(back, "ping");
    SSL_shutdown(c->ssl);
  }
  ASSERT_TRUE(wait_log(1));
  EXPECT_TRUE(has(log()[0], R"("result":"ok")")) << log()[0];
  EXPECT_TRUE(has(log()[0], "\"backend\":\"127.0.0.1:" + std::to_string(good.port()))) << log()[0];
  EXPECT_EQ(slow_closes.load(), 1);
  EXPECT_EQ(stats().backend_tls_errors.load(), 1u);
  EXPECT_EQ(stats().backend_retries.load(), 1u);
  EXPECT_EQ(stats().active.load(), 0u);

  // Three failing backends, one retry: two attempts, then the last failure.
  worker_->stop();
  worker_->join();
  worker_.reset();
  LoopbackServer slow2(hang_up(0ms));
  LoopbackServer slow3(hang_up(0ms));
  start(unused_.port(), config(at(slow.port()) + ", " + at(slow2.port()) + ", " + at(slow3.port()), 1));
  expect_backend_tls_failure(1);
  EXPECT_EQ(slow_closes.load(), 3) << "two attempts";
  EXPECT_EQ(stats().backend_tls_errors.load(), 2u);
  EXPECT_EQ(stats().backend_retries.load(), 1u);
}

TEST_F(WorkerTest, IpLiteralSniTakesTheDefaultRoute) {
  EchoBackend backend;
  // A directory-mode route needs a name to find a file by: the default
  // route here serves a named certificate.
  listener_extra_ = "default_route = \"d\"\n";
  start(backend.port(),
        "[[certificate]]\nname = \"acert\"\ncert = \"certs/a.test.pem\"\nkey = \"certs/a.test.key\"\n"
        "[[route]]\nname = \"d\"\naction = \"terminate\"\npool = \"echo\"\ncertificate = \"acert\"\n");
  // OpenSSL's client sends an IP literal as SNI when told to.
  auto c = tls_connect("127.0.0.1", "a.test");
  ASSERT_NE(c, nullptr) << "an IP literal must route like no SNI, and OpenSSL must agree; "
                        << (wait_log(1) ? log()[0] : "");
  ASSERT_EQ(SSL_write(c->ssl, "x", 1), 1);
  char b;
  ASSERT_EQ(SSL_read(c->ssl, &b, 1), 1);
  EXPECT_EQ(stats().sni_ip_literal.load(), 1u);
}

// [limits] connections_per_client: a client address's connections over the
// limit are closed at accept; other addresses, and the same one once a
// connection has gone, are served.
TEST_F(WorkerTest, OneClientAddressHoldsAtMostItsLimit) {
  EchoBackend backend;
  start(backend.port(), "[limits]\nconnections_per_client = 2\n");
  const int a = connect_to(port_);
  const int b = connect_to(port_);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  std::this_thread::sleep_for(100ms);
  const int over = connect_to(port_);
  const Drained d = drain(over, 2000ms);
  close(over);
  EXPECT_TRUE(d.eof || d.reset) << "the third connection of 127.0.0.1 must be closed at once";
  EXPECT_EQ(stats().refused_client_limit.load(), 1u);
  // Another client address is served meanwhile.
  const test::Bytes hello = test::HelloBuilder::typical("p.test").records();
  const std::string echoed(hello.begin(), hello.end());
  const int other = connect_to(port_, "127.0.0.2");
  ASSERT_GE(other, 0);
  send(other, hello.data(), hello.size(), 0);
  shutdown(other, SHUT_WR);
  EXPECT_EQ(drain(other).bytes, echoed);
  close(other);
  // One of 127.0.0.1's ends: its place is free again.
  send(a, hello.data(), hello.size(), 0);
  shutdown(a, SHUT_WR);
  EXPECT_EQ(drain(a).bytes, echoed);
  close(a);
  ASSERT_TRUE(wait_log(2));
  const int again = connect_to(port_);
  send(again, hello.data(), hello.size(), 0);
  shutdown(again, SHUT_WR);
  EXPECT_EQ(drain(again).bytes, echoed);
  close(again);
  close(b);
  EXPECT_EQ(stats().refused_client_limit.load(), 1u);
}

// Behind a PROXY header the client is the header's source address: the
// limit counts those, not the load balancer's one address.
TEST_F(WorkerTest, TheClientLimitCountsTheProxyHeadersAddress) {
  EchoBackend backend;
  owned_counts_ = std::make_unique<ClientCounts>();
  ClientCounts& counts = *owned_counts_;
  client_counts_ = &counts;
  listener_extra_ = "proxy_protocol = \"v1\"\nproxy_from = [\"127.0.0.0/8\"]\n";
  start(backend.port(), "[limits]\nconnections_per_client = 1\n");
  const test::Bytes hello = test::HelloBuilder::typical("p.test").records();
  const std::string echoed(hello.begin(), hello.end());
  const auto wire = [&](const char* client) {
    std::string w = std::string("PROXY TCP4 ") + client + " 198.51.100.1 51000 443\r\n";
    w.append(hello.begin(), hello.end());
    return w;
  };
  // 203.0.113.7's first connection is held open: its header and the first
  // bytes of its hello sent (the echo backend serves one connection at a
  // time: this one reaches it last).
  const int held = connect_to(port_);
  const std::string w1 = wire("203.0.113.7");
  const size_t part = w1.size() - hello.size() + 10;
  send(held, w1.data(), part, 0);
  sockaddr_in client{};
  client.sin_family = AF_INET;
  inet_pton(AF_INET, "203.0.113.7", &client.sin_addr);
  const auto* client_sa = reinterpret_cast<const sockaddr*>(&client);
  for (int i = 0; i < 500 && counts.count(client_sa, sizeof client) == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(counts.count(client_sa, sizeof client), 1u) << "the held connection is counted under its header's client";
  // Its second is reset after the header; another client behind the same
  // balancer (the same peer address) is served.
  const int second = connect_to(port_);
  send(second, w1.data(), w1.size(), 0);
  shutdown(second, SHUT_WR);
  const Drained d = drain(second);
  close(second);
  EXPECT_TRUE(d.bytes.empty());
  EXPECT_EQ(stats().refused_client_limit.load(), 1u);
  const int other = connect_to(port_);
  const std::string w2 = wire("203.0.113.8");
  send(other, w2.data(), w2.size(), 0);
  shutdown(other, SHUT_WR);
  EXPECT_EQ(drain(other).bytes, echoed);
  close(other);
  // The held one goes on.
  send(held, w1.data() + part, w1.size() - part, 0);
  shutdown(held, SHUT_WR);
  EXPECT_EQ(drain(held).bytes, echoed);
  close(held);
  ASSERT_TRUE(wait_log(3));
  EXPECT_EQ(counts.count(client_sa, sizeof client), 0u) << "every connection gone: nothing counted";
  bool logged = false;
  for (const std::string& line : log()) logged |= has(line, "client_limit") && has(line, "203.0.113.7");
  EXPECT_TRUE(logged) << "the refusal is logged with the header's client";
}

TEST_F(WorkerTest, ConnectionsAboveTheCapAreRefusedCheaply) {
  EchoBackend backend;
  start(backend.port(), "[limits]\nconnections_per_worker = 2\n");
  const int a = connect_to(port_);
  const int b = connect_to(port_);
  std::this_thread::sleep_for(100ms);
  const int over = connect_to(port_);
  const Drained d = drain(over, 2000ms);
  EXPECT_TRUE(d.eof || d.reset) << "the third connection must be closed at once";
  EXPECT_EQ(stats().refused_over_limit.load(), 1u);
  // The two established ones are unaffected: one still passes through.
  const test::Bytes hello = test::HelloBuilder::typical("p.test").records();
  send(a, hello.data(), hello.size(), 0);
  shutdown(a, SHUT_WR);
  EXPECT_EQ(drain(a).bytes, std::string(hello.begin(), hello.end()));
  close(a);
  close(b);
  close(over);
}

TEST_F(WorkerTest, RouteAboveItsMaxConnectionsIsResetAfterTheHello) {
  EchoBackend backend;
  start(backend.port(),
        "[[route]]\nname = \"c\"\nnames = [\"c.test\"]\naction = \"passthrough\"\npool = \"echo\"\n"
        "max_connections = 1\n");
  const test::Bytes hello = test::HelloBuilder::typical("c.test").records();
  const int a = connect_to(port_);
  send(a, hello.data(), hello.size(), 0);
  std::string got;
  char buf[16384];
  for (int i = 0; i < 200 && got.size() < hello.size(); ++i) {
    pollfd p{a, POLLIN, 0};
    if (poll(&p, 1, 10) == 1) {
      const ssize_t n = recv(a, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
  }
  ASSERT_EQ(got, std::string(hello.begin(), hello.end())) << "the first connection of the route is relayed";
  // A second one for the capped route: closed after its hello, nothing sent.
  const int over = connect_to(port_);
  send(over, hello.data(), hello.size(), 0);
  const Drained d = drain(over, 2000ms);
  EXPECT_TRUE(d.eof || d.reset);
  EXPECT_TRUE(d.bytes.empty());
  EXPECT_EQ(stats().refused_route_full.load(), 1u);
  ASSERT_TRUE(wait_log(1));
  EXPECT_NE(log()[0].find("\"result\":\"route_full\""), std::string::npos) << log()[0];
  // The established one is unaffected: it still echoes, then ends cleanly.
  send(a, "ping", 4, 0);
  shutdown(a, SHUT_WR);
  EXPECT_EQ(drain(a).bytes, "ping");
  close(a);
  close(over);
  // Once it is gone the route takes a connection again.
  ASSERT_TRUE(wait_log(2));
  const int again = connect_to(port_);
  send(again, hello.data(), hello.size(), 0);
  shutdown(again, SHUT_WR);
  EXPECT_EQ(drain(again).bytes, std::string(hello.begin(), hello.end()));
  close(again);
  EXPECT_EQ(stats().refused_route_full.load(), 1u);
}

// n connections one after the other, each ended before the next: every
// third one passed through to the backend, the others refused with an alert
// (an unknown name).
void serve_sequential_connections(uint16_t port, int n) {
  for (int i = 0; i < n; ++i) {
    const test::Bytes hello = test::HelloBuilder::typical(i % 3 == 0 ? "p.test" : "nobody.test").records();
    const int fd = connect_to(port);
    ASSERT_GE(fd, 0);
    send(fd, hello.data(), hello.size(), 0);
    shutdown(fd, SHUT_WR);
    const Drained d = drain(fd);
    close(fd);
    // Each one ended by the worker: a connection it never closed fails
    // here (in 5 s), not after all of them.
    ASSERT_TRUE(d.eof) << "connection " << i << (d.reset ? " reset" : " not closed");
  }
}

TEST_F(WorkerTest, ManySequentialConnectionsReuseSlotsWithoutLeaks) {
  EchoBackend backend;
  start(backend.port());
  serve_sequential_connections(port_, 200);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(wait_log(200));
  EXPECT_EQ(stats().accepted.load(), 200u);
}

// An io_uring of 4 submission entries (8 completions) under 64 connections
// at once, each with a multishot recv, sends and a backend connect in flight:
// the submission queue is full on most loop passes and completions overflow
// the CQ ring (the kernel keeps them: IORING_FEAT_NODROP). Every connection
// must still get all its bytes back; nothing may hang or be dropped.
TEST_F(WorkerTest, ATinyRingServesManyConnectionsAtOnce) {
  EchoBackend backend;
  ring_entries_ = 4;
  start(backend.port());
  constexpr int kConns = 64;
  const test::Bytes hello = test::HelloBuilder::typical("p.test").records();
  std::string payload(hello.begin(), hello.end());
  payload += std::string(200 * 1024, 'z');
  std::vector<int> fds;
  for (int i = 0; i < kConns; ++i) {
    const int fd = connect_to(port_);
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
  }
  // Every client writes its hello and 200 KiB before any reads: the worker
  // relays all 64 at once (the echo comes back through the same worker).
  std::vector<std::thread> writers;
  for (const int fd : fds) {
    writers.emplace_back([fd, &payload] {
      size_t at = 0;
      while (at < payload.size()) {
        const ssize_t n = send(fd, payload.data() + at, payload.size() - at, MSG_NOSIGNAL);
        if (n <= 0) return;
        at += static_cast<size_t>(n);
      }
      shutdown(fd, SHUT_WR);
    });
  }
  std::vector<std::string> got(fds.size());
  std::vector<std::thread> readers;
  for (size_t i = 0; i < fds.size(); ++i) {
    readers.emplace_back([&, i] { got[i] = drain(fds[i], 20000ms).bytes; });
  }
  for (auto& t : writers) t.join();
  for (auto& t : readers) t.join();
  for (size_t i = 0; i < fds.size(); ++i) {
    EXPECT_EQ(got[i].size(), payload.size()) << "connection " << i;
    EXPECT_TRUE(got[i] == payload) << "connection " << i << ": bytes differ";
    close(fds[i]);
  }
  ASSERT_TRUE(wait_log(kConns, 10000ms));
  EXPECT_EQ(stats().accepted.load(), static_cast<uint64_t>(kConns));
  // The pressure was there, and counted (copied every 100 ms tick).
  for (int i = 0; i < 50 && stats().ring_sq_full.load() == 0; ++i) std::this_thread::sleep_for(20ms);
  EXPECT_GT(stats().ring_sq_full.load(), 0u);
}

TEST_F(WorkerTest, StopDrainsOpenConnectionsAtTheDeadline) {
  EchoBackend backend;
  start(backend.port());
  auto c = tls_connect("a.test");
  ASSERT_NE(c, nullptr);
  const auto t0 = std::chrono::steady_clock::now();
  worker_->stop();
  worker_->join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3000ms);  // drain_ms = 500
  EXPECT_EQ(stats().active.load(), 0u);
  // New connections are refused once draining: the listener is gone.
  EXPECT_LT(connect_to(port_), 0);
}

// An idle connection holds no relay buffer: once the handshake's flights and
// a request and its echo have gone through, every queue of a terminated and
// of a passthrough connection is given back (the worker's buffered-bytes
// gauge, published on its tick, falls to 0 while both stay open).
TEST_F(WorkerTest, IdleConnectionsHoldNoRelayBuffers) {
  EchoBackend backend, backend2;  // each serves one connection at a time
  start(backend.port(), "[[pool]]\nname = \"echo2\"\nbackends = [\"127.0.0.1:" + std::to_string(backend2.port()) +
                            "\"]\n[[route]]\nname = \"q\"\nnames = [\"q.test\"]\naction = \"passthrough\"\n"
                            "pool = \"echo2\"\n");
  auto c = tls_connect("a.test");
  ASSERT_NE(c, nullptr) << "log: " << (wait_log(1, 1000ms) ? log()[0] : "none");
  const std::string req(100, 'q');
  ASSERT_EQ(SSL_write(c->ssl, req.data(), static_cast<int>(req.size())), static_cast<int>(req.size()));
  std::string got;
  char buf[256];
  while (got.size() < req.size()) {
    const int n = SSL_read(c->ssl, buf, sizeof buf);
    if (n <= 0 && SSL_get_error(c->ssl, n) == SSL_ERROR_WANT_READ && errno == EINTR) continue;  // see tls_connect
    ASSERT_GT(n, 0) << "SSL error " << SSL_get_error(c->ssl, n) << " errno " << errno << "; log: "
                    << (wait_log(1, 1000ms) ? log()[0] : "none");
    got.append(buf, static_cast<size_t>(n));
  }
  EXPECT_EQ(got, req);
  // Passthrough: the hello goes to the echo backend and comes back.
  const test::Bytes hello = test::HelloBuilder::typical("q.test").records();
  const int p = connect_to(port_);
  ASSERT_GE(p, 0);
  ASSERT_EQ(send(p, hello.data(), hello.size(), 0), static_cast<ssize_t>(hello.size()));
  std::string echoed;
  const auto end = std::chrono::steady_clock::now() + 3000ms;
  while (echoed.size() < hello.size() && std::chrono::steady_clock::now() < end) {
    pollfd pf{p, POLLIN, 0};
    if (poll(&pf, 1, 50) <= 0) continue;
    const ssize_t n = recv(p, buf, sizeof buf, 0);
    ASSERT_GT(n, 0);
    echoed.append(buf, static_cast<size_t>(n));
  }
  EXPECT_EQ(echoed.size(), hello.size());
  uint64_t held = ~0ull;
  for (int i = 0; i < 30 && held != 0; ++i) {  // the gauge is published every tick (100 ms)
    std::this_thread::sleep_for(100ms);
    held = stats().buffered_bytes.load();
  }
  EXPECT_EQ(held, 0u) << "bytes of buffers kept by idle connections";
  EXPECT_EQ(stats().active.load(), 2u);
  close(p);
}

// Open descriptors of this process (the worker runs in it).
size_t open_fds() {
  size_t n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d) != nullptr) ++n;
    closedir(d);
  }
  return n;
}

// Open descriptors once they are down to `target`, or after 3 s: the last
// closes come after the client has seen its end of stream (the echo
// backend's, the worker's), and the pipe pool closes after a quiet second.
size_t open_fds_settled(size_t target) {
  size_t fds = open_fds();
  for (int i = 0; i < 150 && fds > target; ++i) {
    std::this_thread::sleep_for(20ms);
    fds = open_fds();
  }
  return fds;
}

// One passthrough connection: the hello out and back, then 100 bytes out
// and back (so both directions move by splice), then the client's FIN and
// the echo backend's.
// Up to n bytes from fd, whatever came within 3 s.
std::string read_n(int fd, size_t n) {
  std::string got;
  char buf[4096];
  const auto end = std::chrono::steady_clock::now() + 3000ms;
  while (got.size() < n && std::chrono::steady_clock::now() < end) {
    pollfd pf{fd, POLLIN, 0};
    if (poll(&pf, 1, 50) <= 0) continue;
    const ssize_t r = recv(fd, buf, std::min(sizeof buf, n - got.size()), 0);
    if (r <= 0) break;
    got.append(buf, static_cast<size_t>(r));
  }
  return got;
}

void passthrough_round_trip(uint16_t port) {
  const test::Bytes hello = test::HelloBuilder::typical("p.test").records();
  const int fd = connect_to(port);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(send(fd, hello.data(), hello.size(), 0), static_cast<ssize_t>(hello.size()));
  ASSERT_EQ(read_n(fd, hello.size()), std::string(hello.begin(), hello.end()));
  const std::string req(100, 'r');
  ASSERT_EQ(send(fd, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
  ASSERT_EQ(read_n(fd, req.size()), req);
  shutdown(fd, SHUT_WR);
  const Drained d = drain(fd);
  close(fd);
  EXPECT_TRUE(d.eof);
  EXPECT_TRUE(d.bytes.empty());
}

// n of them one after the other, stopping at the first fatal failure.
void passthrough_round_trips(uint16_t port, uint64_t n) {
  for (uint64_t i = 0; i < n && !::testing::Test::HasFatalFailure(); ++i) passthrough_round_trip(port);
}

// Issue 8: a passthrough connection's two pipes go back to a per-worker pool
// when it ends (drained), and the next connection takes them: N connections
// one after the other create two pipe pairs, not 2 x N (a pipe2() and two
// close() saved per direction). The pool is not held by an idle worker: a
// tick with no connection taking or giving one back closes it, and the
// process's descriptors return to where they were.
TEST_F(WorkerTest, PassthroughPipesAreReusedAndTheIdlePoolIsClosed) {
  EchoBackend backend;
  splice_after_ = 0;  // every connection splices (else its 100 bytes are copied)
  start(backend.port());
  const size_t fds_before = open_fds();
  constexpr uint64_t kConns = 20;
  passthrough_round_trips(port_, kConns);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(wait_log(kConns));
  EXPECT_EQ(stats().splice_relays.load(), kConns);
  EXPECT_EQ(stats().splice_fallbacks.load(), 0u);
  // Two directions per connection, each a pipe pair taken from the pool or
  // made; made only when the pool was empty (the first connection, and
  // after a pool closed for a tick without use: a slow machine).
  EXPECT_EQ(stats().pipes_created.load() + stats().pipes_reused.load(), 2 * kConns);
  EXPECT_LE(stats().pipes_created.load(), 4u) << "pipes made anew instead of reused";
  EXPECT_GE(stats().pipes_reused.load(), 2 * kConns - 4);
  EXPECT_LE(open_fds_settled(fds_before), fds_before)
      << "descriptors still held after the worker went idle (pooled pipes)";
  EXPECT_EQ(stats().active.load(), 0u);
}

// A connection reset by its backend mid-stream may end with bytes in a pipe
// (such a pipe is closed, not pooled: only pipes whose every byte was
// spliced out go back). The connections after it take pooled pipes and
// must get exactly their own bytes back.
TEST_F(WorkerTest, ConnectionsAfterABackendResetGetOnlyTheirOwnBytes) {
  EchoBackend resetting(1000), backend;
  splice_after_ = 0;  // pipes from the first byte
  start(backend.port(), "[[pool]]\nname = \"rst\"\nbackends = [\"127.0.0.1:" + std::to_string(resetting.port()) +
                            "\"]\n[[route]]\nname = \"q\"\nnames = [\"q.test\"]\naction = \"passthrough\"\n"
                            "pool = \"rst\"\n");
  const test::Bytes hello = test::HelloBuilder::typical("q.test").records();
  const int fd = connect_to(port_);
  ASSERT_GE(fd, 0);
  std::string wire(hello.begin(), hello.end());
  wire += std::string(256 * 1024, 'z');
  send(fd, wire.data(), wire.size(), MSG_NOSIGNAL);
  const Drained d = drain(fd);
  close(fd);
  EXPECT_TRUE(d.reset || d.eof);
  passthrough_round_trips(port_, 5);
  if (HasFatalFailure()) return;
  EXPECT_GE(stats().pipes_reused.load(), 1u);
}

// Accepted sockets take TCP_NODELAY from the listener (set once there, not
// per connection), and the backend socket gets it through the ring where
// the kernel can (else directly): both ends of a relayed connection in the
// worker must have it, as when each was set by its own setsockopt().
void expect_both_ends_have_nodelay(uint16_t port, uint16_t backend_port) {
  const test::Bytes hello = test::HelloBuilder::typical("p.test").records();
  const int fd = connect_to(port);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(send(fd, hello.data(), hello.size(), 0), static_cast<ssize_t>(hello.size()));
  std::string got;
  char buf[4096];
  const auto end = std::chrono::steady_clock::now() + 3000ms;
  while (got.size() < hello.size() && std::chrono::steady_clock::now() < end) {
    pollfd pf{fd, POLLIN, 0};
    if (poll(&pf, 1, 50) <= 0) continue;
    const ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r <= 0) break;
    got.append(buf, static_cast<size_t>(r));
  }
  ASSERT_EQ(got.size(), hello.size());
  sockaddr_in mine{};
  socklen_t len = sizeof mine;
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&mine), &len), 0);
  // The worker's two sockets of this connection, found among this process's
  // descriptors: the one whose peer is our socket, and the one whose peer
  // is the backend's listener.
  int client_side = -1, backend_side = -1;
  for (int f = 0; f < 4096; ++f) {
    sockaddr_in peer{};
    len = sizeof peer;
    if (f == fd || getpeername(f, reinterpret_cast<sockaddr*>(&peer), &len) != 0 || peer.sin_family != AF_INET) {
      continue;
    }
    sockaddr_in local{};
    len = sizeof local;
    if (getsockname(f, reinterpret_cast<sockaddr*>(&local), &len) != 0) continue;
    if (peer.sin_port == mine.sin_port && local.sin_port == htons(port)) client_side = f;
    if (peer.sin_port == htons(backend_port)) backend_side = f;
  }
  ASSERT_GE(client_side, 0) << "the worker's client socket was not found";
  ASSERT_GE(backend_side, 0) << "the worker's backend socket was not found";
  for (int f : {client_side, backend_side}) {
    int v = 0;
    len = sizeof v;
    ASSERT_EQ(getsockopt(f, IPPROTO_TCP, TCP_NODELAY, &v, &len), 0);
    EXPECT_NE(v, 0) << (f == client_side ? "client" : "backend") << " socket without TCP_NODELAY";
  }
  shutdown(fd, SHUT_WR);
  drain(fd);
  close(fd);
}

TEST_F(WorkerTest, ClientAndBackendSocketsHaveNoDelay) {
  EchoBackend backend;
  start(backend.port());
  expect_both_ends_have_nodelay(port_, backend.port());
}

// Issue 8: a passthrough direction is copied through the ring (recv/send,
// no system call) until it has carried WorkerOptions::splice_after bytes:
// a handshake and small exchanges make no splice and take no pipe.
TEST_F(WorkerTest, PassthroughCopiesSmallExchangesThroughTheRingWithNoPipe) {
  EchoBackend backend;
  start(backend.port());
  const size_t fds_before = open_fds();
  constexpr uint64_t kConns = 10;
  passthrough_round_trips(port_, kConns);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(wait_log(kConns));
  for (const std::string& line : log()) EXPECT_TRUE(has(line, R"("result":"ok")")) << line;
  EXPECT_EQ(stats().splice_relays.load(), 0u);
  EXPECT_EQ(stats().pipes_created.load() + stats().pipes_reused.load(), 0u);
  EXPECT_LE(open_fds_settled(fds_before), fds_before);
}

// Sends the hello and then `bulk` bytes through a passthrough connection to
// the echo backend while reading the echo, then half-closes: every byte comes
// back whole and in order, and the worker passes the end of stream on.
void expect_passthrough_bulk_echo(uint16_t port, size_t bulk) {
  const test::Bytes hello = test::HelloBuilder::typical("p.test").records();
  std::string wire(hello.begin(), hello.end());
  for (size_t i = 0; i < bulk; ++i) wire.push_back(static_cast<char>(i * 7 + i / 4096));
  const int fd = connect_to(port);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
  std::string back;
  size_t sent = 0;
  std::vector<char> buf(256 * 1024);
  const auto end = std::chrono::steady_clock::now() + 10s;
  while (back.size() < wire.size() && std::chrono::steady_clock::now() < end) {
    pollfd pf{fd, static_cast<short>(POLLIN | (sent < wire.size() ? POLLOUT : 0)), 0};
    if (poll(&pf, 1, 50) <= 0) continue;
    if ((pf.revents & POLLOUT) != 0 && sent < wire.size()) {
      const ssize_t w = send(fd, wire.data() + sent, std::min<size_t>(wire.size() - sent, 65536), MSG_NOSIGNAL);
      if (w > 0) sent += static_cast<size_t>(w);
    }
    if ((pf.revents & POLLIN) != 0) {
      const ssize_t r = recv(fd, buf.data(), buf.size(), 0);
      if (r <= 0) break;
      back.append(buf.data(), static_cast<size_t>(r));
    }
  }
  shutdown(fd, SHUT_WR);
  ASSERT_EQ(back.size(), wire.size());
  EXPECT_TRUE(back == wire) << "bytes changed or reordered";
  const Drained d = drain(fd);
  close(fd);
  EXPECT_TRUE(d.eof);
}

// Past its first splice_after bytes a direction moves by splice: the
// multishot receive is taken back mid-stream and what it had read goes out
// first, so the bytes arrive whole and in order across the switch.
TEST_F(WorkerTest, PassthroughSplicesOnceADirectionHasCarriedItsFirstBytes) {
  EchoBackend backend;
  start(backend.port());
  expect_passthrough_bulk_echo(port_, 2 * 1024 * 1024);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(wait_log(1));
  EXPECT_TRUE(has(log()[0], R"("result":"ok")")) << log()[0];
  EXPECT_EQ(stats().splice_relays.load(), 1u);
  EXPECT_EQ(stats().pipes_created.load() + stats().pipes_reused.load(), 2u) << "both directions spliced";
}

// A splice that half fills its pipe says bulk: the pipe grows to
// splice_pipe_max, so that each pair of splices moves up to that much, and
// the bytes stay whole. Growth is bounded per worker (splice_grow_budget)
// and given back when the pipe returns to the pool (shrunk): with a budget
// of one pipe's growth, each of two connections in turn grows one pipe.
TEST_F(WorkerTest, ABulkDirectionsPipeGrowsWithinTheBudgetAndGivesItBack) {
  EchoBackend backend;
  splice_after_ = 0;
  splice_grow_budget_ = WorkerOptions{}.splice_pipe_max - 64 * 1024;
  start(backend.port());
  expect_passthrough_bulk_echo(port_, 8 * 1024 * 1024);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(wait_log(1));
  EXPECT_EQ(stats().pipes_grown.load(), 1u);
  expect_passthrough_bulk_echo(port_, 8 * 1024 * 1024);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(wait_log(2));
  for (const std::string& line : log()) EXPECT_TRUE(has(line, R"("result":"ok")")) << line;
  EXPECT_EQ(stats().pipes_created.load(), 2u);
  EXPECT_EQ(stats().pipes_reused.load(), 2u);
  EXPECT_EQ(stats().pipes_grown.load(), 2u) << "the first connection's growth was not given back";
}

// No budget: bulk moves through pipes as the kernel made them.
TEST_F(WorkerTest, WithoutAGrowthBudgetPipesStayAsMade) {
  EchoBackend backend;
  splice_after_ = 0;
  splice_grow_budget_ = 0;
  start(backend.port());
  expect_passthrough_bulk_echo(port_, 4 * 1024 * 1024);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(wait_log(1));
  EXPECT_EQ(stats().pipes_grown.load(), 0u);
  EXPECT_GE(stats().pipes_grow_refused.load(), 1u);
}

// splice_pipe_max at the kernel's 64 KiB: pipes are never grown.
TEST_F(WorkerTest, PipesStayAsMadeWhenTheirMaxIsTheDefault) {
  EchoBackend backend;
  splice_after_ = 0;
  splice_pipe_max_ = 64 * 1024;
  start(backend.port());
  expect_passthrough_bulk_echo(port_, 4 * 1024 * 1024);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(wait_log(1));
  EXPECT_TRUE(has(log()[0], R"("result":"ok")")) << log()[0];
  EXPECT_EQ(stats().pipes_grown.load(), 0u);
  EXPECT_EQ(stats().pipes_created.load(), 2u);
}

// A plaintext backend that never ends its side first: it reads each
// connection to its end of stream and holds it open until destroyed; or,
// `fin_first`, half-closes each connection as it accepts it.
class HoldBackend {
 public:
  explicit HoldBackend(bool fin_first = false) : fin_first_(fin_first) {
    fd_ = listen_loopback(16, port_);
    thread_ = std::thread([this] { loop(); });
  }
  ~HoldBackend() {
    stop_ = true;
    thread_.join();
    for (int c : conns_) close(c);
    close(fd_);
  }
  uint16_t port() const { return port_; }
  size_t eofs() const { return eofs_.load(); }
  std::string bytes() {
    std::lock_guard lock(mu_);
    return bytes_;
  }
  bool wait_eofs(size_t n, std::chrono::milliseconds limit = 3000ms) const {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (eofs_.load() < n && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(5ms);
    return eofs_.load() >= n;
  }

 private:
  void loop() {
    std::vector<pollfd> open;  // connections still read
    while (!stop_) {
      std::vector<pollfd> p{{fd_, POLLIN, 0}};
      p.insert(p.end(), open.begin(), open.end());
      if (poll(p.data(), p.size(), 20) <= 0) continue;
      if (p[0].revents != 0) {
        const int c = accept(fd_, nullptr, nullptr);
        if (c >= 0) {
          conns_.push_back(c);
          if (fin_first_) shutdown(c, SHUT_WR);
          open.push_back({c, POLLIN, 0});
        }
      }
      for (size_t i = 1; i < p.size(); ++i) {
        if (p[i].revents == 0) continue;
        char buf[65536];
        const ssize_t n = recv(p[i].fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
          std::lock_guard lock(mu_);
          bytes_.append(buf, static_cast<size_t>(n));
          continue;
        }
        if (n < 0 && errno == EAGAIN) continue;
        ++eofs_;  // its end of stream (or a reset): read no more, keep it open
        std::erase_if(open, [&](const pollfd& q) { return q.fd == p[i].fd; });
      }
    }
  }
  int fd_;
  uint16_t port_;
  bool fin_first_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> eofs_{0};
  std::vector<int> conns_;
  std::mutex mu_;
  std::string bytes_;
  std::thread thread_;
};

// Connects, sends a passthrough hello for p.test and returns the socket.
int passthrough_client(uint16_t port) {
  const test::Bytes hello = test::HelloBuilder::typical("p.test").records();
  const int fd = connect_to(port);
  if (fd < 0) return fd;
  if (send(fd, hello.data(), hello.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(hello.size())) {
    close(fd);
    return -1;
  }
  return fd;
}

// half_closed_ms = 0: a passthrough client sends its hello and `more`, then
// ends its side; the backend sees the end, and the client gets its own.
void expect_client_end_ends_the_connection(uint16_t port, const HoldBackend& backend, const std::string& more) {
  const int fd = passthrough_client(port);
  ASSERT_GE(fd, 0);
  if (!more.empty()) {
    ASSERT_EQ(send(fd, more.data(), more.size(), MSG_NOSIGNAL), static_cast<ssize_t>(more.size()));
  }
  shutdown(fd, SHUT_WR);
  EXPECT_TRUE(backend.wait_eofs(1));
  const Drained d = drain(fd, 3000ms);
  EXPECT_TRUE(d.eof) << "the client's end of stream did not end the connection";
  close(fd);
}

// True when the socket shows nothing (no byte, no end) for `quiet`.
bool stays_open(int fd, std::chrono::milliseconds quiet) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, static_cast<int>(quiet.count())) == 0;
}

// By default a direction that ended leaves the other open: the client's
// end of stream reaches the backend, which may still answer.
TEST_F(WorkerTest, AClientsEndOfStreamLeavesTheBackendsDirectionOpenByDefault) {
  HoldBackend backend;
  start(backend.port());
  const int fd = passthrough_client(port_);
  ASSERT_GE(fd, 0);
  shutdown(fd, SHUT_WR);
  ASSERT_TRUE(backend.wait_eofs(1));
  EXPECT_TRUE(stays_open(fd, 500ms));
  EXPECT_EQ(stats().active.load(), 1u);
  close(fd);
}

// [timeouts] half_closed_ms = 0: the first end of stream ends the
// connection (nginx's proxy_half_close off), whichever side sends it; a
// TLS client that sent its close_notify gets ours.
TEST_F(WorkerTest, AtHalfClosedZeroTheFirstEndOfStreamEndsTheConnection) {
  HoldBackend backend;
  start(backend.port(), "", "hello_ms = 1000\nhalf_closed_ms = 0\n");
  expect_client_end_ends_the_connection(port_, backend, "");
  if (HasFatalFailure()) return;
  ASSERT_TRUE(wait_log(1));
  expect_ok_line(log()[0], "p.test", "passthrough");
  // A terminated connection: the client's close_notify, then ours.
  auto c = tls_connect("a.test");
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(ssl_write(c->ssl, std::string("ping")), 4);
  SSL_shutdown(c->ssl);
  shutdown(c->fd, SHUT_WR);
  char buf[64];
  EXPECT_EQ(ssl_read(c->ssl, buf, sizeof buf), 0);
  EXPECT_EQ(SSL_get_error(c->ssl, 0), SSL_ERROR_ZERO_RETURN) << "no close_notify from the worker";
  EXPECT_TRUE(backend.wait_eofs(2));
  ASSERT_TRUE(wait_log(2));
  expect_ok_line(log()[1], "a.test", "terminate");
  EXPECT_TRUE(has(backend.bytes(), "ping"));
}

// The backend's end of stream first, at half_closed_ms = 0: the client,
// which never ended its side, gets its end at once, and the backend ours.
TEST_F(WorkerTest, AtHalfClosedZeroTheBackendsEndOfStreamEndsTheClientsDirection) {
  HoldBackend backend(true);
  start(backend.port(), "", "hello_ms = 1000\nhalf_closed_ms = 0\n");
  const int fd = passthrough_client(port_);
  ASSERT_GE(fd, 0);
  const Drained d = drain(fd, 3000ms);
  EXPECT_TRUE(d.eof);
  EXPECT_TRUE(backend.wait_eofs(1)) << "the client's direction was not ended";
  close(fd);
  ASSERT_TRUE(wait_log(1));
  expect_ok_line(log()[0], "p.test", "passthrough");
  EXPECT_EQ(stats().half_closed_timeouts.load(), 0u);
}

// The same where both directions move by splice: the backend's direction,
// waiting on a poll with an empty pipe, is ended and the connection closes.
TEST_F(WorkerTest, AtHalfClosedZeroSplicedDirectionsEndToo) {
  HoldBackend backend;
  splice_after_ = 0;
  start(backend.port(), "", "hello_ms = 1000\nhalf_closed_ms = 0\n");
  const std::string more(100 * 1024, 'm');
  expect_client_end_ends_the_connection(port_, backend, more);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(wait_log(1));
  expect_ok_line(log()[0], "p.test", "passthrough");
  EXPECT_GE(stats().splice_relays.load(), 1u);
  EXPECT_EQ(backend.bytes().size(), test::HelloBuilder::typical("p.test").records().size() + more.size());
}

// A reload that sets half_closed_ms to 0 finds a connection half-closed
// (its backend holds its direction open): it is ended as a new one would
// be, with the client's end of stream, not reset at a timeout of 0.
TEST_F(WorkerTest, AReloadToHalfClosedZeroEndsHalfClosedConnectionsGracefully) {
  HoldBackend backend;
  start(backend.port(), "", "hello_ms = 1000\nhalf_closed_ms = 60000\n");
  const int fd = passthrough_client(port_);
  ASSERT_GE(fd, 0);
  shutdown(fd, SHUT_WR);
  ASSERT_TRUE(backend.wait_eofs(1));
  EXPECT_TRUE(stays_open(fd, 300ms));
  auto next = std::make_shared<Runtime>(*slot_.get());
  next->generation += 1;
  next->timeouts.half_closed_ms = 0;
  slot_.publish(next);
  worker_->wake();
  const Drained d = drain(fd, 3000ms);
  EXPECT_TRUE(d.eof) << (d.reset ? "reset" : "still open");
  close(fd);
  ASSERT_TRUE(wait_log(1));
  expect_ok_line(log()[0], "p.test", "passthrough");
  EXPECT_EQ(stats().half_closed_timeouts.load(), 0u);
}

// half_closed_ms > 0: a connection with one direction ended is reset after
// that much quiet; one with both directions open keeps the idle timeout.
TEST_F(WorkerTest, AHalfClosedConnectionQuietForHalfClosedMsIsReset) {
  HoldBackend backend;
  start(backend.port(), "", "hello_ms = 1000\nhalf_closed_ms = 300\n");
  const int open_fd = passthrough_client(port_);
  ASSERT_GE(open_fd, 0);
  const int half_fd = passthrough_client(port_);
  ASSERT_GE(half_fd, 0);
  shutdown(half_fd, SHUT_WR);
  ASSERT_TRUE(backend.wait_eofs(1));
  const Drained d = drain(half_fd, 3000ms);
  EXPECT_TRUE(d.eof || d.reset) << "still open after half_closed_ms";
  close(half_fd);
  ASSERT_TRUE(wait_log(1));
  EXPECT_TRUE(has(log()[0], R"("result":"half_closed_timeout")")) << log()[0];
  EXPECT_EQ(stats().half_closed_timeouts.load(), 1u);
  EXPECT_TRUE(stays_open(open_fd, 300ms)) << "a connection open both ways was ended";
  EXPECT_EQ(stats().active.load(), 1u);
  close(open_fd);
}

// Where the kernel cannot close or set options through the ring (before
// Linux 5.17 / 6.7), the worker makes the calls itself: the same relays,
// options and descriptors. ring_calls = false takes that way here.
TEST_F(WorkerTest, WithoutRingCallsClosesAndOptionsAreDirectAndNothingLeaks) {
  EchoBackend backend;
  ring_calls_ = false;
  splice_after_ = 0;  // the splice path's pipes too
  start(backend.port());
  const size_t fds_before = open_fds();
  passthrough_round_trips(port_, 5);
  if (HasFatalFailure()) return;
  for (int i = 0; i < 3; ++i) {
    auto c = tls_connect("a.test");
    ASSERT_NE(c, nullptr);
    ASSERT_EQ(SSL_write(c->ssl, "ping", 4), 4);
    char buf[16];
    ASSERT_EQ(SSL_read(c->ssl, buf, sizeof buf), 4);
    EXPECT_EQ(std::string(buf, 4), "ping");
    SSL_shutdown(c->ssl);
    EXPECT_LE(SSL_read(c->ssl, buf, sizeof buf), 0);
  }
  expect_both_ends_have_nodelay(port_, backend.port());
  ASSERT_TRUE(wait_log(9));
  for (const std::string& line : log()) EXPECT_TRUE(has(line, R"("result":"ok")")) << line;
  EXPECT_LE(open_fds_settled(fds_before), fds_before) << "descriptors left open with direct closes";
}

// The paths above, each with ring_calls = false: closes (and the backend's
// TCP_NODELAY) as the worker's own system calls.
TEST_F(WorkerTest, WithoutRingCallsTerminateRelaysBothWaysAndClosesCleanly) {
  EchoBackend backend;
  ring_calls_ = false;
  start(backend.port());
  const size_t fds_before = open_fds();
  auto c = tls_connect("a.test");
  ASSERT_NE(c, nullptr);
  expect_tls_echo_then_clean_close(c->ssl);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(wait_log(1));
  expect_ok_line(log()[0], "a.test", "terminate");
  c.reset();
  EXPECT_LE(open_fds_settled(fds_before), fds_before) << "the worker's sockets left open";
}

TEST_F(WorkerTest, WithoutRingCallsPassthroughForwardsTheHelloBytesUntouched) {
  EchoBackend backend;
  ring_calls_ = false;
  splice_after_ = 0;
  start(backend.port());
  expect_passthrough_hello_untouched(port_, backend);
  if (HasFatalFailure()) return;
  EXPECT_EQ(stats().splice_relays.load(), 1u);
  ASSERT_TRUE(wait_log(1));
  expect_ok_line(log()[0], "p.test", "passthrough");
}

// Every descriptor a connection took (client and backend sockets; the
// refused ones' after their alert) is closed by a direct close(), with slots
// and descriptor numbers reused from one connection to the next.
TEST_F(WorkerTest, WithoutRingCallsManySequentialConnectionsLeaveNoDescriptorOpen) {
  EchoBackend backend;
  ring_calls_ = false;
  start(backend.port());
  const size_t fds_before = open_fds();
  serve_sequential_connections(port_, 200);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(wait_log(200));
  EXPECT_EQ(stats().accepted.load(), 200u);
  const auto lines = log();
  const auto ended = [&](const char* result) {
    return std::count_if(lines.begin(), lines.end(),
                         [&](const std::string& l) { return has(l, result); });
  };
  EXPECT_EQ(ended(R"("result":"ok")"), 67);  // every third: passed through
  EXPECT_EQ(ended(R"("result":"no_route")"), 133);
  EXPECT_LE(open_fds_settled(fds_before), fds_before) << "descriptors left open with direct closes";
}

// A backend that answers only once the client's end of stream has reached
// it: it reads to EOF, then sends "got:" and what it read, and closes. A
// half-close never passed on leaves it reading until its timeout; it then
// closes without a word.
class ReplyAtEofBackend {
 public:
  ReplyAtEofBackend() {
    fd_ = listen_loopback(16, port_);
    thread_ = std::thread([this] {
      while (true) {
        const int c = accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        timeval tv{3, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        std::string got;
        char buf[4096];
        ssize_t n;
        while ((n = recv(c, buf, sizeof buf, 0)) != 0) {
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) break;
          got.append(buf, static_cast<size_t>(n));
        }
        if (n == 0) {
          ++eofs_;
          const std::string reply = "got:" + got;
          send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
        }
        close(c);
      }
    });
  }
  ~ReplyAtEofBackend() {
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
    close(fd_);
  }
  uint16_t port() const { return port_; }
  size_t eofs() const { return eofs_.load(); }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<size_t> eofs_{0};
  std::thread thread_;
};

// A client's half-close, on a terminated connection (its close_notify) and
// a passthrough one (its FIN), reaches the backend as a FIN (the worker's
// shutdown(SHUT_WR)) while the other direction stays open: the backend's
// answer, sent only after that, still reaches the client, followed by the
// end of stream.
void expect_half_closes_reach_the_backend(SSL* ssl, uint16_t port,
                                          const ReplyAtEofBackend& backend) {
  const std::string req = "request before the half-close";
  ASSERT_EQ(ssl_write(ssl, req), static_cast<int>(req.size()));
  ASSERT_EQ(SSL_shutdown(ssl), 0) << "close_notify sent, the worker's not yet received";
  std::string reply;
  char buf[4096];
  int n;
  while ((n = ssl_read(ssl, buf, sizeof buf)) > 0) reply.append(buf, static_cast<size_t>(n));
  EXPECT_EQ(SSL_get_error(ssl, n), SSL_ERROR_ZERO_RETURN)
      << "the reply did not end with a close_notify";
  EXPECT_EQ(reply, "got:" + req);
  EXPECT_EQ(backend.eofs(), 1u);

  const test::Bytes hello = test::HelloBuilder::typical("p.test").records();
  const std::string wire = std::string(hello.begin(), hello.end()) + req;
  const int fd = connect_to(port);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(send(fd, wire.data(), wire.size(), 0), static_cast<ssize_t>(wire.size()));
  shutdown(fd, SHUT_WR);
  const Drained d = drain(fd);
  close(fd);
  EXPECT_EQ(d.bytes, "got:" + wire);
  EXPECT_TRUE(d.eof);
  EXPECT_EQ(backend.eofs(), 2u);
}

TEST_F(WorkerTest, ClientHalfCloseReachesTheBackendAndItsLaterReplyStillArrives) {
  ReplyAtEofBackend backend;
  start(backend.port());
  auto c = tls_connect("a.test");
  ASSERT_NE(c, nullptr);
  expect_half_closes_reach_the_backend(c->ssl, port_, backend);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(wait_log(2));
  for (const std::string& line : log()) EXPECT_TRUE(has(line, R"("result":"ok")")) << line;
}

// The same with the passthrough bytes spliced (the half-close passed on by
// the splice path), and the worker's closes direct.
TEST_F(WorkerTest, WithoutRingCallsClientHalfCloseReachesTheBackendAndItsLaterReplyStillArrives) {
  ReplyAtEofBackend backend;
  ring_calls_ = false;
  splice_after_ = 0;
  start(backend.port());
  auto c = tls_connect("a.test");
  ASSERT_NE(c, nullptr);
  expect_half_closes_reach_the_backend(c->ssl, port_, backend);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(wait_log(2));
  for (const std::string& line : log()) EXPECT_TRUE(has(line, R"("result":"ok")")) << line;
  EXPECT_EQ(stats().splice_relays.load(), 1u);
}

// A backend that sends `bytes` of a pattern as soon as a connection comes,
// then its FIN, then reads until the proxy's FIN.
class BlastBackend {
 public:
  explicit BlastBackend(size_t bytes)
      : all_(pattern(bytes)), server_([this](int c) {
          timeval tv{5, 0};
          setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
          size_t at = 0;
          while (at < all_.size()) {
            const ssize_t n = send(c, all_.data() + at, all_.size() - at, MSG_NOSIGNAL);
            if (n <= 0) break;
            at += static_cast<size_t>(n);
          }
          shutdown(c, SHUT_WR);
          char buf[4096];
          while (recv(c, buf, sizeof buf, 0) > 0) {
          }
        }) {}
  uint16_t port() const { return server_.port(); }
  static std::string pattern(size_t n) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 131 + i / 4093);
    return s;
  }

 private:
  const std::string all_;
  LoopbackServer server_;
};

// Issue 8: a send the socket takes whole wakes no wait (quiet: no
// completion), and one that finds the socket full says so and the rest
// waits for room. A client that reads nothing for a while fills its socket:
// the backend's 8 MiB then still arrive whole and in order, terminated (our
// record layer seals them) and passed through (copied through the ring).
TEST_F(WorkerTest, SendsGoQuietlyAndAFullSocketWaitsForRoomLosingNothing) {
  constexpr size_t kBytes = 8 << 20;
  BlastBackend backend(kBytes);
  splice_after_ = uint64_t{1} << 40;  // passthrough copies: its sends are the ring's
  start(backend.port());
  const std::string want = BlastBackend::pattern(kBytes);
  {
    auto c = tls_connect("a.test");
    ASSERT_NE(c, nullptr);
    std::this_thread::sleep_for(300ms);  // nothing read: the worker's sends fill the socket
    std::string got;
    std::vector<char> buf(65536);
    while (got.size() < kBytes) {
      const int n = ssl_read(c->ssl, buf.data(), static_cast<int>(buf.size()));
      ASSERT_GT(n, 0) << "after " << got.size() << " bytes";
      got.append(buf.data(), static_cast<size_t>(n));
    }
    EXPECT_TRUE(got == want) << "terminated bytes differ";
    EXPECT_LE(ssl_read(c->ssl, buf.data(), static_cast<int>(buf.size())), 0) << "more than was sent";
    SSL_shutdown(c->ssl);
  }
  const uint64_t waited_terminate = stats().sends_waited.load();
  EXPECT_GT(waited_terminate, 0u) << "the client's socket never filled";
  {
    const test::Bytes hello = test::HelloBuilder::typical("p.test").records();
    const int fd = connect_to(port_);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(send(fd, hello.data(), hello.size(), MSG_NOSIGNAL), static_cast<ssize_t>(hello.size()));
    std::this_thread::sleep_for(300ms);
    std::string got;
    std::vector<char> buf(65536);
    while (got.size() < kBytes + 1) {
      const ssize_t n = recv(fd, buf.data(), buf.size(), 0);
      if (n <= 0) break;
      got.append(buf.data(), static_cast<size_t>(n));
    }
    close(fd);
    EXPECT_TRUE(got == want) << "passed-through bytes differ (" << got.size() << " of " << kBytes << ")";
  }
  ASSERT_TRUE(wait_log(2));
  for (const std::string& line : log()) EXPECT_TRUE(has(line, R"("result":"ok")")) << line;
  EXPECT_GT(stats().sends_waited.load(), waited_terminate) << "the passthrough client's socket never filled";
  EXPECT_GT(stats().sends_quiet.load(), 0u);
  EXPECT_EQ(stats().splice_relays.load(), 0u);
}

// ring_calls = false: no send is quiet; every send's completion is waited
// for, as on a kernel that cannot run them within their submission.
TEST_F(WorkerTest, WithoutRingCallsNoSendIsQuiet) {
  EchoBackend backend;
  ring_calls_ = false;
  start(backend.port());
  auto c = tls_connect("a.test");
  ASSERT_NE(c, nullptr);
  expect_tls_echo_then_clean_close(c->ssl);
  ASSERT_TRUE(wait_log(1));
  EXPECT_EQ(stats().sends_quiet.load(), 0u);
  EXPECT_EQ(stats().sends_waited.load(), 0u);
  EXPECT_GT(stats().ring_waits.load(), 0u);
  EXPECT_EQ(stats().sockets_stocked.load(), 0u);
  EXPECT_EQ(stats().recvs_poll_first.load(), 0u);
}

// Request/response traffic: each recv empties its socket, so the next one
// on that side waits for bytes (IORING_RECVSEND_POLL_FIRST) instead of
// trying a receive that would find nothing first; every byte still comes
// through, in order. (That a recv leaving bytes behind is followed by one
// that tries at once rests on the kernel's IORING_CQE_F_SOCK_NONEMPTY:
// Ring.ARecvThatWaitsFirstTakesBytesThatComeLaterOrWereAlreadyThere.)
TEST_F(WorkerTest, RecvsOnASocketTheLastOneEmptiedWaitForBytesFirst) {
  EchoBackend backend;
  splice_after_ = uint64_t{1} << 40;  // copied through the ring: the recvs are the worker's
  start(backend.port());
  const test::Bytes hello = test::HelloBuilder::typical("p.test").records();
  const int fd = connect_to(port_);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(send(fd, hello.data(), hello.size(), 0), static_cast<ssize_t>(hello.size()));
  ASSERT_EQ(read_n(fd, hello.size()), std::string(hello.begin(), hello.end()));
  const uint64_t before = stats().recvs_poll_first.load();
  constexpr int kRounds = 20;
  for (int i = 0; i < kRounds; ++i) {
    const std::string req(100, static_cast<char>('a' + i));
    ASSERT_EQ(send(fd, req.data(), req.size(), 0), 100);
    ASSERT_EQ(read_n(fd, req.size()), req) << "round " << i;
  }
  // Each round: the client's recv re-armed after its request, the
  // backend's after its echo.
  EXPECT_GE(stats().recvs_poll_first.load() - before, uint64_t{2} * kRounds);
  shutdown(fd, SHUT_WR);
  const Drained d = drain(fd);
  close(fd);
  EXPECT_TRUE(d.eof);
  ASSERT_TRUE(wait_log(1));
  expect_ok_line(log()[0], "p.test", "passthrough");
}

// Hellos that come together: a pass of completions that has run 50 µs
// submits what it queued (each handshake's flight) before handling the next
// hello, instead of holding every flight until all of the batch's handshakes
// are computed. The six hellos go out in one io_uring submission (back to
// back, within one system call), so the worker finds several ready at once
// whatever the scheduling; every handshake completes.
TEST_F(WorkerTest, HellosThatComeTogetherGetTheirFlightsWithoutWaitingForTheRest) {
  EchoBackend backend;
  start(backend.port());
  constexpr unsigned kClients = 6;
  std::vector<std::unique_ptr<fixture::MemClient>> clients;
  std::vector<std::string> hellos;
  for (unsigned i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<fixture::MemClient>(ca_pem_, TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256"));
    ASSERT_TRUE(clients.back()->open(port_)) << clients.back()->error();
    hellos.push_back(clients.back()->take_written());
    ASSERT_FALSE(hellos.back().empty());
  }
  std::this_thread::sleep_for(100ms);  // accepted, their recvs armed
  const uint64_t before = stats().submits_early.load();
  io_uring r;
  ASSERT_EQ(io_uring_queue_init(kClients, &r, 0), 0);
  for (unsigned i = 0; i < kClients; ++i) {
    io_uring_prep_send(io_uring_get_sqe(&r), clients[i]->fd(), hellos[i].data(), hellos[i].size(), MSG_NOSIGNAL);
  }
  ASSERT_EQ(io_uring_submit_and_wait(&r, kClients), static_cast<int>(kClients));
  for (unsigned i = 0; i < kClients; ++i) {
    io_uring_cqe* c = nullptr;
    ASSERT_EQ(io_uring_wait_cqe(&r, &c), 0);
    EXPECT_GT(c->res, 0);
    io_uring_cqe_seen(&r, c);
  }
  io_uring_queue_exit(&r);
  for (auto& c : clients) {
    EXPECT_TRUE(c->finish_handshake()) << c->error();
    EXPECT_TRUE(c->send_pending(true));  // its Finished
  }
  EXPECT_GT(stats().submits_early.load(), before) << "every flight waited for the whole batch";
  for (int i = 0; i < 250 && stats().handshakes.load() < kClients; ++i) std::this_thread::sleep_for(20ms);
  EXPECT_EQ(stats().handshakes.load(), kClients);
}

// Backend sockets come from a stock made through the ring: of 12
// connections one after the other, only the first makes its own (the
// stock is filled behind it and topped up before it runs out). An idle
// worker does not hold the stock: its descriptors go after a second.
TEST_F(WorkerTest, BackendSocketsComeFromAStockThatGoesWhenIdle) {
  EchoBackend backend;
  start(backend.port());
  const size_t fds_before = open_fds();
  constexpr uint64_t kConns = 12;
  for (uint64_t i = 0; i < kConns; ++i) {
    auto c = tls_connect("a.test");
    ASSERT_NE(c, nullptr);
    ASSERT_EQ(ssl_write(c->ssl, "ping"), 4);
    char buf[16];
    ASSERT_EQ(ssl_read(c->ssl, buf, sizeof buf), 4);
    SSL_shutdown(c->ssl);
  }
  ASSERT_TRUE(wait_log(kConns));
  for (const std::string& line : log()) expect_ok_line(line, "a.test", "terminate");
  EXPECT_EQ(stats().backend_connects.load(), kConns);
  // kConns - 1, unless a slow machine left a second between two of them
  // (the stock then goes, and the next one makes its own again).
  EXPECT_GE(stats().sockets_stocked.load(), kConns - 2);
  EXPECT_LE(open_fds_settled(fds_before), fds_before) << "the socket stock still held by an idle worker";
}

// defer_accept: the kernel completes the accept only once the client's
// first bytes are in. A client connected and silent is not yet accepted;
// once its hello comes, it is, and the connection goes on as any other.
TEST_F(WorkerTest, DeferAcceptAcceptsOnlyOnceTheHelloIsIn) {
  EchoBackend backend;
  listener_extra_ = "defer_accept = true\n";
  start(backend.port());
  const int fd = connect_to(port_);
  ASSERT_GE(fd, 0);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(stats().accepted.load(), 0u) << "accepted before any byte came";
  const test::Bytes hello = test::HelloBuilder::typical("p.test").records();
  ASSERT_EQ(send(fd, hello.data(), hello.size(), MSG_NOSIGNAL), static_cast<ssize_t>(hello.size()));
  std::string back;
  std::vector<char> buf(65536);
  timeval tv{3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  while (back.size() < hello.size()) {
    const ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n <= 0) break;
    back.append(buf.data(), static_cast<size_t>(n));
  }
  EXPECT_EQ(back, std::string(reinterpret_cast<const char*>(hello.data()), hello.size()));
  EXPECT_EQ(stats().accepted.load(), 1u);
  shutdown(fd, SHUT_WR);
  while (recv(fd, buf.data(), buf.size(), 0) > 0) {
  }
  close(fd);
  ASSERT_TRUE(wait_log(1));
  expect_ok_line(log()[0], "p.test", "passthrough");
}

}  // namespace
}  // namespace lode::worker

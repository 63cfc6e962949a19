// The worker's kernel-TLS path, end to end on loopback: TLS 1.2 and 1.3 with
// AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305, bulk both ways with equal
// SHA-256, the client's first application data in the same segment as its
// Finished, a KeyUpdate, and kTLS switched off in the configuration.
//
// The same tests run in two places:
// - on a kernel without the tls ULP (this host): the fallback, user-space TLS,
//   reported as such (ktls_unavailable, "ktls":"none");
// - in the VM whose kernel has it (tests/vm/ktls_worker.sh): the kernel must
//   do the record layer both ways ("ktls":"tx+rx", /proc/net/tls_stat).
// LODE_EXPECT_KTLS=1 or 0 makes the expectation explicit (the VM runs set it,
// so a kernel that silently lost kTLS fails); unset, the kernel decides.
// LODE_KTLS_BULK_MB: the bulk size each way (default 2).
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <cstdlib>
#include <fstream>
#include <map>

#include "support/mem_handshake.h"
#include "worker/worker_fixture.h"

namespace lode::worker {
namespace {

using namespace std::chrono_literals;
using namespace fixture;

bool expect_ktls() {
  const char* e = std::getenv("LODE_EXPECT_KTLS");
  if (e != nullptr && std::string(e) == "1") return true;
  if (e != nullptr && std::string(e) == "0") return false;
  return kernel_has_tls_ulp();
}

size_t bulk_bytes() {
  const char* e = std::getenv("LODE_KTLS_BULK_MB");
  const size_t mb = e != nullptr ? std::strtoul(e, nullptr, 10) : 2;
  return (mb == 0 ? 2 : mb) << 20;
}

std::map<std::string, uint64_t> tls_stat() {
  std::map<std::string, uint64_t> m;
  std::ifstream f("/proc/net/tls_stat");
  std::string k;
  uint64_t v;
  while (f >> k >> v) m[k] = v;
  return m;
}

// A TLS client over memory BIOs shuttled to a non-blocking socket by hand, so
// that the test decides what goes into which send() (the Finished and the
// first application data in one segment).
class MemClient {
 public:
  MemClient(const std::string& ca_pem, int version, const std::string& cipher) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    BIO* b = BIO_new_mem_buf(ca_pem.data(), static_cast<int>(ca_pem.size()));
    X509* ca = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx_), ca);
    X509_free(ca);
    BIO_free(b);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_min_proto_version(ctx_, version);
    SSL_CTX_set_max_proto_version(ctx_, version);
    if (version == TLS1_3_VERSION) {
      SSL_CTX_set_ciphersuites(ctx_, cipher.c_str());
    } else {
      SSL_CTX_set_cipher_list(ctx_, cipher.c_str());
    }
    ssl_ = SSL_new(ctx_);
    rbio_ = BIO_new(BIO_s_mem());
    wbio_ = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl_, rbio_, wbio_);
    SSL_set_tlsext_host_name(ssl_, "a.test");
    SSL_set1_host(ssl_, "a.test");
    SSL_set_connect_state(ssl_);
  }
  ~MemClient() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
    if (fd_ >= 0) close(fd_);
  }

  // Connects and runs the handshake; the client's last flight (its Finished)
  // stays in the write BIO until the next send_pending().
  bool handshake(uint16_t port) {
    fd_ = connect_to(port);
    if (fd_ < 0) return false;
    const auto end = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < end) {
      ERR_clear_error();
      if (SSL_do_handshake(ssl_) == 1) return true;
      if (SSL_get_error(ssl_, -1) != SSL_ERROR_WANT_READ) return false;
      if (!send_pending(true) || !recv_some(1000)) return false;
    }
    return false;
  }

  // Moves what OpenSSL wrote to the socket: everything (`all`), or as much as
  // the socket takes now.
  bool send_pending(bool all) {
    char buf[65536];
    int n;
    while ((n = BIO_read(wbio_, buf, sizeof buf)) > 0) out_.append(buf, static_cast<size_t>(n));
    while (!out_.empty()) {
      const ssize_t w = send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w > 0) {
        out_.erase(0, static_cast<size_t>(w));
        continue;
      }
      if (w < 0 && errno == EAGAIN) {
        if (!all) return true;
        pollfd p{fd_, POLLOUT, 0};
        poll(&p, 1, 100);
        continue;
      }
      return false;
    }
    return true;
  }
  size_t pending() const { return out_.size() + static_cast<size_t>(BIO_ctrl_pending(wbio_)); }

  // Feeds what the socket has (waiting up to `wait_ms`) to OpenSSL; false at
  // the end of the stream or an error (see eof(), reset()).
  bool recv_some(int wait_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, wait_ms) <= 0) return true;
    char buf[65536];
    const ssize_t n = recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      BIO_write(rbio_, buf, static_cast<int>(n));
      return true;
    }
    if (n < 0 && errno == EAGAIN) return true;
    if (n == 0) eof_ = true;
    if (n < 0) {
      reset_ = errno == ECONNRESET;
      error_ = std::string("recv: ") + std::strerror(errno);
    }
    return false;
  }

  // Reads what OpenSSL can decrypt now into `into`; returns false when the
  // stream ended (close_notify: clean() is true) or failed.
  bool read_available(std::string& into) {
    char buf[16384];
    while (true) {
      ERR_clear_error();
      const int n = SSL_read(ssl_, buf, sizeof buf);
      if (n > 0) {
        into.append(buf, static_cast<size_t>(n));
        continue;
      }
      const int e = SSL_get_error(ssl_, n);
      if (e == SSL_ERROR_WANT_READ) return true;
      if (e == SSL_ERROR_ZERO_RETURN) {
        clean_ = true;
      } else {
        char err[256] = "";
        ERR_error_string_n(ERR_peek_last_error(), err, sizeof err);
        error_ = err;
      }
      return false;
    }
  }

  bool write(std::string_view data) {
    return SSL_write(ssl_, data.data(), static_cast<int>(data.size())) == static_cast<int>(data.size());
  }

  SSL* ssl() const { return ssl_; }
  int fd() const { return fd_; }
  bool eof() const { return eof_; }
  bool reset() const { return reset_; }
  bool clean() const { return clean_; }
  const std::string& error() const { return error_; }

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;
  BIO* wbio_ = nullptr;
  int fd_ = -1;
  std::string out_;
  bool eof_ = false, reset_ = false, clean_ = false;
  std::string error_;
};

// Deterministic bytes that do not repeat within a record.
std::string pattern(size_t n, uint64_t seed) {
  std::string s(n, '\0');
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = static_cast<char>(x);
  }
  return s;
}

std::string sha256(std::string_view s) {
  unsigned char md[32];
  unsigned len = 0;
  EVP_Digest(s.data(), s.size(), md, &len, EVP_sha256(), nullptr);
  return test::hex(md, len);
}

// Sends `data` and reads the echo at the same time, until `expect` bytes came
// back or the stream ended; then sends close_notify and reads to the end.
std::string echo_both_ways(MemClient& c, std::string_view data, size_t expect, bool close_after = true) {
  std::string got;
  size_t written = 0;
  const auto end = std::chrono::steady_clock::now() + 240s;
  bool open = true;
  while (open && got.size() < expect && std::chrono::steady_clock::now() < end) {
    while (written < data.size() && c.pending() < 256 * 1024) {
      const size_t n = std::min<size_t>(16384, data.size() - written);
      if (!c.write(data.substr(written, n))) return got;
      written += n;
    }
    if (!c.send_pending(false)) break;
    open = c.recv_some(c.pending() > 0 ? 5 : 50) && c.read_available(got);
  }
  if (open && close_after) {
    SSL_shutdown(c.ssl());
    c.send_pending(true);
    while (std::chrono::steady_clock::now() < end && c.recv_some(100) && c.read_available(got)) {
    }
  }
  return got;
}

class WorkerKtlsTest : public WorkerTest {
 protected:
  void SetUp() override {
    if (std::getenv("LODE_EXPECT_KTLS") != nullptr && expect_ktls() && !kernel_has_tls_ulp()) {
      GTEST_FAIL() << "LODE_EXPECT_KTLS=1 but the kernel has no tls ULP";
    }
    before_ = tls_stat();
  }
  // What the connection's log line and the counters say about kTLS.
  void expect_offload(bool on, const std::string& line) {
    if (on) {
      EXPECT_EQ(stats().ktls_tx.load(), 1u);
      EXPECT_EQ(stats().ktls_rx.load(), 1u);
      EXPECT_EQ(stats().ktls_declined.load(), 0u);
      EXPECT_TRUE(has(line, R"("ktls":"tx+rx")")) << line;
      auto after = tls_stat();
      EXPECT_EQ(after["TlsTxSw"] - before_["TlsTxSw"], 1u) << "the kernel encrypted for one socket";
      EXPECT_EQ(after["TlsRxSw"] - before_["TlsRxSw"], 1u) << "the kernel decrypted for one socket";
      EXPECT_EQ(after["TlsDecryptError"], before_["TlsDecryptError"]);
    } else {
      EXPECT_EQ(stats().ktls_tx.load(), 0u);
      EXPECT_EQ(stats().ktls_rx.load(), 0u);
      EXPECT_TRUE(has(line, R"("ktls":"none")")) << line;
    }
  }
  std::string only_log_line() {
    if (!wait_log(1, 10s)) return "(no log line)";
    return log()[0];
  }
  std::map<std::string, uint64_t> before_;
};

struct Suite {
  const char* name;
  int version;
  const char* cipher;
};

class WorkerKtlsSuiteTest : public WorkerKtlsTest, public ::testing::WithParamInterface<Suite> {};

TEST_P(WorkerKtlsSuiteTest, BulkBothWaysWithEqualSha256) {
  const Suite& s = GetParam();
  EchoBackend backend;
  start(backend.port());
  MemClient c(ca_pem_, s.version, s.cipher);
  ASSERT_TRUE(c.handshake(port_)) << c.error();
  const std::string data = pattern(bulk_bytes(), 1);
  const std::string got = echo_both_ways(c, data, data.size());
  EXPECT_EQ(got.size(), data.size());
  EXPECT_EQ(sha256(got), sha256(data));
  EXPECT_TRUE(c.clean()) << "no close_notify after the backend closed: " << c.error();
  const std::string line = only_log_line();
  EXPECT_TRUE(has(line, R"("result":"ok")")) << line;
  EXPECT_TRUE(has(line, std::string(R"("bytes_from_backend":)") + std::to_string(data.size()))) << line;
  expect_offload(expect_ktls(), line);
  if (!expect_ktls() && !kernel_has_tls_ulp()) EXPECT_GT(stats().ktls_unavailable.load(), 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Suites, WorkerKtlsSuiteTest,
    ::testing::Values(Suite{"tls12_aes128gcm", TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256"},
                      Suite{"tls12_aes256gcm", TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384"},
                      Suite{"tls12_chacha20", TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305"},
                      Suite{"tls13_aes128gcm", TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256"},
                      Suite{"tls13_aes256gcm", TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384"},
                      Suite{"tls13_chacha20", TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256"}),
    [](const ::testing::TestParamInfo<Suite>& i) { return std::string(i.param.name); });

TEST_F(WorkerKtlsTest, AppDataInTheSameSegmentAsTheFinished) {
  EchoBackend backend;
  start(backend.port());
  MemClient c(ca_pem_, TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256");
  ASSERT_TRUE(c.handshake(port_)) << c.error();
  // The Finished is still unsent: three full records and a partial one go
  // with it in one send(), then more data follows through the kernel.
  const std::string first = pattern(3 * 16384 + 1000, 2);
  ASSERT_TRUE(c.write(first));
  ASSERT_LT(c.pending(), 65000u);  // one loopback segment
  ASSERT_TRUE(c.send_pending(true));
  const std::string rest = pattern(1 << 20, 3);
  const std::string got = echo_both_ways(c, rest, first.size() + rest.size());
  EXPECT_EQ(got.size(), first.size() + rest.size());
  EXPECT_EQ(sha256(got), sha256(first + rest));
  const std::string line = only_log_line();
  EXPECT_TRUE(has(line, R"("result":"ok")")) << line;
  expect_offload(expect_ktls(), line);
}

TEST_F(WorkerKtlsTest, KeyUpdateIsFollowedOrTheConnectionEndsCleanly) {
  EchoBackend backend;
  start(backend.port());
  MemClient c(ca_pem_, TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256");
  ASSERT_TRUE(c.handshake(port_)) << c.error();
  const std::string a = pattern(200000, 4);
  std::string got = echo_both_ways(c, a, a.size(), false);
  ASSERT_EQ(sha256(got), sha256(a));
  // Our key changes and we ask for the server's to change too.
  ASSERT_EQ(SSL_key_update(c.ssl(), SSL_KEY_UPDATE_REQUESTED), 1);
  const std::string b = pattern(200000, 5);
  std::string more = echo_both_ways(c, b, b.size());
  if (expect_ktls()) {
    // The kernel (6.1) cannot follow a KeyUpdate: what came before was
    // delivered; the connection then ends, without a byte of garbage.
    EXPECT_EQ(b.substr(0, more.size()), more) << "bytes after the KeyUpdate were not a prefix of the echo";
    EXPECT_TRUE(c.error().find("bad record mac") == std::string::npos &&
                c.error().find("decryption failed") == std::string::npos)
        << c.error();
    const std::string line = only_log_line();
    EXPECT_TRUE(has(line, R"("result":"ktls:key_update")")) << line;
    EXPECT_EQ(stats().ktls_key_updates.load(), 1u);
  } else {
    EXPECT_EQ(more.size(), b.size());
    EXPECT_EQ(sha256(more), sha256(b));
    EXPECT_TRUE(c.clean()) << c.error();
    const std::string line = only_log_line();
    EXPECT_TRUE(has(line, R"("result":"ok")")) << line;
    EXPECT_EQ(stats().ktls_key_updates.load(), 0u);
  }
}

// A backend that sends `bytes` as soon as a client connects and closes at
// once: the response end races the relay's half-close.
class SourceBackend {
 public:
  explicit SourceBackend(std::string data) : data_(std::move(data)) {
    fd_ = listen_loopback(16, port_);
    thread_ = std::thread([this] {
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      size_t at = 0;
      while (at < data_.size()) {
        const ssize_t n = send(c, data_.data() + at, data_.size() - at, MSG_NOSIGNAL);
        if (n <= 0) break;
        at += static_cast<size_t>(n);
      }
      close(c);
    });
  }
  ~SourceBackend() {
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
    close(fd_);
  }
  uint16_t port() const { return port_; }

 private:
  std::string data_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
};

TEST_F(WorkerKtlsTest, SlowReaderGetsEveryByteAndTheCloseNotify) {
  const std::string data = pattern(24 << 20, 7);
  SourceBackend backend(data);
  start(backend.port());
  MemClient c(ca_pem_, TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256");
  const int small = 256 * 1024;  // the response cannot all sit in the client's buffer
  ASSERT_TRUE(c.handshake(port_)) << c.error();
  setsockopt(c.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  ASSERT_TRUE(c.send_pending(true));  // our Finished
  // The backend sends everything and closes while the client reads nothing.
  std::this_thread::sleep_for(500ms);
  std::string got;
  const auto end = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < end && got.size() < data.size() && c.recv_some(200) &&
         c.read_available(got)) {
  }
  while (std::chrono::steady_clock::now() < end && c.recv_some(200) && c.read_available(got)) {
  }
  EXPECT_EQ(got.size(), data.size()) << "backend in " << stats().bytes_backend_in.load() << " client out "
                                     << stats().bytes_client_out.load();
  EXPECT_EQ(sha256(got), sha256(data));
  EXPECT_TRUE(c.clean()) << "the stream ended without close_notify: " << c.error() << " eof " << c.eof()
                         << " reset " << c.reset();
}

TEST_F(WorkerKtlsTest, SwitchedOffInTheConfigurationKeepsUserSpaceTls) {
  EchoBackend backend;
  start(backend.port(), "[tls]\nktls = false\n");
  MemClient c(ca_pem_, TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384");
  ASSERT_TRUE(c.handshake(port_)) << c.error();
  const std::string data = pattern(300000, 6);
  const std::string got = echo_both_ways(c, data, data.size());
  EXPECT_EQ(sha256(got), sha256(data));
  const std::string line = only_log_line();
  expect_offload(false, line);
  EXPECT_EQ(stats().ktls_unavailable.load(), 0u) << "OpenSSL was not asked to offer kTLS";
}

}  // namespace
}  // namespace lode::worker

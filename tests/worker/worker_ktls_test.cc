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
#include "worker/mem_client.h"
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

INSTANTIATE_TEST_SUITE_P(Suites, WorkerKtlsSuiteTest, ::testing::ValuesIn(kAeadSuites), suite_name);

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

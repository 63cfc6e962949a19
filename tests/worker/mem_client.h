// A TLS client on memory BIOs for the worker tests, with the helpers that
// drive it (bulk both ways, SHA-256, patterns). Shared by the kTLS and the
// own-record-layer tests.
#pragma once

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <string_view>

#include "support/mem_handshake.h"
#include "worker/worker_fixture.h"

namespace lode::worker::fixture {

using namespace std::chrono_literals;

// The AEAD suites of TLS 1.2 and 1.3 that kTLS and our record layer take.
struct Suite {
  const char* name;
  int version;
  const char* cipher;  // TLS 1.2 cipher list or TLS 1.3 suite
};
inline constexpr std::array<Suite, 6> kAeadSuites = {{
    {"tls12_aes128gcm", TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256"},
    {"tls12_aes256gcm", TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384"},
    {"tls12_chacha20", TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305"},
    {"tls13_aes128gcm", TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256"},
    {"tls13_aes256gcm", TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384"},
    {"tls13_chacha20", TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256"},
}};
inline std::string suite_name(const ::testing::TestParamInfo<Suite>& i) { return i.param.name; }

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
  bool handshake(uint16_t port) { return open(port) && finish_handshake(); }
  // Connects and has OpenSSL write its ClientHello (into the write BIO: not
  // sent yet; take_written() or finish_handshake() sends it).
  bool open(uint16_t port) {
    fd_ = connect_to(port);
    if (fd_ < 0) return false;
    ERR_clear_error();
    return SSL_do_handshake(ssl_) != 1 && SSL_get_error(ssl_, -1) == SSL_ERROR_WANT_READ;
  }
  // The rest of the handshake, as handshake() runs it.
  bool finish_handshake() {
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

  // What OpenSSL has written and not yet sent, taken out (sent by the test
  // as it likes, spoiled or not).
  std::string take_written() {
    char buf[65536];
    int n;
    std::string all = std::move(out_);
    out_.clear();
    while ((n = BIO_read(wbio_, buf, sizeof buf)) > 0) all.append(buf, static_cast<size_t>(n));
    return all;
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
inline std::string pattern(size_t n, uint64_t seed) {
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

inline std::string sha256(std::string_view s) {
  unsigned char md[32];
  unsigned len = 0;
  EVP_Digest(s.data(), s.size(), md, &len, EVP_sha256(), nullptr);
  return test::hex(md, len);
}

// Sends `data` and reads the echo at the same time, until `expect` bytes came
// back or the stream ended; then sends close_notify and reads to the end.
inline std::string echo_both_ways(MemClient& c, std::string_view data, size_t expect, bool close_after = true) {
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

}  // namespace lode::worker::fixture

// openssl_ceiling: what OpenSSL's libssl alone costs a TLS server per
// operation, with no network and no proxy around it — the ceiling for any
// server built on it (Lodestone, nginx and HAProxy all are). A client and a
// server SSL object talk over a BIO pair in one thread; only the server's
// calls are timed, each inside a window of the thread CPU clock (whose own
// cost, calibrated at start, is subtracted per window). The operations mirror
// bench/compare_nginx.sh's tests:
//   full, full-rsa  SSL_new, full TLS 1.3 handshake (ECDSA P-256 or RSA-2048
//                   chain, X25519, the session tickets), 100 B read and
//                   written back, close_notify both ways, SSL_free;
//   resumed         the same resuming the previous connection's ticket
//                   (every one checked resumed);
//   requests        100 B read and written back on a kept connection;
//   bulk            16 KiB records read and written back; per MiB moved.
// The server context has Lodestone's fixed settings (server cipher order,
// SSL_MODE_RELEASE_BUFFERS, stateless tickets, X25519:P-256:P-384), nothing
// else: OpenSSL's defaults.
//
//   openssl_ceiling --cert CHAIN.pem --key KEY.pem --rsa-cert CHAIN.pem
//                   --rsa-key KEY.pem [--sni NAME] [--handshakes N]
//                   [--requests N] [--mib N] [--keylog]
//
// --keylog sets a key-log callback that does nothing on the server contexts:
// what OpenSSL charges every handshake once one is set (Lodestone sets one
// for its own record layer and kTLS: OpenSSL 3.0 gives a TLS 1.3
// connection's traffic secrets out no other way).
//
// Prints one JSON object (negotiated protocol, cipher and group, the clock's
// overhead, server µs per operation per test). Exits 1 naming what failed.
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/thread_cpu_clock.h"

namespace {

constexpr size_t kEchoBytes = 100;
constexpr size_t kBulkChunk = 16384;
constexpr size_t kPairBuffer = size_t{1} << 17;  // a whole first flight and a record, each way

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "openssl_ceiling: %s\n", what.c_str());
  ERR_print_errors_fp(stderr);  // OpenSSL's reasons, when it has some
  std::exit(1);
}

// The server side's CPU, window by window.
class ServerClock {
 public:
  explicit ServerClock(double overhead_ns) : overhead_ns_(overhead_ns) {}
  template <class F>
  auto operator()(F&& f) {
    const int64_t t0 = lode::bench::thread_cpu_ns();
    auto r = f();
    ns_ += lode::bench::thread_cpu_ns() - t0;
    ++windows_;
    return r;
  }
  void reset() { ns_ = windows_ = 0; }
  double us() const {
    return (static_cast<double>(ns_) - static_cast<double>(windows_) * overhead_ns_) / 1000.0;
  }

 private:
  double overhead_ns_;
  int64_t ns_ = 0;
  int64_t windows_ = 0;
};

SSL_CTX* server_context(const std::string& cert, const std::string& key, bool keylog) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1 || SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384") != 1)
    die(cert + " / " + key);
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
                               SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (keylog) SSL_CTX_set_keylog_callback(ctx, [](const SSL*, const char*) {});
  return ctx;
}

// Is this SSL_get_error() answer "call again once the peer has moved"?
bool would_block(SSL* ssl, int rc) {
  const int e = SSL_get_error(ssl, rc);
  return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

class Bench {
 public:
  Bench(SSL_CTX* client_ctx, std::string sni, double overhead_ns)
      : client_ctx_(client_ctx), sni_(std::move(sni)), clock_(overhead_ns) {}

  struct Conn {
    SSL* client = nullptr;
    SSL* server = nullptr;
  };

  // SSL_new (server side timed) and the handshake, both sides in turn.
  Conn open(SSL_CTX* server_ctx, SSL_SESSION* resume) {
    BIO* cb = nullptr;
    BIO* sb = nullptr;
    if (BIO_new_bio_pair(&cb, kPairBuffer, &sb, kPairBuffer) != 1) die("BIO_new_bio_pair");
    Conn c;
    c.client = SSL_new(client_ctx_);
    if (c.client == nullptr || SSL_set_tlsext_host_name(c.client, sni_.c_str()) != 1) die("client");
    if (resume != nullptr && SSL_set_session(c.client, resume) != 1) die("SSL_set_session");
    SSL_set_bio(c.client, cb, cb);
    SSL_set_connect_state(c.client);
    c.server = clock_([&] { return SSL_new(server_ctx); });
    if (c.server == nullptr) die("server SSL_new");
    SSL_set_bio(c.server, sb, sb);
    SSL_set_accept_state(c.server);
    bool client_done = false, server_done = false;
    for (int round = 0; round < 8 && !(client_done && server_done); ++round) {
      const int rc = SSL_do_handshake(c.client);
      if (rc != 1 && !would_block(c.client, rc)) die("client handshake");
      client_done = rc == 1;
      const int rs = clock_([&] { return SSL_do_handshake(c.server); });
      if (rs != 1 && !would_block(c.server, rs)) die("server handshake");
      server_done = rs == 1;
    }
    if (!client_done || !server_done) die("handshake did not finish");
    return c;
  }

  // n bytes from the client, read and written back by the server (timed),
  // read and compared by the client.
  void echo(const Conn& c, size_t n) {
    buf_.resize(n);
    for (size_t i = 0; i < n; ++i) buf_[i] = static_cast<char>(i * 31 + sent_++);
    size_t done = 0;
    if (SSL_write_ex(c.client, buf_.data(), n, &done) != 1 || done != n) die("client write");
    back_.resize(n);
    size_t got = 0;
    while (got < n) {
      size_t r = 0;
      if (clock_([&] { return SSL_read_ex(c.server, &back_[got], n - got, &r); }) != 1)
        die("server read");
      got += r;
    }
    if (clock_([&] { return SSL_write_ex(c.server, back_.data(), n, &done); }) != 1 || done != n)
      die("server write");
    got = 0;
    while (got < n) {
      size_t r = 0;
      if (SSL_read_ex(c.client, &back_[got], n - got, &r) != 1) die("client read");
      got += r;
    }
    if (std::memcmp(buf_.data(), back_.data(), n) != 0) die("echo differs");
  }

  // close_notify both ways, then SSL_free (the server's timed).
  void close(const Conn& c) {
    SSL_shutdown(c.client);
    char byte;
    size_t r = 0;
    const int rc = clock_([&] { return SSL_read_ex(c.server, &byte, 1, &r); });
    if (rc == 1 || SSL_get_error(c.server, rc) != SSL_ERROR_ZERO_RETURN)
      die("server: no close_notify");
    if (clock_([&] { return SSL_shutdown(c.server); }) != 1) die("server shutdown");
    if (SSL_shutdown(c.client) != 1) die("client shutdown");
    SSL_free(c.client);
    clock_([&] {
      SSL_free(c.server);
      return 0;
    });
  }

  // One connection of the handshake tests; returns the client's session for
  // the next resumption (the caller frees it).
  SSL_SESSION* connection(SSL_CTX* server_ctx, SSL_SESSION* resume) {
    const Conn c = open(server_ctx, resume);
    if (resume != nullptr && SSL_session_reused(c.server) != 1) die("resumption refused");
    echo(c, kEchoBytes);  // the client has read the tickets by now
    last_protocol_ = SSL_get_version(c.server);
    last_cipher_ = SSL_get_cipher_name(c.server);
    const char* g = SSL_group_to_name(c.server, static_cast<int>(SSL_get_negotiated_group(c.server)));
    last_group_ = g != nullptr ? g : "?";
    SSL_SESSION* s = SSL_get1_session(c.client);
    close(c);
    return s;
  }

  // Server µs per operation of each test.
  double handshakes(SSL_CTX* server_ctx, int n, bool resumed) {
    SSL_SESSION* s = connection(server_ctx, nullptr);
    clock_.reset();
    for (int i = 0; i < n; ++i) {
      SSL_SESSION* next = connection(server_ctx, resumed ? s : nullptr);
      SSL_SESSION_free(s);
      s = next;
    }
    SSL_SESSION_free(s);
    return clock_.us() / n;
  }
  double requests(SSL_CTX* server_ctx, int n) {
    const Conn c = open(server_ctx, nullptr);
    echo(c, kEchoBytes);
    clock_.reset();
    for (int i = 0; i < n; ++i) echo(c, kEchoBytes);
    const double us = clock_.us() / n;
    close(c);
    return us;
  }
  double bulk_per_mib(SSL_CTX* server_ctx, int mib) {
    const Conn c = open(server_ctx, nullptr);
    echo(c, kEchoBytes);
    clock_.reset();
    for (size_t i = 0; i < size_t(mib) * (size_t{1} << 20) / kBulkChunk; ++i) echo(c, kBulkChunk);
    const double us = clock_.us() / (2.0 * mib);  // mib each way
    close(c);
    return us;
  }

  std::string last_protocol_, last_cipher_, last_group_;

 private:
  SSL_CTX* client_ctx_;
  std::string sni_;
  ServerClock clock_;
  std::vector<char> buf_, back_;
  unsigned sent_ = 0;
};

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: openssl_ceiling --cert CHAIN.pem --key KEY.pem --rsa-cert CHAIN.pem "
               "--rsa-key KEY.pem [--sni NAME] [--handshakes N] [--requests N] [--mib N] [--keylog]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string cert, key, rsa_cert, rsa_key, sni = "bench.test";
  int handshakes = 1000, requests = 5000, mib = 50;
  bool keylog = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--keylog") {
      keylog = true;
      continue;
    }
    if (i + 1 >= argc) usage();
    const std::string v = argv[++i];
    if (a == "--cert")
      cert = v;
    else if (a == "--key")
      key = v;
    else if (a == "--rsa-cert")
      rsa_cert = v;
    else if (a == "--rsa-key")
      rsa_key = v;
    else if (a == "--sni")
      sni = v;
    else if (a == "--handshakes")
      handshakes = std::atoi(v.c_str());
    else if (a == "--requests")
      requests = std::atoi(v.c_str());
    else if (a == "--mib")
      mib = std::atoi(v.c_str());
    else
      usage();
  }
  if (cert.empty() || key.empty() || rsa_cert.empty() || rsa_key.empty() || handshakes < 1 ||
      handshakes > 1'000'000 || requests < 1 || requests > 10'000'000 || mib < 1 || mib > 100'000)
    usage();

  SSL_CTX* client_ctx = SSL_CTX_new(TLS_client_method());
  if (client_ctx == nullptr || SSL_CTX_set_min_proto_version(client_ctx, TLS1_2_VERSION) != 1)
    die("client context");
  SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, nullptr);  // the client is not measured
  SSL_CTX* ecdsa = server_context(cert, key, keylog);
  SSL_CTX* rsa = server_context(rsa_cert, rsa_key, keylog);

  const double overhead = lode::bench::thread_cpu_clock_overhead_ns();
  Bench b(client_ctx, sni, overhead);
  b.handshakes(ecdsa, 20, false);  // warm: first-use fetches, the allocator
  b.handshakes(rsa, 5, false);
  const double full = b.handshakes(ecdsa, handshakes, false);
  const std::string protocol = b.last_protocol_, cipher = b.last_cipher_, group = b.last_group_;
  const double full_rsa = b.handshakes(rsa, handshakes, false);
  const double resumed = b.handshakes(ecdsa, handshakes, true);
  const double req = b.requests(ecdsa, requests);
  const double bulk = b.bulk_per_mib(ecdsa, mib);
  std::printf(
      "{\"protocol\": \"%s\", \"cipher\": \"%s\", \"group\": \"%s\", \"keylog\": %s, \"clock_overhead_ns\": %.1f, "
      "\"counts\": {\"handshakes\": %d, \"requests\": %d, \"mib\": %d}, "
      "\"server_us\": {\"full\": %.2f, \"full-rsa\": %.2f, \"resumed\": %.2f, \"requests\": %.3f, "
      "\"bulk\": %.2f}}\n",
      protocol.c_str(), cipher.c_str(), group.c_str(), keylog ? "true" : "false", overhead, handshakes, requests, mib, full,
      full_rsa, resumed, req, bulk);
  SSL_CTX_free(ecdsa);
  SSL_CTX_free(rsa);
  SSL_CTX_free(client_ctx);
  return 0;
}

// tls_echo: a TLS echo server for bench/compare_nginx.sh — lode-backend's echo
// mode with OpenSSL inside. Two uses there:
//   - the direct baseline of the added-latency test: lodeload speaks only TLS,
//     so "the backend without a proxy" is this one (the TLS work the proxies
//     do moves into the backend; what is left as the difference is the relay);
//   - the TLS server behind the passthrough routes (the proxies pass the
//     client's TLS through untouched and this end terminates it).
// One thread per connection, blocking I/O: each record read is written back
// until the peer closes (close_notify or EOF), then close_notify.
//
//   tls_echo --listen IPV4:PORT --cert CHAIN.pem --key KEY.pem [--max-conns N]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>

namespace {

struct Options {
  std::string listen;
  std::string cert;
  std::string key;
  int max_conns = 4096;
};

std::atomic<int> g_conns{0};

void serve(SSL_CTX* ctx, int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval tv{60, 0};  // a stuck peer does not hold a thread forever
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  SSL* ssl = SSL_new(ctx);
  if (ssl != nullptr && SSL_set_fd(ssl, fd) == 1 && SSL_accept(ssl) == 1) {
    char buf[16384];
    int last = 0;
    while (true) {
      size_t n = 0;
      last = SSL_read_ex(ssl, buf, sizeof buf, &n);
      if (last != 1) break;
      size_t written = 0;
      last = SSL_write_ex(ssl, buf, n, &written);
      if (last != 1) break;
    }
    if (SSL_get_error(ssl, last) == SSL_ERROR_ZERO_RETURN)
      SSL_shutdown(ssl);  // answer close_notify
  }
  ERR_clear_error();
  SSL_free(ssl);
  close(fd);
  g_conns.fetch_sub(1);
}

[[noreturn]] void usage() {
  std::fprintf(
      stderr,
      "usage: tls_echo --listen IPV4:PORT --cert CHAIN.pem --key KEY.pem [--max-conns N]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage();
    const std::string v = argv[++i];
    if (a == "--listen")
      opt.listen = v;
    else if (a == "--cert")
      opt.cert = v;
    else if (a == "--key")
      opt.key = v;
    else if (a == "--max-conns")
      opt.max_conns = std::atoi(v.c_str());
    else
      usage();
  }
  const auto colon = opt.listen.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (opt.cert.empty() || opt.key.empty() || colon == std::string::npos || opt.max_conns <= 0 ||
      inet_pton(AF_INET, opt.listen.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
    usage();
  }
  addr.sin_port = htons(static_cast<uint16_t>(std::atoi(opt.listen.c_str() + colon + 1)));

  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_use_certificate_chain_file(ctx, opt.cert.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, opt.key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    std::fprintf(stderr, "tls_echo: %s / %s: ", opt.cert.c_str(), opt.key.c_str());
    ERR_print_errors_fp(stderr);
    return 1;
  }

  signal(SIGPIPE, SIG_IGN);
  const int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (l < 0 || bind(l, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(l, 4096) != 0) {
    std::fprintf(stderr, "tls_echo: %s: %s\n", opt.listen.c_str(), std::strerror(errno));
    return 1;
  }
  while (true) {
    const int fd = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) {
        usleep(10000);
        continue;
      }
      std::fprintf(stderr, "tls_echo: accept: %s\n", std::strerror(errno));
      return 1;
    }
    if (g_conns.load() >= opt.max_conns) {
      close(fd);
      continue;
    }
    g_conns.fetch_add(1);
    try {
      std::thread(serve, ctx, fd).detach();
    } catch (const std::system_error&) {  // out of threads: refuse this one
      g_conns.fetch_sub(1);
      close(fd);
    }
  }
}

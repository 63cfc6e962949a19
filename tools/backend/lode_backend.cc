// lode-backend: a small plaintext backend for the demo and the end-to-end
// tests. One thread per connection, blocking I/O; bounded by --max-conns.
//
//   lode-backend --listen 127.0.0.1:9001 --name senri [--mode http|echo] [--proxy-v2]
//
// http: answers every request with "backend=NAME" and, when a PROXY v2 header
//       came first (--proxy-v2), what it said (client, authority, ALPN, TLS).
// echo: sends back every byte it receives until the peer half-closes, then
//       half-closes too (bulk and SHA-256 tests).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/tls/proxy_protocol.h"
#include "lodestone/socket_address.h"

namespace {

struct Options {
  std::string listen = "127.0.0.1:9001";
  std::string name = "backend";
  std::string mode = "http";
  bool proxy_v2 = false;
  int max_conns = 4096;
};

std::atomic<int> g_conns{0};

bool send_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Reads the PROXY v2 header in front of the stream; returns a description and
// leaves the bytes that followed it in `rest`.
std::string read_proxy(int fd, std::string& rest, bool& ok) {
  std::vector<uint8_t> buf;
  lode::proxy::ProxyHeaderParser p;
  char tmp[4096];
  while (true) {
    const lode::ParseStatus st = p.parse(buf);
    if (st == lode::ParseStatus::kDone) break;
    if (st == lode::ParseStatus::kError) {
      ok = false;
      return std::string("proxy_error=") + std::string(p.error().reason());
    }
    const ssize_t n = recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) {
      ok = false;
      return "proxy_error=eof";
    }
    buf.insert(buf.end(), tmp, tmp + n);
  }
  const auto& h = p.header();
  std::string d = "proxy=v" + std::to_string(h.version);
  sockaddr_storage ss{};
  if (const socklen_t len = h.source.to_sockaddr(ss); len > 0) {
    lode::SocketAddress a;
    a.storage = ss;
    a.len = len;
    d += " proxy_client=" + a.to_string();
  }
  if (h.tlvs.authority) d += " proxy_authority=" + std::string(*h.tlvs.authority);
  if (h.tlvs.alpn) d += " proxy_alpn=" + std::string(*h.tlvs.alpn);
  if (h.tlvs.ssl && h.tlvs.ssl->version) d += " proxy_tls=" + std::string(*h.tlvs.ssl->version);
  if (h.tlvs.ssl) d += " proxy_verify=" + std::to_string(h.tlvs.ssl->verify);
  rest.assign(buf.begin() + h.header_len, buf.end());
  ok = true;
  return d;
}

void serve_http(int fd, const Options& opt, std::string pending, const std::string& proxy) {
  char tmp[16384];
  while (true) {
    // One request: up to the end of its headers (bodies are not expected).
    size_t end;
    while ((end = pending.find("\r\n\r\n")) == std::string::npos) {
      if (pending.size() > 64 * 1024) return;
      const ssize_t n = recv(fd, tmp, sizeof tmp, 0);
      if (n <= 0) return;
      pending.append(tmp, static_cast<size_t>(n));
    }
    const std::string request_line = pending.substr(0, pending.find("\r\n"));
    pending.erase(0, end + 4);
    std::string body = "backend=" + opt.name;
    if (!proxy.empty()) body += " " + proxy;
    body += " request=\"" + request_line + "\"\n";
    const std::string resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                             std::to_string(body.size()) + "\r\nX-Backend: " + opt.name + "\r\n\r\n" + body;
    if (!send_all(fd, resp.data(), resp.size())) return;
  }
}

void serve_echo(int fd, const std::string& pending) {
  if (!pending.empty() && !send_all(fd, pending.data(), pending.size())) return;
  std::vector<char> buf(256 * 1024);
  while (true) {
    const ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (!send_all(fd, buf.data(), static_cast<size_t>(n))) return;
  }
  shutdown(fd, SHUT_WR);
  // Wait for the peer to finish before closing, so nothing is reset.
  char c;
  while (recv(fd, &c, 1, 0) > 0) {
  }
}

void serve(int fd, Options opt) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval tv{60, 0};  // a stuck peer does not hold a thread forever
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string rest, proxy;
  bool ok = true;
  if (opt.proxy_v2) proxy = read_proxy(fd, rest, ok);
  if (ok) {
    if (opt.mode == "echo") {
      serve_echo(fd, rest);
    } else {
      serve_http(fd, opt, rest, proxy);
    }
  }
  close(fd);
  g_conns.fetch_sub(1);
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "lode-backend: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--listen") opt.listen = next();
    else if (a == "--name") opt.name = next();
    else if (a == "--mode") opt.mode = next();
    else if (a == "--proxy-v2") opt.proxy_v2 = true;
    else if (a == "--max-conns") opt.max_conns = std::stoi(next());
    else {
      std::fprintf(stderr, "usage: lode-backend --listen ADDR:PORT --name NAME [--mode http|echo] [--proxy-v2]\n");
      return 2;
    }
  }
  if (opt.mode != "http" && opt.mode != "echo") {
    std::fprintf(stderr, "lode-backend: --mode is http or echo\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  auto addr = lode::parse_socket_address(opt.listen);
  if (!addr) {
    std::fprintf(stderr, "lode-backend: %s: %s\n", opt.listen.c_str(), std::string(addr.error()).c_str());
    return 2;
  }
  const int l = socket(addr->family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(l, addr->sa(), addr->len) != 0 || listen(l, 1024) != 0) {
    std::fprintf(stderr, "lode-backend: %s: %s\n", opt.listen.c_str(), std::strerror(errno));
    return 1;
  }
  std::fprintf(stderr, "lode-backend %s listening on %s (%s)\n", opt.name.c_str(), opt.listen.c_str(),
               opt.mode.c_str());
  while (true) {
    const int fd = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) {
        usleep(10000);
        continue;
      }
      return 1;
    }
    if (g_conns.load() >= opt.max_conns) {
      close(fd);
      continue;
    }
    g_conns.fetch_add(1);
    std::thread(serve, fd, opt).detach();
  }
}

#include "tests/support/ocsp_responder.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/pem.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "controlplane/ocsp.h"
#include "tests/support/test_pki.h"

namespace lode::test {

using namespace std::chrono_literals;

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "ocsp_responder: %s\n", what.c_str());
  std::abort();
}

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// A listening socket on 127.0.0.1:port (0: any free port); -1 on failure.
int listen_loopback(uint16_t port, uint16_t* bound) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a = loopback(port);
  socklen_t len = sizeof(a);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(fd, 64) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    return -1;
  }
  *bound = ntohs(a.sin_port);
  return fd;
}

// Waits up to `wait` for a connection; -1 when none (or on stop).
int accept_for(int listen_fd, std::chrono::milliseconds wait) {
  pollfd p{listen_fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(wait.count())) <= 0) return -1;
  return ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
}

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Stops a child: SIGTERM, up to 2 s, then SIGKILL; always reaped.
void stop_child(pid_t pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGTERM);
  for (int i = 0; i < 200; ++i) {
    if (::waitpid(pid, nullptr, WNOHANG) == pid) return;
    std::this_thread::sleep_for(10ms);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

}  // namespace

uint16_t free_loopback_port() {
  uint16_t port = 0;
  const int fd = listen_loopback(0, &port);
  if (fd < 0) die("no free loopback port");
  ::close(fd);
  return port;
}

const OcspPki& shared_ocsp_pki() {
  static const TempDir dir;  // removed, with the PKI, at exit
  static const OcspPki pki = [] {
    OcspPki p;
    p.dir = dir.path() + "/pki";
    // Three distinct ports: all bound at once, then released.
    uint16_t ports[3] = {};
    int fds[3] = {};
    for (int i = 0; i < 3; ++i) {
      fds[i] = listen_loopback(0, &ports[i]);
      if (fds[i] < 0) die("no free loopback port");
    }
    for (int fd : fds) ::close(fd);
    p.ocsp_port = ports[0];
    p.crl_port = ports[1];
    p.root_ocsp_port = ports[2];
    const std::string cmd =
        "OCSP_PORT=" + std::to_string(p.ocsp_port) + " CRL_PORT=" + std::to_string(p.crl_port) +
        " ROOT_OCSP_PORT=" + std::to_string(p.root_ocsp_port) + " bash '" + LODE_SOURCE_DIR +
        "/tools/make-ocsp-pki.sh' '" + p.dir + "' >'" + dir.path() + "/pki.log' 2>&1";
    if (std::system(cmd.c_str()) != 0) {
      die("tools/make-ocsp-pki.sh failed:\n" + slurp(dir.path() + "/pki.log"));
    }
    return p;
  }();
  return pki;
}

std::shared_ptr<X509> load_pem_cert(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) die("cannot open " + path);
  X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (x == nullptr) die("no certificate in " + path);
  return {x, X509_free};
}

std::string file_contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) die("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

OcspResponderSpec intermediate_responder_spec() {
  const OcspPki& p = shared_ocsp_pki();
  return {p.path("index.txt"),
          p.path("intermediate.pem"),
          p.path("ocsp-responder.pem"),
          p.path("ocsp-responder.key"),
          1,
          {}};
}

OcspResponderSpec root_responder_spec() {
  const OcspPki& p = shared_ocsp_pki();
  return {p.path("root-index.txt"),
          p.path("ca.pem"),
          p.path("root-ocsp-responder.pem"),
          p.path("root-ocsp-responder.key"),
          1,
          {}};
}

const OcspCerts& ocsp_certs() {
  static const OcspCerts certs = [] {
    const OcspPki& p = shared_ocsp_pki();
    OcspCerts c;
    c.root = load_pem_cert(p.path("ca.pem"));
    c.intermediate = load_pem_cert(p.path("intermediate.pem"));
    c.good = load_pem_cert(p.path("ocsp-good.test.pem"));
    c.revoked = load_pem_cert(p.path("ocsp-revoked.test.pem"));
    c.muststaple = load_pem_cert(p.path("ocsp-muststaple.test.pem"));
    c.responder = load_pem_cert(p.path("ocsp-responder.pem"));
    c.root_responder = load_pem_cert(p.path("root-ocsp-responder.pem"));
    return c;
  }();
  return certs;
}

std::string response_from(const OcspResponderSpec& spec, X509* cert, X509* issuer,
                          std::string* error) {
  OcspResponder responder(spec);
  if (!responder.ok()) {
    *error = responder.error();
    return {};
  }
  auto req = cp::make_ocsp_request(cert, issuer);
  if (!req) {
    *error = req.error();
    return {};
  }
  auto der = cp::fetch_ocsp(responder.url(), *req, cp::OcspMethod::kPost, 5s);
  if (!der) {
    *error = der.error();
    return {};
  }
  return *der;
}

// --- OcspResponder -----------------------------------------------------------

OcspResponder::OcspResponder(const OcspResponderSpec& spec, uint16_t port)
    : logs_(std::make_unique<TempDir>()) {
  const std::string log = logs_->path() + "/responder.log";
  std::vector<std::string> args = {"openssl", "ocsp",    "-index",   spec.index,
                                   "-port",   "0",       "-rsigner", spec.rsigner,
                                   "-rkey",   spec.rkey, "-CA",      spec.ca};
  if (spec.ndays >= 0) {
    args.push_back("-ndays");
    args.push_back(std::to_string(spec.ndays));
  }
  args.insert(args.end(), spec.extra.begin(), spec.extra.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) {
    error_ = "fork failed";
    return;
  }
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execvp("openssl", argv.data());
    ::_exit(127);
  }

  // "ACCEPT [::]:PORT PID=N" once it listens.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (backend_port_ == 0) {
    const std::string out = slurp(log);
    if (const size_t at = out.find("ACCEPT "); at != std::string::npos) {
      const size_t end = out.find_first_of(" \n", at + 7);
      if (end != std::string::npos) {
        const std::string addr = out.substr(at + 7, end - at - 7);
        backend_port_ = static_cast<uint16_t>(std::atoi(addr.substr(addr.rfind(':') + 1).c_str()));
      }
    }
    if (backend_port_ != 0) break;
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      error_ = "openssl ocsp exited: " + out;
      return;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      error_ = "openssl ocsp did not listen within 10 s: " + out;
      stop();
      return;
    }
    std::this_thread::sleep_for(10ms);
  }

  listen_fd_ = listen_loopback(port, &port_);
  if (listen_fd_ < 0) {
    error_ = "cannot listen on 127.0.0.1:" + std::to_string(port);
    stop();
    return;
  }
  acceptor_ = std::thread([this] { accept_loop(); });
}

OcspResponder::~OcspResponder() {
  stop();
}

std::string OcspResponder::url() const {
  return "http://127.0.0.1:" + std::to_string(port_);
}

void OcspResponder::stop() {
  stop_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> relays;
  {
    std::lock_guard lock(mu_);
    relays.swap(relays_);
  }
  for (auto& t : relays) t.join();
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    listen_fd_ = -1;
  }
  stop_child(pid_);
  pid_ = -1;
}

void OcspResponder::accept_loop() {
  while (!stop_) {
    const int client = accept_for(listen_fd_, 20ms);
    if (client < 0) continue;
    std::lock_guard lock(mu_);
    relays_.emplace_back([this, client] { relay(client); });
  }
}

// Copies bytes both ways until both sides have finished (or stop).
void OcspResponder::relay(int client) {
  const int up = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_in a = loopback(backend_port_);
  if (up < 0 || ::connect(up, reinterpret_cast<const sockaddr*>(&a), sizeof(a)) != 0) {
    if (up >= 0) ::close(up);
    ::close(client);
    return;
  }
  bool counted = false;
  bool from_client = true;
  bool from_up = true;
  char buf[16384];
  while (!stop_ && (from_client || from_up)) {
    pollfd p[2] = {{from_client ? client : -1, POLLIN, 0}, {from_up ? up : -1, POLLIN, 0}};
    if (::poll(p, 2, 20) <= 0) continue;
    if (p[0].revents != 0) {
      const ssize_t n = ::recv(client, buf, sizeof(buf), 0);
      if (n > 0) {
        if (!counted) requests_++;
        counted = true;
        if (!send_all(up, {buf, static_cast<size_t>(n)})) from_up = false;
      } else {
        from_client = false;
        ::shutdown(up, SHUT_WR);
      }
    }
    if (p[1].revents != 0) {
      const ssize_t n = ::recv(up, buf, sizeof(buf), 0);
      if (n > 0) {
        if (!send_all(client, {buf, static_cast<size_t>(n)})) from_client = false;
      } else {
        from_up = false;
        ::shutdown(client, SHUT_WR);
      }
    }
  }
  ::close(up);
  ::close(client);
}

// --- FakeHttpServer ----------------------------------------------------------

FakeHttpServer::FakeHttpServer(HttpReply reply, uint16_t port) : reply_(std::move(reply)) {
  listen_fd_ = listen_loopback(port, &port_);
  if (listen_fd_ >= 0) thread_ = std::thread([this] { serve(); });
}

FakeHttpServer::~FakeHttpServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

std::string FakeHttpServer::url() const {
  return "http://127.0.0.1:" + std::to_string(port_);
}

std::string FakeHttpServer::last_head() const {
  std::lock_guard lock(mu_);
  return last_head_;
}

std::string FakeHttpServer::last_body() const {
  std::lock_guard lock(mu_);
  return last_body_;
}

void FakeHttpServer::serve() {
  while (!stop_) {
    const int fd = accept_for(listen_fd_, 20ms);
    if (fd < 0) continue;
    answer(fd);
    ::close(fd);
  }
}

void FakeHttpServer::answer(int fd) {
  // The head, then Content-Length bytes of body; 2 s at most.
  std::string in;
  size_t head_end = std::string::npos;
  size_t want = 0;
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  char buf[4096];
  while (!stop_ && std::chrono::steady_clock::now() < deadline && in.size() < (1u << 20)) {
    if (head_end != std::string::npos && in.size() >= head_end + 4 + want) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
    if (head_end == std::string::npos && (head_end = in.find("\r\n\r\n")) != std::string::npos) {
      std::string lower_head = in.substr(0, head_end);
      for (char& c : lower_head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (const size_t cl = lower_head.find("content-length:"); cl != std::string::npos) {
        want = static_cast<size_t>(std::atol(lower_head.c_str() + cl + 15));
      }
    }
  }
  if (head_end == std::string::npos) return;  // no request: not counted
  requests_++;
  {
    std::lock_guard lock(mu_);
    last_head_ = in.substr(0, head_end);
    last_body_ = in.substr(head_end + 4);
  }
  const auto answer_at = std::chrono::steady_clock::now() + reply_.delay;
  while (!stop_ && std::chrono::steady_clock::now() < answer_at) std::this_thread::sleep_for(5ms);
  if (stop_ || reply_.hang_up) return;
  std::string out = "HTTP/1.1 " + std::to_string(reply_.status) + " Scripted\r\n";
  if (!reply_.content_type.empty()) out += "Content-Type: " + reply_.content_type + "\r\n";
  if (!reply_.location.empty()) out += "Location: " + reply_.location + "\r\n";
  out += "Content-Length: " + std::to_string(reply_.body.size()) + "\r\nConnection: close\r\n\r\n";
  out += reply_.body;
  send_all(fd, out);
}

}  // namespace lode::test

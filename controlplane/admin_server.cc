#include "controlplane/admin_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "controlplane/status_page.h"
#include "lodestone/json_reader.h"
#include "lodestone/json_writer.h"
#include "lodestone/socket_address.h"

namespace lode::cp {

namespace {

constexpr size_t kMaxRequest = kMaxAdminRequest;
constexpr size_t kMaxConns = 64;  // per endpoint

// The value of header `name` (lower case) in an HTTP request head, trimmed;
// empty when absent.
// The path of "GET /path[?query] HTTP/1.x"; empty when it is no GET.
std::string_view get_path(std::string_view line) {
  if (!line.starts_with("GET ")) return {};
  const size_t end = line.find(' ', 4);
  const std::string_view target = line.substr(4, end == std::string_view::npos ? 0 : end - 4);
  return target.substr(0, target.find('?'));
}

std::string_view header_value(std::string_view head, std::string_view name) {
  size_t at = head.find("\r\n");
  while (at != std::string_view::npos && at + 2 < head.size()) {
    const size_t start = at + 2;
    const size_t end = head.find("\r\n", start);
    const std::string_view line = head.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    const size_t colon = line.find(':');
    if (colon == name.size() && std::equal(name.begin(), name.end(), line.begin(), [](char a, char b) {
          return a == static_cast<char>(std::tolower(static_cast<unsigned char>(b)));
        })) {
      std::string_view v = line.substr(colon + 1);
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
      return v;
    }
    at = end;
  }
  return {};
}

// A Host header naming this machine without DNS: an IPv4 or [IPv6] literal
// or localhost, with or without a port. An absent Host (HTTP/1.0) is allowed.
bool local_host(std::string_view host) {
  if (host.empty()) return true;
  std::string_view name = host;
  if (name.front() == '[') {
    const size_t close = name.find(']');
    if (close == std::string_view::npos) return false;
    const std::string v6(name.substr(1, close - 1));
    in6_addr a6{};
    return inet_pton(AF_INET6, v6.c_str(), &a6) == 1;
  }
  name = name.substr(0, name.find(':'));
  if (name == "localhost") return true;
  const std::string v4(name);
  in_addr a4{};
  return inet_pton(AF_INET, v4.c_str(), &a4) == 1;
}
constexpr auto kDeadline = std::chrono::seconds(2);

// One HTTP/1.1 response; the connection closes after it. Nothing served here
// may be cached, sniffed as another type or framed by another page.
std::string http_response(std::string_view status, std::string_view type, std::string_view body,
                          std::string_view extra_headers = {}) {
  std::string out;
  out.reserve(body.size() + 256 + extra_headers.size());
  out.append("HTTP/1.1 ").append(status).append("\r\nContent-Type: ").append(type);
  out.append("\r\nContent-Length: ").append(std::to_string(body.size()));
  out.append("\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n").append(extra_headers);
  out.append("Connection: close\r\n\r\n").append(body);
  return out;
}

}  // namespace

std::string AdminRequest::get(std::string_view key, std::string_view fallback) const {
  auto it = fields.find(key);
  return it == fields.end() ? std::string(fallback) : it->second;
}

bool AdminRequest::flag(std::string_view key) const { return get(key) == "true"; }

Result<AdminRequest, std::string> parse_admin_request(std::string_view s) {
  auto v = parse_json(s);
  if (!v) return unexpected(v.error());
  if (v->kind != JsonValue::Kind::kObject) return unexpected(std::string("expected a JSON object"));
  AdminRequest r;
  for (auto& [k, f] : v->fields) {
    if (f.kind == JsonValue::Kind::kObject || f.kind == JsonValue::Kind::kArray) {
      return unexpected("unsupported value for \"" + k + "\" (strings, numbers and booleans only)");
    }
    if (!r.fields.emplace(k, f.kind == JsonValue::Kind::kNull ? std::string("null") : std::move(f.text)).second) {
      return unexpected("duplicate key \"" + k + "\"");
    }
  }
  return r;
}

AdminServer::AdminServer(const Options& opt, Handler handler, Metrics metrics, std::vector<std::string>& warnings,
                         StatusJson status_json)
    : handler_(std::move(handler)),
      metrics_(std::move(metrics)),
      status_json_(std::move(status_json)),
      socket_path_(opt.socket_path) {
  if (!opt.group.empty()) {
    if (const group* g = getgrnam(opt.group.c_str()); g != nullptr) {
      group_gid_ = g->gr_gid;
    } else {
      warnings.push_back("[admin] group '" + opt.group + "' does not exist: the admin socket stays 0600");
    }
  }
  if (!socket_path_.empty()) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_path_.size() >= sizeof addr.sun_path) {
      warnings.push_back("admin socket path too long: " + socket_path_);
    } else {
      std::memcpy(addr.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
      admin_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      unlink(socket_path_.c_str());
      // No umask here (other threads create files): the socket is made 0600
      // before listen(), so nobody can connect in between.
      const bool bound = admin_fd_ >= 0 && bind(admin_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                         chmod(socket_path_.c_str(), 0600) == 0;
      if (!bound || listen(admin_fd_, 16) != 0) {
        warnings.push_back("admin socket " + socket_path_ + ": " + std::strerror(errno));
        if (admin_fd_ >= 0) close(admin_fd_);
        admin_fd_ = -1;
      } else if (group_gid_ != ~0u) {
        if (chown(socket_path_.c_str(), static_cast<uid_t>(-1), group_gid_) != 0 ||
            chmod(socket_path_.c_str(), 0660) != 0) {
          warnings.push_back("admin socket " + socket_path_ + ": cannot give it to the group: " +
                             std::strerror(errno));
        }
      }
    }
  }
  if (!opt.metrics.empty()) {
    auto a = parse_socket_address(opt.metrics);
    if (!a) {
      warnings.push_back("metrics are not served: '" + opt.metrics + "' is not an address:port");
      return;
    }
    metrics_fd_ = socket(a->family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int one = 1;
    if (metrics_fd_ >= 0) setsockopt(metrics_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (metrics_fd_ < 0 || bind(metrics_fd_, a->sa(), a->len) != 0 || listen(metrics_fd_, 16) != 0) {
      warnings.push_back("metrics are not served on " + opt.metrics + ": " + std::strerror(errno));
      if (metrics_fd_ >= 0) close(metrics_fd_);
      metrics_fd_ = -1;
    }
  }
}

AdminServer::~AdminServer() {
  for (auto& c : conns_) close(c.fd);
  if (admin_fd_ >= 0) {
    close(admin_fd_);
    unlink(socket_path_.c_str());
  }
  if (metrics_fd_ >= 0) close(metrics_fd_);
}

std::optional<AdminPeer> admin_peer(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return std::nullopt;
  AdminPeer peer{cred.uid, cred.gid, {}};
  peer.groups.resize(32);
  while (true) {
    socklen_t bytes = static_cast<socklen_t>(peer.groups.size() * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, peer.groups.data(), &bytes) == 0) {
      peer.groups.resize(bytes / sizeof(gid_t));
      return peer;
    }
    if (errno == ERANGE && bytes / sizeof(gid_t) > peer.groups.size()) {
      peer.groups.resize(bytes / sizeof(gid_t));  // the size the kernel asked for
      continue;
    }
    break;
  }
  // A kernel without SO_PEERGROUPS: the groups the user database gives the
  // peer's user (a process that dropped them is still counted in).
  peer.groups.clear();
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (getpwuid_r(cred.uid, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) return peer;
  int n = 64;
  peer.groups.resize(static_cast<size_t>(n));
  if (getgrouplist(pw.pw_name, cred.gid, peer.groups.data(), &n) < 0) {
    peer.groups.resize(static_cast<size_t>(n));
    if (getgrouplist(pw.pw_name, cred.gid, peer.groups.data(), &n) < 0) n = 0;
  }
  peer.groups.resize(static_cast<size_t>(std::max(n, 0)));
  return peer;
}

bool admin_peer_allowed(const AdminPeer& peer, uid_t own_uid, std::optional<gid_t> group) {
  if (peer.uid == 0 || peer.uid == own_uid) return true;
  if (!group) return false;
  return peer.gid == *group || std::find(peer.groups.begin(), peer.groups.end(), *group) != peer.groups.end();
}

bool AdminServer::peer_allowed(int fd) const {
  const auto peer = admin_peer(fd);
  return peer && admin_peer_allowed(*peer, geteuid(),
                                    group_gid_ != ~0u ? std::optional<gid_t>(group_gid_) : std::nullopt);
}

void AdminServer::fill_poll(std::vector<pollfd>& fds) const {
  fds.push_back({admin_fd_, POLLIN, 0});
  fds.push_back({metrics_fd_, POLLIN, 0});
  // Answered (its own answer or a shared /metrics one): writing only.
  for (const auto& c : conns_) {
    fds.push_back({c.fd, static_cast<short>(c.out.empty() && !c.shared_out ? POLLIN : POLLOUT), 0});
  }
}

int AdminServer::timeout_ms() const {
  if (conns_.empty()) return -1;
  auto first = conns_.front().deadline;
  for (const auto& c : conns_) first = std::min(first, c.deadline);
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(first - std::chrono::steady_clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count() + 1));
}

void AdminServer::on_poll(const std::vector<pollfd>& fds, size_t first) {
  // Connections first (their slots match fds from fill_poll), then accepts.
  metrics_answer_.reset();
  const size_t n = conns_.size();
  for (size_t k = 0; k < n; ++k) {
    const short ev = fds[first + 2 + k].revents;
    if (ev == 0) continue;
    // Answered: only writing goes on (a hang-up or more bytes must not
    // answer it again).
    if ((ev & POLLOUT) != 0 || !conns_[k].out.empty() || conns_[k].shared_out) {
      on_writable(conns_[k]);
    } else {
      on_readable(conns_[k]);
    }
  }
  const auto now = std::chrono::steady_clock::now();
  std::erase_if(conns_, [&](Conn& c) {
    const bool done = c.fd < 0 || now >= c.deadline;
    if (done && c.fd >= 0) close(c.fd);
    return done;
  });
  if (fds[first].revents != 0) accept_on(admin_fd_, false);
  if (fds[first + 1].revents != 0) accept_on(metrics_fd_, true);
}

void AdminServer::accept_on(int listen_fd, bool http) {
  while (true) {
    const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    // Each endpoint has its own cap: slow HTTP clients (the metrics port may
    // face a network) cannot lock lodectl out, nor the other way round.
    if (std::count_if(conns_.begin(), conns_.end(), [&](const Conn& c) { return c.http == http; }) >=
        static_cast<std::ptrdiff_t>(kMaxConns)) {
      close(fd);
      continue;
    }
    // A peer that is not allowed gets its answer like anyone else, after its
    // request is read: closing with unread data would reset the connection
    // and the client would never see why.
    const bool refused = !http && !peer_allowed(fd);
    if (refused) ++refused_;
    conns_.push_back(Conn{fd, http, refused, {}, {}, 0, std::chrono::steady_clock::now() + kDeadline});
  }
}

void AdminServer::on_readable(Conn& c) {
  char buf[4096];
  while (true) {
    const ssize_t n = recv(c.fd, buf, sizeof buf, 0);
    if (n > 0) {
      c.in.append(buf, static_cast<size_t>(n));
      if (c.in.size() > kMaxRequest) {
        close(c.fd);
        c.fd = -1;
        return;
      }
      continue;
    }
    if ((n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) ||
        (n == 0 && c.in.find(c.http ? "\r\n\r\n" : "\n") != std::string::npos)) break;  // half-closed after a request
    close(c.fd);  // EOF before a complete request, or an error
    c.fd = -1;
    return;
  }
  const size_t end = c.http ? c.in.find("\r\n\r\n") : c.in.find('\n');
  if (end == std::string::npos) return;
  answer(c);
  // The handler may have taken long (a reload validating every certificate
  // takes seconds): the client gets its own time to take the answer, which
  // may not fit the socket's buffer at once.
  c.deadline = std::max(c.deadline, std::chrono::steady_clock::now() + kDeadline);
  on_writable(c);
}

void AdminServer::answer(Conn& c) {
  if (c.refused) {
    c.out = R"({"v":1,"ok":false,"error":"permission denied: not root, the daemon's user or [admin] group"})"
            "\n";
    return;
  }
  if (!c.http) {
    std::string line = c.in.substr(0, c.in.find('\n'));
    auto req = parse_admin_request(line);
    c.out = req ? handler_(*req)
                : JsonWriter().begin_object().field("v", uint64_t{1}).field("ok", false)
                      .field("error", "bad request: " + req.error()).end_object().take();
    c.out += '\n';
    // A request may carry a private key (certs.replace): no copy outlives it.
    if (req) {
      for (auto& [k, v] : req->fields) OPENSSL_cleanse(v.data(), v.size());
    }
    OPENSSL_cleanse(line.data(), line.size());
    OPENSSL_cleanse(c.in.data(), c.in.size());
    return;
  }
  const std::string_view line = std::string_view(c.in).substr(0, c.in.find("\r\n"));
  if (get_path(line) == "/metrics") {
    c.shared_out = metrics_answer();
    return;
  }
  c.out = http_reply(line, header_value(c.in, "host"));
}

std::shared_ptr<const std::string> AdminServer::metrics_answer() {
  if (!metrics_answer_) {
    metrics_answer_ = std::make_shared<const std::string>(
        http_response("200 OK", "text/plain; version=0.0.4; charset=utf-8", metrics_()));
  }
  return metrics_answer_;
}

// "GET /path[?query] HTTP/1.x": the path picks the answer, the query is
// ignored (the status page numbers its scrapes with one). (/metrics is
// answered by metrics_answer.)
std::string AdminServer::http_reply(std::string_view line, std::string_view host) const {
  if (!line.starts_with("GET ")) {
    return http_response("405 Method Not Allowed", "text/plain", "GET only\n", "Allow: GET\r\n");
  }
  const std::string_view path = get_path(line);
  // The pages a browser loads answer only to a Host that is an address or
  // localhost: a web page that rebinds its own DNS name to this address
  // cannot read them through the operator's browser. (/metrics is for
  // Prometheus, which may name its targets; it holds no names or paths.)
  if (status_json_ && (path == "/status.json" || path == "/status") && !local_host(host)) {
    return http_response("403 Forbidden", "text/plain", "the status page answers to an IP address or localhost only\n");
  }
  if (status_json_ && path == "/status.json") {
    return http_response("200 OK", "application/json; charset=utf-8", status_json_());
  }
  if (status_json_ && path == "/status") {
    return http_response("200 OK", "text/html; charset=utf-8", status_page_html(),
                         "Content-Security-Policy: " + status_page_csp() +
                             "\r\nX-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n");
  }
  return http_response("404 Not Found", "text/plain", status_json_ ? "see /metrics or /status\n" : "see /metrics\n");
}

void AdminServer::on_writable(Conn& c) {
  if (c.fd < 0) return;
  const std::string& out = c.shared_out ? *c.shared_out : c.out;
  while (c.sent < out.size()) {
    const ssize_t n = send(c.fd, out.data() + c.sent, out.size() - c.sent, MSG_NOSIGNAL);
    if (n > 0) {
      c.sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    break;
  }
  close(c.fd);
  c.fd = -1;
}

}  // namespace lode::cp

#include "controlplane/bgp.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <net/if.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "lodestone/json_writer.h"

extern char** environ;

namespace lode::cp {

namespace {

// The address bytes of a socket address (4 or 16), nullptr for other families.
const uint8_t* address_bytes(const SocketAddress& a) noexcept {
  if (a.family() == AF_INET) return reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr);
  if (a.family() == AF_INET6) return reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr.s6_addr;
  return nullptr;
}

size_t address_size(int family) noexcept { return family == AF_INET ? 4 : 16; }

bool is_wildcard(const SocketAddress& a) noexcept {
  const uint8_t* b = address_bytes(a);
  return b != nullptr && std::all_of(b, b + address_size(a.family()), [](uint8_t x) { return x == 0; });
}

std::string prefix_text(int family, const std::array<uint8_t, 16>& addr, uint8_t len) {
  char host[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, addr.data(), host, sizeof host);
  return std::string(host) + "/" + std::to_string(len);
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

Result<VipPrefix, std::string> parse_vip_prefix(std::string_view text) {
  VipPrefix p;
  const size_t slash = text.find('/');
  const std::string host(text.substr(0, slash));
  if (inet_pton(AF_INET, host.c_str(), p.addr.data()) == 1) {
    p.family = AF_INET;
  } else if (inet_pton(AF_INET6, host.c_str(), p.addr.data()) == 1) {
    p.family = AF_INET6;
  } else {
    return unexpected(std::string("expected an IPv4 or IPv6 prefix, e.g. 192.0.2.10/32 or 2001:db8::10/128"));
  }
  const unsigned max = p.family == AF_INET ? 32 : 128;
  unsigned len = max;
  if (slash != std::string_view::npos) {
    const std::string_view digits = text.substr(slash + 1);
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), len);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || len > max) {
      return unexpected("the prefix length must be 0.." + std::to_string(max));
    }
  }
  p.len = static_cast<uint8_t>(len);
  for (unsigned bit = len; bit < max; ++bit) {
    if ((p.addr[bit / 8] & (0x80u >> (bit % 8))) != 0) {
      return unexpected("host bits are set past /" + std::to_string(len) + " (did you mean " +
                        prefix_text(p.family, p.addr, static_cast<uint8_t>(max)) + "?)");
    }
  }
  p.text = prefix_text(p.family, p.addr, p.len);
  return p;
}

std::optional<VipPrefix> vip_prefix_of(const SocketAddress& a) {
  const uint8_t* b = address_bytes(a);
  if (b == nullptr || is_wildcard(a)) return std::nullopt;
  VipPrefix p;
  p.family = a.family();
  std::memcpy(p.addr.data(), b, address_size(p.family));
  p.len = static_cast<uint8_t>(p.family == AF_INET ? 32 : 128);
  p.text = prefix_text(p.family, p.addr, p.len);
  return p;
}

std::vector<VipDecision> decide_vips(const config::Config& cfg, const NodeView& node) {
  std::vector<VipDecision> out;
  for (const auto& vip : cfg.bgp.announce) {
    VipDecision d{vip.prefix, false, {}};
    auto prefix = parse_vip_prefix(vip.prefix);
    if (!prefix) {
      d.reason = "invalid prefix: " + prefix.error();
    } else if (!node.attached) {
      d.reason = "the dataplane is not attached";
    } else if (!node.snapshot_in_service) {
      d.reason = "the first snapshot is not in service yet";
    } else if (node.draining) {
      d.reason = "the node is draining";
    }
    // The listeners that receive this VIP's traffic (a wildcard receives
    // everything) and the pools of their routes.
    std::set<std::string> listeners, pools;
    for (const auto& l : cfg.listeners) {
      for (const auto& a : l.listen) {
        if (!prefix || !(prefix->contains(a) || (is_wildcard(a) && a.family() == prefix->family))) continue;
        listeners.insert(l.name);
        if (!d.reason.empty() || !node.kernel_listeners) continue;
        const uint32_t n = node.listening ? node.listening(a) : 0;
        if (n < std::max<uint32_t>(node.workers, 1)) {
          d.reason = "listener " + l.name + " " + a.to_string() + ": " + std::to_string(n) + " of " +
                     std::to_string(std::max<uint32_t>(node.workers, 1)) + " workers listening";
        }
      }
    }
    if (d.reason.empty() && listeners.empty()) d.reason = "no listener address is inside " + vip.prefix;
    for (const auto& r : cfg.routes) {
      if (!r.pool.empty() && listeners.count(r.listener) != 0) pools.insert(r.pool);
    }
    // A VIP whose routes only reject has no backend to require.
    if (d.reason.empty() && vip.require_healthy_backend && !pools.empty()) {
      bool usable = false;
      for (const auto& name : pools) {
        const config::PoolConfig* p = cfg.find_pool(name);
        usable = usable || (p != nullptr && node.pool_usable && node.pool_usable(*p));
      }
      if (!usable) {
        std::string names;
        for (const auto& name : pools) names += (names.empty() ? "" : ", ") + name;
        d.reason = "no backend up in pool(s) " + names;
      }
    }
    d.announce = d.reason.empty();
    out.push_back(std::move(d));
  }
  return out;
}

std::vector<ListenSocket> parse_proc_net_tcp(std::string_view text) {
  std::vector<ListenSocket> out;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    // "  sl  local_address rem_address   st ...": the local address is the
    // address's 32-bit words each printed with %08X in host order, then
    // ":PORT" in hex; st 0A is LISTEN.
    std::istringstream f(line);
    std::string sl, local, remote, st;
    if (!(f >> sl >> local >> remote >> st) || st != "0A") continue;
    const size_t hex_len = local.size() == 13 ? 8 : local.size() == 37 ? 32 : 0;
    if (hex_len == 0 || local[hex_len] != ':') continue;
    ListenSocket s;
    s.family = hex_len == 8 ? AF_INET : AF_INET6;
    bool ok = true;
    for (size_t w = 0; w < hex_len / 8 && ok; ++w) {
      uint32_t word = 0;
      const char* b = local.data() + w * 8;
      ok = std::from_chars(b, b + 8, word, 16).ptr == b + 8;
      std::memcpy(s.addr.data() + w * 4, &word, 4);
    }
    unsigned port = 0;
    const char* p = local.data() + hex_len + 1;
    ok = ok && std::from_chars(p, p + 4, port, 16).ptr == p + 4;
    s.port = static_cast<uint16_t>(port);
    if (ok) out.push_back(s);
  }
  return out;
}

namespace {

// One sock_diag dump of a family's TCP listeners; false if it failed.
bool diag_listeners(int family, std::vector<ListenSocket>& out) {
  const int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return false;
  timeval tv{1, 0};  // the kernel answers at once; never wait long
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.req.sdiag_family = static_cast<uint8_t>(family);
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = 1u << 10;  // TCP_LISTEN
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, &msg, sizeof msg, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
    close(fd);
    return false;
  }
  alignas(nlmsghdr) char buf[32768];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    // The messages of this datagram, each length checked against what is left.
    size_t left = static_cast<size_t>(n);
    for (const char* at = buf; left >= sizeof(nlmsghdr);) {
      const auto* h = reinterpret_cast<const nlmsghdr*>(at);
      if (h->nlmsg_len < sizeof(nlmsghdr) || h->nlmsg_len > left) break;
      const size_t step = std::min<size_t>(NLMSG_ALIGN(h->nlmsg_len), left);
      at += step;
      left -= step;
      if (h->nlmsg_type == NLMSG_DONE) {
        close(fd);
        return true;
      }
      if (h->nlmsg_type == NLMSG_ERROR || h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) {
        close(fd);
        return false;
      }
      const auto* m = reinterpret_cast<const inet_diag_msg*>(reinterpret_cast<const char*>(h) + NLMSG_HDRLEN);
      ListenSocket s;
      s.family = m->idiag_family;
      std::memcpy(s.addr.data(), m->id.idiag_src, s.family == AF_INET ? 4 : 16);
      s.port = ntohs(m->id.idiag_sport);
      out.push_back(s);
    }
  }
  close(fd);
  return false;
}

}  // namespace

std::vector<ListenSocket> listening_sockets() {
  std::vector<ListenSocket> out;
  if (diag_listeners(AF_INET, out) && diag_listeners(AF_INET6, out)) return out;
  out.clear();
  for (const char* path : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    auto part = parse_proc_net_tcp(ss.str());
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

uint32_t count_listening(const std::vector<ListenSocket>& sockets, const SocketAddress& a) {
  const uint8_t* want = address_bytes(a);
  if (want == nullptr) return 0;
  uint32_t n = 0;
  for (const auto& s : sockets) {
    if (s.family == a.family() && s.port == a.port() && std::memcmp(s.addr.data(), want, address_size(s.family)) == 0) ++n;
  }
  return n;
}

std::string bird_include(const std::vector<std::string>& prefixes, std::string_view liveness_interface) {
  std::string out =
      "# Generated by Lodestone (controlplane/bgp.cc), rewritten whenever the set of VIPs to announce changes.\n"
      "# Include it at the top level of bird.conf and export proto \"lodestone4\" / \"lodestone6\" to the router.\n";
  const std::string via = liveness_interface.empty() ? std::string(" blackhole")
                                                     : " via \"" + std::string(liveness_interface) + "\"";
  for (const char* family : {"4", "6"}) {
    out += std::string("protocol static lodestone") + family + " {\n  ipv" + family + ";\n";
    // The link's carrier too: a persistent link (made beforehand for a
    // non-root Lodestone) stays when the process ends but loses its carrier.
    if (!liveness_interface.empty()) out += "  check link yes;\n";
    for (const auto& p : prefixes) {
      const bool v6 = p.find(':') != std::string::npos;
      if (v6 == (family[0] == '6')) out += "  route " + p + via + ";\n";
    }
    out += "}\n";
  }
  return out;
}

// ------------------------------------------------------------ Announcer

Announcer::~Announcer() {
  if (child_ > 0) {
    kill(child_, SIGKILL);
    waitpid(child_, nullptr, 0);
  }
  if (pipe_ >= 0) close(pipe_);
  close_link();
}

void Announcer::configure(const config::BgpConfig& bgp) {
  const bool was = bgp_.enabled;
  const std::string old_include = bgp_.include;
  bgp_ = bgp;
  if (!bgp_.enabled) {
    // Turned off by a reload: what this process announced is withdrawn.
    if (was) want({});
    close_link();
    return;
  }
  if (bgp_.include != old_include) dirty_ = true;
  const std::string link = bgp_.liveness_interface;
  if (link != link_name_) {
    close_link();
    if (!link.empty()) open_link(link);
    dirty_ = true;  // the routes name the link (or became blackholes)
  }
}

void Announcer::open_link(const std::string& name) {
  auto fail = [&](const char* what) {
    ++liveness_errors_;
    event_(JsonWriter().begin_object().field("event", "bgp_liveness_link_failed").field("level", "error")
               .field("interface", name).field("error", std::string(what) + ": " + std::strerror(errno))
               .field("effect", "the VIPs are announced as blackhole routes: a killed Lodestone stays announced "
                                "until BIRD is told otherwise")
               .field("hint", "without CAP_NET_ADMIN, create the link beforehand as root: ip tuntap add dev " + name +
                                  " mode tun user USER && ip link set " + name + " up")
               .end_object().take());
  };
  const int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) return fail("open /dev/net/tun");
  ifreq ifr{};
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
    fail("TUNSETIFF");
    close(fd);
    return;
  }
  // Up: a link made beforehand (`ip tuntap add dev NAME mode tun user U`,
  // `ip link set NAME up`) is up already and needs no privilege here.
  const int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq up{};
  std::strncpy(up.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (s < 0 || ioctl(s, SIOCGIFFLAGS, &up) != 0 ||
      ((up.ifr_flags & IFF_UP) == 0 && (up.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &up) != 0))) {
    fail("bringing the link up");
    if (s >= 0) close(s);
    close(fd);
    return;
  }
  close(s);
  tun_ = fd;
  link_name_ = name;
}

void Announcer::close_link() {
  if (tun_ >= 0) close(tun_);  // the kernel deletes the link
  tun_ = -1;
  link_name_.clear();
}

void Announcer::want(const std::vector<VipDecision>& decisions) {
  std::vector<std::string> next;
  std::set<std::string> listed;
  for (const auto& d : decisions) {
    VipState& v = vips_[d.prefix];
    v.wanted = d.announce;
    v.reason = d.reason;
    listed.insert(d.prefix);
    if (d.announce) next.push_back(d.prefix);
  }
  // VIPs a reload removed: reported until their withdrawal is applied.
  for (auto it = vips_.begin(); it != vips_.end();) {
    if (listed.count(it->first) == 0 && !it->second.announced) {
      it = vips_.erase(it);
    } else {
      if (listed.count(it->first) == 0) {
        it->second.wanted = false;
        it->second.reason = "no longer configured";
      }
      ++it;
    }
  }
  std::sort(next.begin(), next.end());
  next.erase(std::unique(next.begin(), next.end()), next.end());
  if (next != wanted_) {
    wanted_ = std::move(next);
    // A changed set is tried at once, not after the backoff of a failure.
    retry_at_ = {};
  }
}

void Announcer::tick(Clock::time_point now) {
  if (child_ > 0) {
    int status = 0;
    const pid_t r = waitpid(child_, &status, WNOHANG);
    if (r == child_) {
      drain_pipe();
      finish_run(status, false, now);
    } else if (now >= deadline_) {
      kill(child_, SIGKILL);
      waitpid(child_, &status, 0);
      drain_pipe();
      finish_run(status, true, now);
    }
    return;
  }
  if (!bgp_.enabled && applied_.empty()) return;  // nothing of ours to take back
  if ((wanted_ == applied_ && !dirty_) || now < retry_at_) return;
  start_run(now);
}

void Announcer::start_run(Clock::time_point now) {
  // The include first, atomically: BIRD never reads half a file.
  const std::string tmp = bgp_.include + ".tmp";
  const std::string text = bird_include(wanted_, link_name_);
  auto fail_now = [&](const std::string& why) {
    output_ = why;
    finish_run(-1, false, now);
  };
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fail_now(tmp + ": " + std::strerror(errno));
  const bool written = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && fsync(fd) == 0;
  fchmod(fd, 0644);  // BIRD usually runs as its own user
  close(fd);
  if (!written || std::rename(tmp.c_str(), bgp_.include.c_str()) != 0) {
    unlink(tmp.c_str());
    return fail_now(bgp_.include + ": " + std::strerror(errno));
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return fail_now(std::string("pipe: ") + std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
  // The control plane blocks HUP/TERM/INT (signalfd) and ignores PIPE:
  // birdc starts with neither.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  const char* argv[] = {bgp_.birdc.c_str(), "-s", bgp_.socket.c_str(), "configure", nullptr};
  pid_t pid = -1;
  const int err = posix_spawnp(&pid, bgp_.birdc.c_str(), &actions, &attr, const_cast<char* const*>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(fds[1]);
  if (err != 0) {
    close(fds[0]);
    return fail_now(bgp_.birdc + ": " + std::strerror(err));
  }
  child_ = pid;
  pipe_ = fds[0];
  output_.clear();
  running_ = wanted_;
  dirty_ = false;
  deadline_ = now + std::chrono::milliseconds(bgp_.birdc_timeout_ms);
}

void Announcer::drain_pipe() {
  if (pipe_ < 0) return;
  char buf[4096];
  ssize_t n;
  while ((n = read(pipe_, buf, sizeof buf)) > 0) {
    if (output_.size() < 16 * 1024) output_.append(buf, static_cast<size_t>(n));
  }
}

void Announcer::finish_run(int status, bool timed_out, Clock::time_point now) {
  if (pipe_ >= 0) close(pipe_);
  pipe_ = -1;
  const bool spawned = child_ > 0;
  child_ = -1;
  const bool ok = spawned && !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  ++configures_;
  // birdc's lines, without its "BIRD x.y ready." greeting, on one line.
  std::string said;
  std::istringstream in(output_);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || (line.rfind("BIRD ", 0) == 0 && line.find(" ready.") != std::string::npos)) continue;
    said += (said.empty() ? "" : " | ") + line;
  }
  if (!ok) {
    dirty_ = true;  // BIRD may hold either file: write and configure again
    last_failed_ = true;
    ++failures_;
    if (timed_out) ++timeouts_;
    ++failed_runs_;
    const auto backoff = std::chrono::milliseconds(std::min(10'000, 500 << std::min(failed_runs_ - 1, 5)));
    retry_at_ = now + backoff;
    JsonWriter w;
    w.begin_object().field("event", "bgp_configure_failed").field("level", "error").field("birdc", bgp_.birdc)
        .field("socket", bgp_.socket);
    if (timed_out) {
      w.field("error", "timed out after " + std::to_string(bgp_.birdc_timeout_ms) + " ms (killed)");
    } else if (spawned && WIFEXITED(status)) {
      w.field("exit_status", static_cast<int64_t>(WEXITSTATUS(status)));
    } else if (spawned && WIFSIGNALED(status)) {
      w.field("signal", static_cast<int64_t>(WTERMSIG(status)));
    }
    w.field("output", said).field("failures", failures_).field("retry_in_ms", static_cast<uint64_t>(backoff.count()));
    event_(w.end_object().take());
    return;
  }
  last_failed_ = false;
  failed_runs_ = 0;
  applied_ = running_;
  const int64_t t = unix_now();
  JsonWriter w;
  w.begin_object().field("event", "bgp_configured").key("announced").begin_array();
  for (const auto& p : applied_) w.value(p);
  w.end_array().key("withdrawn").begin_array();
  for (auto& [prefix, v] : vips_) {
    const bool now_announced = std::binary_search(applied_.begin(), applied_.end(), prefix);
    if (now_announced != v.announced) {
      v.announced = now_announced;
      v.last_change_unix = t;
      if (!now_announced) w.value(prefix);
    }
  }
  event_(w.end_array().field("birdc", said).end_object().take());
  std::erase_if(vips_, [](const auto& kv) { return !kv.second.announced && kv.second.reason == "no longer configured"; });
}

void Announcer::fill_poll(std::vector<pollfd>& fds) const { fds.push_back({pipe_, POLLIN, 0}); }

void Announcer::on_poll(const std::vector<pollfd>& fds, size_t first, Clock::time_point now) {
  if (first >= fds.size() || pipe_ < 0 || fds[first].fd != pipe_ || fds[first].revents == 0) return;
  drain_pipe();
  // End of output: birdc has exited or is about to. Reaped here, or by
  // tick() (soon: timeout_ms() asks for it) if it is not gone yet.
  if ((fds[first].revents & (POLLHUP | POLLERR)) != 0) {
    int status = 0;
    if (waitpid(child_, &status, WNOHANG) == child_) {
      finish_run(status, false, now);
    } else {
      close(pipe_);
      pipe_ = -1;
    }
  }
}

int Announcer::timeout_ms(Clock::time_point now) const {
  auto until = [&](Clock::time_point t) {
    return static_cast<int>(std::clamp<int64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(t - now).count() + 1, 0, 60'000));
  };
  if (child_ > 0) return pipe_ < 0 ? std::min(10, until(deadline_)) : until(deadline_);
  if (!bgp_.enabled && applied_.empty()) return -1;
  return wanted_ != applied_ || dirty_ ? until(retry_at_) : -1;
}

void Announcer::settle(std::chrono::milliseconds limit) {
  const auto end = Clock::now() + limit;
  while (Clock::now() < end) {
    const auto now = Clock::now();
    tick(now);
    if (in_sync() || (child_ < 0 && last_failed_)) return;
    std::vector<pollfd> fds;
    fill_poll(fds);
    const int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(end - now).count());
    poll(fds.data(), fds.size(), std::clamp(timeout_ms(now), 1, std::max(left, 1)));
    on_poll(fds, 0, Clock::now());
  }
}

}  // namespace lode::cp

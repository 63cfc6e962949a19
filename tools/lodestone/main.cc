// lodestone: the SNI proxy (kernel front, TLS workers) and its control plane.
//
//   lodestone run CONFIG [--workers N] [--stats-file PATH] [--run-dir DIR]
//   lodestone check CONFIG
//   lodestone controlplane CONFIG --socket PATH   (started by `run`)
//   lodestone version
//
// `run` is the dataplane: it binds the listeners, listens on the control
// socket (RUN_DIR/lodestone-PID.sock), starts the control plane as a child
// process and restarts it whenever it exits (backoff 50 ms .. 5 s), waits for
// the first snapshot, then starts the workers. Traffic never depends on the
// control plane being alive: the snapshot in service stays.
//
// SIGHUP is forwarded to the control plane, which re-reads CONFIG and the
// certificates and publishes what changed (established connections keep the
// generation they started with); a bad configuration is refused with its
// errors ("reload_refused") and the old one stays in service. (SIGHUP
// re-reads the file in service: `lodectl routes reload CONFIG` switches it.)
// SIGUSR1 reopens the access log file (logrotate: rename it, then send
// SIGUSR1; tools/logrotate/lodestone); SIGUSR2 prints the summed counters.
// SIGTERM/SIGINT stop accepting, drain up to timeouts.drain_ms, stop the
// control plane, exit 0.
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/config.h"
#include "controlplane/control_plane.h"
#include "controlplane/published_config.h"
#include "dataplane/control/control_link.h"
#include "dataplane/control/stats_segment.h"
#include "dataplane/front/cookie_secret.h"
#include "dataplane/front/dpdk/dpdk_front.h"
#include "dataplane/front/handoff.h"
#include "dataplane/worker/heap_trim.h"
#include "dataplane/worker/pid_cache.h"
#include "dataplane/worker/worker.h"
#include "lodestone/json_writer.h"
#include "tools/lodectl/check.h"
#include "tools/lodestone/notify.h"
#include "tools/lodestone/privileges.h"
#include "tools/lodestone/runtime_builder.h"
#include "tools/lodestone/user_writable.h"

namespace {

using lode::JsonWriter;

// Access and event log: one JSON object per line, from any thread.
class Log {
 public:
  // Empty: open; else why not (the path and what it is).
  std::string open(const std::string& where) {
    if (where == "off") return {};
    if (where == "stderr") {
      out_ = stderr;
      return {};
    }
    path_ = where;
    auto file = open_file(where);
    if (!file) return file.error();
    out_ = *file;
    owned_ = true;
    return {};
  }
  ~Log() {
    if (owned_) std::fclose(out_);
  }
  // The file's descriptor; -1 for stderr or off.
  int fd() const noexcept { return owned_ ? fileno(out_) : -1; }
  // A batch of complete lines from one worker.
  void lines(const std::string& batch) {
    if (out_ == nullptr) return;
    std::lock_guard lock(mu_);
    std::fwrite(batch.data(), 1, batch.size(), out_);
    std::fflush(out_);
  }
  // SIGUSR1 (logrotate's postrotate): the path again, a new file if it was
  // renamed. Swapped between two batches under the writers' lock, so no
  // line is lost, split or interleaved: every batch before the swap is in
  // the old file, every one after in the new. If the path cannot be
  // opened, the old file stays in use. Empty: done (or nothing to reopen).
  std::string reopen() {
    if (!owned_) return {};
    auto file = open_file(path_);
    if (!file) return file.error();
    FILE* fresh = *file;
    FILE* old = nullptr;
    {
      std::lock_guard lock(mu_);
      old = out_;
      out_ = fresh;
    }
    std::fclose(old);
    return {};
  }

 private:
  // Not through a symbolic link, not a FIFO or a device, one link
  // (user_writable.h): the file is opened as root, then handed to the
  // [process] user. Close-on-exec: not inherited by the control plane.
  static lode::Result<FILE*, std::string> open_file(const std::string& path) {
    auto fd = lode::app::open_log_file(path);
    if (!fd) return lode::unexpected(fd.error());
    FILE* f = fdopen(*fd, "a");
    if (f == nullptr) {
      const int e = errno;
      close(*fd);
      return lode::unexpected(path + ": " + std::strerror(e));
    }
    return f;
  }

  std::mutex mu_;
  std::string path_;
  FILE* out_ = nullptr;
  bool owned_ = false;
};

// Events (start, reload, stop) always go to stderr, whatever the access log.
void event(const std::string& json) {
  std::fputs(json.c_str(), stderr);
  std::fputc('\n', stderr);
  std::fflush(stderr);
}

std::string stats_json(const std::vector<std::unique_ptr<lode::worker::Worker>>& workers, uint64_t generation,
                       uint64_t snapshot, const lode::control::LinkStats& link, uint64_t cp_starts,
                       const lode::front::DpdkFront* dpdk) {
  JsonWriter w;
  w.begin_object();
  if (dpdk != nullptr) {
    const lode::front::FrontStats fs = dpdk->stats();
    w.key("front").begin_object();
    w.field("kind", "dpdk").field("lcores", static_cast<uint64_t>(dpdk->lcores()));
#define LODE_FRONT_FIELD(name, help) w.field(#name, fs.name);
    LODE_FRONT_COUNTERS(LODE_FRONT_FIELD)
#undef LODE_FRONT_FIELD
    w.end_object();
  }
  w.field("generation", generation);
  w.field("snapshot_generation", snapshot);
  w.field("controlplane_starts", cp_starts);
  w.field("controlplane_attaches", link.attaches.load());
  w.field("segments_applied", link.segments_applied.load());
  w.field("segments_refused", link.segments_refused.load());
  w.field("reloads_refused", link.reloads_refused.load());  // by the control plane (kReloadRefused)
  w.field("reload_answered", link.reload_answered.load());  // the last SIGHUP reload answered (its number)
  w.field("last_apply_us", link.last_apply_us.load());
  w.field("workers", static_cast<uint64_t>(workers.size()));
#define LODE_SUM(name, kind, help)                                                   \
  {                                                                                  \
    uint64_t total = 0;                                                              \
    for (const auto& wk : workers) total += wk->stats().name.load(std::memory_order_relaxed); \
    w.field(#name, total);                                                           \
  }
  LODE_WORKER_COUNTERS(LODE_SUM)
#undef LODE_SUM
  w.key("per_worker").begin_array();
  for (const auto& wk : workers) {
    w.begin_object();
    w.field("active", wk->stats().active.load(std::memory_order_relaxed));
    w.field("handshakes", wk->stats().handshakes.load(std::memory_order_relaxed));
    w.field("accepted", wk->stats().accepted.load(std::memory_order_relaxed));
    w.end_object();
  }
  w.end_array();
  w.end_object();
  return w.take();
}

void write_stats_file(const std::string& path, const std::string& json) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << json << '\n';
  }
  std::rename(tmp.c_str(), path.c_str());
}

int usage(int rc) {
  std::fprintf(rc == 0 ? stdout : stderr,
               "usage: lodestone run CONFIG [--workers N] [--stats-file PATH] [--run-dir DIR]\n"
               "       lodestone check CONFIG [--skip-certificates]\n"
               "       lodestone controlplane CONFIG --socket PATH --admin PATH   (started by `run`)\n"
               "       lodestone version\n");
  return rc;
}

std::string json_event(std::string_view name) {
  return JsonWriter().begin_object().field("event", name).end_object().take();
}

// The control-plane child: started, watched and restarted by the dataplane.
class Supervisor {
 public:
  Supervisor(std::string config, std::string socket, std::string admin)
      : config_(std::move(config)), socket_(std::move(socket)), admin_(std::move(admin)) {}

  bool spawn() {
    const pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
      // The child dies with its parent. HUP, TERM and INT stay blocked across
      // exec: the control plane takes them from a signalfd, and one sent
      // while it is still loading waits for it instead of killing it.
      sigset_t cp_set;
      sigemptyset(&cp_set);
      for (int sig : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&cp_set, sig);
      pthread_sigmask(SIG_SETMASK, &cp_set, nullptr);
      prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
      // USR1 (reopen the access log) and USR2 (counters) are the
      // dataplane's: one sent to the whole group must not end the child.
      signal(SIGUSR1, SIG_IGN);
      signal(SIGUSR2, SIG_IGN);
      const char* argv[] = {"lodestone", "controlplane", config_.c_str(), "--socket", socket_.c_str(),
                            "--admin", admin_.c_str(), nullptr};
      execv("/proc/self/exe", const_cast<char* const*>(argv));
      _exit(127);
    }
    pid_ = pid;
    started_ = std::chrono::steady_clock::now();
    ++starts_;
    event(JsonWriter().begin_object().field("event", "controlplane_started").field("pid", static_cast<int64_t>(pid))
              .field("starts", starts_).end_object().take());
    return true;
  }

  // After SIGCHLD: reaps the child; true if it exited (a restart is due).
  bool reap(int* status_out) {
    if (pid_ <= 0) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) != pid_) return false;
    *status_out = status;
    const auto lived = std::chrono::steady_clock::now() - started_;
    backoff_ = lived > std::chrono::seconds(30) ? std::chrono::milliseconds(100)
                                                : std::min(backoff_ * 2, std::chrono::milliseconds(5000));
    restart_at_ = std::chrono::steady_clock::now() + backoff_;
    JsonWriter w;
    w.begin_object().field("event", "controlplane_exited").field("pid", static_cast<int64_t>(pid_));
    if (WIFSIGNALED(status)) {
      w.field("signal", strsignal(WTERMSIG(status)));
    } else {
      w.field("status", static_cast<int64_t>(WEXITSTATUS(status)));
    }
    w.field("restart_in_ms", static_cast<uint64_t>(backoff_.count()));
    event(w.end_object().take());
    pid_ = -1;
    return true;
  }

  void restart_if_due() {
    if (pid_ <= 0 && !stopping_ && std::chrono::steady_clock::now() >= restart_at_ && spawn() && pending_hup_) {
      pending_hup_ = false;
      kill(pid_, SIGHUP);
    }
  }
  // A reload asked for while no control plane runs is passed on to the next.
  void reload() {
    if (pid_ > 0) {
      kill(pid_, SIGHUP);
    } else {
      pending_hup_ = true;
    }
  }
  // `grace`: how long it may take to exit before it is killed (with [bgp]
  // on it withdraws the VIPs and waits for the router's convergence first).
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(1000)) {
    stopping_ = true;
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    for (int64_t i = 0; i < std::max<int64_t>(grace.count() / 20, 1); ++i) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      usleep(20'000);
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  pid_t pid() const noexcept { return pid_; }
  uint64_t starts() const noexcept { return starts_; }

 private:
  std::string config_, socket_, admin_;
  pid_t pid_ = -1;
  uint64_t starts_ = 0;
  bool stopping_ = false;
  bool pending_hup_ = false;
  std::chrono::steady_clock::time_point started_{}, restart_at_{};
  std::chrono::milliseconds backoff_{50};
};

// Everything the dataplane serves, fed by the control link's thread.
// [dpdk] cookie_secret_file, read (none: not the dpdk front, or no file).
lode::Result<std::optional<lode::front::CookieSecret>, std::string> read_cookie_secret(const lode::config::Config& cfg) {
  if (cfg.front != "dpdk" || cfg.dpdk.cookie_secret_file.empty()) return std::optional<lode::front::CookieSecret>();
  auto secret = lode::front::load_cookie_secret(cfg.dpdk.cookie_secret_file);
  if (!secret) return lode::unexpected("[dpdk] cookie_secret_file: " + secret.error());
  return std::optional<lode::front::CookieSecret>(*secret);
}

struct Dataplane {
  std::string config_path;
  lode::config::Config bound;  // listeners bound at start
  std::shared_ptr<lode::tls::TicketKeys> keys;
  lode::worker::RuntimeSlot slot;
  lode::control::SnapshotSlot snapshots;
  std::unique_ptr<lode::worker::ClientCounts> client_counts;  // [limits] connections_per_client, over all workers
  std::mutex workers_mu;
  std::vector<std::unique_ptr<lode::worker::Worker>> workers;
  std::unique_ptr<lode::front::DpdkFront> dpdk;  // front = "dpdk" (guarded by workers_mu)
  // front = "dpdk" with an exception port: worker w serves each generation
  // from its own slot, its listeners moved to where the front hands flows
  // off (handoff_port on the exception link, PROXY v2 in front of the
  // hello). Set before the control link starts; empty otherwise.
  std::vector<std::unique_ptr<lode::worker::RuntimeSlot>> handoff_slots;
  lode::config::DpdkExceptionConfig handoff;

  std::shared_ptr<const lode::worker::Runtime> handoff_runtime(const lode::worker::Runtime& rt, uint32_t w) const {
    auto out = std::make_shared<lode::worker::Runtime>(rt);  // tables, pools, contexts shared
    const auto n = static_cast<uint32_t>(handoff_slots.size());
    for (uint32_t l = 0; l < out->listeners.size(); ++l) {
      sockaddr_in in{};
      in.sin_family = AF_INET;
      in.sin_port = htons(lode::front::handoff_port(static_cast<uint16_t>(handoff.first_port), l, w, n));
      in.sin_addr.s_addr = htonl(handoff.kernel_address);
      lode::SocketAddress a;
      std::memcpy(&a.storage, &in, sizeof in);
      a.len = sizeof in;
      out->listeners[l].addresses = {a};
      out->listeners[l].proxy = lode::worker::ProxyAccept::kV2;
      out->listeners[l].only_from_v4 = handoff.address;  // the front's end of the link
    }
    return out;
  }
  bool started = false;     // workers running (guarded by workers_mu)
  // [bgp] of the configuration in service: on SIGTERM the control plane
  // withdraws the VIPs and waits this long at most before the workers stop.
  std::atomic<uint64_t> withdraw_grace_ms{0};  // 0: [bgp] off
  void note_bgp(const lode::config::BgpConfig& b) {
    withdraw_grace_ms = b.enabled ? 2ull * b.birdc_timeout_ms + b.convergence_ms + 2000 : 0;
  }
  uint64_t runtime_generation = 0;
  std::shared_ptr<std::vector<lode::tls::TicketKey>> previous_keys;  // the set in service
  lode::control::StatsSegment* stats = nullptr;  // per-route/backend series slots

  lode::Result<void, std::string> publish(const lode::control::ApplyResult& a) {
    std::shared_ptr<lode::worker::Runtime> rt;
    std::optional<lode::front::CookieSecret> cookie_secret;  // [dpdk] cookie_secret_file, read again
    bool reloaded = false;  // a new configuration (not only backend states)
    // A delta with the configuration is a reload (SIGHUP): rebuild even if
    // the text is the same, as files it names (CA bundles) may have changed.
    if (a.config_changed || (a.config_present && !a.full)) {
      // Relative paths are read from the directory of the file in service,
      // which `lodectl routes reload CONFIG` may have changed.
      const std::string from = lode::cp::split_published_config(a.snapshot->config_text).path;
      auto cfg = lode::config::load_config_string(a.snapshot->config_text, from.empty() ? config_path : from);
      if (!cfg) return lode::unexpected("config: " + cfg.error().front().to_string());
      note_bgp(cfg->bgp);
      // The SYN cookies' secret, read again (a changed file takes effect;
      // an unreadable one refuses the reload, the one in service stays).
      auto secret = read_cookie_secret(*cfg);
      if (!secret) return lode::unexpected("config: " + secret.error());
      cookie_secret = *secret;
      {
        std::lock_guard lock(workers_mu);
        if (started && !lode::config::same_listeners(bound, *cfg)) {
          return lode::unexpected(std::string("config: the listeners changed; restart Lodestone to change them"));
        }
        if (started && !lode::config::same_front(bound, *cfg)) {
          return lode::unexpected(
              std::string("config: the front ([dpdk] but cookie_secret_file) changed; restart Lodestone to change it"));
        }
      }
      auto built = lode::app::build_runtime(*cfg, keys, runtime_generation + 1, a.snapshot->backend_states.get());
      if (!built) return lode::unexpected("config: " + built.error().front());
      rt = std::move(built->runtime);
      rt->config_generation = a.snapshot->generation;
      rt->config_version = a.snapshot->config_version;
      rt->log_sample = cfg->access_log_sample;
      reloaded = true;
    } else if (a.backend_states_changed) {
      // Health or an operator changed a backend: the pools only (series
      // slots, like everything else but the pools, are the current ones).
      if (auto current = slot.get()) {
        auto next = lode::app::with_backend_states(*current, a.snapshot->backend_states.get(), runtime_generation + 1);
        if (!next) return lode::unexpected("backend states: " + next.error().front());
        rt = std::move(*next);
      }
    }
    if (a.tickets_changed) {
      std::vector<lode::tls::TicketKey> list;
      const auto bytes = a.snapshot->ticket_keys;
      for (size_t at = 0; at + 80 <= bytes.size(); at += 80) {
        auto k = lode::tls::TicketKey::from_bytes(
            std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()) + at, 80));
        if (!k) return lode::unexpected("ticket keys: " + k.error());
        list.push_back(std::move(*k));
      }
      // A full segment after a re-attach carries the restarted control
      // plane's keys only: the keys in service stay (decrypt only) so that
      // tickets already issued still resume, until the next rotation.
      if (a.full && a.snapshot->generation > 1 && previous_keys) {
        for (const auto& old : *previous_keys) {
          if (list.size() >= lode::snapshot::kMaxTicketKeys) break;
          const bool dup = std::any_of(list.begin(), list.end(), [&](const auto& k) { return k.name() == old.name(); });
          if (!dup) list.push_back(old);
        }
      }
      if (auto ok = keys->set_keys(list); !ok) return lode::unexpected("ticket keys: " + ok.error());
      previous_keys = std::make_shared<std::vector<lode::tls::TicketKey>>(list);
    }
    if (rt) {
      // Series slots last, when nothing can refuse the segment any more: a
      // refused configuration must not retire the names still in service.
      if (stats != nullptr && reloaded) lode::app::assign_series(*rt, *stats);
      ++runtime_generation;
      slot.publish(rt);
      for (uint32_t w = 0; w < handoff_slots.size(); ++w) handoff_slots[w]->publish(handoff_runtime(*rt, w));
      std::lock_guard lock(workers_mu);
      if (dpdk && cookie_secret) dpdk->set_cookie_secret(*cookie_secret);
      if (dpdk) dpdk->set_runtime(rt);
    }
    snapshots.publish(a.snapshot);
    // In service means: every worker has picked it up.
    std::lock_guard lock(workers_mu);
    for (auto& w : workers) w->wake();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    for (auto& w : workers) {
      while (w->snapshot_generation() < a.snapshot->generation && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::microseconds(20));
      }
    }
    if (reloaded && started) {
      event(JsonWriter().begin_object().field("event", "reloaded").field("generation", runtime_generation)
                .field("snapshot", a.snapshot->generation).end_object().take());
    }
    return {};
  }
};

// A SIGHUP's reload is answered by its own configuration in service, by the
// control plane's kReloadRefused, or by the dataplane refusing that
// configuration's segment: each names the SIGHUP it answers (the number
// StatsSegment::ask_reload gave it; ControlLink keeps the highest), so an
// answer to another reload (`lodectl routes reload`, an earlier SIGHUP)
// never releases it early. Then systemd hears READY=1. Without an answer (a
// control plane that died or is restarting) it hears READY=1 after this
// long all the same: what serves is the configuration in service before.
constexpr auto kReloadAnswerWait = std::chrono::seconds(30);

// A notification systemd did not get is logged, never fatal: traffic goes on.
void notify(const lode::app::ServiceNotifier& n, const lode::Result<void, std::string>& sent) {
  if (sent || !n.enabled()) return;
  event(JsonWriter().begin_object().field("event", "sd_notify_failed").field("level", "warning")
            .field("error", sent.error()).end_object().take());
}

int run(const std::string& config_path, int workers_override, const std::string& stats_file,
        const std::string& run_dir_override) {
  // Signals are taken synchronously by this thread; workers never see them.
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGCHLD}) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // This process holds private keys (in OpenSSL, in the mapped snapshot) and
  // ticket keys: no core dumps, no ptrace by other users.
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  // Two sockets per connection, two pipes per spliced one: take the hard
  // limit of file descriptors, not the (often 1024) soft one.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }

  // systemd's readiness socket, taken before anything is started: the
  // control plane (a child) must not inherit NOTIFY_SOCKET.
  const auto notifier = lode::app::ServiceNotifier::from_environment();
  if (!notifier) {
    std::fprintf(stderr, "lodestone: %s\n", notifier.error().c_str());
    return 1;
  }

  auto cfg = lode::config::load_config_file(config_path);
  if (!cfg) {
    for (const auto& e : cfg.error()) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    return 1;
  }
  Log access;
  if (const std::string failed = access.open(cfg->access_log); !failed.empty()) {
    std::fprintf(stderr, "lodestone: cannot open the access log: %s\n", failed.c_str());
    return 1;
  }
  const std::string run_dir = run_dir_override.empty() ? cfg->control.run_dir : run_dir_override;
  if (mkdir(run_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    std::fprintf(stderr, "lodestone: run_dir %s: %s\n", run_dir.c_str(), std::strerror(errno));
    return 1;
  }
  // [process] user: the dataplane becomes it once the control link listens
  // (below), keeping only what binding (and the dpdk front's start) needs,
  // dropped once the listeners are bound; the control plane, started after,
  // is that user from its start.
  std::optional<lode::app::Identity> identity;
  if (!cfg->process.user.empty()) {
    auto id = lode::app::lookup_identity(cfg->process.user, cfg->process.group);
    if (!id) {
      std::fprintf(stderr, "lodestone: %s\n", id.error().c_str());
      return 1;
    }
    if (getuid() != 0 && getuid() != id->uid) {
      std::fprintf(stderr, "lodestone: [process] user %s: started as uid %u, neither root nor that user\n",
                   id->name.c_str(), static_cast<unsigned>(getuid()));
      return 1;
    }
    // The control plane writes both: its sockets, the OCSP cache.
    for (const std::string& dir : {run_dir, cfg->control.state_dir}) {
      if (auto given = lode::app::give_directory(dir, id->uid, id->gid, dir != run_dir); !given) {
        std::fprintf(stderr, "lodestone: chown to %s: %s\n", id->name.c_str(), given.error().c_str());
        return 1;
      }
    }
    // The access log file too: a reopen (SIGUSR1) after the drop opens the
    // same path as the user. Rotation needs the new file made for it
    // (logrotate's `create`, tools/logrotate/lodestone): the directory stays
    // root's.
    // Only a regular file (a stream such as /dev/stdout is not the log's to give).
    struct stat log_st {};
    if (const int fd = access.fd();
        fd >= 0 && fstat(fd, &log_st) == 0 && S_ISREG(log_st.st_mode) && fchown(fd, id->uid, id->gid) != 0) {
      std::fprintf(stderr, "lodestone: access log %s: chown to %s: %s\n", cfg->access_log.c_str(), id->name.c_str(),
                   std::strerror(errno));
      return 1;
    }
    identity = std::move(*id);
  }
  const std::string socket_path = run_dir + "/lodestone-" + std::to_string(getpid()) + ".sock";
  // The certificate stores: made by the control plane, as [process] user
  // when there is one; run_dir is that user's (since the last run too), so
  // nothing in it is trusted to be what its name says (user_writable.h).
  std::vector<uid_t> store_owners{geteuid()};
  if (identity) store_owners.push_back(identity->uid);
  for (const auto& left : lode::app::remove_dead_cert_stores(run_dir, store_owners)) {
    event(JsonWriter().begin_object().field("event", "cert_store_not_removed").field("level", "warning")
              .field("error", left).end_object().take());
  }
  const std::string admin_socket = cfg->admin.socket.empty() ? run_dir + "/admin.sock" : cfg->admin.socket;

  Dataplane dp;
  dp.config_path = config_path;
  dp.bound = *cfg;
  dp.note_bgp(cfg->bgp);
  dp.keys = std::make_shared<lode::tls::TicketKeys>(lode::snapshot::kMaxTicketKeys - 1);
  auto link = lode::control::ControlLink::listen(
      socket_path, [&dp](const lode::control::ApplyResult& a) { return dp.publish(a); }, event);
  if (!link) {
    std::fprintf(stderr, "lodestone: %s\n", link.error().c_str());
    return 1;
  }
  unsigned count = workers_override > 0 ? static_cast<unsigned>(workers_override) : cfg->workers.count;
  if (count == 0) count = std::max(1u, std::thread::hardware_concurrency());
  // The dpdk front's lcores get series rows after the workers' (how many
  // lcores poll is known once the EAL has started; untouched rows cost no
  // memory and are never read).
  const uint32_t front_rows = cfg->front == "dpdk" ? lode::stats::kMaxFrontLcores : 0;
  auto stats_segment =
      lode::control::StatsSegment::create(count, lode::stats::kRouteSlots, lode::stats::kBackendSlots, front_rows);
  if (!stats_segment) {
    std::fprintf(stderr, "lodestone: %s\n", stats_segment.error().c_str());
    return 1;
  }
  // [dpdk] cookie_secret_file: read before the identity changes (a reload
  // reads it again as [process] user).
  auto read_secret = read_cookie_secret(*cfg);
  if (!read_secret) {
    std::fprintf(stderr, "lodestone: %s\n", read_secret.error().c_str());
    return 1;
  }
  const std::optional<lode::front::CookieSecret> cookie_secret = *read_secret;
  const bool handoff = cfg->front == "dpdk" && cfg->dpdk.exception.enabled();
  if (handoff) {
    if (lode::front::handoff_port(static_cast<uint16_t>(cfg->dpdk.exception.first_port),
                                  static_cast<uint32_t>(cfg->listeners.size()) - 1, count - 1, count) == 0) {
      std::fprintf(stderr, "lodestone: [dpdk.exception] first_port %u + %zu listeners x %u workers passes 65535\n",
                   cfg->dpdk.exception.first_port, cfg->listeners.size(), count);
      return 1;
    }
    dp.handoff = cfg->dpdk.exception;
    for (unsigned i = 0; i < count; ++i) dp.handoff_slots.push_back(std::make_unique<lode::worker::RuntimeSlot>());
  }
  (*link)->set_stats_fd(stats_segment->fd());
  dp.stats = &*stats_segment;
  (*link)->start();
  if (identity) {
    // After the link's thread exists: it loses every capability with the
    // change of ids (only this thread keeps some), and the control plane
    // connects as the same user it checks for.
    if (auto given = lode::app::give_socket(socket_path, identity->uid, identity->gid); !given) {
      std::fprintf(stderr, "lodestone: control socket: chown to %s: %s\n", identity->name.c_str(),
                   given.error().c_str());
      return 1;
    }
    auto ok = cfg->front == "dpdk" ? lode::app::become(*identity, {CAP_NET_BIND_SERVICE, CAP_IPC_LOCK, CAP_SYS_RAWIO,
                                                                   CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_NET_RAW})
                                   : lode::app::become(*identity, {CAP_NET_BIND_SERVICE});
    if (!ok) {
      std::fprintf(stderr, "lodestone: %s\n", ok.error().c_str());
      return 1;
    }
  }
  Supervisor cp(config_path, socket_path, admin_socket);
  if (!cp.spawn()) {
    std::fprintf(stderr, "lodestone: cannot start the control plane: %s\n", std::strerror(errno));
    return 1;
  }

  // The first snapshot: certificates, keys, the validated configuration.
  const timespec short_tick{0, 100'000'000};
  const auto start_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(cfg->control.start_timeout_s);
  while (!(*link)->wait_for_snapshot(std::chrono::milliseconds(0))) {
    siginfo_t info;
    const int sig = sigtimedwait(&set, &info, &short_tick);
    int status = 0;
    if (sig == SIGCHLD && cp.reap(&status)) {
      std::fprintf(stderr, "lodestone: the control plane exited before its first snapshot: not starting\n");
      return 1;
    }
    if (sig == SIGTERM || sig == SIGINT) {
      cp.stop();
      return 1;
    }
    if (std::chrono::steady_clock::now() > start_deadline) {
      std::fprintf(stderr, "lodestone: no snapshot from the control plane within %u s ([control] start_timeout_s)\n",
                   cfg->control.start_timeout_s);
      cp.stop();
      return 1;
    }
  }

  const bool dpdk_front = cfg->front == "dpdk";
  if (dpdk_front) {
    // The dpdk front answers on the port itself: no kernel listeners on the
    // VIPs. Terminate flows go to the workers through the exception port,
    // when there is one (no workers without it: such flows are reset).
    if (!handoff) count = 0;
    lode::front::DpdkSettings ds;
    ds.eal_args = cfg->dpdk.eal;
    ds.port = static_cast<uint16_t>(cfg->dpdk.port);
    ds.max_flows = cfg->dpdk.max_flows;
    ds.stats = stats_segment->front();
    for (uint32_t l = 0; l < front_rows; ++l) {
      ds.route_series.push_back(stats_segment->routes(stats_segment->workers() + l));
      ds.backend_series.push_back(stats_segment->backends(stats_segment->workers() + l));
    }
    ds.cookie_secret = cookie_secret;
    ds.next_hops = lode::app::next_hops_of(cfg->dpdk);  // [dpdk] networks / gateway / gateway6
    if (handoff) {
      const auto& x = cfg->dpdk.exception;
      ds.exception = {x.vdev, x.interface, x.kernel_address, x.address, x.prefix_len,
                      static_cast<uint16_t>(x.first_port), static_cast<uint16_t>(count)};
    }
    auto front = lode::front::DpdkFront::start(ds, dp.slot.get());
    if (!front) {
      std::fprintf(stderr, "lodestone: %s\n", front.error().c_str());
      cp.stop();
      return 1;
    }
    std::lock_guard lock(dp.workers_mu);
    dp.dpdk = std::move(*front);
  }
  {
    std::lock_guard lock(dp.workers_mu);
    std::vector<const lode::stats::RouteSeries*> all_route_series;
    for (unsigned j = 0; j < count; ++j) all_route_series.push_back(stats_segment->routes(j));
    // Sized for every connection the workers can hold (their slots are
    // fixed at start), so that other clients seldom share a client's counters.
    const size_t client_slots =
        lode::worker::ClientCounts::slots_for(uint64_t{count} * cfg->limits.connections_per_worker);
    try {
      dp.client_counts = std::make_unique<lode::worker::ClientCounts>(client_slots);
    } catch (const std::bad_alloc&) {
      std::fprintf(stderr, "lodestone: [limits] connections_per_client: cannot map the table (%zu MiB)\n",
                   client_slots * 2 * sizeof(uint32_t) >> 20);
      cp.stop();
      return 1;
    }
    for (unsigned i = 0; i < count; ++i) {
      lode::worker::WorkerOptions opt;
      opt.index = i;
      opt.cpu = i < cfg->workers.cpus.size() ? cfg->workers.cpus[i] : -1;
      opt.snapshots = &dp.snapshots;
      opt.client_counts = dp.client_counts.get();
      opt.stats = stats_segment->worker(i);
      opt.route_series = stats_segment->routes(i);
      opt.backend_series = stats_segment->backends(i);
      opt.all_route_series = all_route_series;
      dp.workers.push_back(std::make_unique<lode::worker::Worker>(
          opt, dp.handoff_slots.empty() ? dp.slot : *dp.handoff_slots[i],
          cfg->access_log == "off" ? lode::worker::AccessLog{}
                                   : [&access](uint32_t, const std::string& batch) { access.lines(batch); }));
      if (auto ok = dp.workers.back()->open(); !ok) {
        std::fprintf(stderr, "lodestone: worker %u: %s\n", i, ok.error().c_str());
        cp.stop();
        return 1;
      }
    }
    // Listeners bound, the dpdk front started: no capability needed any more.
    if (identity) {
      if (auto ok = lode::app::drop_capabilities(); !ok) {
        std::fprintf(stderr, "lodestone: %s\n", ok.error().c_str());
        cp.stop();
        return 1;
      }
      event(JsonWriter().begin_object().field("event", "privileges_dropped").field("user", identity->name)
                .end_object().take());
    }
    for (size_t i = 0; i < dp.workers.size(); ++i) {
      if (auto ok = dp.workers[i]->start(); !ok) {
        std::fprintf(stderr, "lodestone: worker %zu: %s\n", i, ok.error().c_str());
        for (size_t j = 0; j < i; ++j) dp.workers[j]->stop();
        cp.stop();
        return 1;
      }
    }
    dp.started = true;
  }
  auto& workers = dp.workers;
  auto generation = [&] { return (*link)->generation(); };

  {
    JsonWriter w;
    w.begin_object().field("event", "start").field("version", LODE_VERSION).field("openssl", OpenSSL_version(OPENSSL_VERSION));
    w.field("ktls", lode::worker::kernel_has_tls_ulp());
    if (!lode::worker::kernel_has_tls_ulp()) w.field("ktls_note", "the kernel has no tls ULP: user-space TLS");
    // Who seals and opens the client's records after the handshake where the
    // kernel does not ([tls] own_records; the SSL is then freed).
    w.field("own_records", cfg->tls.own_records);
    w.field("workers", static_cast<uint64_t>(count)).field("config", config_path).field("pid", static_cast<int64_t>(getpid()));
    w.field("getpid_cached", lode::worker::getpid_cached());
    w.field("front", cfg->front);
    if (dp.dpdk) {
      const auto mac = dp.dpdk->mac();
      char buf[32];
      std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
      w.field("dpdk_port", dp.dpdk->port_name()).field("dpdk_mac", std::string(buf));
      w.field("dpdk_lcores", static_cast<uint64_t>(dp.dpdk->lcores()));
      w.field("dpdk_return_steering", dp.dpdk->rss_steering());
      if (handoff) w.field("dpdk_exception", dp.dpdk->exception_name()).field("dpdk_exception_if", cfg->dpdk.exception.interface);
    }
    w.field("snapshot", generation()).field("control_socket", socket_path).field("admin_socket", admin_socket);
    w.key("listen").begin_array();
    for (const auto& l : cfg->listeners) {
      for (const auto& a : l.listen) w.value(l.name + " " + a.to_string());
    }
    w.end_array().end_object();
    event(w.str());
  }
  notify(*notifier, notifier->ready());

  auto stats = [&] {
    return stats_json(workers, dp.runtime_generation, generation(), (*link)->stats(), cp.starts(), dp.dpdk.get());
  };
  auto last_stats = std::chrono::steady_clock::now() - std::chrono::seconds(2);
  bool reload_asked = false;  // SIGHUP taken, READY=1 not sent yet
  uint64_t reload_number = 0;  // the last SIGHUP's (StatsSegment::ask_reload)
  const auto reload_answered = [&] {
    return (*link)->stats().reload_answered.load(std::memory_order_acquire) >= reload_number;
  };
  auto reload_asked_at = last_stats;
  lode::worker::HeapTrimmer trimmer;  // once the workers go quiet after a burst (heap_trim.h)
  // The dpdk front's return steering, as the start event gave it: an lcore
  // that finds the NIC's RSS hashes disagreeing with ours turns steering by
  // hash off (FlowEngine::check_nic_hash); the change is logged once.
  std::string steering = dp.dpdk ? dp.dpdk->rss_steering() : std::string();
  while (true) {
    siginfo_t info;
    const int sig = sigtimedwait(&set, &info, &short_tick);
    const auto now = std::chrono::steady_clock::now();
    {
      uint64_t activity = 0;
      for (const auto& w : workers) activity = lode::worker::heap_activity(w->stats(), activity);
      if (trimmer.observe(activity, now)) lode::worker::trim_heap();
    }
    // systemd waits for READY=1 after RELOADING=1: sent once the reload is
    // answered (in service or refused), or after a bound.
    if (reload_asked && (reload_answered() || now > reload_asked_at + kReloadAnswerWait)) {
      reload_asked = false;
      notify(*notifier, notifier->ready());
    }
    cp.restart_if_due();
    if (dp.dpdk) {
      if (std::string now_steering = dp.dpdk->rss_steering(); now_steering != steering) {
        steering = std::move(now_steering);
        event(JsonWriter()
                  .begin_object()
                  .field("event", "dpdk_return_steering_changed")
                  .field("level", "warning")
                  .field("dpdk_return_steering", steering)
                  .end_object()
                  .take());
      }
    }
    if (!stats_file.empty() && now - last_stats >= std::chrono::seconds(1)) {
      write_stats_file(stats_file, stats());
      last_stats = now;
    }
    if (sig < 0) continue;
    if (sig == SIGCHLD) {
      int status = 0;
      // A SIGHUP the control plane took with it unanswered (sent as it died)
      // goes to the next one as it starts, not to the 30 s bound.
      if (cp.reap(&status) && reload_asked && !reload_answered()) cp.reload();
      while (waitpid(-1, nullptr, WNOHANG) > 0) {
      }
      continue;
    }
    if (sig == SIGUSR1) {
      const std::string failed = access.reopen();
      JsonWriter w;
      w.begin_object().field("event", failed.empty() ? "access_log_reopened" : "access_log_reopen_failed");
      if (!failed.empty()) w.field("level", "error").field("error", failed).field("writing_to", "the previous file");
      event(w.end_object().take());
      continue;
    }
    if (sig == SIGUSR2) {
      event(stats());
      continue;
    }
    if (sig == SIGHUP) {
      // The control plane owns the configuration: it re-reads it, validates
      // it and publishes what changed (or logs reload_refused).
      reload_number = dp.stats->ask_reload();  // before the signal: the control plane reads it when it takes it
      reload_asked = true;
      reload_asked_at = now;
      notify(*notifier, notifier->reloading());
      cp.reload();
      continue;
    }
    // SIGTERM, SIGINT: drain and exit.
    event(JsonWriter().begin_object().field("event", "stopping").field("signal", strsignal(sig)).end_object().take());
    notify(*notifier, notifier->stopping());
    // [bgp]: the control plane withdraws the VIPs and waits [bgp]
    // convergence_ms before it exits; until then the workers accept as
    // usual, so a connection the router still sends here is served.
    if (const uint64_t grace = dp.withdraw_grace_ms; grace != 0) cp.stop(std::chrono::milliseconds(grace));
    for (auto& w : workers) w->stop();
    for (auto& w : workers) w->join();
    if (dp.dpdk) dp.dpdk->stop();
    cp.stop();
    (*link)->stop();
    unlink((socket_path + ".config").c_str());
    if (auto removed = lode::app::remove_cert_store(socket_path + ".certs", store_owners); !removed) {
      event(JsonWriter().begin_object().field("event", "cert_store_not_removed").field("level", "warning")
                .field("error", removed.error()).end_object().take());
    }
    if (!stats_file.empty()) write_stats_file(stats_file, stats());
    event(stats());
    event(json_event("stopped"));
    return 0;
  }
}

int controlplane(const std::string& config_path, const std::string& socket_path, const std::string& admin_path) {
  sigset_t set;  // taken from a signalfd (already blocked when started by `run`)
  sigemptyset(&set);
  for (int sig : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);  // it holds every private key
  auto emit = [](const std::string& json) {
    // Tagged, so the shared stderr says which process spoke.
    std::string line = json;
    if (!line.empty() && line.back() == '}') line.insert(line.size() - 1, ",\"process\":\"controlplane\"");
    event(line);
  };
  auto cp = lode::cp::ControlPlane::load({config_path, socket_path, admin_path, emit});
  if (!cp) {
    for (const auto& e : cp.error()) std::fprintf(stderr, "%s\n", e.c_str());
    return 1;
  }
  return (*cp)->run();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage(2);
  const std::string cmd = argv[1];
  if (cmd == "version" || cmd == "--version") {
    std::printf("lodestone " LODE_VERSION " (%s; kTLS %s)\n", OpenSSL_version(OPENSSL_VERSION),
                lode::worker::kernel_has_tls_ulp() ? "available" : "unavailable: no tls ULP in this kernel");
    return 0;
  }
  if (cmd == "--help" || cmd == "-h") return usage(0);
  if (argc < 3) return usage(2);
  const std::string config = argv[2];
  if (cmd == "check") {
    const bool skip = argc == 4 && std::string(argv[3]) == "--skip-certificates";
    if (argc != 3 && !skip) return usage(2);
    return lode::tools::check_config(config, std::cout, std::cerr, !skip);
  }
  if (cmd == "controlplane") {
    if (argc != 7 || std::string(argv[3]) != "--socket" || std::string(argv[5]) != "--admin") return usage(2);
    return controlplane(config, argv[4], argv[6]);
  }
  if (cmd != "run") return usage(2);
  int workers = 0;
  std::string stats_file, run_dir;
  for (int i = 3; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--workers" && i + 1 < argc) {
      workers = std::atoi(argv[++i]);
    } else if (a == "--stats-file" && i + 1 < argc) {
      stats_file = argv[++i];
    } else if (a == "--run-dir" && i + 1 < argc) {
      run_dir = argv[++i];
    } else {
      return usage(2);
    }
  }
  return run(config, workers, stats_file, run_dir);
}

// lodestone: the SNI proxy process (kernel front, TLS workers).
//
//   lodestone run CONFIG [--workers N] [--stats-file PATH]
//   lodestone check CONFIG
//   lodestone version
//
// SIGHUP re-reads CONFIG and swaps routes, pools and certificates atomically
// (established connections keep the generation they started with); a bad
// configuration is refused with its errors and the old one stays in service.
// SIGTERM/SIGINT stop accepting, drain up to timeouts.drain_ms, exit 0.
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/config.h"
#include "dataplane/worker/worker.h"
#include "lodestone/json_writer.h"
#include "tools/lodectl/check.h"
#include "tools/lodestone/runtime_builder.h"

namespace {

using lode::JsonWriter;

// Access and event log: one JSON object per line, from any thread.
class Log {
 public:
  bool open(const std::string& where) {
    if (where == "off") return true;
    if (where == "stderr") {
      out_ = stderr;
      return true;
    }
    out_ = std::fopen(where.c_str(), "a");
    owned_ = out_ != nullptr;
    return out_ != nullptr;
  }
  ~Log() {
    if (owned_) std::fclose(out_);
  }
  // A batch of complete lines from one worker.
  void lines(const std::string& batch) {
    if (out_ == nullptr) return;
    std::lock_guard lock(mu_);
    std::fwrite(batch.data(), 1, batch.size(), out_);
    std::fflush(out_);
  }

 private:
  std::mutex mu_;
  FILE* out_ = nullptr;
  bool owned_ = false;
};

// Events (start, reload, stop) always go to stderr, whatever the access log.
void event(const std::string& json) {
  std::fputs(json.c_str(), stderr);
  std::fputc('\n', stderr);
  std::fflush(stderr);
}

std::string stats_json(const std::vector<std::unique_ptr<lode::worker::Worker>>& workers, uint64_t generation) {
  JsonWriter w;
  w.begin_object();
  w.field("generation", generation);
  w.field("workers", static_cast<uint64_t>(workers.size()));
#define LODE_SUM(name, help)                                                         \
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

// The workers bound their sockets at start: a reload may change everything
// but the listeners.
bool same_listeners(const lode::config::Config& a, const lode::config::Config& b) {
  if (a.listeners.size() != b.listeners.size()) return false;
  for (size_t i = 0; i < a.listeners.size(); ++i) {
    const auto& x = a.listeners[i];
    const auto& y = b.listeners[i];
    if (x.name != y.name || !(x.listen == y.listen) || x.proxy_protocol != y.proxy_protocol) return false;
  }
  return true;
}

int usage(int rc) {
  std::fprintf(rc == 0 ? stdout : stderr,
               "usage: lodestone run CONFIG [--workers N] [--stats-file PATH]\n"
               "       lodestone check CONFIG\n"
               "       lodestone version\n");
  return rc;
}

int run(const std::string& config_path, int workers_override, const std::string& stats_file) {
  // Signals are taken synchronously by this thread; workers never see them.
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGHUP, SIGTERM, SIGINT, SIGUSR1}) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // This process holds private keys (in OpenSSL) and ticket keys: no core
  // dumps, no ptrace by other users.
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  // Two sockets per connection, two pipes per spliced one: take the hard
  // limit of file descriptors, not the (often 1024) soft one.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }

  auto cfg = lode::config::load_config_file(config_path);
  if (!cfg) {
    for (const auto& e : cfg.error()) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    return 1;
  }
  auto keys = lode::tls::TicketKeys::create(1);
  if (!keys || !(*keys)->rotate()) {
    std::fprintf(stderr, "lodestone: cannot create session ticket keys\n");
    return 1;
  }
  uint64_t generation = 1;
  auto built = lode::app::build_runtime(*cfg, *keys, generation);
  if (!built) {
    for (const auto& e : built.error()) std::fprintf(stderr, "%s\n", e.c_str());
    return 1;
  }
  for (const auto& w : built->warnings) event(JsonWriter().begin_object().field("event", "warning").field("message", w).end_object().take());

  Log access;
  if (!access.open(cfg->access_log)) {
    std::fprintf(stderr, "lodestone: cannot open access log %s: %s\n", cfg->access_log.c_str(), std::strerror(errno));
    return 1;
  }
  lode::worker::RuntimeSlot slot;
  slot.publish(built->runtime);

  unsigned count = workers_override > 0 ? static_cast<unsigned>(workers_override) : cfg->workers.count;
  if (count == 0) count = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::unique_ptr<lode::worker::Worker>> workers;
  for (unsigned i = 0; i < count; ++i) {
    lode::worker::WorkerOptions opt;
    opt.index = i;
    opt.cpu = i < cfg->workers.cpus.size() ? cfg->workers.cpus[i] : -1;
    workers.push_back(std::make_unique<lode::worker::Worker>(
        opt, slot,
        cfg->access_log == "off" ? lode::worker::AccessLog{}
                                 : [&access](uint32_t, const std::string& batch) { access.lines(batch); }));
    if (auto ok = workers.back()->open(); !ok) {
      std::fprintf(stderr, "lodestone: worker %u: %s\n", i, ok.error().c_str());
      return 1;
    }
  }
  for (size_t i = 0; i < workers.size(); ++i) {
    if (auto ok = workers[i]->start(); !ok) {
      std::fprintf(stderr, "lodestone: worker %zu: %s\n", i, ok.error().c_str());
      for (size_t j = 0; j < i; ++j) workers[j]->stop();
      return 1;
    }
  }

  {
    JsonWriter w;
    w.begin_object().field("event", "start").field("version", "0.1.0").field("openssl", OpenSSL_version(OPENSSL_VERSION));
    w.field("ktls", lode::worker::kernel_has_tls_ulp());
    if (!lode::worker::kernel_has_tls_ulp()) w.field("ktls_note", "the kernel has no tls ULP: user-space TLS");
    w.field("workers", static_cast<uint64_t>(count)).field("config", config_path).field("pid", static_cast<int64_t>(getpid()));
    w.key("listen").begin_array();
    for (const auto& l : cfg->listeners) {
      for (const auto& a : l.listen) w.value(l.name + " " + a.to_string());
    }
    w.end_array().end_object();
    event(w.str());
  }

  auto last_rotation = std::chrono::steady_clock::now();
  uint32_t rotation_s = cfg->tls.ticket_rotation_s;
  const timespec tick{1, 0};
  while (true) {
    siginfo_t info;
    const int sig = sigtimedwait(&set, &info, &tick);
    const auto now = std::chrono::steady_clock::now();
    if (now - last_rotation >= std::chrono::seconds(rotation_s)) {
      if ((*keys)->rotate()) event(R"({"event":"ticket_keys_rotated"})");
      last_rotation = now;
    }
    if (!stats_file.empty()) write_stats_file(stats_file, stats_json(workers, generation));
    if (sig < 0) continue;
    if (sig == SIGUSR1) {
      event(stats_json(workers, generation));
      continue;
    }
    if (sig == SIGHUP) {
      auto next = lode::config::load_config_file(config_path);
      std::vector<std::string> errs;
      if (!next) {
        for (const auto& e : next.error()) errs.push_back(e.to_string());
      } else if (!same_listeners(*cfg, *next)) {
        errs.push_back(config_path +
                       ": the listeners (names, addresses, order, PROXY setting) changed; the workers own their "
                       "sockets: restart Lodestone to change them");
      } else {
        auto nb = lode::app::build_runtime(*next, *keys, generation + 1);
        if (!nb) {
          errs = nb.error();
        } else {
          for (const auto& w : nb->warnings) event(JsonWriter().begin_object().field("event", "warning").field("message", w).end_object().take());
          ++generation;
          slot.publish(nb->runtime);
          for (auto& w : workers) w->wake();
          rotation_s = next->tls.ticket_rotation_s;
          event(JsonWriter().begin_object().field("event", "reloaded").field("generation", generation).end_object().take());
          cfg = std::move(next);
          continue;
        }
      }
      JsonWriter w;
      w.begin_object().field("event", "reload_refused").field("generation", generation).key("errors").begin_array();
      for (const auto& e : errs) w.value(e);
      w.end_array().end_object();
      event(w.str());
      continue;
    }
    // SIGTERM, SIGINT: drain and exit.
    event(JsonWriter().begin_object().field("event", "stopping").field("signal", strsignal(sig)).end_object().take());
    for (auto& w : workers) w->stop();
    for (auto& w : workers) w->join();
    if (!stats_file.empty()) write_stats_file(stats_file, stats_json(workers, generation));
    event(stats_json(workers, generation));
    event(R"({"event":"stopped"})");
    return 0;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage(2);
  const std::string cmd = argv[1];
  if (cmd == "version" || cmd == "--version") {
    std::printf("lodestone 0.1.0 (%s; kTLS %s)\n", OpenSSL_version(OPENSSL_VERSION),
                lode::worker::kernel_has_tls_ulp() ? "available" : "unavailable: no tls ULP in this kernel");
    return 0;
  }
  if (cmd == "--help" || cmd == "-h") return usage(0);
  if (argc < 3) return usage(2);
  const std::string config = argv[2];
  if (cmd == "check") return lode::tools::check_config(config, std::cout, std::cerr);
  if (cmd != "run") return usage(2);
  int workers = 0;
  std::string stats_file;
  for (int i = 3; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--workers" && i + 1 < argc) {
      workers = std::atoi(argv[++i]);
    } else if (a == "--stats-file" && i + 1 < argc) {
      stats_file = argv[++i];
    } else {
      return usage(2);
    }
  }
  return run(config, workers, stats_file);
}

// The control plane's state and event loop (controlplane/control_plane.h),
// shared by control_plane.cc (loading, OCSP, watching, publishing) and
// control_plane_admin.cc (the admin API and /metrics). Internal.
#pragma once


#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "controlplane/cert_bundle.h"
#include "controlplane/cert_catalog.h"
#include "controlplane/cert_source.h"
#include "controlplane/config.h"
#include "controlplane/backend_state.h"
#include "controlplane/bgp.h"
#include "controlplane/file_watch.h"
#include "controlplane/health_check.h"
#include "controlplane/ocsp.h"
#include "controlplane/ocsp_fetcher.h"
#include "controlplane/published_config.h"
#include "controlplane/snapshot_writer.h"
#include "dataplane/control/snapshot_state.h"
#include "dataplane/tls/tls_context.h"
#include "lodestone/control_channel.h"
#include "lodestone/json_writer.h"

#include "controlplane/admin_server.h"
#include "controlplane/control_plane.h"
#include "lodestone/stats_layout.h"

namespace lode::cp {

namespace detail {

using Clock = std::chrono::system_clock;
using std::chrono::sys_seconds;
using TicketBytes = std::array<uint8_t, snapshot::kTicketKeySize>;

inline sys_seconds now_s() { return std::chrono::time_point_cast<std::chrono::seconds>(Clock::now()); }
inline int64_t unix_of(sys_seconds t) { return t.time_since_epoch().count(); }

inline uint64_t text_version(std::string_view s) { return std::hash<std::string_view>{}(s) | 1; }

// The most the control plane reads of one file by path: configurations
// (routes.reload's "path" too), [tls] ticket_key_file, its saved
// configuration.
inline constexpr size_t kMaxReadFile = 16u << 20;

// A whole regular file of at most `max_bytes`. Paths come from the admin
// API and the configuration: a FIFO must not block the event loop (opened
// nonblocking, then refused), /dev/zero or a file that grows must not fill
// the memory (refused by type, by size, and reads stop at the cap).
inline Result<std::string, std::string> read_file(const std::string& path, size_t max_bytes = kMaxReadFile) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return unexpected(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  std::string refused;
  if (::fstat(fd, &st) != 0) {
    refused = std::string("cannot stat: ") + std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    refused = S_ISFIFO(st.st_mode) ? "a FIFO, not a regular file"
              : S_ISDIR(st.st_mode) ? "a directory, not a regular file"
              : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device, not a regular file"
                                                          : "not a regular file";
  } else if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    refused = "larger than " + std::to_string(max_bytes) + " bytes";
  }
  std::string out;
  while (refused.empty()) {
    char buf[65536];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      refused = std::string("read failed: ") + std::strerror(errno);
    } else if (n == 0) {
      break;
    } else if (out.size() + static_cast<size_t>(n) > max_bytes) {
      refused = "larger than " + std::to_string(max_bytes) + " bytes";  // grew while read
    } else {
      out.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  if (!refused.empty()) return unexpected(path + ": " + refused);
  return out;
}

}  // namespace detail
using namespace detail;

// One certificate the control plane publishes, and its OCSP state.
struct CertItem : CatalogEntry {
  explicit CertItem(CatalogEntry e) : CatalogEntry(std::move(e)) {}
  // Revocation: OCSP (stapled) when the certificate names a responder, else
  // its CRL distribution point (checked, nothing to staple); none: unchecked.
  std::string check_url;
  bool check_crl = false;
  bool checked() const noexcept { return !check_url.empty(); }
  std::vector<std::string> chain_ids;  // the intermediates' checks (issuer_checks)
  std::string cache_key;           // OCSP disk cache; empty: no OCSP for it
  std::optional<OcspStatus> ocsp;  // last verified response
  int failures = 0;
  bool fetching = false;
  sys_seconds next_fetch{};
  // What the dataplane was last sent.
  uint64_t sent_cert_version = 0;
  snapshot::CertState sent_state = snapshot::CertState::kServe;
  uint64_t sent_staple = 0;  // 0: none
};

// The revocation status of an intermediate that served chains go through:
// a chain with a revoked member is withheld like a revoked leaf (what RFC
// 6961's "multi" stapling was for, decided here instead).
struct IssuerCheck {
  std::string id;       // "issuer:" + SHA-256 of the certificate
  std::string subject;  // for the logs
  X509Ptr cert, issuer;
  std::string url;
  bool crl = false;
  std::optional<OcspStatus> status;
  int failures = 0;
  bool fetching = false;
  sys_seconds next_fetch{};
  std::set<std::string> users;  // certificate keys whose chain includes it
};

struct ControlPlane::Impl {
  ControlPlaneOptions opt;
  config::Config cfg;
  std::string config_text;
  std::optional<CertTrust> trust;
  std::map<std::string, CertItem> items;
  std::map<std::string, IssuerCheck> issuers;
  std::vector<TicketBytes> tickets;  // [0] encrypts
  uint64_t tickets_version = 0;
  sys_seconds last_rotation{};
  OcspFetcher fetcher{4};
  std::optional<OcspDiskCache> disk;
  std::optional<FileWatch> watch;
  Debouncer debounce{std::chrono::milliseconds(200)};
  std::multimap<sys_seconds, std::string> schedule;  // OCSP fetches and staple expiries
  // Publication.
  int sock = -1;
  int sig_fd = -1;
  uint64_t generation = 0;   // last sent
  uint64_t in_flight = 0;    // sent, not yet acked
  bool need_full = true;
  bool config_dirty = false;
  bool tickets_dirty = false;
  std::set<std::string> dirty;    // certificate keys to (re)send
  std::set<std::string> removed;  // certificate keys to remove
  bool stop = false;
  bool attached = false;  // the dataplane said hello
  // Admin API, metrics and the dataplane's counters (control_plane_admin.cc).
  std::optional<AdminServer> admin;
  const std::byte* stats_base = nullptr;  // the dataplane's stats segment, read-only
  size_t stats_size = 0;
  stats::StatsView stats_view;
  bool stats_ok = false;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  uint64_t acked_generation = 0;
  uint64_t last_apply_us = 0;
  uint64_t published_segments = 0;
  uint64_t refused_segments = 0;
  uint64_t reloads_ok = 0, reloads_refused = 0;
  struct Rate {
    std::chrono::steady_clock::time_point at{};
    uint64_t handshakes = 0;
    double per_second = 0;
  } rate;
  void start_admin();
  std::string handle_admin(const AdminRequest& req);
  std::string metrics_text();
  std::string routes_show(const std::string& name);
  std::string routes_diff(const std::string& path, const std::string& text);
  std::string certs_add(const AdminRequest& req);
  // Backends (control_plane_backends.cc): active health checks, operator
  // state, their admin commands and metrics.
  HealthChecker health;
  BackendStateTable backend_states;
  bool backends_dirty = true;  // health or operator state may differ from what was sent
  uint64_t backend_states_version = 0;
  void configure_health();
  std::string backends_admin(const std::string& cmd, const AdminRequest& req);
  void backends_metrics(std::string& out) const;
  std::string certs_rm(const AdminRequest& req);
  struct ReloadOutcome;
  std::string reload_reply(const ReloadOutcome& o, bool dry);
  void on_stats_fd(int fd);
  void unmap_stats();
  // Scale-out (control_plane_bgp.cc): the VIPs announced through BIRD, node
  // drain (`lodectl drain-node`) and the withdraw-first stop on SIGTERM.
  Announcer bgp{[this](const std::string& json) { event(json); }};
  bool node_draining = false;  // lodectl drain-node
  bool stopping = false;       // SIGTERM: withdrawing, then converging, then stop
  std::chrono::steady_clock::time_point drain_since{}, withdrawn_at{}, stop_deadline{};
  void bgp_tick();
  int bgp_fill_poll(std::vector<pollfd>& fds);  // returns a poll timeout (-1: none)
  void bgp_on_poll(const std::vector<pollfd>& fds, size_t first);
  void begin_stop();
  void bgp_shutdown();
  std::string node_admin(const std::string& cmd);
  void bgp_status(JsonWriter& w) const;
  void bgp_metrics(std::string& out) const;
  uint64_t stat_total(std::string_view name) const;

  // The configuration in service is kept beside the socket, so that a
  // restarted control plane re-attaches with it, not with whatever the file
  // on disk says now (that takes a SIGHUP).
  std::string saved_config_path() const { return opt.socket_path + ".config"; }
  uint64_t config_sent_in = 0;  // generation of the segment that carried config_text
  uint64_t config_answers = 0;  // the last SIGHUP reload whose configuration went into service here

  explicit Impl(ControlPlaneOptions o) : opt(std::move(o)) {}
  ~Impl() {
    unmap_stats();
    OPENSSL_cleanse(tickets.data(), tickets.size() * sizeof(TicketBytes));
    if (sock >= 0) close(sock);
    if (sig_fd >= 0) close(sig_fd);
  }

  void event(const std::string& json) { opt.event(json); }
  void warn(const std::string& msg) {
    event(JsonWriter().begin_object().field("event", "warning").field("message", msg).end_object().take());
  }

  // ------------------------------------------------------------ loading
  // `lenient`: a re-attaching control plane serves what still loads and
  // reports the rest, instead of refusing everything.
  Result<std::map<std::string, CertItem>, std::vector<std::string>> load_items(const config::Config& c,
                                                                                std::vector<std::string>& warnings,
                                                                                bool lenient = false) {
    std::vector<std::string> refused;
    auto loaded = load_certificates(c, *trust, now_s(), warnings, lenient ? &refused : nullptr);
    if (!loaded) return unexpected(std::move(loaded.error()));
    for (const auto& e : refused) {
      event(JsonWriter().begin_object().field("event", "certificate_refused").field("level", "error")
                .field("error", e).end_object().take());
    }
    return to_items(std::move(*loaded));
  }

  // Catalog entries as items, with their OCSP sources (needs `cfg` and
  // `trust` of the configuration they came from).
  std::map<std::string, CertItem> to_items(std::vector<CatalogEntry> entries) {
    std::map<std::string, CertItem> out;
    for (auto& e : entries) {
      CertItem it(std::move(e));
      prepare_ocsp(it);
      out.emplace(it.key, std::move(it));
    }
    return out;
  }

  void prepare_ocsp(CertItem& it) {
    it.cache_key.clear();
    it.check_url.clear();
    it.check_crl = false;
    it.chain_ids.clear();
    if (!cfg.ocsp.enabled || !it.bundle.issuer) return;
    if (!it.ocsp_url.empty()) {
      it.check_url = it.ocsp_url;
      it.cache_key = OcspDiskCache::key_for(it.bundle.leaf.get(), it.bundle.issuer.get());
    } else if (const auto crls = crl_urls(it.bundle.leaf.get()); !crls.empty()) {
      it.check_url = crls.front();
      it.check_crl = true;
    }
    attach_issuers(it);
  }

  // The issuer of an intermediate: the next certificate served, else a
  // trusted root that issued it.
  X509* issuer_of(const CertItem& it, size_t i) const {
    if (i + 1 < it.bundle.chain.size()) return it.bundle.chain[i + 1].get();
    X509* cert = it.bundle.chain[i].get();
    if (trust && trust->store() != nullptr) {
      STACK_OF(X509_OBJECT)* objs = X509_STORE_get0_objects(trust->store());
      for (int k = 0; k < sk_X509_OBJECT_num(objs); ++k) {
        X509* cand = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, k));
        if (cand != nullptr && X509_check_issued(cand, cert) == X509_V_OK) return cand;
      }
    }
    return nullptr;
  }

  void attach_issuers(CertItem& it) {
    for (size_t i = 0; i < it.bundle.chain.size(); ++i) {
      X509* cert = it.bundle.chain[i].get();
      if (X509_check_issued(cert, cert) == X509_V_OK) continue;  // a root, if the file has one
      X509* issuer = issuer_of(it, i);
      if (issuer == nullptr) continue;
      unsigned char md[EVP_MAX_MD_SIZE];
      unsigned int len = 0;
      if (X509_digest(cert, EVP_sha256(), md, &len) != 1) continue;
      std::string id = "issuer:";
      for (unsigned int k = 0; k < len; ++k) {
        static const char* kHex = "0123456789abcdef";
        id += kHex[md[k] >> 4];
        id += kHex[md[k] & 15];
      }
      auto found = issuers.find(id);
      if (found == issuers.end()) {
        IssuerCheck c;
        c.id = id;
        c.subject = tls::describe_cert(cert).subject;
        const auto urls = ocsp_urls(cert);
        const auto crls = crl_urls(cert);
        if (!urls.empty()) {
          c.url = urls.front();
        } else if (!crls.empty()) {
          c.url = crls.front();
          c.crl = true;
        } else {
          continue;  // nothing to ask
        }
        X509_up_ref(cert);
        X509_up_ref(issuer);
        c.cert.reset(cert);
        c.issuer.reset(issuer);
        found = issuers.emplace(id, std::move(c)).first;
        start_issuer_fetch(found->second);
      }
      found->second.users.insert(it.key);
      it.chain_ids.push_back(id);
    }
  }

  void start_issuer_fetch(IssuerCheck& c) {
    if (c.fetching) return;
    c.fetching = true;
    fetcher.submit(OcspJob{c.id, 0, c.url, c.cert.get(), c.issuer.get(),
                           cfg.ocsp.use_get ? OcspMethod::kGet : OcspMethod::kPost,
                           std::chrono::milliseconds(cfg.ocsp.timeout_ms), c.crl});
  }

  void on_issuer_result(IssuerCheck& c, OcspResult& r, sys_seconds now) {
    c.fetching = false;
    if (!r.status) {
      ++c.failures;
      c.next_fetch = now + std::chrono::duration_cast<std::chrono::seconds>(backoff(c.failures)) + std::chrono::seconds(1);
      event(JsonWriter().begin_object().field("event", c.crl ? "crl_fetch_failed" : "ocsp_fetch_failed")
                .field("intermediate", c.subject).field("error", r.status.error())
                .field("failures", static_cast<uint64_t>(c.failures)).end_object().take());
    } else {
      const bool was_revoked = c.status && c.status->status == OcspStatus::Cert::kRevoked;
      c.failures = 0;
      c.status = std::move(*r.status);
      c.next_fetch = next_refresh(*c.status, now);
      if (c.status->status == OcspStatus::Cert::kRevoked && !was_revoked) {
        event(JsonWriter().begin_object().field("event", "intermediate_revoked").field("level", "error")
                  .field("intermediate", c.subject).field("source", c.crl ? "crl" : "ocsp")
                  .field("revoked_at", unix_of(c.status->revoked_at))
                  .field("certificates", static_cast<uint64_t>(c.users.size()))
                  .field("action", cfg.ocsp.withhold_revoked ? "withheld" : "served").end_object().take());
      }
    }
    schedule.emplace(std::max(c.next_fetch, now), c.id);
    for (const auto& key : c.users) {
      if (auto it = items.find(key); it != items.end()) reevaluate(it->second, now);
    }
  }

  bool chain_revoked(const CertItem& it) const {
    for (const auto& id : it.chain_ids) {
      auto c = issuers.find(id);
      if (c != issuers.end() && c->second.status && c->second.status->status == OcspStatus::Cert::kRevoked) return true;
    }
    return false;
  }

  // A response from the disk cache, if it still verifies and is stapleable.
  void load_cached(CertItem& it, sys_seconds now) {
    if (!disk || it.cache_key.empty() || it.ocsp) return;
    auto der = disk->load(it.cache_key);
    if (!der) return;
    auto st = verify_ocsp_response(*der, it.bundle.leaf.get(), it.bundle.issuer.get(), now);
    if (!st || st->status == OcspStatus::Cert::kUnknown || expires_at(*st) <= now) return;
    it.ocsp = std::move(*st);
    it.next_fetch = next_refresh(*it.ocsp, now);
    if (it.ocsp->status == OcspStatus::Cert::kRevoked) report_ocsp(it);
  }

  Result<void, std::vector<std::string>> load_tickets(const config::Config& c) {
    if (!c.tls.ticket_key_file.empty()) {
      auto bytes = read_file(c.tls.ticket_key_file);
      if (!bytes) return unexpected(std::vector<std::string>{c.path + ": [tls] ticket_key_file: " + bytes.error()});
      const size_t n = bytes->size() / snapshot::kTicketKeySize;
      if (bytes->empty() || bytes->size() % snapshot::kTicketKeySize != 0 || n > snapshot::kMaxTicketKeys) {
        OPENSSL_cleanse(bytes->data(), bytes->size());
        return unexpected(std::vector<std::string>{
            c.path + ": [tls] ticket_key_file " + c.tls.ticket_key_file + ": expected 1 to 16 keys of 80 bytes, got " +
            std::to_string(bytes->size()) + " bytes"});
      }
      std::vector<TicketBytes> keys(n);
      for (size_t i = 0; i < n; ++i) std::memcpy(keys[i].data(), bytes->data() + i * 80, 80);
      OPENSSL_cleanse(bytes->data(), bytes->size());
      set_tickets(std::move(keys));
      return {};
    }
    if (tickets.empty()) return rotate_tickets();
    return {};
  }

  void set_tickets(std::vector<TicketBytes> keys) {
    OPENSSL_cleanse(tickets.data(), tickets.size() * sizeof(TicketBytes));
    tickets = std::move(keys);
    ++tickets_version;
    tickets_dirty = true;
  }

  Result<void, std::vector<std::string>> rotate_tickets() {
    TicketBytes fresh;
    if (RAND_priv_bytes(fresh.data(), static_cast<int>(fresh.size())) != 1) {
      return unexpected(std::vector<std::string>{"session ticket keys: the random generator failed"});
    }
    std::vector<TicketBytes> keys{fresh};
    // The previous two keys still decrypt (a ticket lives at most two periods).
    for (size_t i = 0; i < tickets.size() && i < 2; ++i) keys.push_back(tickets[i]);
    OPENSSL_cleanse(fresh.data(), fresh.size());
    set_tickets(std::move(keys));
    last_rotation = now_s();
    return {};
  }

  // ------------------------------------------------------------ policy
  snapshot::CertState state_of(const CertItem& it, sys_seconds now) const {
    const bool revoked = (it.ocsp && it.ocsp->status == OcspStatus::Cert::kRevoked) || chain_revoked(it);
    if (revoked && cfg.ocsp.withhold_revoked) return snapshot::CertState::kWithheldRevoked;
    if (it.strict && !(it.ocsp && stapleable(*it.ocsp, now))) return snapshot::CertState::kWithheldNoStaple;
    return snapshot::CertState::kServe;
  }
  uint64_t staple_version_of(const CertItem& it, sys_seconds now) const {
    if (!it.ocsp || !stapleable(*it.ocsp, now)) return 0;
    return text_version(it.ocsp->der) ^ static_cast<uint64_t>(unix_of(it.ocsp->this_update));
  }
  // Marks the item for sending when what the dataplane has differs.
  void reevaluate(const CertItem& it, sys_seconds now) {
    if (it.sent_cert_version != it.bundle.version || it.sent_state != state_of(it, now) ||
        it.sent_staple != staple_version_of(it, now)) {
      dirty.insert(it.key);
    }
  }

  void schedule_item(const CertItem& it, sys_seconds now) {
    if (it.checked()) schedule.emplace(std::max(it.next_fetch, now), it.key);
    if (it.ocsp) schedule.emplace(expires_at(*it.ocsp), it.key);
  }

  void start_fetch(CertItem& it) {
    if (it.fetching || !it.checked()) return;
    it.fetching = true;
    fetcher.submit(OcspJob{it.key, it.bundle.version, it.check_url, it.bundle.leaf.get(), it.bundle.issuer.get(),
                           cfg.ocsp.use_get ? OcspMethod::kGet : OcspMethod::kPost,
                           std::chrono::milliseconds(cfg.ocsp.timeout_ms), it.check_crl});
  }

  void on_ocsp_results() {
    const sys_seconds now = now_s();
    for (auto& r : fetcher.take_results()) {
      if (auto c = issuers.find(r.key); c != issuers.end()) {
        on_issuer_result(c->second, r, now);
        continue;
      }
      auto found = items.find(r.key);
      if (found == items.end()) continue;
      CertItem& it = found->second;
      it.fetching = false;
      if (it.bundle.version != r.cert_version) {  // the certificate changed meanwhile
        it.next_fetch = now;
        schedule_item(it, now);
        continue;
      }
      if (!r.status) {
        ++it.failures;
        it.next_fetch = now + std::chrono::duration_cast<std::chrono::seconds>(backoff(it.failures)) +
                        std::chrono::seconds(1);
        event(JsonWriter().begin_object().field("event", "ocsp_fetch_failed").field("certificate", it.key)
                  .field("error", r.status.error()).field("failures", static_cast<uint64_t>(it.failures))
                  .field("staple_until", it.ocsp ? unix_of(expires_at(*it.ocsp)) : int64_t{0}).end_object().take());
      } else {
        it.failures = 0;
        it.ocsp = std::move(*r.status);
        it.next_fetch = next_refresh(*it.ocsp, now);
        if (disk && !it.cache_key.empty() && !it.ocsp->der.empty()) {
          if (auto ok = disk->store(it.cache_key, it.ocsp->der); !ok) warn("OCSP cache: " + ok.error());
        }
        report_ocsp(it);
      }
      schedule_item(it, now);
      reevaluate(it, now);
    }
  }

  void report_ocsp(const CertItem& it) {
    const bool revoked = it.ocsp->status == OcspStatus::Cert::kRevoked;
    JsonWriter w;
    w.begin_object().field("event", revoked ? "certificate_revoked" : "ocsp_updated");
    if (revoked) w.field("level", "error");
    w.field("certificate", it.key).field("source", it.check_crl ? "crl" : "ocsp").field("status", to_string(it.ocsp->status))
        .field("this_update", unix_of(it.ocsp->this_update)).field("next_update", unix_of(expires_at(*it.ocsp)));
    if (revoked) {
      w.field("revoked_at", unix_of(it.ocsp->revoked_at))
          .field("action", cfg.ocsp.withhold_revoked ? "withheld" : "served without a staple");
    }
    event(w.end_object().take());
  }

  // Startup: responses from the disk cache, then fetches for the rest, for
  // at most startup_wait_ms, so that the first handshake is stapled.
  void initial_ocsp() {
    const sys_seconds now = now_s();
    size_t cached = 0, fetching = 0;
    for (auto& [k, it] : items) {
      load_cached(it, now);
      if (it.ocsp) ++cached;
      if (it.checked() && !it.ocsp) {
        start_fetch(it);
        ++fetching;
      }
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(cfg.ocsp.startup_wait_ms);
    while (fetcher.in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fetcher.fd(), POLLIN, 0};
      poll(&p, 1, 50);
      on_ocsp_results();
    }
    for (auto& [k, it] : items) {
      if (!it.fetching) schedule_item(it, now);
    }
    if (cached + fetching > 0) {
      event(JsonWriter().begin_object().field("event", "ocsp_startup").field("from_disk", static_cast<uint64_t>(cached))
                .field("fetched", static_cast<uint64_t>(fetching)).field("pending", static_cast<uint64_t>(fetcher.in_flight()))
                .end_object().take());
    }
  }

  // ------------------------------------------------------------ watching
  void watch_paths() {
    if (!watch) return;
    for (const auto& [k, it] : items) {
      if (it.dir.empty()) {
        (void)watch->watch_file(it.cert_path);
        (void)watch->watch_file(it.key_path);
      }
    }
    for (const auto& d : cfg.certificate_dirs) {
      DirectorySpec spec{d.name, d.path, d.cert_pattern, d.key_pattern};
      (void)watch->watch_directory(d.path);
      // Its own name in its parent: the directory (or a link to it) replaced
      // by rename, `ln -sfn`, gives an event of d.path (a rescan: the watch
      // above follows the inode it was put on).
      (void)watch->watch_file(d.path);
      for (const auto& dir : directories_to_watch(spec, {})) (void)watch->watch_directory(dir);
    }
    if (!cfg.tls.ticket_key_file.empty()) (void)watch->watch_file(cfg.tls.ticket_key_file);
  }

  void on_file_events() {
    const auto now = std::chrono::steady_clock::now();
    for (const auto& e : watch->read_events()) {
      // Events were lost, or a watched directory went (deleted, renamed,
      // replaced): everything is looked at again and watched anew.
      const bool rescan = e.kind == FileEventKind::kOverflow || e.kind == FileEventKind::kWatchGone;
      debounce.note(rescan ? "*" : e.path, now);
    }
  }

  // The certificate files and directories looked at again, with the
  // configuration in service (its file is not read again: that is SIGHUP's),
  // and every directory watched again where it now is. Not a reload: only
  // the certificates that changed are published.
  // A refused one (a named certificate that does not load, say) is tried
  // again at the next file event (rescan_pending).
  void rescan_certificates(const char* why) {
    // A fresh watcher, everything watched where it now is: a directory's
    // watch stays on the inode it was put on (one replaced, or a link to it
    // swapped), also when a file watched in it shares that watch. What the
    // old one has pending is taken first (its paths come back settled: a
    // refused scan must not lose them).
    last_rescan = std::chrono::steady_clock::now();
    if (watch) on_file_events();
    if (auto w = FileWatch::create(); w) {
      watch.emplace(std::move(*w));
    } else {
      warn("certificate files: a new watcher: " + w.error());
    }
    watch_paths();  // before the scan: a change during it is another event
    event(JsonWriter().begin_object().field("event", "certificates_rescanned").field("reason", why).end_object().take());
    ReloadOutcome outcome;
    auto next = validate_text(config_text, cfg.path, outcome);
    rescan_pending = !next;
    rescanned_in_pass = true;
    apply_next(std::move(next), why, outcome, 0, true);
  }
  bool rescan_pending = false;
  // One rescan per batch of settled paths, and at most one a second (a
  // burst of events, or a trickle while a refused rescan is retried, is
  // not as many scans of every certificate).
  bool rescanned_in_pass = false;
  std::chrono::steady_clock::time_point last_rescan{};
  // A rescan now, or, within a second of the last one, once that second is
  // over (the debouncer's "*" brings it back).
  void rescan_or_defer(const char* why) {
    if (rescanned_in_pass) return;
    const auto now = std::chrono::steady_clock::now();
    if (last_rescan != std::chrono::steady_clock::time_point{} && now - last_rescan < std::chrono::seconds(1)) {
      debounce.note("*", now);
      return;
    }
    rescan_certificates(why);
  }

  // Every path whose events settled: reload_path each.
  void reload_settled(const std::vector<std::string>& paths) {
    rescanned_in_pass = false;
    for (const auto& path : paths) reload_path(path);
  }

  // One changed path: reload exactly the certificates it concerns.
  void reload_path(const std::string& path) {
    if (path == "*") {
      rescan_or_defer("inotify: a watched directory went, or events were lost");
      return;
    }
    if (rescan_pending) rescan_or_defer("a file changed after a refused rescan");
    // A rescan in this pass that was refused leaves this path's own reload
    // to do: one certificate that does not load must not hold the others
    // (or the ticket keys) back.
    if (rescanned_in_pass && !rescan_pending) return;
    for (const auto& d : cfg.certificate_dirs) {
      if (path == d.path) {
        rescan_or_defer("inotify: a certificate directory was replaced");
        return;
      }
    }
    const sys_seconds now = now_s();
    std::vector<std::string> warnings;
    if (path == cfg.tls.ticket_key_file) {
      if (auto ok = load_tickets(cfg); !ok) warn(ok.error().front());
      return;
    }
    for (auto& [k, it] : items) {
      if (!it.dir.empty() || (it.cert_path != path && it.key_path != path)) continue;
      auto b = load_cert_bundle(it.cert_path, it.key_path, *trust, now, warnings);
      if (!b) {
        event(JsonWriter().begin_object().field("event", "certificate_refused").field("certificate", it.key)
                  .field("error", b.error()).field("serving", "the previous certificate").end_object().take());
        continue;
      }
      replace_bundle(it, std::move(*b), now);
    }
    for (const auto& d : cfg.certificate_dirs) {
      DirectorySpec spec{d.name, d.path, d.cert_pattern, d.key_pattern};
      if (path.rfind(d.path + "/", 0) != 0) continue;
      for (const auto& name : names_for_changed_path(spec, path)) {
        const std::string key =
            name.wildcard ? control::dir_wildcard_key(d.name, name.host) : control::dir_cert_key(d.name, name.host);
        // Files whose names differ only in case (or a trailing dot) name the
        // same host; a scan serves the first in byte order that loads, and
        // so does this: a later one changing or going changes nothing, an
        // earlier one takes over, and the one serving going leaves the name
        // to the next (a listing, only then).
        auto found = items.find(key);
        const bool other_serves = found != items.end() && found->second.dir_entry != name.entry;
        if (other_serves && !(name.entry < found->second.dir_entry)) continue;
        auto loaded = load_directory_file(spec, name.entry, *trust, now, warnings);
        if (!loaded) {
          event(JsonWriter().begin_object().field("event", "certificate_refused").field("certificate", key)
                    .field("error", loaded.error()).end_object().take());
          continue;
        }
        if (!loaded->has_value()) {
          if (found == items.end() || other_serves) continue;  // not the file serving it
          if (auto next = next_entry_for(spec, name, name.entry, *trust, now, warnings)) {
            take_dir_entry(found->second, std::move(*next), now);
            continue;
          }
          items.erase(found);
          dirty.erase(key);
          removed.insert(key);
          event(JsonWriter().begin_object().field("event", "certificate_removed").field("certificate", key).end_object().take());
          continue;
        }
        DirectoryEntry& e = **loaded;
        if (found == items.end()) {
          CatalogEntry ce;
          ce.key = key;
          ce.dir = d.name;
          ce.dir_entry = e.entry;
          ce.cert_path = e.cert_path;
          ce.key_path = e.key_path;
          ce.bundle = std::move(e.bundle);
          resolve_ocsp(cfg, ce);
          CertItem it(std::move(ce));
          prepare_ocsp(it);
          auto [pos, _] = items.emplace(key, std::move(it));
          removed.erase(key);
          pos->second.next_fetch = now;
          start_fetch(pos->second);
          dirty.insert(key);
          event(JsonWriter().begin_object().field("event", "certificate_added").field("certificate", key).end_object().take());
        } else {
          take_dir_entry(found->second, std::move(e), now);
        }
      }
    }
    for (const auto& w : warnings) warn(w);
  }

  // A directory's name served from the file `e` from now on.
  void take_dir_entry(CertItem& it, DirectoryEntry e, sys_seconds now) {
    it.dir_entry = std::move(e.entry);
    it.cert_path = std::move(e.cert_path);
    it.key_path = std::move(e.key_path);
    replace_bundle(it, std::move(e.bundle), now);
  }

  void replace_bundle(CertItem& it, CertBundle b, sys_seconds now) {
    if (b.version == it.bundle.version) return;
    it.bundle = std::move(b);
    it.ocsp.reset();  // the old response is for the old certificate
    it.failures = 0;
    resolve_ocsp(cfg, it);
    prepare_ocsp(it);
    load_cached(it, now);
    if (!it.ocsp) start_fetch(it);
    dirty.insert(it.key);
    event(JsonWriter().begin_object().field("event", "certificate_replaced").field("certificate", it.key)
              .field("not_after", unix_of(it.bundle.info.not_after)).end_object().take());
  }

  struct ReloadOutcome {
    std::vector<std::string> errors;  // refused: nothing changed
    std::vector<std::string> warnings;
    std::vector<std::string> added, removed, changed;  // certificate keys
    bool config_changed = false;
  };

  // What a reload to `next` would change in the certificates.
  template <class Map>
  void diff_certificates(const Map& next, ReloadOutcome& out) const {
    for (const auto& [k, e] : next) {
      auto old = items.find(k);
      if (old == items.end()) {
        out.added.push_back(k);
      } else if (old->second.bundle.version != e.bundle.version) {
        out.changed.push_back(k);
      }
    }
    for (const auto& [k, it] : items) {
      if (next.count(k) == 0) out.removed.push_back(k);
    }
  }

  // A configuration to switch to, validated completely: its text (read
  // once, so what is published is what was checked), listeners unchanged,
  // trust files, every certificate. Nothing in service changes here.
  struct NextConfig {
    std::string text;
    config::Config cfg;
    CertTrust trust;
    std::vector<CatalogEntry> certs;
    std::vector<std::string> superseded;  // run-time certificates the file now defines itself
  };
  // `path` empty: the configuration file in service.
  std::optional<NextConfig> validate_next(ReloadOutcome& out, const std::string& path = {}) {
    const std::string& file = path.empty() ? opt.config_path : path;
    auto text = read_file(file);
    if (!text) {
      out.errors.push_back(text.error());
      return std::nullopt;
    }
    return validate_text(std::move(*text), file, out);
  }

  // The same, for a configuration's text read elsewhere (`routes diff`
  // sends it; `routes rollback` kept it); `path` names it in the messages
  // and is the directory its relative paths are read from.
  std::optional<NextConfig> validate_text(std::string text, const std::string& path, ReloadOutcome& out) {
    out.config_changed = text != config_text;
    // With the run-time certificates (`certs add`): routes may name them.
    std::vector<std::string> superseded;
    auto next = config::load_config_string(published_text(text, path, &superseded), path);
    if (!next) {
      for (const auto& e : next.error()) out.errors.push_back(e.to_string());
      return std::nullopt;
    }
    if (!config::same_listeners(cfg, *next)) {
      out.errors.push_back(path + ": the listeners (names, addresses, order, PROXY setting) changed; "
                           "the workers own their sockets: restart Lodestone to change them");
      return std::nullopt;
    }
    if (!config::same_front(cfg, *next)) {
      out.errors.push_back(path + ": the front (front, [dpdk] but cookie_secret_file) changed; "
                           "the dataplane sets its port up at start: restart Lodestone to change it");
      return std::nullopt;
    }
    auto t = CertTrust::load(validation_for(*next));
    if (!t) {
      out.errors.push_back(path + ": [control]: " + t.error());
      return std::nullopt;
    }
    auto certs = load_certificates(*next, *t, now_s(), out.warnings);
    if (!certs) {
      out.errors = std::move(certs.error());
      return std::nullopt;
    }
    for (const auto& name : superseded) {
      out.warnings.push_back(path + " defines the certificate '" + name +
                             "' itself: the one added at run time (lodectl certs add) is dropped");
    }
    return NextConfig{std::move(text), std::move(*next), std::move(*t), std::move(*certs), std::move(superseded)};
  }

  // ------------------------------------------------------------ run-time certificates
  // `lodectl certs add`: kept as files in a store beside the control socket
  // (mode 0700; keys 0600) and named by the published configuration's
  // trailer (controlplane/published_config.h), so that a reload keeps them
  // and a restarted control plane re-attaches with them. A restart of
  // Lodestone (a new socket) starts without them.
  std::vector<RuntimeCertificate> runtime_certs;  // in the order added
  std::string cert_store_dir() const { return opt.socket_path + ".certs"; }
  RuntimeCertificate runtime_cert(const std::string& name) const {
    return {name, cert_store_dir() + "/" + name + ".pem", cert_store_dir() + "/" + name + ".key"};
  }
  const RuntimeCertificate* find_runtime_cert(std::string_view name) const {
    for (const auto& c : runtime_certs) {
      if (c.name == name) return &c;
    }
    return nullptr;
  }
  std::string published_text(const std::string& file_text, const std::string& path,
                             std::vector<std::string>* superseded = nullptr) const {
    return compose_published_config(file_text, path, runtime_certs, superseded);
  }
  // What the dataplane gets and a re-attach starts from.
  std::string published_config() const { return published_text(config_text, opt.config_path); }
  // After a re-attach from the saved text: the certificates of the trailer
  // are the run-time ones.
  void adopt_runtime_certs() {
    runtime_certs.clear();
    const std::string prefix = cert_store_dir() + "/";
    for (const auto& c : cfg.certificates) {
      if (c.cert.rfind(prefix, 0) == 0) runtime_certs.push_back(runtime_cert(c.name));
    }
  }
  // Writes a run-time certificate's files (each replaced whole: written
  // beside, then renamed). Keys never appear in the messages.
  Result<void, std::string> store_pem(const RuntimeCertificate& c, const std::string& chain_pem,
                                      const std::string& key_pem) {
    if (mkdir(cert_store_dir().c_str(), 0700) != 0 && errno != EEXIST) {
      return unexpected("the certificate store " + cert_store_dir() + ": " + std::strerror(errno));
    }
    // Ours alone: a directory (not a link), owned by us, closed to others;
    // anything else there was not made by this control plane.
    struct stat st{};
    if (lstat(cert_store_dir().c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & 077) != 0) {
      return unexpected("the certificate store " + cert_store_dir() +
                        " is not a directory of this user with mode 0700: refusing to write keys there");
    }
    // Both files are written beside first and renamed only when both are
    // whole: a failed write leaves the pair in service as it was, not a new
    // chain beside the old key (a rename within one directory does not fail
    // short of the disk going away).
    const std::pair<const std::string*, const std::string*> files[] = {{&c.cert_path, &chain_pem},
                                                                        {&c.key_path, &key_pem}};
    auto drop_temps = [&] {
      for (const auto& f : files) unlink((*f.first + ".tmp").c_str());
    };
    for (const auto& [path, data] : files) {
      const std::string tmp = *path + ".tmp";
      unlink(tmp.c_str());  // a leftover (or a planted link): never followed
      const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      bool ok = fd >= 0;
      for (size_t at = 0; ok && at < data->size();) {
        const ssize_t n = write(fd, data->data() + at, data->size() - at);
        ok = n > 0 || (n < 0 && errno == EINTR);
        if (n > 0) at += static_cast<size_t>(n);
      }
      const int err = errno;
      if (fd >= 0 && close(fd) != 0) ok = false;
      if (!ok) {
        drop_temps();
        return unexpected("writing " + *path + ": " + std::strerror(err));
      }
    }
    for (const auto& f : files) {
      if (std::rename((*f.first + ".tmp").c_str(), f.first->c_str()) != 0) {
        const int err = errno;
        drop_temps();
        return unexpected("writing " + *f.first + ": " + std::strerror(err));
      }
    }
    return {};
  }
  // The files go once the configuration saved for a re-attach no longer
  // names them (save_config(), when the dataplane acknowledges it): a
  // control plane restarted in between finds what its saved text names.
  // `never_saved`: a `certs add` that failed; no saved text names its files.
  void drop_runtime_cert(const std::string& name, bool never_saved = false) {
    const RuntimeCertificate c = runtime_cert(name);
    for (const std::string* f : {&c.cert_path, &c.key_path}) {
      if (never_saved) {
        unlink(f->c_str());
      } else {
        unlink_after_save.push_back(*f);
      }
    }
    std::erase_if(runtime_certs, [&](const RuntimeCertificate& r) { return r.name == name; });
  }
  std::vector<std::string> unlink_after_save;

  // The configuration in service before the last reload that changed it
  // (`routes rollback`); empty: none since the control plane started.
  std::string previous_config_text;
  std::string previous_config_path;

  // SIGHUP, `lodectl routes reload`: everything again; what did not change
  // is not re-sent. A dry run validates completely and reports what would
  // change, and changes nothing.
  // `path`: `lodectl routes reload CONFIG`, which makes CONFIG the file in
  // service (SIGHUP re-reads it) once it is applied.
  // `asked`: the SIGHUP reload this is (StatsSegment::ask_reload's number, 0:
  // not a SIGHUP), which the answer to the dataplane carries.
  ReloadOutcome reload_config(const char* why, bool dry_run = false, const std::string& path = {},
                              uint64_t asked = 0) {
    ReloadOutcome outcome;
    auto next = validate_next(outcome, path);
    if (dry_run) {
      if (next) {
        std::map<std::string, CatalogEntry> by_key;
        for (auto& e : next->certs) by_key.emplace(e.key, std::move(e));
        diff_certificates(by_key, outcome);
      }
      return outcome;
    }
    apply_next(std::move(next), why, outcome, asked);
    return outcome;
  }

  // `lodectl routes rollback`: the previous configuration, validated again
  // (its files may have changed since) and applied like a reload; the one
  // in service becomes the previous one, so a second rollback goes back.
  ReloadOutcome rollback_config() {
    ReloadOutcome outcome;
    if (previous_config_text.empty()) {
      outcome.errors.push_back("no previous configuration to roll back to: no reload has changed the configuration "
                               "since the control plane started");
      return outcome;
    }
    auto next = validate_text(previous_config_text, previous_config_path, outcome);
    apply_next(std::move(next), "admin (rollback)", outcome);
    return outcome;
  }

  // A validated configuration into service (or the refusal logged).
  // `rescan`: the configuration in service validated again for its files
  // (rescan_certificates): not counted as a reload, and the dataplane's
  // configuration is not sent again.
  void apply_next(std::optional<NextConfig> next, const char* why, ReloadOutcome& outcome, uint64_t asked = 0,
                  bool rescan = false) {
    if (!next) {
      JsonWriter w;
      w.begin_object().field("event", rescan ? "rescan_refused" : "reload_refused");
      if (rescan) w.field("level", "error");
      w.field("reason", why).key("errors").begin_array();
      for (const auto& e : outcome.errors) w.value(e);
      event(w.end_array().end_object().take());
      if (rescan) return;
      ++reloads_refused;
      // No segment will answer this reload: the dataplane hears so, and
      // tells systemd that the configuration in service stays.
      if (sock >= 0 && attached) {
        snapshot::ChannelMessage m;
        m.type = static_cast<uint16_t>(snapshot::MessageType::kReloadRefused);
        m.generation = generation;
        m.value = asked;
        if (const int err = snapshot::send_message(sock, m); err != 0) {
          warn(std::string("telling the dataplane of the refused reload: ") + std::strerror(err));
        }
      }
      return;
    }
    if (!rescan) ++reloads_ok;
    for (const auto& w : outcome.warnings) warn(w);
    if (next->text != config_text || next->cfg.path != cfg.path) {
      previous_config_text = std::move(config_text);
      previous_config_path = cfg.path;
    }
    for (const auto& name : next->superseded) drop_runtime_cert(name);
    if (next->cfg.path != opt.config_path) {
      event(JsonWriter().begin_object().field("event", "config_file_changed").field("from", opt.config_path)
                .field("to", next->cfg.path).end_object().take());
      opt.config_path = next->cfg.path;  // what SIGHUP reads from now on
    }
    // The new configuration and trust first: the items' OCSP sources and
    // issuer checks are resolved with them.
    cfg = std::move(next->cfg);
    config_text = std::move(next->text);
    trust = std::move(next->trust);
    std::map<std::string, CertItem> next_items = to_items(std::move(next->certs));
    diff_certificates(next_items, outcome);
    const sys_seconds now = now_s();
    // Carry what is known about unchanged certificates.
    for (auto& [k, it] : next_items) {
      auto old = items.find(k);
      if (old != items.end() && old->second.bundle.version == it.bundle.version) {
        it.ocsp = std::move(old->second.ocsp);
        it.failures = old->second.failures;
        it.next_fetch = old->second.next_fetch;
        it.fetching = old->second.fetching;
        it.sent_cert_version = old->second.sent_cert_version;
        it.sent_state = old->second.sent_state;
        it.sent_staple = old->second.sent_staple;
      } else {
        load_cached(it, now);
        if (!it.ocsp) start_fetch(it);
      }
      schedule_item(it, now);
      reevaluate(it, now);
    }
    for (const auto& [k, it] : items) {
      if (next_items.count(k) == 0 && it.sent_cert_version != 0) removed.insert(k);
    }
    for (const auto& k : removed) dirty.erase(k);
    items = std::move(next_items);
    if (!rescan) config_dirty = true;  // always on a reload: the dataplane reports "reloaded"
    config_answers = std::max(config_answers, asked);
    if (auto ok = load_tickets(cfg); !ok) warn(ok.error().front());
    watch_paths();
    backend_states.retain(cfg);  // operator state of backends that are gone
    configure_health();
  }

  // ------------------------------------------------------------ publishing
  void add_item(SegmentBuilder& b, CertItem& it, sys_seconds now, bool full) {
    const snapshot::CertState st = state_of(it, now);
    const uint64_t staple = staple_version_of(it, now);
    if (full || it.sent_cert_version != it.bundle.version || it.sent_state != st) {
      b.add_certificate(it.key, it.bundle.version, st, unix_of(it.bundle.info.not_after), it.bundle.chain_pem,
                        it.bundle.key_pem);
      if (st != it.sent_state || full) {
        if (st != snapshot::CertState::kServe) {
          event(JsonWriter().begin_object().field("event", "certificate_withheld").field("level", "error")
                    .field("certificate", it.key)
                    .field("reason", st == snapshot::CertState::kWithheldRevoked
                                         ? (chain_revoked(it) ? "an intermediate of its chain is revoked" : "revoked")
                                         : "no valid OCSP staple (strict)")
                    .end_object().take());
        }
      }
      // A new certificate version drops the old staple on the dataplane side.
      if (it.sent_cert_version != it.bundle.version) it.sent_staple = 0;
      it.sent_cert_version = it.bundle.version;
      it.sent_state = st;
    }
    if (staple != 0 && (full || staple != it.sent_staple)) {
      const auto& o = *it.ocsp;
      b.add_staple(it.key, staple,
                   o.status == OcspStatus::Cert::kGood ? snapshot::StapleStatus::kGood : snapshot::StapleStatus::kRevoked,
                   unix_of(o.this_update), unix_of(expires_at(o)), o.der);
    } else if (staple == 0 && it.sent_staple != 0 && !full) {
      b.remove(snapshot::RecordKind::kStaple, it.key);
    }
    it.sent_staple = staple;
  }

  void publish() {
    if (sock < 0 || !attached || in_flight != 0) return;
    const bool full = need_full;
    if (backends_dirty && !full && !backend_states.changed(cfg, health)) backends_dirty = false;
    const bool backends = full || backends_dirty;
    if (!full && !config_dirty && !tickets_dirty && dirty.empty() && removed.empty() && !backends) return;
    const sys_seconds now = now_s();
    SegmentBuilder b;
    if (full || config_dirty) {
      const std::string text = published_config();
      b.add_config(text, text_version(text));
      config_sent_in = generation + 1;
    }
    if (full || tickets_dirty) {
      b.add_ticket_keys({reinterpret_cast<const std::byte*>(tickets.data()), tickets.size() * sizeof(TicketBytes)},
                        tickets_version);
    }
    if (full) {
      for (auto& [k, it] : items) add_item(b, it, now, true);
    } else {
      for (const auto& k : removed) b.remove(snapshot::RecordKind::kCertificate, k);
      for (const auto& k : dirty) {
        auto found = items.find(k);
        if (found != items.end()) add_item(b, found->second, now, false);
      }
    }
    if (backends) backend_states.publish_into(b, cfg, health, full, ++backend_states_version);
    const uint64_t gen = generation + 1;
    auto fd = b.seal(gen, full ? 0 : generation);
    if (!fd) {
      warn("publishing generation " + std::to_string(gen) + ": " + fd.error());
      return;
    }
    snapshot::ChannelMessage m;
    m.type = static_cast<uint16_t>(snapshot::MessageType::kSegment);
    m.generation = gen;
    if (full || config_dirty) m.value = config_answers;  // the SIGHUP reloads this configuration answers
    if (const int err = snapshot::send_message(sock, m, fd->get()); err != 0) {
      warn(std::string("sending a segment to the dataplane: ") + std::strerror(err));
      return;
    }
    generation = gen;
    in_flight = gen;
    if (backends) {
      backend_states.sent(gen);  // the dataplane has them once it acknowledges gen
      backends_dirty = false;
    }
    need_full = false;
    config_dirty = tickets_dirty = false;
    dirty.clear();
    removed.clear();
  }

  // A mutating admin call gets a generation of its own and answers once it
  // is in service: before changing anything it waits for the segment in
  // flight to be acknowledged (else its change would only be queued, and
  // the generation it answers would not carry it), and after publishing for
  // its own. Bounded: the dataplane acknowledges once every worker has the
  // segment, at most about a second.
  void settle(std::chrono::milliseconds limit = std::chrono::milliseconds(3000)) {
    read_channel_until([this] { return in_flight == 0; }, limit);
  }

  // Reads the channel until the dataplane's stats segment (kStats, right
  // after kHello) is mapped, the channel is gone, or `limit` passes.
  void await_stats(std::chrono::milliseconds limit) {
    read_channel_until([this] { return stats_ok; }, limit);
  }

  // Handles what the dataplane sends until done(), a stop, the channel's
  // loss, or `limit`.
  template <class Done>
  void read_channel_until(Done done, std::chrono::milliseconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (!done() && !stop && sock >= 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{sock, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) break;
      if (p.revents != 0) on_channel();
    }
  }

  void on_channel() {
    snapshot::ChannelMessage m;
    int fd = -1;
    const int rc = snapshot::recv_message(sock, m, &fd);
    if (rc == 0 && m.type == static_cast<uint16_t>(snapshot::MessageType::kStats) && fd >= 0) {
      on_stats_fd(fd);
    }
    if (fd >= 0) close(fd);
    if (rc == EAGAIN) return;
    if (rc != 0) {
      if (rc == EBADMSG) return;
      event(R"({"event":"dataplane_gone","process":"controlplane"})");
      stop = true;
      return;
    }
    switch (static_cast<snapshot::MessageType>(m.type)) {
      case snapshot::MessageType::kHello:
        generation = std::max(generation, m.value);
        attached = true;
        need_full = true;
        in_flight = 0;
        backend_states.forget();
        break;
      case snapshot::MessageType::kAck:
        if (m.generation == in_flight) in_flight = 0;
        backend_states.acknowledged(m.generation);
        acked_generation = m.generation;
        last_apply_us = m.value;
        ++published_segments;
        refusals = 0;
        if (m.generation == config_sent_in) save_config();
        event(JsonWriter().begin_object().field("event", "published").field("generation", m.generation)
                  .field("apply_us", m.value).end_object().take());
        break;
      case snapshot::MessageType::kNack:
        if (m.generation == in_flight) in_flight = 0;
        ++refused_segments;
        need_full = true;  // the dataplane keeps its generation; resend everything on top of it
        if (backend_states.refused(m.generation)) backends_dirty = true;
        event(JsonWriter().begin_object().field("event", "publish_refused").field("generation", m.generation)
                  .field("code", m.value).end_object().take());
        if (m.value != snapshot::kNackBase) stop_after_refusals();
        break;
      default:
        break;
    }
  }

  // A segment the dataplane refuses twice in a row will be refused again:
  // stop resending in a loop; a reload or file change tries again.
  int refusals = 0;
  void stop_after_refusals() {
    if (++refusals >= 2) {
      need_full = false;
      backends_dirty = false;  // the next health or operator change tries again
      refusals = 0;
    }
  }

  void save_config() {
    const std::string path = saved_config_path(), tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc | std::ios::binary);
      out << published_config();
      if (!out) {
        warn("cannot save the configuration in service to " + tmp);
        return;
      }
    }
    chmod(tmp.c_str(), 0600);
    if (std::rename(tmp.c_str(), path.c_str()) != 0) return;
    // Files of certificates that left (a name added again since is kept).
    for (const std::string& f : unlink_after_save) {
      const bool in_use = std::any_of(runtime_certs.begin(), runtime_certs.end(), [&](const RuntimeCertificate& c) {
        return c.cert_path == f || c.key_path == f;
      });
      if (!in_use) unlink(f.c_str());
    }
    unlink_after_save.clear();
  }

  Result<void, std::string> connect_dataplane() {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (opt.socket_path.size() >= sizeof addr.sun_path) return unexpected("socket path too long: " + opt.socket_path);
    std::memcpy(addr.sun_path, opt.socket_path.c_str(), opt.socket_path.size() + 1);
    for (int attempt = 0; attempt < 100; ++attempt) {
      sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
      if (sock < 0) return unexpected(std::string("socket: ") + std::strerror(errno));
      if (connect(sock, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return {};
      close(sock);
      sock = -1;
      usleep(50'000);
    }
    return unexpected("cannot connect to the dataplane at " + opt.socket_path + ": " + std::strerror(errno));
  }

  void tick() {
    const sys_seconds now = now_s();
    if (health.tick(HealthClock::now())) backends_dirty = true;
    if (cfg.tls.ticket_key_file.empty() && now - last_rotation >= std::chrono::seconds(cfg.tls.ticket_rotation_s)) {
      if (rotate_tickets()) event(R"({"event":"ticket_keys_rotated"})");
    }
    while (!schedule.empty() && schedule.begin()->first <= now) {
      const std::string key = schedule.begin()->second;
      schedule.erase(schedule.begin());
      if (auto c = issuers.find(key); c != issuers.end()) {
        if (c->second.next_fetch <= now) start_issuer_fetch(c->second);
        continue;
      }
      auto found = items.find(key);
      if (found == items.end()) continue;
      CertItem& it = found->second;
      if (it.checked() && it.next_fetch <= now) start_fetch(it);
      reevaluate(it, now);
    }
    reload_settled(debounce.take_settled(std::chrono::steady_clock::now()));
    bgp_tick();
  }

  int loop() {
    while (!stop) {
      tick();
      publish();
      int timeout = 1000;
      if (!schedule.empty()) {
        const auto until = std::chrono::duration_cast<std::chrono::milliseconds>(schedule.begin()->first - Clock::now());
        timeout = static_cast<int>(std::clamp<int64_t>(until.count() + 1, 0, 1000));
      }
      const int d = debounce.timeout_ms(std::chrono::steady_clock::now());
      if (d >= 0) timeout = std::min(timeout, d);
      std::vector<pollfd> fds = {{sock, POLLIN, 0}, {sig_fd, POLLIN, 0}, {fetcher.fd(), POLLIN, 0},
                                 {watch ? watch->fd() : -1, POLLIN, 0}};
      if (admin) {
        admin->fill_poll(fds);
        const int a = admin->timeout_ms();
        if (a >= 0) timeout = std::min(timeout, a);
      }
      const size_t health_first = fds.size();
      health.fill_poll(fds);
      if (const int h = health.timeout_ms(HealthClock::now()); h >= 0) timeout = std::min(timeout, h);
      const size_t bgp_first = fds.size();
      if (const int b = bgp_fill_poll(fds); b >= 0) timeout = std::min(timeout, b);
      if (poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) return 1;
      bgp_on_poll(fds, bgp_first);
      if (health.on_poll(fds, health_first, HealthClock::now())) backends_dirty = true;
      if (admin) admin->on_poll(fds, 4);
      if (fds[0].revents != 0) on_channel();
      if (fds[1].revents != 0) {
        signalfd_siginfo si{};
        if (read(sig_fd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
          if (si.ssi_signo == SIGHUP) {
            // Read now, after the signal: every SIGHUP numbered up to here
            // was sent before this reload reads the file. Just started (a
            // SIGHUP that came while none ran is passed on at once), the
            // stats segment that holds the number may still be on its way.
            await_stats(std::chrono::milliseconds(1000));
            reload_config("SIGHUP", false, {}, stats_ok ? stats_view.reloads_asked() : 0);
          } else {
            begin_stop();  // withdraws the VIPs first when BGP is on
          }
        }
      }
      if (fds[2].revents != 0) on_ocsp_results();
      if (fds[3].revents != 0) on_file_events();
    }
    bgp_shutdown();
    return 0;
  }
};

}  // namespace lode::cp

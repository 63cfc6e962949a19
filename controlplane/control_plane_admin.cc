// The control plane's admin API (`lodectl`) and Prometheus /metrics.
#include <sys/mman.h>
#include <sys/stat.h>

#include "controlplane/config_diff.h"
#include "controlplane/control_plane_impl.h"
#include "controlplane/route_tables.h"
#include "controlplane/series_metrics.h"
#include "dataplane/control/stats_segment.h"
#include "dataplane/worker/worker.h"
#include "lodestone/hostname.h"
#include "lodestone/route_table.h"

namespace lode::cp {

namespace {

std::string_view state_name(snapshot::CertState s) {
  switch (s) {
    case snapshot::CertState::kServe: return "serve";
    case snapshot::CertState::kWithheldNoStaple: return "withheld: no valid OCSP staple (strict)";
    case snapshot::CertState::kWithheldRevoked: return "withheld: revoked";
  }
  return "?";
}

std::string label(std::string_view v) { return prometheus_label(v); }

std::string error_reply(std::string_view message) {
  return JsonWriter().begin_object().field("v", uint64_t{1}).field("ok", false).field("error", message)
      .end_object().take();
}

// GET /status.json, what the status page shows beside /metrics: the admin
// `status` reply, then the configuration in service as the page names it
// (listeners, routes, pools and their backends). Read-only.
std::string status_json(ControlPlane::Impl& cp) {
  AdminRequest status_request;
  status_request.fields.emplace("cmd", "status");
  std::string reply = cp.handle_admin(status_request);
  const config::Config& cfg = cp.cfg;
  JsonWriter w;
  w.begin_object().field("expiry_warning_days", cfg.control.expiry_warning_days);
  if (cfg.front == "dpdk") {
    w.key("dpdk").begin_object().field("port", cfg.dpdk.port).field("max_flows", cfg.dpdk.max_flows);
    w.field("exception", cfg.dpdk.exception.interface).end_object();
  }
  w.key("listeners").begin_array();
  for (const auto& l : cfg.listeners) {
    w.begin_object().field("name", l.name).field("proxy_protocol", config::to_string(l.proxy_protocol));
    w.field("default_route", l.default_route).key("listen").begin_array();
    for (const auto& a : l.listen) w.value(a.to_string());
    w.end_array().end_object();
  }
  w.end_array().key("routes").begin_array();
  for (const auto& r : cfg.routes) {
    w.begin_object().field("name", r.name).field("listener", r.listener).field("action", config::to_string(r.action));
    w.field("pool", r.pool).field("certificate", r.certificate).key("names").begin_array();
    for (const auto& n : r.names) w.value(n.pattern);
    w.end_array().end_object();
  }
  w.end_array().key("pools").begin_array();
  for (const auto& p : cfg.pools) {
    w.begin_object().field("name", p.name).field("algorithm", config::to_string(p.algorithm));
    w.field("health_check", config::to_string(p.health.type)).key("backends").begin_array();
    for (const auto& b : p.backends) {
      w.begin_object().field("address", config::backend_id(b)).field("weight", b.weight).end_object();
    }
    w.end_array().end_object();
  }
  w.end_array();
  if (cp.stats_ok) write_recent_refused(cp.stats_view, w, 32, unix_ms_now());
  w.end_object();
  // One object: the reply's fields, then these.
  const std::string more = w.take();
  if (reply.size() <= 2 || reply.back() != '}') return reply;
  reply.back() = ',';
  return reply.append(more, 1);
}

}  // namespace

void ControlPlane::Impl::start_admin() {
  std::vector<std::string> warnings;
  AdminServer::Options o{opt.admin_socket, cfg.admin.group, cfg.admin.metrics};
  admin.emplace(o, [this](const AdminRequest& r) { return handle_admin(r); }, [this] { return metrics_text(); },
                warnings, [this] { return status_json(*this); });
  for (const auto& w : warnings) warn(w);
}

void ControlPlane::Impl::unmap_stats() {
  if (stats_base != nullptr) munmap(const_cast<std::byte*>(stats_base), stats_size);
  stats_base = nullptr;
  stats_ok = false;
}

void ControlPlane::Impl::on_stats_fd(int fd) {
  unmap_stats();
  if (!control::stats_size_sealed(fd)) {
    // Its size could change under the mapping: a read past a shrunk end is SIGBUS.
    warn("the dataplane's stats segment is not sealed: counters are not reported");
    return;
  }
  struct stat st{};
  if (fstat(fd, &st) != 0 || st.st_size <= 0) return;
  void* p = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return;
  stats_base = static_cast<const std::byte*>(p);
  stats_size = static_cast<size_t>(st.st_size);
  stats_ok = stats::StatsView::open({stats_base, stats_size}, stats_view);
  if (!stats_ok) warn("the dataplane's stats segment has an unknown layout: counters are not reported");
}

uint64_t ControlPlane::Impl::stat_total(std::string_view name) const {
  if (!stats_ok) return 0;
  for (size_t c = 0; c < stats::kCounterCount; ++c) {
    if (stats::kCounters[c].name == name) return stats_view.total(c);
  }
  return 0;
}

std::string ControlPlane::Impl::handle_admin(const AdminRequest& req) {
  if (req.get("v", "1") != "1") return error_reply("unsupported API version (this control plane speaks v1)");
  const std::string cmd = req.get("cmd");
  const sys_seconds now = now_s();
  JsonWriter w;
  w.begin_object().field("v", uint64_t{1}).field("ok", true);

  if (cmd == "stats") {
    // Counters per route, backend and worker (`lodectl top` makes rates).
    if (!stats_ok) return error_reply("the dataplane's counters are not attached yet");
    const uint64_t unix_ms = unix_ms_now();
    w.field("unix_ms", unix_ms).field("generation", acked_generation);
    write_series_json(stats_view, w);
    write_recent_refused(stats_view, w, 32, unix_ms);
    return w.end_object().take();
  }
  if (cmd == "status") {
    const auto steady = std::chrono::steady_clock::now();
    const uint64_t hs = stat_total("handshakes");
    if (rate.at != std::chrono::steady_clock::time_point{}) {
      const double dt = std::chrono::duration<double>(steady - rate.at).count();
      if (dt >= 0.2) rate.per_second = static_cast<double>(hs - rate.handshakes) / dt;
    }
    if (rate.at == std::chrono::steady_clock::time_point{} || steady - rate.at >= std::chrono::milliseconds(200)) {
      rate.at = steady;
      rate.handshakes = hs;
    }
    size_t withheld = 0;
    for (const auto& [k, it] : items) withheld += state_of(it, now) != snapshot::CertState::kServe ? 1 : 0;
    const auto& h = stats_view.header();
    w.field("version", LODE_VERSION).field("config", opt.config_path);
    w.field("dataplane_pid", stats_ok ? h.pid : uint64_t{0});
    w.field("controlplane_pid", static_cast<uint64_t>(getpid()));
    const int64_t up_ms = stats_ok ? std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::system_clock::now().time_since_epoch()).count() -
                                         static_cast<int64_t>(h.started_unix_ms)
                                   : 0;
    w.field("uptime_s", up_ms / 1000);
    w.field("controlplane_uptime_s", static_cast<int64_t>(
                                         std::chrono::duration_cast<std::chrono::seconds>(steady - started).count()));
    w.field("generation", acked_generation).field("last_apply_us", last_apply_us);
    w.field("segments_published", published_segments).field("segments_refused", refused_segments);
    w.field("reloads", reloads_ok).field("reloads_refused", reloads_refused);
    w.field("front", cfg.front).field("workers", static_cast<uint64_t>(stats_ok ? h.workers : 0));
    w.field("ktls", worker::kernel_has_tls_ulp());
    w.field("connections", stat_total("active")).field("accepted", stat_total("accepted"));
    w.field("handshakes", hs).field("handshakes_resumed", stat_total("handshakes_resumed"));
    w.field("handshakes_per_s", static_cast<uint64_t>(rate.per_second + 0.5));
    w.field("certificates", static_cast<uint64_t>(items.size())).field("withheld", static_cast<uint64_t>(withheld));
    bgp_status(w);  // node_state and the VIPs (control_plane_bgp.cc)
    return w.end_object().take();
  }

  if (cmd == "certs.list" || cmd == "ocsp.status") {
    const std::string only = req.get("name");
    const bool full = cmd == "certs.list";
    w.key("certificates").begin_array();
    size_t shown = 0;
    for (const auto& [k, it] : items) {
      if (!only.empty() && k != only && k != control::named_cert_key(only)) continue;
      ++shown;
      w.begin_object().field("key", k);
      if (full) {
        w.field("subject", it.bundle.info.subject).field("key_type", it.bundle.info.key_type);
        w.key("names").begin_array();
        for (const auto& n : it.bundle.info.names) w.value(n);
        w.end_array();
        const int64_t left = (it.bundle.info.not_after - now).count();
        w.field("not_after", unix_of(it.bundle.info.not_after)).field("expires_in_days", left / 86400);
        w.field("state", state_name(state_of(it, now)));
        w.field("cert_file", it.cert_path);
      }
      w.field("revocation_source", it.checked() ? (it.check_crl ? "crl" : "ocsp") : "none");
      w.field("url", it.check_url).field("strict", it.strict);
      if (it.ocsp) {
        w.field("status", to_string(it.ocsp->status)).field("this_update", unix_of(it.ocsp->this_update))
            .field("next_update", unix_of(expires_at(*it.ocsp)));
        w.field("stapled", staple_version_of(it, now) != 0);
        w.field("staple_age_s", (now - it.ocsp->this_update).count());
      } else {
        w.field("status", it.checked() ? "pending" : "unchecked").field("stapled", false);
      }
      w.field("failures", static_cast<int64_t>(it.failures));
      w.field("chain_revoked", chain_revoked(it));
      w.end_object();
    }
    w.end_array();
    if (!only.empty() && shown == 0) return error_reply("no certificate named '" + only + "'");
    return w.end_object().take();
  }

  if (cmd == "ocsp.refresh") {
    const std::string only = req.get("name");
    uint64_t started_n = 0;
    for (auto& [k, it] : items) {
      if (!only.empty() && k != only && k != control::named_cert_key(only)) continue;
      if (!it.checked()) continue;
      it.next_fetch = now;
      it.failures = 0;
      if (!it.fetching) {
        start_fetch(it);
        ++started_n;
      }
    }
    if (!only.empty() && started_n == 0) {
      return error_reply("no certificate named '" + only + "' with an OCSP or CRL source (or a fetch is running)");
    }
    return w.field("refreshing", started_n).end_object().take();
  }

  if (cmd == "tickets.rotate") {
    if (!cfg.tls.ticket_key_file.empty()) {
      return error_reply("ticket keys come from [tls] ticket_key_file " + cfg.tls.ticket_key_file +
                         ": rotate that file (it is watched)");
    }
    if (auto ok = rotate_tickets(); !ok) return error_reply(ok.error().front());
    event(R"({"event":"ticket_keys_rotated","by":"admin"})");
    publish();
    return w.field("keys", static_cast<uint64_t>(tickets.size())).field("generation", generation).end_object().take();
  }

  if (cmd == "routes.reload") {
    // "path": `routes reload CONFIG`, validated like a start and, once
    // applied, the file in service (SIGHUP re-reads it). None: the file in
    // service again.
    const bool dry = req.flag("dry_run");
    const std::string path = req.get("path");
    if (!path.empty() && path[0] != '/') return error_reply("routes.reload: \"path\" must be absolute");
    if (!dry) settle();
    ReloadOutcome o = reload_config(dry ? "admin (dry run)" : "admin", dry, path);
    if (!dry && o.errors.empty()) {
      publish();
      settle();
    }
    return reload_reply(o, dry);
  }

  if (cmd == "routes.rollback") {
    settle();
    ReloadOutcome o = rollback_config();
    if (o.errors.empty()) {
      publish();
      settle();
    }
    return reload_reply(o, false);
  }

  if (cmd == "certs.add") return certs_add(req);
  if (cmd == "certs.rm") return certs_rm(req);

  if (cmd == "routes.diff") return routes_diff(req.get("path"), req.get("config"));

  if (cmd == "routes.show") return routes_show(req.get("name"));

  if (cmd.rfind("backends.", 0) == 0) return backends_admin(cmd, req);  // control_plane_backends.cc
  if (cmd.rfind("node.", 0) == 0) return node_admin(cmd);                // control_plane_bgp.cc

  if (cmd == "certs.replace") {
    // HAProxy's `set ssl cert` + `commit ssl cert` in one call: the PEM is
    // validated exactly as a file would be, then published as one record.
    // In memory only: the next reload or change of the file on disk wins.
    const std::string name = req.get("name");
    auto found = items.find(name);
    if (found == items.end()) found = items.find(control::named_cert_key(name));
    if (found == items.end()) return error_reply("no certificate named '" + name + "'");
    CertItem& it = found->second;
    std::vector<std::string> warnings;
    auto b = load_cert_bundle_pem(req.get("cert"), req.get("key"), "pushed certificate for " + it.key, *trust, now,
                                  warnings);
    if (!b) return error_reply(b.error());  // messages never carry key bytes
    if (!it.dir.empty()) {
      // A directory serves a file only for the name it covers (load_entry):
      // a pushed one is held to the same rule.
      const auto entry = entry_name_of(it.key);
      if (!entry || !covers(*b, *entry)) {
        std::string names;
        for (const auto& n : b->info.names) names += (names.empty() ? "" : ", ") + n;
        return error_reply("the pushed certificate's names (" + (names.empty() ? std::string("none") : names) +
                           ") do not cover " + it.key.substr(it.key.find('/') + 1) + ", the name of " + it.key);
      }
    } else {
      for (const auto& r : cfg.routes) {
        if (control::named_cert_key(r.certificate) != it.key) continue;
        std::vector<std::string> names;
        for (const auto& n : r.names) names.push_back(n.pattern);
        for (const auto& n : uncovered_names(b->info, names)) {
          warnings.push_back("route '" + r.name + "': the pushed certificate does not cover the name '" + n + "'");
        }
      }
    }
    const bool changed = b->version != it.bundle.version;
    // A run-time certificate's store follows, so that a reload keeps it.
    if (const RuntimeCertificate* rc = it.dir.empty() ? find_runtime_cert(it.key.substr(it.key.find(':') + 1)) : nullptr;
        rc != nullptr && changed) {
      if (auto ok = store_pem(*rc, req.get("cert"), req.get("key")); !ok) return error_reply(ok.error());
    }
    settle();
    replace_bundle(it, std::move(*b), now);
    publish();
    settle();
    w.field("certificate", it.key).field("changed", changed).field("generation", generation);
    w.field("not_after", unix_of(it.bundle.info.not_after));
    w.key("warnings").begin_array();
    for (const auto& x : warnings) w.value(x);
    w.end_array();
    return w.end_object().take();
  }

  return error_reply(cmd.empty() ? "no \"cmd\"" : "unknown command '" + cmd + "'");
}

namespace {

void string_list(JsonWriter& w, const char* name, const std::vector<std::string>& v) {
  w.key(name).begin_array();
  for (const auto& e : v) w.value(e);
  w.end_array();
}

void diff_section(JsonWriter& w, const std::string& what, const config::ConfigDiff::Section& s) {
  string_list(w, (what + "_added").c_str(), s.added);
  string_list(w, (what + "_removed").c_str(), s.removed);
  w.key(what + "_changed").begin_array();
  for (const auto& c : s.changed) {
    w.begin_object().field("name", c.name);
    string_list(w, "changes", c.changes);
    w.end_object();
  }
  w.end_array();
}

}  // namespace

// The answer of a reload, a dry run or a rollback.
std::string ControlPlane::Impl::reload_reply(const ReloadOutcome& o, bool dry) {
  JsonWriter r;
  r.begin_object().field("v", uint64_t{1}).field("ok", o.errors.empty()).field("dry_run", dry);
  if (!o.errors.empty()) r.field("error", o.errors.front());
  string_list(r, "errors", o.errors);
  string_list(r, "warnings", o.warnings);
  string_list(r, "certificates_added", o.added);
  string_list(r, "certificates_removed", o.removed);
  string_list(r, "certificates_changed", o.changed);
  r.field("config_changed", o.config_changed).field("config", opt.config_path).field("generation", generation);
  r.field("in_service", acked_generation >= generation);
  return r.end_object().take();
}

// `lodectl routes diff CONFIG`: `text` validated exactly like a reload
// (read from `path`'s directory), compared with the configuration in
// service; nothing changes.
std::string ControlPlane::Impl::routes_diff(const std::string& path, const std::string& text) {
  if (path.empty() || path[0] != '/') return error_reply("routes.diff needs \"path\" (absolute) and \"config\"");
  ReloadOutcome o;
  auto next = validate_text(text, path, o);
  JsonWriter w;
  w.begin_object().field("v", uint64_t{1}).field("ok", o.errors.empty()).field("config", path);
  if (!o.errors.empty()) w.field("error", o.errors.front());
  string_list(w, "errors", o.errors);
  string_list(w, "warnings", o.warnings);
  if (next) {
    const config::ConfigDiff d = config::diff_configs(cfg, next->cfg);
    std::map<std::string, CatalogEntry> by_key;
    for (auto& e : next->certs) by_key.emplace(e.key, std::move(e));
    diff_certificates(by_key, o);
    diff_section(w, "routes", d.routes);
    diff_section(w, "pools", d.pools);
    diff_section(w, "certificates", d.certificates);
    string_list(w, "certificate_records_added", o.added);
    string_list(w, "certificate_records_removed", o.removed);
    string_list(w, "certificate_records_changed", o.changed);
    w.field("config_changed", o.config_changed);
  }
  w.field("generation", generation);
  return w.end_object().take();
}

// `lodectl certs add NAME --cert F --key F`: HAProxy's `new ssl cert`, `set
// ssl cert` and `commit ssl cert` in one call. A new named certificate,
// validated exactly like a file's (PEM parses, the key matches, the chain
// verifies to [control] trusted_ca when one is set), published in one
// generation together with a configuration that routes may name it in
// (`routes reload`). It lives in the control plane's store, not in the file:
// reloads and control-plane restarts keep it, a restart of Lodestone does
// not (put it in the configuration for that). A name the file defines
// already is refused (`certs replace` changes it).
std::string ControlPlane::Impl::certs_add(const AdminRequest& req) {
  const std::string name = req.get("name");
  if (!valid_runtime_certificate_name(name)) {
    return error_reply("'" + name + "' is not a certificate name for certs add (1 to 64 of A-Z a-z 0-9 . _ -, "
                       "starting with a letter or a digit)");
  }
  if (find_runtime_cert(name) != nullptr) {
    return error_reply("a certificate named '" + name + "' was added already: lodectl certs replace " + name +
                       " changes it");
  }
  if (defined_certificate_names(config_text).count(name) != 0) {
    return error_reply("'" + name + "' is a [[certificate]] or [[certificate_dir]] of " + opt.config_path +
                       ": lodectl certs replace changes a certificate");
  }
  const sys_seconds now = now_s();
  std::vector<std::string> warnings;
  auto b = load_cert_bundle_pem(req.get("cert"), req.get("key"), "certificate '" + name + "'", *trust, now,
                                warnings);
  if (!b) return error_reply(b.error());  // nothing changed; messages never carry key bytes
  settle();
  const RuntimeCertificate rc = runtime_cert(name);
  if (auto ok = store_pem(rc, req.get("cert"), req.get("key")); !ok) {
    drop_runtime_cert(name, /*never_saved=*/true);
    return error_reply(ok.error());
  }
  runtime_certs.push_back(rc);
  auto next = config::load_config_string(published_config(), opt.config_path);
  if (!next) {
    drop_runtime_cert(name, /*never_saved=*/true);
    return error_reply("internal: the configuration with '" + name + "': " + next.error().front().to_string());
  }
  cfg = std::move(*next);
  CatalogEntry e;
  e.key = control::named_cert_key(name);
  e.cert_path = rc.cert_path;
  e.key_path = rc.key_path;
  e.bundle = std::move(*b);
  resolve_ocsp(cfg, e);
  CertItem fresh(std::move(e));
  prepare_ocsp(fresh);
  removed.erase(fresh.key);
  auto [pos, inserted] = items.insert_or_assign(fresh.key, std::move(fresh));
  CertItem& it = pos->second;
  load_cached(it, now);
  if (!it.ocsp) start_fetch(it);
  schedule_item(it, now);
  dirty.insert(it.key);
  config_dirty = true;
  for (const auto& x : warnings) warn(x);
  event(JsonWriter().begin_object().field("event", "certificate_added").field("certificate", it.key)
            .field("by", "admin").end_object().take());
  publish();
  settle();
  JsonWriter w;
  w.begin_object().field("v", uint64_t{1}).field("ok", true).field("certificate", it.key).field("name", name);
  w.field("subject", it.bundle.info.subject).key("names").begin_array();
  for (const auto& n : it.bundle.info.names) w.value(n);
  w.end_array().field("not_after", unix_of(it.bundle.info.not_after));
  w.key("certificates_added").begin_array().value(it.key).end_array();
  w.field("generation", generation).field("in_service", acked_generation >= generation);
  w.key("warnings").begin_array();
  for (const auto& x : warnings) w.value(x);
  w.end_array();
  return w.end_object().take();
}

// `lodectl certs rm NAME` (HAProxy's `del ssl cert`): a certificate added
// with certs add, while no route names it; the routes that do are named in
// the refusal. A certificate of the file is removed from the file.
std::string ControlPlane::Impl::certs_rm(const AdminRequest& req) {
  const std::string name = req.get("name");
  if (find_runtime_cert(name) == nullptr) {
    if (!name.empty() && defined_certificate_names(config_text).count(name) != 0) {
      return error_reply("'" + name + "' is defined in " + opt.config_path +
                         ": remove it there and reload (certs rm removes what certs add added)");
    }
    return error_reply("no certificate named '" + name + "' was added with certs add");
  }
  std::string users;
  for (const auto& r : cfg.routes) {
    if (r.certificate == name) users += (users.empty() ? "'" : ", '") + r.name + "'";
  }
  if (!users.empty()) {
    return error_reply("certificate '" + name + "' is used by route " + users + " of " + opt.config_path +
                       ": change the route first (routes reload), then remove it");
  }
  settle();
  const std::vector<RuntimeCertificate> before = runtime_certs;
  std::erase_if(runtime_certs, [&](const RuntimeCertificate& c) { return c.name == name; });
  auto next = config::load_config_string(published_config(), opt.config_path);
  if (!next) {
    runtime_certs = before;
    return error_reply("internal: the configuration without '" + name + "': " + next.error().front().to_string());
  }
  cfg = std::move(*next);
  drop_runtime_cert(name);
  const std::string key = control::named_cert_key(name);
  if (auto it = items.find(key); it != items.end()) {
    if (it->second.sent_cert_version != 0) removed.insert(key);
    dirty.erase(key);
    items.erase(it);
  }
  config_dirty = true;
  event(JsonWriter().begin_object().field("event", "certificate_removed").field("certificate", key)
            .field("by", "admin").end_object().take());
  publish();
  settle();
  JsonWriter w;
  w.begin_object().field("v", uint64_t{1}).field("ok", true).field("certificate", key);
  w.key("certificates_removed").begin_array().value(key).end_array();
  w.field("generation", generation).field("in_service", acked_generation >= generation);
  return w.end_object().take();
}

// Which route, certificate and pool a host name gets on every listener, and
// why (the same tables and lookup the workers use).
std::string ControlPlane::Impl::routes_show(const std::string& raw) {
  char buf[kHostnameBufSize];
  std::string name;
  bool no_sni = raw.empty();
  if (!no_sni) {
    auto n = normalize_hostname(raw, buf);
    if (!n) return error_reply("'" + raw + "' is not a host name");
    if (n->kind != HostnameKind::kName) {
      no_sni = true;  // an IP literal in SNI counts as no SNI
    } else {
      name.assign(buf, n->len);
    }
  }
  auto tables = config::build_route_tables(cfg);
  if (!tables) return error_reply("internal: the configuration in service does not build its route tables");
  const sys_seconds now = now_s();
  JsonWriter w;
  w.begin_object().field("v", uint64_t{1}).field("ok", true).field("name", no_sni ? std::string() : name);
  w.key("listeners").begin_array();
  for (size_t li = 0; li < tables->size(); ++li) {
    auto view = route::RouteTableView::open((*tables)[li].table.bytes());
    if (!view) continue;
    const route::Match m = no_sni ? view->find_default() : view->find(name);
    w.begin_object().field("listener", (*tables)[li].listener).field("match", route::to_string(m.kind));
    if (!m.found()) {
      w.field("decision", "alert unrecognized_name (112)")
          .field("why", no_sni ? "no SNI and no default route" : "no name matches and the listener has no default route");
      w.end_object();
      continue;
    }
    const route::RouteView rv = view->route(m.route);
    const config::RouteConfig* rc = cfg.find_route(rv.name);
    w.field("route", rv.name).field("pattern", m.pattern).field("action", config::to_string(rv.action));
    if (rc != nullptr && !rc->pool.empty()) w.field("pool", rc->pool);
    std::string why = m.kind == route::MatchKind::kExact      ? "the exact name '" + std::string(m.pattern) + "'"
                      : m.kind == route::MatchKind::kWildcard ? "the wildcard '*." + std::string(m.pattern) + "'"
                                                              : std::string("the listener's default route");
    if (rv.action == route::Action::kTerminate && rc != nullptr && rv.cert < cfg.certificates.size() + cfg.certificate_dirs.size()) {
      worker::CertBinding b = rv.cert < cfg.certificates.size()
                                  ? worker::CertBinding{cfg.certificates[rv.cert].name, false}
                                  : worker::CertBinding{cfg.certificate_dirs[rv.cert - cfg.certificates.size()].name, true};
      std::string key = b.directory ? control::dir_cert_key(b.name, name) : control::named_cert_key(b.name);
      auto it = items.find(key);
      if (b.directory && it == items.end() && !name.empty()) {
        if (const size_t dot = name.find('.'); dot != std::string::npos) {
          key = control::dir_wildcard_key(b.name, std::string_view(name).substr(dot + 1));
          it = items.find(key);
        }
      }
      w.field("certificate", rc->certificate);
      if (it == items.end()) {
        w.field("certificate_record", "").field("served", false);
        why += "; no certificate in '" + rc->certificate + "' for this name: alert unrecognized_name";
      } else {
        const auto st = state_of(it->second, now);
        w.field("certificate_record", key).field("served", st == snapshot::CertState::kServe)
            .field("certificate_state", state_name(st));
        {
          w.key("certificate_names").begin_array();
          for (const auto& n : it->second.bundle.info.names) w.value(n);
          w.end_array();
        }
      }
    }
    w.field("why", why).end_object();
  }
  w.end_array();
  return w.end_object().take();
}

std::string ControlPlane::Impl::metrics_text() {
  std::string out;
  auto head = [&](std::string_view name, std::string_view type, std::string_view help) {
    out.append("# HELP ").append(name).append(" ").append(help).append("\n# TYPE ").append(name).append(" ")
        .append(type).append("\n");
  };
  auto sample = [&](std::string_view name, const std::string& labels, auto value) {
    out.append(name);
    if (!labels.empty()) out.append("{").append(labels).append("}");
    out.append(" ").append(std::to_string(value)).append("\n");
  };
  if (stats_ok) {
    for (size_t c = 0; c < stats::kCounterCount; ++c) {
      const auto& info = stats::kCounters[c];
      // Gauges: `active` is lodestone_active_connections; others carry
      // their unit in their name (buffered_bytes).
      const std::string name = info.gauge ? "lodestone_" + std::string(info.name) +
                                                (std::string_view(info.name) == "active" ? "_connections" : "")
                                          : "lodestone_" + std::string(info.name) + "_total";
      head(name, info.gauge ? "gauge" : "counter", info.help);
      for (uint32_t wk = 0; wk < stats_view.workers(); ++wk) {
        sample(name, "worker=\"" + std::to_string(wk) + "\"", stats_view.value(wk, c));
      }
    }
    head("lodestone_workers", "gauge", "dataplane worker threads");
    sample("lodestone_workers", "", stats_view.workers());
    append_series_metrics(stats_view, out);
  }
  head("lodestone_snapshot_generation", "gauge", "snapshot generation in service (last acked)");
  sample("lodestone_snapshot_generation", "", acked_generation);
  head("lodestone_snapshot_apply_seconds", "gauge", "last segment: receipt to in service on every worker");
  out.append("lodestone_snapshot_apply_seconds ").append(std::to_string(static_cast<double>(last_apply_us) / 1e6))
      .append("\n");
  head("lodestone_snapshot_segments_total", "counter", "segments answered by the dataplane");
  sample("lodestone_snapshot_segments_total", "result=\"applied\"", published_segments);
  sample("lodestone_snapshot_segments_total", "result=\"refused\"", refused_segments);
  head("lodestone_config_reloads_total", "counter", "configuration reloads (SIGHUP, lodectl)");
  sample("lodestone_config_reloads_total", "result=\"ok\"", reloads_ok);
  sample("lodestone_config_reloads_total", "result=\"refused\"", reloads_refused);

  const sys_seconds now = now_s();
  head("lodestone_certificate_expiry_seconds", "gauge", "seconds until the certificate's notAfter");
  for (const auto& [k, it] : items) {
    sample("lodestone_certificate_expiry_seconds", "certificate=\"" + label(k) + "\"",
           (it.bundle.info.not_after - now).count());
  }
  head("lodestone_certificate_served", "gauge", "1 when served, 0 when withheld (revoked, strict without staple)");
  for (const auto& [k, it] : items) {
    sample("lodestone_certificate_served", "certificate=\"" + label(k) + "\"",
           state_of(it, now) == snapshot::CertState::kServe ? 1 : 0);
  }
  head("lodestone_revocation_status", "gauge", "1 for the certificate's last OCSP/CRL status");
  for (const auto& [k, it] : items) {
    if (!it.checked()) continue;
    const std::string st = it.ocsp ? std::string(to_string(it.ocsp->status)) : "pending";
    sample("lodestone_revocation_status", "certificate=\"" + label(k) + "\",status=\"" + st + "\"", 1);
  }
  head("lodestone_ocsp_staple_age_seconds", "gauge", "age of the stapled OCSP response (since thisUpdate)");
  for (const auto& [k, it] : items) {
    if (it.ocsp && staple_version_of(it, now) != 0) {
      sample("lodestone_ocsp_staple_age_seconds", "certificate=\"" + label(k) + "\"",
             (now - it.ocsp->this_update).count());
    }
  }
  head("lodestone_revocation_check_failures", "gauge", "consecutive failed OCSP/CRL fetches");
  for (const auto& [k, it] : items) {
    if (it.checked()) sample("lodestone_revocation_check_failures", "certificate=\"" + label(k) + "\"", it.failures);
  }
  backends_metrics(out);
  bgp_metrics(out);
  return out;
}

}  // namespace lode::cp

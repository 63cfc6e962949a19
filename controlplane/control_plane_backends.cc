// The control plane's backends: active health checks (controlplane/
// health_check.h), operator state (controlplane/backend_state.h), the admin
// commands backends.list|drain|enable|weight and their /metrics.
#include "controlplane/control_plane_impl.h"

namespace lode::cp {

namespace {

std::string error_reply(std::string_view message) {
  return JsonWriter().begin_object().field("v", uint64_t{1}).field("ok", false).field("error", message)
      .end_object().take();
}

std::string_view check_name(snapshot::BackendCheck c) {
  switch (c) {
    case snapshot::BackendCheck::kUnchecked: return "unchecked";
    case snapshot::BackendCheck::kUp: return "up";
    case snapshot::BackendCheck::kDown: return "down";
  }
  return "?";
}

// A Prometheus label value: backslash, double quote and newline escaped.
std::string escaped(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

void ControlPlane::Impl::configure_health() {
  std::vector<HealthChecker::Target> targets;
  for (const auto& p : cfg.pools) {
    if (p.health.type == config::HealthType::kNone) continue;
    std::shared_ptr<const HealthTls> tls;
    if (p.health.type == config::HealthType::kTls || (p.health.type == config::HealthType::kHttp && p.tls.enabled)) {
      auto t = make_health_tls(p.tls, p.health);
      if (!t) {
        warn("pool '" + p.name + "': " + t.error() + ": its backends are not checked");
        continue;
      }
      tls = std::make_shared<const HealthTls>(std::move(*t));
    }
    for (const auto& b : p.backends) targets.push_back({p.name, config::backend_id(b), b.address, p.health, tls});
  }
  health.set_targets(std::move(targets), HealthClock::now());
  backends_dirty = true;
}

// backends.list [pool]; backends.drain|enable pool backend; backends.weight
// pool backend weight. A mutation waits for the segment in flight, changes
// one backend, publishes one generation and answers once it is in service.
std::string ControlPlane::Impl::backends_admin(const std::string& cmd, const AdminRequest& req) {
  const std::string pool = req.get("pool");
  const std::string backend = req.get("backend");
  if (cmd == "backends.list") {
    if (!pool.empty() && cfg.find_pool(pool) == nullptr) return error_reply("no pool named '" + pool + "'");
    const auto now = HealthClock::now();
    JsonWriter w;
    w.begin_object().field("v", uint64_t{1}).field("ok", true).field("generation", generation);
    w.key("pools").begin_array();
    for (const auto& p : cfg.pools) {
      if (!pool.empty() && p.name != pool) continue;
      w.begin_object().field("pool", p.name).field("algorithm", config::to_string(p.algorithm));
      w.field("when_all_down", p.when_all_down == config::AllDown::kReject ? "reject" : "fail_open");
      w.field("health_check", config::to_string(p.health.type));
      if (p.health.type != config::HealthType::kNone) {
        w.field("interval_ms", uint64_t{p.health.interval_ms}).field("timeout_ms", uint64_t{p.health.timeout_ms});
        w.field("rise", uint64_t{p.health.rise}).field("fall", uint64_t{p.health.fall});
      }
      w.key("backends").begin_array();
      const std::vector<BackendRow> rows = backend_states.rows(p, health);
      for (size_t i = 0; i < rows.size(); ++i) {
        const BackendRow& r = rows[i];
        const bool drained = r.admin == snapshot::BackendAdmin::kDrained;
        w.begin_object().field("backend", r.id).field("health", check_name(r.check));
        w.field("admin", drained ? "drained" : "active");
        w.field("weight", uint64_t{r.weight}).field("configured_weight", uint64_t{p.backends[i].weight});
        w.field("eligible", !drained && r.check != snapshot::BackendCheck::kDown);
        if (const HealthChecker::Status* s = health.status(p.name, r.id)) {
          w.field("checks_ok", s->ok_total).field("checks_failed", s->fail_total);
          w.field("transitions", s->transitions);
          w.field("last_check", s->last_detail.empty() ? std::string("pending") : s->last_detail);
          if (!s->last_detail.empty()) {
            w.field("last_check_age_ms", static_cast<int64_t>(
                                             std::chrono::duration_cast<std::chrono::milliseconds>(now - s->last_at)
                                                 .count()));
          }
        }
        w.end_object();
      }
      w.end_array().end_object();
    }
    w.end_array();
    return w.end_object().take();
  }

  const bool drain = cmd == "backends.drain", enable = cmd == "backends.enable", weight = cmd == "backends.weight";
  if (!drain && !enable && !weight) return error_reply("unknown command '" + cmd + "'");
  if (pool.empty() || backend.empty()) return error_reply(cmd + " needs \"pool\" and \"backend\"");
  uint32_t w = 0;
  if (weight) {
    auto parsed = parse_backend_weight(req.get("weight"));
    if (!parsed) return error_reply(parsed.error());
    w = *parsed;
  }
  settle();  // the segment in flight first: this change gets a generation of its own
  auto changed = weight ? backend_states.set_weight(cfg, pool, backend, w)
                        : backend_states.set_drained(cfg, pool, backend, drain);
  if (!changed) return error_reply(changed.error());
  if (*changed) {
    backends_dirty = true;
    publish();
    settle();
    event(JsonWriter().begin_object().field("event", "backend_changed").field("by", "admin").field("pool", pool)
              .field("backend", backend).field("command", cmd.substr(9)).field("generation", generation)
              .end_object().take());
  }
  const BackendStateTable::Operator op = backend_states.operator_state(pool, backend);
  uint32_t effective = op.weight;
  for (const auto& b : cfg.find_pool(pool)->backends) {
    if (effective == 0 && config::backend_id(b) == backend) effective = b.weight;
  }
  JsonWriter r;
  r.begin_object().field("v", uint64_t{1}).field("ok", true).field("pool", pool).field("backend", backend);
  r.field("changed", *changed).field("admin", op.drained ? "drained" : "active").field("weight", uint64_t{effective});
  r.field("generation", generation).field("in_service", acked_generation >= generation);
  return r.end_object().take();
}

void ControlPlane::Impl::backends_metrics(std::string& out) const {
  struct Series {
    std::string labels;
    BackendRow row;
    const HealthChecker::Status* status;
  };
  std::vector<Series> all;
  for (const auto& p : cfg.pools) {
    for (auto& r : backend_states.rows(p, health)) {
      const HealthChecker::Status* s = health.status(p.name, r.id);
      std::string labels = "pool=\"" + escaped(p.name) + "\",backend=\"" + escaped(r.id) + "\"";
      all.push_back({std::move(labels), std::move(r), s});
    }
  }
  auto family = [&](std::string_view name, std::string_view type, std::string_view help, auto value) {
    out.append("# HELP ").append(name).append(" ").append(help).append("\n# TYPE ").append(name).append(" ")
        .append(type).append("\n");
    for (const auto& s : all) value(name, s);
  };
  auto line = [&](std::string_view name, const std::string& labels, uint64_t v) {
    out.append(name).append("{").append(labels).append("} ").append(std::to_string(v)).append("\n");
  };
  family("lodestone_backend_up", "gauge",
         "1 when the backend's active health check says up, 0 when down; 1 for backends of pools without a "
         "health check (not checked)",
         [&](std::string_view n, const Series& s) { line(n, s.labels, s.row.check == snapshot::BackendCheck::kDown ? 0 : 1); });
  family("lodestone_backend_draining", "gauge", "1 when an operator drained the backend (no new connections)",
         [&](std::string_view n, const Series& s) { line(n, s.labels, s.row.admin == snapshot::BackendAdmin::kDrained); });
  family("lodestone_backend_weight", "gauge", "effective weight (an operator's override, else the configured one)",
         [&](std::string_view n, const Series& s) { line(n, s.labels, s.row.weight); });
  family("lodestone_health_checks_total", "counter", "active health check results (checked backends only)",
         [&](std::string_view n, const Series& s) {
           if (s.status == nullptr) return;
           line(n, s.labels + ",result=\"ok\"", s.status->ok_total);
           line(n, s.labels + ",result=\"fail\"", s.status->fail_total);
         });
}

}  // namespace lode::cp

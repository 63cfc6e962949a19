// The control plane's side of scale-out (controlplane/bgp.h): what this node
// can serve, decided on every pass of the loop and handed to the Announcer;
// node drain (`lodectl drain-node`, admin `node.drain` / `node.undrain`); the
// stop on SIGTERM that withdraws the VIPs and waits [bgp] convergence_ms
// before the control plane exits (the dataplane drains its connections only
// after that: tools/lodestone/main.cc).
#include "controlplane/control_plane_impl.h"
#include "controlplane/series_metrics.h"

namespace lode::cp {

namespace {

using Steady = std::chrono::steady_clock;

int64_t ms_between(Steady::time_point from, Steady::time_point to) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
}

}  // namespace

void ControlPlane::Impl::bgp_tick() {
  if (!(bgp.settings() == cfg.bgp)) bgp.configure(cfg.bgp);
  const auto now = Steady::now();
  const bool draining = node_draining || stopping;
  if (!bgp.enabled()) {
    bgp.want({});
  } else {
    // The workers' SO_REUSEPORT listeners in this namespace (read once).
    std::optional<std::vector<ListenSocket>> sockets;
    NodeView node;
    node.attached = attached && sock >= 0;
    node.snapshot_in_service = acked_generation > 0;
    node.kernel_listeners = cfg.front == "kernel";
    node.workers = stats_ok ? stats_view.header().workers : 0;
    node.draining = draining;
    node.listening = [&](const SocketAddress& a) {
      if (!sockets) sockets = listening_sockets();
      return count_listening(*sockets, a);
    };
    node.pool_usable = [&](const config::PoolConfig& p) {
      for (const auto& r : backend_states.rows(p, health)) {
        if (r.check != snapshot::BackendCheck::kDown && r.admin == snapshot::BackendAdmin::kActive) return true;
      }
      return false;
    };
    bgp.want(decide_vips(cfg, node));
  }
  bgp.tick(now);
  if (!draining) {
    withdrawn_at = {};
  } else if (withdrawn_at == Steady::time_point{} && (bgp.withdrawn() || (!bgp.enabled() && bgp.vips().empty()))) {
    withdrawn_at = now;
    event(JsonWriter().begin_object().field("event", "vips_withdrawn").field("by", "birdc configure")
              .field("convergence_ms", static_cast<uint64_t>(cfg.bgp.convergence_ms)).end_object().take());
  } else if (withdrawn_at == Steady::time_point{} && stopping && bgp.failing() && bgp.drop_link()) {
    // BIRD cannot be told: without the link its routes through it go all
    // the same (if BIRD runs at all), so the convergence wait starts now.
    withdrawn_at = now;
    event(JsonWriter().begin_object().field("event", "vips_withdrawn").field("by", "liveness link closed")
              .field("level", "error").field("convergence_ms", static_cast<uint64_t>(cfg.bgp.convergence_ms))
              .end_object().take());
  }
  if (stopping && !stop) {
    const bool converged = withdrawn_at != Steady::time_point{} &&
                           ms_between(withdrawn_at, now) >= static_cast<int64_t>(cfg.bgp.convergence_ms);
    if (converged || now >= stop_deadline) {
      if (!converged) warn("stopping before the VIPs' withdrawal was confirmed by BIRD (birdc failing or slow)");
      stop = true;
    }
  }
}

int ControlPlane::Impl::bgp_fill_poll(std::vector<pollfd>& fds) {
  bgp.fill_poll(fds);
  const auto now = Steady::now();
  int t = bgp.timeout_ms(now);
  auto at_most = [&](int64_t ms) { t = t < 0 ? static_cast<int>(ms) : std::min<int>(t, static_cast<int>(ms)); };
  if (!bgp.enabled()) return t;
  // Waiting for convergence, or for the node to become ready: look again soon.
  if (withdrawn_at != Steady::time_point{} && stopping) {
    at_most(std::max<int64_t>(0, cfg.bgp.convergence_ms - ms_between(withdrawn_at, now)) + 1);
  }
  if (stopping) at_most(std::max<int64_t>(0, ms_between(now, stop_deadline)) + 1);
  const bool all = std::all_of(bgp.vips().begin(), bgp.vips().end(), [](const auto& kv) { return kv.second.wanted; });
  if (!all && !node_draining && !stopping) at_most(250);
  return t;
}

void ControlPlane::Impl::bgp_on_poll(const std::vector<pollfd>& fds, size_t first) {
  bgp.on_poll(fds, first, Steady::now());
}

void ControlPlane::Impl::begin_stop() {
  if (!bgp.enabled() || stopping) {
    stop = true;
    return;
  }
  stopping = true;
  // Bounded whatever BIRD does: a withdrawal may take one birdc run (and a
  // retry), then the convergence wait.
  stop_deadline = Steady::now() + std::chrono::milliseconds(2ull * cfg.bgp.birdc_timeout_ms + cfg.bgp.convergence_ms + 1000);
  event(JsonWriter().begin_object().field("event", "node_stopping").field("step", "withdrawing the VIPs")
            .field("convergence_ms", static_cast<uint64_t>(cfg.bgp.convergence_ms)).end_object().take());
  bgp_tick();
}

void ControlPlane::Impl::bgp_shutdown() {
  // Whatever ended the loop (SIGTERM, the dataplane gone): nothing stays
  // announced by this process. The liveness link goes with it too.
  std::vector<VipDecision> none;
  for (const auto& [prefix, v] : bgp.vips()) none.push_back({prefix, false, "the control plane is stopping"});
  bgp.want(none);
  if (!bgp.vips().empty()) bgp.settle(std::chrono::milliseconds(cfg.bgp.birdc_timeout_ms + 500));
}

std::string ControlPlane::Impl::node_admin(const std::string& cmd) {
  if (cmd != "node.drain" && cmd != "node.undrain") {
    return JsonWriter().begin_object().field("v", uint64_t{1}).field("ok", false)
        .field("error", "unknown command '" + cmd + "' (node.drain, node.undrain)").end_object().take();
  }
  const bool drain = cmd == "node.drain";
  const bool changed = drain != node_draining;
  if (changed) {
    node_draining = drain;
    drain_since = drain ? Steady::now() : Steady::time_point{};
    event(JsonWriter().begin_object().field("event", drain ? "node_draining" : "node_undrained")
              .field("by", "admin").end_object().take());
    bgp_tick();  // the birdc run starts now, not at the next pass
  }
  JsonWriter w;
  w.begin_object().field("v", uint64_t{1}).field("ok", true).field("changed", changed);
  if (!bgp.enabled()) w.field("note", "[bgp] is not enabled: nothing is announced or withdrawn");
  bgp_status(w);
  return w.end_object().take();
}

void ControlPlane::Impl::bgp_status(JsonWriter& w) const {
  const auto now = Steady::now();
  const bool converged = withdrawn_at != Steady::time_point{} &&
                         ms_between(withdrawn_at, now) >= static_cast<int64_t>(cfg.bgp.convergence_ms);
  // serving; draining (withdrawal asked, not yet confirmed by BIRD, or the
  // router's convergence time not yet passed); drained (safe to stop);
  // stopping (SIGTERM).
  const char* state = stopping ? "stopping" : !node_draining ? "serving" : converged ? "drained" : "draining";
  w.field("node_state", state);
  w.key("bgp").begin_object();
  w.field("enabled", bgp.enabled());
  if (bgp.enabled()) {
    w.field("include", cfg.bgp.include).field("socket", cfg.bgp.socket);
    w.field("liveness_interface", bgp.liveness_link());
    w.field("in_sync", bgp.in_sync()).field("configures", bgp.configures()).field("failures", bgp.failures());
    w.field("timeouts", bgp.timeouts());
    if (node_draining) w.field("draining_for_ms", static_cast<uint64_t>(ms_between(drain_since, now)));
    w.field("withdrawn_converged", converged);
    w.key("vips").begin_array();
    for (const auto& [prefix, v] : bgp.vips()) {
      w.begin_object().field("prefix", prefix).field("announced", v.announced).field("wanted", v.wanted);
      w.field("last_change_unix", v.last_change_unix);
      if (!v.reason.empty()) w.field("reason", v.reason);
      w.end_object();
    }
    w.end_array();
  }
  w.end_object();
}

void ControlPlane::Impl::bgp_metrics(std::string& out) const {
  if (!bgp.enabled() && bgp.vips().empty()) return;
  auto head = [&](std::string_view name, std::string_view type, std::string_view help) {
    out.append("# HELP ").append(name).append(" ").append(help).append("\n# TYPE ").append(name).append(" ")
        .append(type).append("\n");
  };
  auto vip_family = [&](std::string_view name, std::string_view help, auto value) {
    head(name, "gauge", help);
    for (const auto& [prefix, v] : bgp.vips()) {
      out.append(name).append("{vip=\"").append(prometheus_label(prefix)).append("\"} ")
          .append(std::to_string(value(v))).append("\n");
    }
  };
  vip_family("lodestone_vip_announced", "1 while BIRD holds the VIP's route from this node (the last birdc configure "
                                        "that succeeded had it), 0 when withdrawn",
             [](const Announcer::VipState& v) { return v.announced ? 1 : 0; });
  vip_family("lodestone_vip_last_change_seconds", "when lodestone_vip_announced last changed (unix time; 0: never)",
             [](const Announcer::VipState& v) { return v.last_change_unix; });
  head("lodestone_node_draining", "gauge", "1 while the node is drained by lodectl drain-node or stopping");
  out.append("lodestone_node_draining ").append(node_draining || stopping ? "1" : "0").append("\n");
  head("lodestone_bgp_configures_total", "counter", "birdc configure runs (include file rewritten)");
  out.append("lodestone_bgp_configures_total ").append(std::to_string(bgp.configures())).append("\n");
  head("lodestone_bgp_configure_failures_total", "counter", "birdc configure runs that failed or timed out");
  out.append("lodestone_bgp_configure_failures_total ").append(std::to_string(bgp.failures())).append("\n");
  head("lodestone_bgp_liveness_link_errors_total", "counter",
       "liveness links that could not be created (routes announced as blackholes instead)");
  out.append("lodestone_bgp_liveness_link_errors_total ").append(std::to_string(bgp.liveness_errors())).append("\n");
}

}  // namespace lode::cp

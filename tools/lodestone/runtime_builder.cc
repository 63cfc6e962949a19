#include "tools/lodestone/runtime_builder.h"

#include <sys/socket.h>

#include <cstring>
#include <string_view>
#include <unordered_map>

#include "controlplane/route_tables.h"

namespace lode::app {

tls::TlsSettings tls_settings(const config::TlsConfig& t) {
  tls::TlsSettings s;
  s.min_version = t.min_version == "1.3" ? tls::TlsVersion::kTls13 : tls::TlsVersion::kTls12;
  s.max_version = t.max_version == "1.2" ? tls::TlsVersion::kTls12 : tls::TlsVersion::kTls13;
  if (!t.ciphers.empty()) s.cipher_list = t.ciphers;
  s.ciphersuites = t.ciphersuites;
  if (!t.groups.empty()) s.groups = t.groups;
  s.alpn = t.alpn;
  s.session_tickets = t.session_tickets;
  s.ktls = t.ktls;
  s.own_records = t.own_records;
  return s;
}

namespace {

route::Algorithm algorithm(config::Algorithm a) {
  switch (a) {
    case config::Algorithm::kRoundRobin: return route::Algorithm::kRoundRobin;
    case config::Algorithm::kLeastConn: return route::Algorithm::kLeastConn;
    case config::Algorithm::kMaglevClient: return route::Algorithm::kMaglevClient;
    case config::Algorithm::kMaglevSni: return route::Algorithm::kMaglevSni;
  }
  return route::Algorithm::kRoundRobin;
}

worker::ProxyAccept proxy_accept(config::ProxyAccept p) {
  switch (p) {
    case config::ProxyAccept::kNone: return worker::ProxyAccept::kNone;
    case config::ProxyAccept::kV1: return worker::ProxyAccept::kV1;
    case config::ProxyAccept::kV2: return worker::ProxyAccept::kV2;
    case config::ProxyAccept::kAny: return worker::ProxyAccept::kAny;
  }
  return worker::ProxyAccept::kNone;
}

}  // namespace

route::PoolSpec apply_backend_states(route::PoolSpec spec, const std::vector<control::BackendStateEntry>* states) {
  if (states == nullptr) return spec;
  for (auto& b : spec.backends) {
    for (const auto& e : *states) {
      if (e.id != b.id) continue;
      b.weight = e.weight;
      b.down = e.check == snapshot::BackendCheck::kDown;
      b.drained = e.admin == snapshot::BackendAdmin::kDrained;
      break;
    }
  }
  return spec;
}

namespace {

const std::vector<control::BackendStateEntry>* states_of(const control::BackendStates* states,
                                                         std::string_view pool) {
  if (states == nullptr) return nullptr;
  auto it = states->find(pool);
  return it == states->end() ? nullptr : &it->second;
}

// Whether `built`'s backends carry the states `spec` gives the same backends.
bool same_states(const route::PoolSpec& built, const route::PoolSpec& spec) {
  if (built.backends.size() != spec.backends.size()) return false;
  for (size_t i = 0; i < spec.backends.size(); ++i) {
    const route::BackendSpec& a = built.backends[i];
    const route::BackendSpec& b = spec.backends[i];
    if (a.weight != b.weight || a.down != b.down || a.drained != b.drained) return false;
  }
  return true;
}

}  // namespace

Result<std::shared_ptr<worker::Runtime>, std::vector<std::string>> with_backend_states(
    const worker::Runtime& current, const control::BackendStates* states, uint64_t generation) {
  auto rt = std::make_shared<worker::Runtime>(current);
  rt->generation = generation;
  std::vector<std::string> errors;
  for (auto& pr : rt->pools) {
    route::PoolSpec spec = apply_backend_states(pr.configured, states_of(states, pr.name));
    // An unchanged pool stays the same object: a new one would restart every
    // worker's PoolState for it (least-conn counts, round-robin credit).
    if (pr.pool && same_states(pr.pool->spec(), spec)) continue;
    auto pool = route::BackendPool::build(std::move(spec));
    if (!pool) {
      errors.push_back("pool '" + pr.name + "' with its backend states: " + pool.error().to_string());
      continue;
    }
    pr.pool = std::make_shared<const route::BackendPool>(std::move(*pool));
  }
  if (!errors.empty()) return unexpected(std::move(errors));
  return rt;
}

uint64_t tls_settings_version(const tls::TlsSettings& s) {
  std::string all = std::to_string(static_cast<unsigned>(s.min_version)) + "|" +
                    std::to_string(static_cast<unsigned>(s.max_version)) + "|" + s.cipher_list + "|" + s.ciphersuites +
                    "|" + s.groups + "|" + (s.alpn_strict ? "1" : "0") + (s.session_tickets ? "1" : "0") + (s.ktls ? "1" : "0") + "|" +
                    std::to_string(s.session_timeout.count());
  for (const auto& a : s.alpn) all += "|" + a;
  return std::hash<std::string>{}(all) | 1;  // never 0
}

Result<BuiltRuntime, std::vector<std::string>> build_runtime(const config::Config& cfg,
                                                             std::shared_ptr<tls::TicketKeys> keys,
                                                             uint64_t generation,
                                                             const control::BackendStates* states) {
  std::vector<std::string> errors;
  BuiltRuntime out;
  auto rt = std::make_shared<worker::Runtime>();
  rt->generation = generation;
  rt->timeouts = {cfg.timeouts.hello_ms, cfg.timeouts.connect_ms, cfg.timeouts.idle_ms, cfg.timeouts.drain_ms,
                  cfg.timeouts.half_closed_or_idle_ms()};
  rt->limits = {cfg.limits.connections_per_worker, cfg.limits.connect_retries,
                uint64_t{cfg.limits.memory_per_worker_mb} << 20, cfg.limits.connections_per_client};

  const tls::TlsSettings settings = tls_settings(cfg.tls);
  if (auto ok = tls::validate_settings(settings); !ok) errors.push_back(cfg.path + ": [tls]: " + ok.error());
  rt->tls = settings;
  rt->tls_version = tls_settings_version(settings);
  rt->ticket_keys = keys;
  // Certificates themselves come from the control plane's snapshot.
  for (const auto& c : cfg.certificates) rt->certs.push_back({c.name, false});
  for (const auto& d : cfg.certificate_dirs) rt->certs.push_back({d.name, true});

  // Pools.
  for (const auto& p : cfg.pools) {
    route::PoolSpec spec;
    spec.algorithm = algorithm(p.algorithm);
    // [limits] connect_retries: the first try and that many more (the pool
    // stops at max_connect_attempts, which stayed at its default of 3).
    spec.max_connect_attempts = cfg.limits.connect_retries + 1;
    spec.when_all_down = p.when_all_down == config::AllDown::kReject ? route::AllDownPolicy::kReject
                                                                      : route::AllDownPolicy::kFailOpen;
    // The id the control plane names backends by (config::backend_id).
    for (const auto& b : p.backends) spec.backends.push_back({b.address, b.weight, config::backend_id(b)});
    auto pool = route::BackendPool::build(apply_backend_states(spec, states_of(states, p.name)));
    if (!pool) {
      errors.push_back(cfg.path + ": pool '" + p.name + "': " + pool.error().to_string());
      continue;
    }
    worker::PoolRuntime pr;
    pr.name = p.name;
    pr.configured = std::move(spec);
    pr.pool = std::make_shared<const route::BackendPool>(std::move(*pool));
    pr.send_proxy_v2 = p.send_proxy_v2;
    if (p.tls.enabled) {
      tls::BackendTlsSettings bs;
      bs.server_name = p.tls.server_name;
      bs.sni_from_client = !p.tls.server_name_set;
      bs.verify = p.tls.verify;
      bs.ca_file = p.tls.ca_file;
      bs.ca_path = p.tls.ca_path;
      auto ctx = tls::BackendTlsContext::create(bs);
      if (!ctx) {
        errors.push_back(cfg.path + ": pool '" + p.name + "' tls: " + ctx.error());
        continue;
      }
      pr.backend_tls = std::move(*ctx);
    }
    rt->pools.push_back(std::move(pr));
  }

  // Listeners and their route tables; [[route]] max_connections by name
  // (most configurations cap none: then no listener carries caps).
  std::unordered_map<std::string_view, uint32_t> caps;
  for (const auto& rc : cfg.routes) {
    if (rc.max_connections != 0) caps.emplace(rc.name, rc.max_connections);
  }
  auto tables = config::build_route_tables(cfg);
  if (!tables) {
    for (const auto& e : tables.error()) errors.push_back(e.to_string());
  } else {
    for (size_t i = 0; i < cfg.listeners.size(); ++i) {
      const config::ListenerConfig& l = cfg.listeners[i];
      worker::ListenerRuntime lr;
      lr.name = l.name;
      lr.addresses = l.listen;
      lr.proxy = proxy_accept(l.proxy_protocol);
      lr.proxy_from = l.proxy_from;
      lr.max_hello_bytes = l.max_hello_bytes;
      lr.defer_accept = l.defer_accept;
      const auto bytes = (*tables)[i].table.bytes();
      lr.table_bytes = std::make_shared<const std::vector<std::byte>>(bytes.begin(), bytes.end());
      rt->listeners.push_back(std::move(lr));
    }
    // Views point into each listener's table bytes.
    for (auto& lr : rt->listeners) {
      auto view = route::RouteTableView::open(*lr.table_bytes);
      if (!view) {
        errors.push_back("internal: route table of listener " + lr.name + ": " + view.error().message());
        continue;
      }
      lr.table = *view;
      // Caps by route index (the table holds routes by name).
      if (caps.empty()) continue;
      lr.route_caps.assign(lr.table.route_count(), 0);
      for (uint32_t r = 0; r < lr.table.route_count(); ++r) {
        if (auto it = caps.find(lr.table.route(r).name); it != caps.end()) lr.route_caps[r] = it->second;
      }
    }
  }
  if (!errors.empty()) return unexpected(std::move(errors));
  out.runtime = std::move(rt);
  return out;
}

void assign_series(worker::Runtime& rt, control::StatsSegment& stats) {
  const uint64_t epoch = rt.generation;
  for (auto& l : rt.listeners) {
    l.route_slots.resize(l.table.route_count());
    for (size_t r = 0; r < l.route_slots.size(); ++r) {
      l.route_slots[r] = stats.route_slot(l.name, l.table.route(static_cast<uint32_t>(r)).name, epoch);
    }
  }
  for (auto& p : rt.pools) {
    p.backend_slots.resize(p.pool->size());
    for (uint32_t b = 0; b < p.pool->size(); ++b) p.backend_slots[b] = stats.backend_slot(p.name, p.pool->backend(b).id, epoch);
  }
  stats.retire_unseen(epoch);
}

front::NextHops next_hops_of(const config::DpdkConfig& d) {
  auto ip_of = [](const config::DpdkPrefix& p) {
    front::IpAddr a;
    if (p.family == AF_INET || p.family == AF_INET6) {
      a.family = p.family == AF_INET ? 4 : 6;
      std::memcpy(a.bytes, p.addr, a.size());
    }
    return a;
  };
  front::NextHops nh;
  nh.routed = d.routed;
  nh.gateway = ip_of(d.gateway);
  nh.gateway6 = ip_of(d.gateway6);
  for (const auto& n : d.networks) nh.networks.push_back({ip_of(n), n.len});
  nh.vlan = static_cast<uint16_t>(d.backend_vlan);
  return nh;
}

}  // namespace lode::app

#include "controlplane/route_tables.h"

namespace lode::config {

uint32_t cert_index(const Config& cfg, std::string_view name) noexcept {
  for (size_t i = 0; i < cfg.certificates.size(); ++i) {
    if (cfg.certificates[i].name == name) return static_cast<uint32_t>(i);
  }
  for (size_t i = 0; i < cfg.certificate_dirs.size(); ++i) {
    if (cfg.certificate_dirs[i].name == name) return static_cast<uint32_t>(cfg.certificates.size() + i);
  }
  return route::kNoIndex;
}

Result<std::vector<ListenerTable>, ConfigErrors> build_route_tables(const Config& cfg,
                                                                    std::optional<uint64_t> hash_seed) {
  ConfigErrors errors;
  std::vector<ListenerTable> out;
  for (const ListenerConfig& l : cfg.listeners) {
    route::RouteTableBuilder b = hash_seed ? route::RouteTableBuilder(*hash_seed) : route::RouteTableBuilder();
    size_t names = 0;
    for (size_t ri = 0; ri < cfg.routes.size(); ++ri) {
      const RouteConfig& r = cfg.routes[ri];
      if (r.listener != l.name) continue;
      route::RouteSpec spec;
      spec.name = r.name;
      spec.action = r.action;
      spec.flags = static_cast<uint8_t>((r.reject_with_reset ? route::kFlagRejectWithReset : 0) |
                                        (r.steer_by_client ? route::kFlagSteerByClient : 0));
      for (size_t pi = 0; pi < cfg.pools.size(); ++pi) {
        if (cfg.pools[pi].name == r.pool) spec.pool = static_cast<uint32_t>(pi);
      }
      spec.cert = cert_index(cfg, r.certificate);
      const uint32_t idx = b.add_route(std::move(spec));
      for (size_t ni = 0; ni < r.names.size(); ++ni) {
        if (auto ok = b.add_name(r.names[ni].pattern, idx); !ok) {
          errors.push_back({cfg.path, r.names[ni].loc,
                            "route[" + std::to_string(ri) + "].names[" + std::to_string(ni) + "]",
                            ok.error().message});
        }
        ++names;
      }
      if (l.default_route == r.name) {
        if (auto ok = b.set_default(idx); !ok) errors.push_back({cfg.path, l.loc, "default_route", ok.error().message});
      }
    }
    auto table = b.build();
    if (!table) {
      errors.push_back({cfg.path, l.loc, "listener " + l.name, table.error().message});
      continue;
    }
    out.push_back({l.name, std::move(*table), names});
  }
  if (!errors.empty()) return unexpected(std::move(errors));
  return out;
}

}  // namespace lode::config

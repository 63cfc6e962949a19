#include "controlplane/route_tables.h"

#include <string_view>
#include <unordered_map>

namespace lode::config {

Result<std::vector<ListenerTable>, ConfigErrors> build_route_tables(const Config& cfg,
                                                                    std::optional<uint64_t> hash_seed) {
  ConfigErrors errors;
  std::vector<ListenerTable> out;
  // Certificate and pool indexes by name, found once (a route each looking
  // through every certificate is quadratic at 100,000 of them).
  std::unordered_map<std::string_view, uint32_t> cert_of, pool_of;
  for (size_t i = 0; i < cfg.certificate_dirs.size(); ++i) {
    cert_of[cfg.certificate_dirs[i].name] = static_cast<uint32_t>(cfg.certificates.size() + i);
  }
  for (size_t i = cfg.certificates.size(); i-- > 0;) cert_of[cfg.certificates[i].name] = static_cast<uint32_t>(i);
  for (size_t i = 0; i < cfg.pools.size(); ++i) pool_of[cfg.pools[i].name] = static_cast<uint32_t>(i);
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
      if (auto p = pool_of.find(r.pool); p != pool_of.end()) spec.pool = p->second;
      const auto c = cert_of.find(r.certificate);
      spec.cert = c != cert_of.end() ? c->second : route::kNoIndex;
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

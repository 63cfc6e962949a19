#include "controlplane/backend_state.h"

namespace lode::cp {

Result<uint32_t, std::string> parse_backend_weight(std::string_view text) {
  if (text.empty() || text.size() > 5) {
    return unexpected("weight '" + std::string(text) + "': expected an integer 1..65535");
  }
  uint32_t w = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return unexpected("weight '" + std::string(text) + "': expected an integer 1..65535");
    w = w * 10 + static_cast<uint32_t>(c - '0');
  }
  if (w == 0) return unexpected(std::string("weight 0 is not allowed: drain the backend instead"));
  if (w > snapshot::kMaxStateWeight) return unexpected("weight " + std::string(text) + " is above 65535");
  return w;
}

void BackendStateTable::retain(const config::Config& cfg) {
  for (auto pool = operators_.begin(); pool != operators_.end();) {
    const config::PoolConfig* p = cfg.find_pool(pool->first);
    if (p == nullptr) {
      pool = operators_.erase(pool);
      continue;
    }
    for (auto b = pool->second.begin(); b != pool->second.end();) {
      bool found = false;
      for (const auto& bc : p->backends) found = found || config::backend_id(bc) == b->first;
      b = found ? std::next(b) : pool->second.erase(b);
    }
    pool = pool->second.empty() ? operators_.erase(pool) : std::next(pool);
  }
}

Result<const config::BackendConfig*, std::string> BackendStateTable::find(const config::Config& cfg,
                                                                           std::string_view pool,
                                                                           std::string_view backend) {
  const config::PoolConfig* p = cfg.find_pool(pool);
  if (p == nullptr) return unexpected("no pool named '" + std::string(pool) + "'");
  for (const auto& b : p->backends) {
    if (config::backend_id(b) == backend) return &b;
  }
  return unexpected("pool '" + std::string(pool) + "' has no backend '" + std::string(backend) + "'");
}

Result<bool, std::string> BackendStateTable::set_drained(const config::Config& cfg, std::string_view pool,
                                                         std::string_view backend, bool drained) {
  if (auto b = find(cfg, pool, backend); !b) return unexpected(std::move(b.error()));
  Operator& op = operators_[std::string(pool)][std::string(backend)];
  const bool changed = op.drained != drained;
  op.drained = drained;
  return changed;
}

Result<bool, std::string> BackendStateTable::set_weight(const config::Config& cfg, std::string_view pool,
                                                        std::string_view backend, uint32_t weight) {
  auto b = find(cfg, pool, backend);
  if (!b) return unexpected(std::move(b.error()));
  if (weight == 0 || weight > snapshot::kMaxStateWeight) {
    return unexpected("weight " + std::to_string(weight) + " outside 1..65535");
  }
  Operator& op = operators_[std::string(pool)][std::string(backend)];
  const uint32_t before = op.weight != 0 ? op.weight : (*b)->weight;
  // The configured weight again: no override left to remember.
  op.weight = weight == (*b)->weight ? 0 : weight;
  return before != weight;
}

BackendStateTable::Operator BackendStateTable::operator_state(std::string_view pool, std::string_view backend) const {
  auto p = operators_.find(pool);
  if (p == operators_.end()) return {};
  auto b = p->second.find(backend);
  return b == p->second.end() ? Operator{} : b->second;
}

std::vector<BackendRow> BackendStateTable::rows(const config::PoolConfig& pool, const HealthChecker& health) const {
  std::vector<BackendRow> out;
  out.reserve(pool.backends.size());
  for (const auto& b : pool.backends) {
    BackendRow r;
    r.id = config::backend_id(b);
    const Operator op = operator_state(pool.name, r.id);
    r.weight = op.weight != 0 ? op.weight : b.weight;
    r.admin = op.drained ? snapshot::BackendAdmin::kDrained : snapshot::BackendAdmin::kActive;
    if (const HealthChecker::Status* s = health.status(pool.name, r.id)) {
      r.check = s->run.up ? snapshot::BackendCheck::kUp : snapshot::BackendCheck::kDown;
    }
    out.push_back(std::move(r));
  }
  return out;
}

bool BackendStateTable::changed(const config::Config& cfg, const HealthChecker& health) const {
  for (const auto& p : cfg.pools) {
    if (p.backends.size() > snapshot::kMaxStateBackends) continue;
    auto s = sent_.find(p.name);
    if (s == sent_.end() || s->second != rows(p, health)) return true;
  }
  for (const auto& [name, r] : sent_) {
    if (cfg.find_pool(name) == nullptr) return true;
  }
  return false;
}

size_t BackendStateTable::publish_into(SegmentBuilder& b, const config::Config& cfg, const HealthChecker& health,
                                       bool full, uint64_t version) {
  size_t records = 0;
  decltype(sent_) next;
  for (const auto& p : cfg.pools) {
    // The dataplane refuses such a pool whole (route::kMaxPoolBackends).
    if (p.backends.size() > snapshot::kMaxStateBackends) continue;
    std::vector<BackendRow> r = rows(p, health);
    auto s = sent_.find(p.name);
    if (full || s == sent_.end() || s->second != r) {
      std::vector<snapshot::BackendStateView> views;
      views.reserve(r.size());
      for (const auto& row : r) views.push_back({row.id, row.weight, row.check, row.admin});
      b.add_backend_state(p.name, views, version);
      ++records;
    }
    next.emplace(p.name, std::move(r));
  }
  if (!full) {
    for (const auto& [name, r] : sent_) {
      if (next.count(name) == 0) {
        b.remove(snapshot::RecordKind::kBackendState, std::string(snapshot::kPoolKeyPrefix) + name);
        ++records;
      }
    }
  }
  pending_ = std::move(next);
  pending_generation_ = 0;  // not sent yet
  return records;
}

void BackendStateTable::acknowledged(uint64_t generation) {
  if (generation == 0 || generation != pending_generation_) return;
  sent_ = std::move(pending_);
  pending_.clear();
  pending_generation_ = 0;
}

bool BackendStateTable::refused(uint64_t generation) {
  if (generation == 0 || generation != pending_generation_) return false;
  pending_.clear();
  pending_generation_ = 0;
  return true;
}

void BackendStateTable::forget() {
  sent_.clear();
  pending_.clear();
  pending_generation_ = 0;
}

}  // namespace lode::cp

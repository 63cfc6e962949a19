#include "dataplane/route/backend_pool.h"

#include <atomic>
#include <span>

#include "lodestone/name_hash.h"

namespace lode::route {

std::string_view to_string(Algorithm a) noexcept {
  switch (a) {
    case Algorithm::kRoundRobin:
      return "round_robin";
    case Algorithm::kLeastConn:
      return "least_conn";
    case Algorithm::kMaglevClient:
      return "maglev_client";
    case Algorithm::kMaglevSni:
      return "maglev_sni";
  }
  return "unknown";
}

std::string_view to_string(PickError e) noexcept {
  switch (e) {
    case PickError::kAllTried:
      return "every backend of the pool was tried";
    case PickError::kAttemptsExhausted:
      return "connect attempts exhausted";
    case PickError::kStateMismatch:
      return "pool state belongs to another pool";
    case PickError::kNoneAvailable:
      return "no backend available (all down or drained)";
  }
  return "pick failed";
}

std::string_view to_string(BackendHealth h) noexcept {
  switch (h) {
    case BackendHealth::kUp:
      return "up";
    case BackendHealth::kEjected:
      return "ejected";
    case BackendHealth::kHalfOpen:
      return "half_open";
  }
  return "unknown";
}

std::string PoolError::to_string() const {
  std::string what;
  switch (code) {
    case PoolErrorCode::kNoBackends:
      what = "pool has no backends";
      break;
    case PoolErrorCode::kTooManyBackends:
      what = "pool has more than 64 backends";
      break;
    case PoolErrorCode::kZeroWeight:
      what = "weight 0 (expected 1..65535)";
      break;
    case PoolErrorCode::kWeightTooLarge:
      what = "weight above 65535";
      break;
    case PoolErrorCode::kNoIdentity:
      what = "no identity and no IPv4/IPv6 address";
      break;
    case PoolErrorCode::kDuplicateBackend:
      what = "same identity as an earlier backend";
      break;
    case PoolErrorCode::kBadFailThreshold:
      what = "fail_threshold outside 1..1000";
      break;
    case PoolErrorCode::kBadCooldown:
      what = "cooldown_ms outside 1..3600000";
      break;
    case PoolErrorCode::kBadMaxConnectAttempts:
      what = "max_connect_attempts outside 1..64";
      break;
    case PoolErrorCode::kMaglevTable:
      what = std::string(route::to_string(maglev));
      break;
  }
  if (backend == kNoBackend) return what;
  return "backend[" + std::to_string(backend) + "]: " + what;
}

std::optional<uint64_t> client_key(const SocketAddress& client) noexcept {
  if (client.family() == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&client.storage);
    return name_hash({reinterpret_cast<const char*>(&in->sin_addr), 4}, kClientKeySeed);
  }
  if (client.family() == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&client.storage);
    const auto* bytes = reinterpret_cast<const char*>(&in6->sin6_addr);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) return name_hash({bytes + 12, 4}, kClientKeySeed);
    return name_hash({bytes, 16}, kClientKeySeed);
  }
  return std::nullopt;
}

uint64_t sni_key(std::string_view normalized_sni) noexcept {
  return name_hash(normalized_sni, kSniKeySeed);
}

// SocketAddress::to_string()'s text ("1.2.3.4:443", "[::1]:443"), built with
// append: GCC 12 -O2 inlines that function's operator+ chain here and raises a
// false -Wrestrict (GCC PR 105329). The pool tests compare the two.
std::string address_identity(const SocketAddress& a) {
  char host[INET6_ADDRSTRLEN] = "";
  const bool v6 = a.family() == AF_INET6;
  const void* raw =
      v6 ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr)
         : static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr);
  inet_ntop(a.family(), raw, host, sizeof host);
  std::string id;
  id.reserve(INET6_ADDRSTRLEN + 8);
  if (v6) id.push_back('[');
  id.append(host);
  if (v6) id.push_back(']');
  id.push_back(':');
  id.append(std::to_string(a.port()));
  return id;
}

// --- build -------------------------------------------------------------------

namespace {

std::atomic<uint64_t> g_next_pool_id{1};


}  // namespace

Result<BackendPool, PoolError> BackendPool::build(PoolSpec spec) {
  auto fail = [](PoolErrorCode code, uint32_t backend = kNoBackend) {
    return unexpected(PoolError{code, backend});
  };
  const size_t n = spec.backends.size();
  if (n == 0) return fail(PoolErrorCode::kNoBackends);
  if (n > kMaxPoolBackends) return fail(PoolErrorCode::kTooManyBackends);
  for (uint32_t i = 0; i < n; ++i) {
    BackendSpec& b = spec.backends[i];
    if (b.weight == 0) return fail(PoolErrorCode::kZeroWeight, i);
    if (b.weight > kMaxBackendWeight) return fail(PoolErrorCode::kWeightTooLarge, i);
    if (b.id.empty()) {
      if (b.address.family() != AF_INET && b.address.family() != AF_INET6) {
        return fail(PoolErrorCode::kNoIdentity, i);
      }
      b.id = address_identity(b.address);
    }
    for (uint32_t j = 0; j < i; ++j) {
      if (spec.backends[j].id == b.id) return fail(PoolErrorCode::kDuplicateBackend, i);
    }
  }
  if (spec.fail_threshold < 1 || spec.fail_threshold > kMaxFailThreshold) {
    return fail(PoolErrorCode::kBadFailThreshold);
  }
  if (spec.cooldown_ms < 1 || spec.cooldown_ms > kMaxCooldownMs) {
    return fail(PoolErrorCode::kBadCooldown);
  }
  if (spec.max_connect_attempts < 1 || spec.max_connect_attempts > kMaxPoolBackends) {
    return fail(PoolErrorCode::kBadMaxConnectAttempts);
  }
  std::optional<MaglevTable> table;
  if (spec.algorithm == Algorithm::kMaglevClient || spec.algorithm == Algorithm::kMaglevSni) {
    std::vector<MaglevBackend> mb;
    mb.reserve(n);
    for (const BackendSpec& b : spec.backends) mb.push_back({b.id, b.weight});
    auto built = MaglevTable::build(mb, spec.maglev_table_size);
    if (!built)
      return unexpected(PoolError{PoolErrorCode::kMaglevTable, kNoBackend, built.error()});
    table = std::move(*built);
  }
  uint64_t unavailable = 0, drained = 0;
  for (uint32_t i = 0; i < n; ++i) {
    if (spec.backends[i].down || spec.backends[i].drained) unavailable |= uint64_t{1} << i;
    if (spec.backends[i].drained) drained |= uint64_t{1} << i;
  }
  BackendPool pool(std::move(spec));
  pool.maglev_ = std::move(table);
  pool.unavailable_ = unavailable;
  pool.drained_ = drained;
  pool.id_ = g_next_pool_id.fetch_add(1, std::memory_order_relaxed);
  return pool;
}

PoolState::PoolState(const BackendPool& pool) : pool_id_(pool.id_), backends_(pool.size()) {}

PoolState::PoolState(const BackendPool& pool, const BackendPool& previous_pool,
                     const PoolState& previous)
    : PoolState(pool) {
  if (previous.pool_id_ != previous_pool.id_ || previous.backends_.size() != previous_pool.size()) {
    return;
  }
  for (uint32_t i = 0; i < pool.size(); ++i) {
    for (uint32_t j = 0; j < previous_pool.size(); ++j) {
      if (pool.backend(i).id != previous_pool.backend(j).id) continue;
      const Backend& from = previous.backends_[j];
      Backend& to = backends_[i];
      to.eject_until_ms = from.eject_until_ms;
      to.last_failure_ms = from.last_failure_ms;
      to.trial_until_ms = from.trial_until_ms;
      to.trial_id = from.trial_id;
      to.consecutive_failures = from.consecutive_failures;
      to.suspect = from.suspect;
      break;
    }
  }
}

BackendHealth PoolState::health(uint32_t idx, uint64_t now_ms) const noexcept {
  const Backend& b = backends_[idx];
  if (!b.suspect) return BackendHealth::kUp;
  return now_ms < b.eject_until_ms ? BackendHealth::kEjected : BackendHealth::kHalfOpen;
}

// --- pick --------------------------------------------------------------------

bool BackendPool::eligible(const PoolState& state, uint32_t idx, uint64_t now_ms,
                           const TriedSet& tried) const noexcept {
  if (tried.contains(idx) || !available(idx)) return false;
  const PoolState::Backend& b = state.backends_[idx];
  if (!b.suspect) return true;
  if (now_ms < b.eject_until_ms) return false;  // ejected
  return now_ms >= b.trial_until_ms;            // half-open, no trial in flight
}

// Smooth weighted round robin over the eligible backends (skipped ones earn
// no credit this round, as in nginx).
uint32_t BackendPool::pick_round_robin(PoolState& state, uint64_t now_ms,
                                       const TriedSet& tried) const noexcept {
  const uint32_t n = size();
  uint32_t best = kNoBackend;
  int64_t best_credit = 0;
  int64_t total = 0;
  for (uint32_t i = 0; i < n; ++i) {
    if (!eligible(state, i, now_ms, tried)) continue;
    PoolState::Backend& b = state.backends_[i];
    const int64_t w = spec_.backends[i].weight;
    b.credit += w;
    total += w;
    if (best == kNoBackend || b.credit > best_credit) {
      best = i;
      best_credit = b.credit;
    }
  }
  if (best != kNoBackend) state.backends_[best].credit -= total;
  return best;
}

// Fewest active per unit of weight; ties to the first at or after the cursor.
uint32_t BackendPool::pick_least_conn(PoolState& state, uint64_t now_ms,
                                      const TriedSet& tried) const noexcept {
  const uint32_t n = size();
  const uint32_t start = state.cursor_ < n ? state.cursor_ : 0;
  uint32_t best = kNoBackend;
  uint64_t best_active = 0;
  uint64_t best_weight = 1;
  for (uint32_t k = 0; k < n; ++k) {
    uint32_t i = start + k;
    if (i >= n) i -= n;
    if (!eligible(state, i, now_ms, tried)) continue;
    const uint64_t active = state.backends_[i].counters.active;
    const uint64_t weight = spec_.backends[i].weight;
    if (best == kNoBackend || active * best_weight < best_active * weight) {
      best = i;
      best_active = active;
      best_weight = weight;
    }
  }
  if (best != kNoBackend) state.cursor_ = best + 1 < n ? best + 1 : 0;
  return best;
}

// The table's slot for the key; if that backend is not eligible, probe the
// table at key + j*step (deterministic, spread by weight), then scan the list.
uint32_t BackendPool::pick_maglev(PoolState& state, uint64_t key, uint64_t now_ms,
                                  const TriedSet& tried) const noexcept {
  const MaglevTable& table = *maglev_;
  const uint32_t primary = table.lookup(key);
  if (eligible(state, primary, now_ms, tried)) return primary;
  const uint32_t m = table.size();
  const std::span<const uint16_t> slots = table.slots();
  uint32_t slot = static_cast<uint32_t>(key % m);
  const uint32_t step = static_cast<uint32_t>((key >> 32) % (m - 1)) + 1;
  for (uint32_t j = 0; j < kMaglevRetryProbes; ++j) {
    slot += step;
    if (slot >= m) slot -= m;
    const uint32_t b = slots[slot];
    if (eligible(state, b, now_ms, tried)) return b;
  }
  const uint32_t n = size();
  for (uint32_t k = 1; k < n; ++k) {
    uint32_t i = primary + k;
    if (i >= n) i -= n;
    if (eligible(state, i, now_ms, tried)) return i;
  }
  return kNoBackend;
}

// Everything untried is down: the least recently failed untried backend that
// is not drained; kNoBackend when there is none or the pool rejects instead.
uint32_t BackendPool::pick_fail_open(const PoolState& state, const TriedSet& tried) const noexcept {
  if (spec_.when_all_down == AllDownPolicy::kReject) return kNoBackend;
  uint32_t best = kNoBackend;
  for (uint32_t i = 0; i < size(); ++i) {
    if (tried.contains(i) || ((drained_ >> i) & 1) != 0) continue;
    if (best == kNoBackend ||
        state.backends_[i].last_failure_ms < state.backends_[best].last_failure_ms) {
      best = i;
    }
  }
  return best;
}

Result<uint32_t, PickError> BackendPool::pick(PoolState& state, const PickContext& ctx,
                                              TriedSet& tried) const noexcept {
  const uint32_t n = size();
  if (state.pool_id_ != id_ || state.backends_.size() != n) {
    return unexpected(PickError::kStateMismatch);
  }
  const uint64_t all = n == 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1;
  if ((tried.mask() & all) == all) {
    ++state.counters_.retries_exhausted;
    return unexpected(PickError::kAllTried);
  }
  if (tried.attempts() >= spec_.max_connect_attempts) {
    ++state.counters_.retries_exhausted;
    return unexpected(PickError::kAttemptsExhausted);
  }

  uint32_t idx = kNoBackend;
  switch (spec_.algorithm) {
    case Algorithm::kRoundRobin:
      idx = pick_round_robin(state, ctx.now_ms, tried);
      break;
    case Algorithm::kLeastConn:
      idx = pick_least_conn(state, ctx.now_ms, tried);
      break;
    case Algorithm::kMaglevClient: {
      const std::optional<uint64_t> key =
          ctx.client != nullptr ? client_key(*ctx.client) : std::nullopt;
      if (key) {
        idx = pick_maglev(state, *key, ctx.now_ms, tried);
      } else {
        ++state.counters_.hash_fallbacks;
        idx = pick_round_robin(state, ctx.now_ms, tried);
      }
      break;
    }
    case Algorithm::kMaglevSni:
      if (!ctx.sni.empty()) {
        idx = pick_maglev(state, sni_key(ctx.sni), ctx.now_ms, tried);
      } else {
        ++state.counters_.hash_fallbacks;
        idx = pick_round_robin(state, ctx.now_ms, tried);
      }
      break;
  }

  bool fail_open = false;
  if (idx == kNoBackend) {
    idx = pick_fail_open(state, tried);
    if (idx == kNoBackend) {
      ++state.counters_.refused;
      return unexpected(PickError::kNoneAvailable);
    }
    fail_open = true;
  }
  PoolState::Backend& b = state.backends_[idx];
  if (fail_open) {
    ++state.counters_.fail_open;
    ++b.counters.fail_open_picks;
  } else if (b.suspect) {
    b.trial_until_ms = ctx.now_ms + spec_.cooldown_ms;  // the half-open trial
    // Numbered across every pool state of the process (the workers' and
    // lcores' threads pick at once: an atomic; trials are rare).
    static std::atomic<uint64_t> trials{0};
    b.trial_id = trials.fetch_add(1, std::memory_order_relaxed) + 1;
  }
  tried.set_trial(!fail_open && b.suspect, b.trial_id);
  if (tried.attempts() > 0) ++state.counters_.retries;
  ++state.counters_.picks;
  ++b.counters.picks;
  ++b.counters.active;
  tried.add(idx);
  return idx;
}

bool BackendPool::refuse_new(PoolState& state, uint64_t now_ms) const noexcept {
  if (spec_.when_all_down != AllDownPolicy::kReject) return false;
  if (state.pool_id_ != id_ || state.backends_.size() != size()) return false;  // pick() reports it
  const TriedSet none;
  for (uint32_t i = 0; i < size(); ++i) {
    if (eligible(state, i, now_ms, none)) return false;
  }
  ++state.counters_.refused;
  return true;
}

// --- outcomes ------------------------------------------------------------------

void BackendPool::release(PoolState& state, uint32_t idx) const noexcept {
  uint32_t& active = state.backends_[idx].counters.active;
  if (active == 0) {
    ++state.counters_.unbalanced_releases;
  } else {
    --active;
  }
}

void BackendPool::on_connect_ok(PoolState& state, uint32_t idx) const noexcept {
  if (idx >= state.backends_.size()) {
    ++state.counters_.bad_index;
    return;
  }
  note_up(state.backends_[idx]);
}

void BackendPool::note_up(PoolState::Backend& b) noexcept {
  b.consecutive_failures = 0;
  b.suspect = false;
  b.trial_until_ms = 0;
}

void BackendPool::on_connect_fail(PoolState& state, uint32_t idx, uint64_t now_ms) const noexcept {
  if (idx >= state.backends_.size()) {
    ++state.counters_.bad_index;
    return;
  }
  release(state, idx);
  ++state.backends_[idx].counters.connect_failures;
  note_failure(state, idx, now_ms);
}

void BackendPool::note_failure(PoolState& state, uint32_t idx, uint64_t now_ms) const noexcept {
  PoolState::Backend& b = state.backends_[idx];
  b.last_failure_ms = now_ms;
  if (b.consecutive_failures < kMaxFailThreshold) ++b.consecutive_failures;
  if (b.suspect) {
    // Half-open trial failed (a new ejection), or a failure while ejected
    // (fail-open pick, a connect begun before the ejection): cool down again.
    if (now_ms >= b.eject_until_ms) ++b.counters.ejections;
    b.eject_until_ms = now_ms + spec_.cooldown_ms;
    b.trial_until_ms = 0;
  } else if (b.consecutive_failures >= spec_.fail_threshold) {
    b.suspect = true;
    b.eject_until_ms = now_ms + spec_.cooldown_ms;
    b.trial_until_ms = 0;
    ++b.counters.ejections;
  }
}

void BackendPool::on_close(PoolState& state, uint32_t idx) const noexcept {
  if (idx >= state.backends_.size()) {
    ++state.counters_.bad_index;
    return;
  }
  release(state, idx);
}

void BackendPool::on_abandon(PoolState& state, uint32_t idx, const TriedSet& tried) const noexcept {
  if (idx >= state.backends_.size()) {
    ++state.counters_.bad_index;
    return;
  }
  release(state, idx);
  // The half-open trial abandoned before its verdict: let another one go.
  // (Any other connection -- one with its verdict before the ejection, a
  // fail-open pick, one still connecting when the trial began -- leaves the
  // trial in flight alone.)
  if (tried.trial()) state.backends_[idx].trial_until_ms = 0;
}

void BackendPool::carry_verdict(PoolState& state, const BackendPool& from, uint32_t from_idx, Verdict v,
                                const TriedSet& tried, uint64_t now_ms) const noexcept {
  // (`from` may be this very pool: a generation made for a backend state
  // change keeps unchanged pools, each generation with its own state.)
  if (state.pool_id_ != id_ || from_idx >= from.size()) return;
  for (uint32_t i = 0; i < size(); ++i) {
    if (backend(i).id != from.backend(from_idx).id) continue;
    switch (v) {
      case Verdict::kUp:
        note_up(state.backends_[i]);
        break;
      case Verdict::kFailed:
        note_failure(state, i, now_ms);
        break;
      case Verdict::kAbandoned:
        // Only the trial carried over (the same deadline), not one this
        // generation began itself meanwhile.
        if (tried.trial() && state.backends_[i].trial_id == tried.trial_id()) {
          state.backends_[i].trial_until_ms = 0;
        }
        break;
    }
    return;
  }
}

}  // namespace lode::route

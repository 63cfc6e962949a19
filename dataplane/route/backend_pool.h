// Backend selection for the TLS workers: which backend of a route's pool a new
// connection goes to, retries after a failed connect, and passive health.
// Pure logic: no sockets, no clock (callers pass now_ms), no locks.
//
// BackendPool is the immutable description of one pool (backends, weights,
// algorithm, Maglev table), built once per snapshot and read by every worker.
// PoolState is one worker's mutable view of a pool: the round-robin state,
// active connection counts, passive health and counters. Each worker owns its
// own PoolState; nothing in it is shared or locked. A reader that wants pool
// totals sums the workers' counters.
//
// Algorithms
//  kRoundRobin   smooth weighted round robin (nginx's): each pick adds every
//                candidate's weight to its credit, takes the largest credit
//                (first in list order on a tie) and takes the total weight
//                off it. Weights {3,1} give A A B A, {5,1,1} a a b a c a a.
//  kLeastConn    fewest active connections on this worker relative to
//                weight (active_a * w_b < active_b * w_a); ties go to the
//                first candidate at or after a rotating cursor, so idle
//                backends are taken in turn.
//  kMaglevClient Maglev table (dataplane/route/maglev.h) keyed by the client
//                IP address (not the port; an IPv4-mapped IPv6 address
//                counts as the IPv4 address). Same client, same backend, on
//                every worker and every node with the same configuration.
//  kMaglevSni    Maglev table keyed by the SNI, which must already be
//                normalized (lower case, no trailing dot: ClientHelloInfo's
//                sni_buf is).
// A Maglev pool without its key (no client address, e.g. PROXY v2 LOCAL; no
// SNI) falls back to smooth weighted round robin, counted in hash_fallbacks:
// hashing "nothing" would send every such connection to one backend.
//
// Connection life cycle, for each connection:
//   TriedSet tried;                             // per connection, 8 bytes
//   r = pool.pick(state, ctx, tried);           // active++, picks++
//   connect ... then exactly one of:
//     pool.on_connect_fail(state, i, now_ms);   // active--; may eject; then
//                                               // pick again with `tried`
//     pool.on_connect_ok(state, i); ... pool.on_close(state, i);  // active--
//     pool.on_abandon(state, i, tried);         // closed before a verdict:
//                                               // active--; if it was the
//                                               // half-open trial, another
//                                               // may go
// A connection counts as active from its pick (not from its connect), so a
// burst of new connections does not all go to the one idle backend.
//
// Retries: pick() records its backend in `tried` (adding it again is
// harmless) and never returns a backend already in it. A pick with a non-empty `tried` is a retry
// (counted). After max_connect_attempts picks it returns kAttemptsExhausted; when every backend has
// been tried, kAllTried (both counted in retries_exhausted). Only a connect that failed before any
// byte was forwarded may be retried; that is the caller's rule. A Maglev retry probes the table at
// key + j*step (step from the key's high bits, j = 1..kMaglevRetryProbes), so the next backend is
// deterministic and spread by weight; then scans the list from the primary on.
//
// Passive health, per worker:
//   up --(fail_threshold consecutive connect failures)--> ejected
//   ejected --(cooldown_ms elapsed)--> half-open
//   half-open: eligible again, one trial connection at a time (a trial not
//     reported within cooldown_ms is given up on); a success -> up, a
//     failure -> ejected for another cooldown_ms.
// Any success resets the consecutive-failure count.
// All down: when every backend not yet tried for this connection is ejected
// (or half-open with its trial in flight), pick() fails OPEN: it returns the
// least recently failed of them rather than nothing (fail_open counted, per
// pool and per backend). Passive health only sees this worker's connect
// errors and a backend may be back already; refusing the client would turn a
// partial outage into a total one. Its connect result feeds health as usual.
//
// Control-plane state (the snapshot's kBackendState records, applied when the
// pool is built): a backend whose active health check says down, or that the
// operator drained, is not eligible for new connections; connections already
// picked report to it as usual, so a drained backend's open connections
// finish. Weights are the effective ones (an operator override or the
// configured weight); a Maglev table is built from them. Passive health
// composes: eligible = not down, not drained, and passively up/half-open.
// When nothing is eligible, when_all_down decides: kFailOpen as above (among
// the backends not drained: drained ones never get a new connection);
// kReject: pick() fails with kNoneAvailable, and refuse_new() tells a worker
// before it spends a handshake on a connection it cannot forward.
//
// Size: at most kMaxPoolBackends (64) backends per pool, so that the tried
// set is one 64-bit mask; build() refuses more.
#pragma once

#include <bit>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dataplane/route/maglev.h"
#include "lodestone/result.h"
#include "lodestone/socket_address.h"

namespace lode::route {

enum class Algorithm : uint8_t { kRoundRobin, kLeastConn, kMaglevClient, kMaglevSni };
std::string_view to_string(Algorithm a) noexcept;

inline constexpr uint32_t kMaxPoolBackends = 64;
inline constexpr uint32_t kMaxBackendWeight = 65535;
inline constexpr uint32_t kDefaultFailThreshold = 3;
inline constexpr uint32_t kMaxFailThreshold = 1000;
inline constexpr uint32_t kDefaultCooldownMs = 10'000;
inline constexpr uint32_t kMaxCooldownMs = 3'600'000;
inline constexpr uint32_t kDefaultMaxConnectAttempts = 3;
inline constexpr uint32_t kMaglevRetryProbes = 64;
inline constexpr uint32_t kNoBackend = 0xFFFFFFFF;

// Fixed seeds: a key must hash the same in every process and on every node.
inline constexpr uint64_t kClientKeySeed = 0x434c49454e544950ull;  // "CLIENTIP"
inline constexpr uint64_t kSniKeySeed = 0x534e494b45595345ull;     // "SNIKEYSE"

// The Maglev key of a client: its IP address bytes (IPv4-mapped IPv6 as IPv4),
// port excluded. nullopt for an address that is neither IPv4 nor IPv6.
[[nodiscard]] std::optional<uint64_t> client_key(const SocketAddress& client) noexcept;
// A backend's default identity: its address as "1.2.3.4:443" or "[::1]:443"
// (SocketAddress::to_string()'s text).
[[nodiscard]] std::string address_identity(const SocketAddress& a);

// The Maglev key of a normalized SNI.
[[nodiscard]] uint64_t sni_key(std::string_view normalized_sni) noexcept;

struct BackendSpec {
  SocketAddress address;
  uint32_t weight = 1;  // effective weight, 1..kMaxBackendWeight
  std::string id;       // stable identity (Maglev, metrics); empty: address.to_string()
  bool down = false;     // the control plane's active health check says down
  bool drained = false;  // the operator drained it: no new connections
};

enum class AllDownPolicy : uint8_t {
  kFailOpen,  // the least recently failed backend that is not drained
  kReject,    // refuse the connection
};

struct PoolSpec {
  Algorithm algorithm = Algorithm::kRoundRobin;
  std::vector<BackendSpec> backends;
  uint32_t maglev_table_size = kMaglevDefaultTableSize;        // prime, >= 100 * backends
  uint32_t fail_threshold = kDefaultFailThreshold;             // 1..kMaxFailThreshold
  uint32_t cooldown_ms = kDefaultCooldownMs;                   // 1..kMaxCooldownMs
  uint32_t max_connect_attempts = kDefaultMaxConnectAttempts;  // 1..kMaxPoolBackends
  AllDownPolicy when_all_down = AllDownPolicy::kFailOpen;
};

enum class PoolErrorCode : uint8_t {
  kNoBackends,
  kTooManyBackends,  // more than kMaxPoolBackends
  kZeroWeight,
  kWeightTooLarge,
  kNoIdentity,  // no id and an address that is neither IPv4 nor IPv6
  kDuplicateBackend,
  kBadFailThreshold,
  kBadCooldown,
  kBadMaxConnectAttempts,
  kMaglevTable,  // see PoolError::maglev
};

struct PoolError {
  PoolErrorCode code = PoolErrorCode::kNoBackends;
  uint32_t backend = kNoBackend;                  // the offending backend's position, when one is
  MaglevError maglev = MaglevError::kNoBackends;  // when code == kMaglevTable
  std::string to_string() const;
};

enum class PickError : uint8_t {
  kAllTried,           // every backend of the pool was tried for this connection
  kAttemptsExhausted,  // max_connect_attempts picks made for this connection
  kStateMismatch,      // the PoolState was made for another pool
  kNoneAvailable,      // nothing eligible and kReject, or every untried backend drained
};
std::string_view to_string(PickError e) noexcept;

struct PickContext {
  const SocketAddress* client = nullptr;  // kMaglevClient's key
  std::string_view sni;                   // kMaglevSni's key, normalized
  uint64_t now_ms = 0;                    // monotonic clock
};

// The backends already picked for one connection. pick() never returns a
// backend twice for one connection, so the attempts made are the backends in
// the set, and add() is idempotent.
class TriedSet {
 public:
  bool contains(uint32_t idx) const noexcept { return idx < 64 && ((mask_ >> idx) & 1) != 0; }
  void add(uint32_t idx) noexcept {
    if (idx < 64) mask_ |= uint64_t{1} << idx;
  }
  uint64_t mask() const noexcept { return mask_; }
  uint32_t attempts() const noexcept { return static_cast<uint32_t>(std::popcount(mask_)); }
  // Whether the last pick made through this set was a backend's half-open
  // trial (on_abandon ends the trial only for that connection).
  bool trial() const noexcept { return trial_; }
  // The trial's number, unique in the process, as its pick set it: a
  // generation that carried the trial over holds the same one
  // (carry_verdict ends only that trial, not one the generation began
  // itself, even in the same millisecond).
  uint64_t trial_id() const noexcept { return trial_id_; }
  void set_trial(bool t, uint64_t id = 0) noexcept {
    trial_ = t;
    trial_id_ = t ? id : 0;
  }

 private:
  uint64_t mask_ = 0;
  uint64_t trial_id_ = 0;
  bool trial_ = false;
};

enum class BackendHealth : uint8_t { kUp, kEjected, kHalfOpen };
std::string_view to_string(BackendHealth h) noexcept;

// Plain integers written by the owning worker only; a reader on another
// thread sums copies the workers publish (the stats layout), never these live.
struct BackendCounters {
  uint64_t picks = 0;  // includes retries and fail-open picks
  uint64_t connect_failures = 0;
  uint64_t ejections = 0;        // transitions into ejected
  uint64_t fail_open_picks = 0;  // picked while ejected, everything else down
  uint32_t active = 0;           // picked and neither failed nor closed yet
};

struct PoolCounters {
  uint64_t picks = 0;
  uint64_t retries = 0;            // picks with a non-empty TriedSet
  uint64_t retries_exhausted = 0;  // kAllTried + kAttemptsExhausted
  uint64_t fail_open = 0;
  uint64_t hash_fallbacks = 0;       // Maglev pool without its key: round robin
  uint64_t unbalanced_releases = 0;  // on_close / on_connect_fail with active == 0
  uint64_t bad_index = 0;            // on_* with an index outside the pool
  uint64_t refused = 0;              // kNoneAvailable picks and refuse_new() refusals
};

class BackendPool;

class PoolState {
 public:
  explicit PoolState(const BackendPool& pool);
  // For the pool of a new snapshot generation: backends with the same
  // identity in `previous_pool` keep their passive health (ejections,
  // cool-downs, failure runs) so a reload does not re-admit a dead backend.
  // Counters, active counts and round-robin state start afresh: connections
  // picked from the previous pool report to the previous state. A `previous`
  // that is not `previous_pool`'s state is ignored.
  PoolState(const BackendPool& pool, const BackendPool& previous_pool, const PoolState& previous);

  uint32_t backend_count() const noexcept { return static_cast<uint32_t>(backends_.size()); }
  // idx < backend_count().
  const BackendCounters& counters(uint32_t idx) const noexcept { return backends_[idx].counters; }
  const PoolCounters& pool_counters() const noexcept { return counters_; }
  BackendHealth health(uint32_t idx, uint64_t now_ms) const noexcept;

 private:
  friend class BackendPool;

  struct Backend {
    int64_t credit = 0;           // smooth WRR current weight
    uint64_t eject_until_ms = 0;  // meaningful while suspect
    uint64_t last_failure_ms = 0;
    uint64_t trial_until_ms = 0;  // half-open trial in flight until then
    uint64_t trial_id = 0;        // that trial's number (TriedSet::trial_id)
    uint32_t consecutive_failures = 0;
    bool suspect = false;  // ejected or half-open: not yet back up
    BackendCounters counters;
  };

  uint64_t pool_id_ = 0;  // BackendPool::id_ of the pool this state was made for
  std::vector<Backend> backends_;
  uint32_t cursor_ = 0;  // least-conn tie rotation
  PoolCounters counters_;
};

class BackendPool {
 public:
  [[nodiscard]] static Result<BackendPool, PoolError> build(PoolSpec spec);

  // The backend for a new connection or for its next connect attempt; see
  // the file comment. Records the result in `tried`.
  [[nodiscard]] Result<uint32_t, PickError> pick(PoolState& state, const PickContext& ctx,
                                                 TriedSet& tried) const noexcept;

  // True when a new connection must be refused now: when_all_down is
  // kReject and no backend is eligible (counted in refused). A worker asks
  // at routing time, so the client gets the route-reject answer (alert or
  // reset) instead of a handshake followed by a close.
  [[nodiscard]] bool refuse_new(PoolState& state, uint64_t now_ms) const noexcept;
  // Not down and not drained (passive health aside).
  bool available(uint32_t idx) const noexcept { return idx < 64 && ((unavailable_ >> idx) & 1) == 0; }

  void on_connect_ok(PoolState& state, uint32_t idx) const noexcept;
  void on_connect_fail(PoolState& state, uint32_t idx, uint64_t now_ms) const noexcept;
  // After its verdict (on_connect_ok): a half-open trial in flight for the
  // backend is another connection's and goes on.
  void on_close(PoolState& state, uint32_t idx) const noexcept;
  // Before any verdict (the client went away while connecting, a TLS
  // backend's handshake cut short): if this connection was the half-open
  // trial (`tried`, the set its pick was made with), another may go.
  void on_abandon(PoolState& state, uint32_t idx, const TriedSet& tried) const noexcept;

  // The verdict of a connection picked from `from`, the same-named pool of
  // an older generation (after its on_connect_ok / on_connect_fail /
  // on_abandon there), told to `state`, this pool's state, for the same
  // backend by identity: the health a reload carried over (PoolState's
  // carrying constructor) follows what happened since. Without it a reload
  // between a half-open trial's pick and its verdict left the trial in flight
  // here until a cooldown passed, and the backend's recovery or failure
  // unknown. Active counts and connect failures are per generation: not
  // touched (an ejection the verdict makes here is counted here).
  enum class Verdict : uint8_t { kUp, kFailed, kAbandoned };
  void carry_verdict(PoolState& state, const BackendPool& from, uint32_t from_idx, Verdict v,
                     const TriedSet& tried, uint64_t now_ms) const noexcept;

  Algorithm algorithm() const noexcept { return spec_.algorithm; }
  uint32_t size() const noexcept { return static_cast<uint32_t>(spec_.backends.size()); }
  const BackendSpec& backend(uint32_t idx) const noexcept { return spec_.backends[idx]; }
  const PoolSpec& spec() const noexcept { return spec_; }
  // Set for kMaglevClient and kMaglevSni only.
  const MaglevTable* maglev() const noexcept { return maglev_ ? &*maglev_ : nullptr; }

 private:
  friend class PoolState;

  explicit BackendPool(PoolSpec spec) : spec_(std::move(spec)) {}

  bool eligible(const PoolState& state, uint32_t idx, uint64_t now_ms,
                const TriedSet& tried) const noexcept;
  uint32_t pick_round_robin(PoolState& state, uint64_t now_ms,
                            const TriedSet& tried) const noexcept;
  uint32_t pick_least_conn(PoolState& state, uint64_t now_ms, const TriedSet& tried) const noexcept;
  uint32_t pick_maglev(PoolState& state, uint64_t key, uint64_t now_ms,
                       const TriedSet& tried) const noexcept;
  uint32_t pick_fail_open(const PoolState& state, const TriedSet& tried) const noexcept;
  void release(PoolState& state, uint32_t idx) const noexcept;
  // on_connect_fail's and on_connect_ok's effects on health (a failure run,
  // an ejection; up again).
  void note_failure(PoolState& state, uint32_t idx, uint64_t now_ms) const noexcept;
  static void note_up(PoolState::Backend& b) noexcept;

  PoolSpec spec_;
  uint64_t id_ = 0;  // unique per build() in this process; kept by moves
  uint64_t unavailable_ = 0;  // bit i: backend i is down or drained
  uint64_t drained_ = 0;      // bit i: backend i is drained
  std::optional<MaglevTable> maglev_;
};

}  // namespace lode::route

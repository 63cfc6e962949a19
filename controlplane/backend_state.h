// What the dataplane is told about each backend (the snapshot's
// kBackendState records): the configuration, the operator's state (lodectl
// backends drain|enable|weight) and the active health checks, combined.
//
// Operator state is held by pool name + backend id. A reload keeps it for the
// backends that are still configured and drops the rest; it lives in the
// control plane's memory only, so a restart of the control plane (or of
// Lodestone) starts every backend enabled at its configured weight.
//
// Every mutation is validated completely before anything changes, and the
// caller publishes the result as one segment. publish_into() adds a record
// only for the pools whose rows differ from what the dataplane acknowledged
// (a delta), or every pool for a full segment.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/config.h"
#include "controlplane/health_check.h"
#include "controlplane/snapshot_writer.h"
#include "lodestone/result.h"
#include "lodestone/snapshot.h"

namespace lode::cp {

struct BackendRow {
  std::string id;
  uint32_t weight = 1;  // effective
  snapshot::BackendCheck check = snapshot::BackendCheck::kUnchecked;
  snapshot::BackendAdmin admin = snapshot::BackendAdmin::kActive;
  bool operator==(const BackendRow&) const = default;
};

// Parses an operator weight: decimal digits only, 1..65535. 0 is refused
// (that is a drain).
[[nodiscard]] Result<uint32_t, std::string> parse_backend_weight(std::string_view text);

class BackendStateTable {
 public:
  struct Operator {
    bool drained = false;
    uint32_t weight = 0;  // 0: the configured weight
  };

  // After a (re)load: operator state of backends `cfg` no longer has is dropped.
  void retain(const config::Config& cfg);

  // The mutations; errors name the pool or backend. The result says whether
  // anything changed (draining a drained backend changes nothing).
  Result<bool, std::string> set_drained(const config::Config& cfg, std::string_view pool, std::string_view backend,
                                        bool drained);
  Result<bool, std::string> set_weight(const config::Config& cfg, std::string_view pool, std::string_view backend,
                                       uint32_t weight);

  Operator operator_state(std::string_view pool, std::string_view backend) const;

  // The rows of `pool` as the dataplane should have them now.
  std::vector<BackendRow> rows(const config::PoolConfig& pool, const HealthChecker& health) const;

  // Whether some pool's rows differ from what the dataplane acknowledged (or
  // a pool was removed).
  bool changed(const config::Config& cfg, const HealthChecker& health) const;
  // Adds the records (every pool when `full`, else the changed ones and the
  // removals). Returns the number of records.
  size_t publish_into(SegmentBuilder& b, const config::Config& cfg, const HealthChecker& health, bool full,
                      uint64_t version);
  // The segment publish_into() filled went out as `generation`. Its rows are
  // what the dataplane has once it acknowledges that generation; refused,
  // the dataplane keeps what it had, so changed() holds again and the rows
  // go out with the next segment.
  void sent(uint64_t generation) noexcept { pending_generation_ = generation; }
  void acknowledged(uint64_t generation);
  // True when the refused generation carried rows (they are due again).
  bool refused(uint64_t generation);
  // A dataplane (re)attached: it has none of the rows.
  void forget();

 private:
  // Finds a configured backend; errors name what is missing.
  static Result<const config::BackendConfig*, std::string> find(const config::Config& cfg, std::string_view pool,
                                                                 std::string_view backend);

  std::map<std::string, std::map<std::string, Operator, std::less<>>, std::less<>> operators_;
  std::map<std::string, std::vector<BackendRow>, std::less<>> sent_;     // acknowledged by the dataplane
  std::map<std::string, std::vector<BackendRow>, std::less<>> pending_;  // built, not yet acknowledged
  uint64_t pending_generation_ = 0;                                      // the segment carrying pending_; 0: none
};

}  // namespace lode::cp

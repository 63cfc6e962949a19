// Turns a validated configuration into what the workers serve: route tables,
// backend pools, backend TLS contexts, and which certificate record each
// terminate route uses (the certificates come from the control plane).
// The dataplane builds it from the configuration text the control plane
// published; certificates then come from the snapshot (CertSource::kSnapshot).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "controlplane/config.h"
#include "dataplane/control/snapshot_state.h"
#include "dataplane/control/stats_segment.h"
#include "dataplane/front/flow_engine.h"
#include "dataplane/tls/ticket_keys.h"
#include "dataplane/worker/runtime.h"

namespace lode::app {

struct BuiltRuntime {
  std::shared_ptr<worker::Runtime> runtime;
  std::vector<std::string> warnings;
};

// Errors are complete messages (file, key, what is wrong). `states`: the
// snapshot's backend states (null or a pool missing: as configured).
Result<BuiltRuntime, std::vector<std::string>> build_runtime(const config::Config& cfg,
                                                             std::shared_ptr<tls::TicketKeys> keys,
                                                             uint64_t generation,
                                                             const control::BackendStates* states = nullptr);

// `current` with its pools rebuilt from their configured specs and `states`
// (a health check or an operator changed a backend): route tables,
// certificates and backend TLS contexts are shared, not rebuilt.
Result<std::shared_ptr<worker::Runtime>, std::vector<std::string>> with_backend_states(
    const worker::Runtime& current, const control::BackendStates* states, uint64_t generation);

// A pool spec with the states of its backends applied (by backend id;
// unknown ids ignored, backends without an entry as configured).
route::PoolSpec apply_backend_states(route::PoolSpec spec, const std::vector<control::BackendStateEntry>* states);

// The dpdk front's view of [dpdk] networks / gateway / gateway6.
front::NextHops next_hops_of(const config::DpdkConfig& d);

// A hash of the TLS settings (never 0): a worker rebuilds its cached
// SSL_CTXs when it changes.
uint64_t tls_settings_version(const tls::TlsSettings& s);

tls::TlsSettings tls_settings(const config::TlsConfig& t);

// Gives every route of every listener and every backend of every pool of
// `rt` its stats series slot (names keep their slots across generations;
// names `rt` no longer has are retired). Called by the thread that publishes
// runtimes, before publishing `rt`.
void assign_series(worker::Runtime& rt, control::StatsSegment& stats);

}  // namespace lode::app

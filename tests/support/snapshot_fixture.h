// The snapshot a control plane would publish for a configuration (its
// certificates loaded and validated by controlplane/cert_catalog.h, one full
// segment), applied as the dataplane applies it: what worker tests serve.
// Its config version is `generation` (each generation its own configuration).
#pragma once

#include <memory>
#include <string>

#include "controlplane/config.h"
#include "dataplane/control/snapshot_state.h"
#include "lodestone/result.h"

namespace lode::test {

Result<std::shared_ptr<const control::Snapshot>, std::string> snapshot_for(const config::Config& cfg,
                                                                           uint64_t generation = 1);

}  // namespace lode::test

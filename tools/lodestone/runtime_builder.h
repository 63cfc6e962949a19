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
#include "dataplane/tls/ticket_keys.h"
#include "dataplane/worker/runtime.h"

namespace lode::app {

struct BuiltRuntime {
  std::shared_ptr<worker::Runtime> runtime;
  std::vector<std::string> warnings;
};

// Errors are complete messages (file, key, what is wrong).
Result<BuiltRuntime, std::vector<std::string>> build_runtime(const config::Config& cfg,
                                                             std::shared_ptr<tls::TicketKeys> keys,
                                                             uint64_t generation);

// A hash of the TLS settings (never 0): a worker rebuilds its cached
// SSL_CTXs when it changes.
uint64_t tls_settings_version(const tls::TlsSettings& s);

tls::TlsSettings tls_settings(const config::TlsConfig& t);

}  // namespace lode::app

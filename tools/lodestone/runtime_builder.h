// Turns a validated configuration into what the workers serve: route tables,
// backend pools, certificates (loaded and checked), backend TLS contexts.
// Until the control-plane process lands (issue 4), the dataplane process does
// this itself at start and on SIGHUP.
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

tls::TlsSettings tls_settings(const config::TlsConfig& t);

}  // namespace lode::app

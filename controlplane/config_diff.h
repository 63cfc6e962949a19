// What a configuration change would change: route names, pools and
// certificates added, removed or changed between the configuration in
// service and another one (`lodectl routes diff`). Pure: no I/O.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "controlplane/config.h"

namespace lode::config {

struct ConfigDiff {
  struct Changed {
    std::string name;
    std::vector<std::string> changes;  // "pool: app -> api", one per field
  };
  struct Section {
    std::vector<std::string> added, removed;
    std::vector<Changed> changed;
    bool empty() const noexcept { return added.empty() && removed.empty() && changed.empty(); }
  };
  Section routes;        // action, listener, pool, certificate, names
  Section pools;         // backends (address, weight), algorithm, PROXY v2, backend TLS
  Section certificates;  // [[certificate]] files and OCSP settings, [[certificate_dir]] paths

  bool empty() const noexcept { return routes.empty() && pools.empty() && certificates.empty(); }
};

// `from` is the configuration in service, `to` the candidate. Entries are
// matched by name and listed in `to`'s order (removed ones in `from`'s).
ConfigDiff diff_configs(const Config& from, const Config& to);

}  // namespace lode::config

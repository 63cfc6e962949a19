#include "tools/lodectl/check.h"

#include <chrono>
#include <ostream>
#include <string>
#include <vector>

#include "controlplane/cert_catalog.h"
#include "controlplane/config.h"
#include "controlplane/route_tables.h"

namespace lode::tools {

int check_config(const std::string& path, std::ostream& out, std::ostream& err, bool certificates) {
  auto cfg = config::load_config_file(path);
  if (!cfg) {
    for (const auto& e : cfg.error()) err << e.to_string() << '\n';
    err << path << ": " << cfg.error().size() << " error(s)\n";
    return 1;
  }
  auto tables = config::build_route_tables(*cfg);
  if (!tables) {
    for (const auto& e : tables.error()) err << e.to_string() << '\n';
    err << path << ": " << tables.error().size() << " error(s)\n";
    return 1;
  }
  // Certificates: loaded and validated exactly as the control plane does at
  // start (key, chain, expiry, names the routes serve).
  std::string loaded = "certificates not checked";
  if (certificates) {
    auto trust = cp::CertTrust::load(cp::validation_for(*cfg));
    if (!trust) {
      err << path << ": [control]: " << trust.error() << '\n';
      return 1;
    }
    std::vector<std::string> warnings;
    const auto now = std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
    auto certs = cp::load_certificates(*cfg, *trust, now, warnings);
    for (const auto& w : warnings) err << "warning: " << w << '\n';
    if (!certs) {
      for (const auto& e : certs.error()) err << e << '\n';
      err << path << ": " << certs.error().size() << " error(s)\n";
      return 1;
    }
    loaded = std::to_string(certs->size()) + " certificates loaded and valid";
  }
  size_t names = 0, bytes = 0;
  for (const auto& t : *tables) {
    names += t.names;
    bytes += t.table.size();
  }
  out << path << ": ok: " << cfg->listeners.size() << " listener(s), " << cfg->routes.size() << " route(s), "
      << names << " name(s), " << cfg->pools.size() << " pool(s), " << cfg->certificates.size()
      << " certificate(s), " << cfg->certificate_dirs.size() << " certificate dir(s) (" << loaded
      << "); route tables " << bytes << " bytes\n";
  return 0;
}

}  // namespace lode::tools

#include "tools/lodectl/check.h"

#include <ostream>

#include "controlplane/config.h"
#include "controlplane/route_tables.h"

namespace lode::tools {

int check_config(const std::string& path, std::ostream& out, std::ostream& err) {
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
  size_t names = 0, bytes = 0;
  for (const auto& t : *tables) {
    names += t.names;
    bytes += t.table.size();
  }
  out << path << ": ok: " << cfg->listeners.size() << " listener(s), " << cfg->routes.size() << " route(s), "
      << names << " name(s), " << cfg->pools.size() << " pool(s), " << cfg->certificates.size()
      << " certificate(s), " << cfg->certificate_dirs.size() << " certificate dir(s); route tables " << bytes
      << " bytes\n";
  return 0;
}

}  // namespace lode::tools

// Builds each listener's flat SNI route table from a validated Config. The
// route records index the config's pools and certificates:
//   pool: index into Config::pools;
//   cert: index into Config::certificates, then Config::certificate_dirs
//         (i >= certificates.size() names certificate_dirs[i - size]).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "controlplane/config.h"
#include "controlplane/route_table_builder.h"

namespace lode::config {

struct ListenerTable {
  std::string listener;
  route::FlatTable table;
  size_t names = 0;
};

// Each table's hash seed is drawn at random (RouteTableBuilder()), or is
// `hash_seed` where given: reproducible tables for tests and fuzzing.
Result<std::vector<ListenerTable>, ConfigErrors> build_route_tables(const Config& cfg,
                                                                    std::optional<uint64_t> hash_seed = std::nullopt);

}  // namespace lode::config

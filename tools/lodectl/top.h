// `lodectl top`: a live terminal view of a running Lodestone, from the admin
// API's "stats" counters sampled every interval: per route handshakes/s,
// errors/s, bytes/s and open connections; per worker accepts/s, open
// connections and handshakes/s; the names refused last. Redraws in place on a
// terminal; frames one after another otherwise (or JSON lines with --json).
//
//   lodectl [--socket PATH] top [--interval SECONDS] [--count N] [--json]
//
// --count N stops after N frames (default: until interrupted on a terminal,
// 1 otherwise). Exit codes as the other admin commands (tools/lodectl/admin.h).
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "lodestone/json_reader.h"

namespace lode::tools {

int top_main(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err);

// One frame from two "stats" answers `dt_s` seconds apart (exposed for tests).
struct TopRoute {
  std::string listener, route;
  double handshakes_per_s = 0, errors_per_s = 0, bytes_in_per_s = 0, bytes_out_per_s = 0, connections_per_s = 0;
  uint64_t active = 0;
};
struct TopWorker {
  uint32_t worker = 0;
  double accepts_per_s = 0, handshakes_per_s = 0;
  uint64_t active = 0;
};
struct TopFrame {
  uint64_t generation = 0;
  double interval_s = 0;
  std::vector<TopRoute> routes;    // busiest first
  std::vector<TopWorker> workers;
  std::vector<std::pair<std::string, std::string>> refused;  // (reason, name), newest first
};
TopFrame top_frame(const JsonValue& before, const JsonValue& after, double dt_s);
void print_top(std::ostream& out, const TopFrame& f, bool json, size_t max_routes);

}  // namespace lode::tools

// `lodectl check CONFIG` / `lodestone check CONFIG`: offline validation with
// the same messages as start-up: the configuration, the route tables, and
// every certificate loaded and validated as the control plane would.
#pragma once

#include <iosfwd>
#include <string>

namespace lode::tools {

// 0: valid (a summary is printed); 1: errors (each on its own line: file,
// line, column, key, what was expected).
// `certificates` false: the configuration and route tables only (a file
// written for another machine, whose certificate paths do not exist here).
int check_config(const std::string& path, std::ostream& out, std::ostream& err, bool certificates = true);

}  // namespace lode::tools

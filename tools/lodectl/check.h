// `lodectl check CONFIG` / `lodestone check CONFIG`: offline validation with
// the same messages as start-up.
#pragma once

#include <iosfwd>
#include <string>

namespace lode::tools {

// 0: valid (a summary is printed); 1: errors (each on its own line: file,
// line, column, key, what was expected).
int check_config(const std::string& path, std::ostream& out, std::ostream& err);

}  // namespace lode::tools

// `lodectl explain`: why did this client land there? Reads ClientHellos (raw
// files, or every TCP flow of a pcap), prints per hello one JSON line with
// the parse result and, given a config, the route it takes and why.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace lode::tools {

struct ExplainOptions {
  std::string config;    // optional
  std::string listener;  // optional: force a listener by name
  bool pcap = false;     // inputs are pcap files
  std::vector<std::string> inputs;
};

// Returns the process exit code: 0 when every input was read (whatever the
// hellos' verdicts), 1 on an unreadable input or a bad config, 2 on usage.
int run_explain(const ExplainOptions& opt, std::ostream& out, std::ostream& err);

// argv after "explain".
int explain_main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace lode::tools

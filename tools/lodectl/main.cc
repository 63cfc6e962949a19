// lodectl: the operator's command line.
#include <algorithm>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "tools/lodectl/admin.h"
#include "tools/lodectl/check.h"
#include "tools/lodectl/explain.h"
#include "tools/lodectl/top.h"

namespace {

int usage(std::ostream& os, int rc) {
  os << "usage: lodectl <command> [args]\n"
        "  explain [--config FILE] [--listener NAME] [--pcap] INPUT...   parse ClientHellos, show the route and why\n"
        "  check CONFIG [--skip-certificates]                            validate a configuration offline\n"
        "  [--socket PATH] [--json] status                               a running Lodestone: version, generation, load\n"
        "  [--socket PATH] [--json] certs list [NAME]                    certificates, expiry, revocation, staples\n"
        "  [--socket PATH] [--json] certs replace NAME --cert F --key F  validate and serve a new certificate now\n"
        "  [--socket PATH] [--json] certs add NAME --cert F --key F      a new certificate that routes can name\n"
        "  [--socket PATH] [--json] certs rm NAME                        remove one added with certs add (unused)\n"
        "  [--socket PATH] [--json] ocsp status|refresh [NAME]           OCSP/CRL state; fetch now\n"
        "  [--socket PATH] [--json] tickets rotate                       a new session ticket key\n"
        "  [--socket PATH] [--json] routes reload [--dry-run]            re-read the configuration (SIGHUP)\n"
        "  [--socket PATH] [--json] routes reload CONFIG [--dry-run]     validate CONFIG, apply it, re-read it from now on\n"
        "  [--socket PATH] [--json] routes show [NAME]                   the route, certificate and pool a name gets, why\n"
        "  [--socket PATH] [--json] routes diff CONFIG | routes rollback what a reload would change; the previous config\n"
        "  [--socket PATH] [--json] backends list [POOL]                 health, drain, weight of each backend\n"
        "  [--socket PATH] [--json] backends drain|enable POOL BACKEND   no new connections / take them again\n"
        "  [--socket PATH] [--json] backends weight POOL BACKEND N       override the configured weight (1..65535)\n"
        "  [--socket PATH] [--json] drain-node [--cancel] | undrain      withdraw the VIPs (BGP), keep serving; undo\n"
        "  [--socket PATH] top [--interval S] [--count N] [--json]       live per-route and per-worker rates\n"
        "  --timeout SECONDS with the commands above: how long to wait for the answer (default 5 s for\n"
        "    status, lists and show; 120 s for the rest, which may wait for every worker to take a generation)\n"
        "exit codes: 0 ok, 1 refused by Lodestone, 2 usage, 3 not running, 4 permission denied,\n"
        "            5 no answer in time (Lodestone runs; a command that changes state may still be applied)\n";
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage(std::cerr, 2);
  const std::string cmd = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  if (cmd == "--help" || cmd == "-h" || cmd == "help") return usage(std::cout, 0);
  if (cmd == "explain") return lode::tools::explain_main(args, std::cout, std::cerr);
  // top takes --socket/--json itself, before or after the word.
  if (std::find(argv + 1, argv + argc, std::string_view("top")) != argv + argc) {
    return lode::tools::top_main(std::vector<std::string>(argv + 1, argv + argc), std::cout, std::cerr);
  }
  if (lode::tools::is_admin_command(cmd) || cmd == "--json" || cmd == "--socket" || cmd == "--timeout") {
    return lode::tools::admin_main(std::vector<std::string>(argv + 1, argv + argc), std::cout, std::cerr);
  }
  if (cmd == "check") {
    const bool skip = args.size() == 2 && args[1] == "--skip-certificates";
    if (args.size() != 1 && !skip) {
      std::cerr << "usage: lodectl check CONFIG [--skip-certificates]\n";
      return 2;
    }
    return lode::tools::check_config(args[0], std::cout, std::cerr, !skip);
  }
  std::cerr << "lodectl: unknown command '" << cmd << "'\n";
  return usage(std::cerr, 2);
}

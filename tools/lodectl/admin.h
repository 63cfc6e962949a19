// lodectl's commands that talk to a running Lodestone through the control
// plane's admin socket (controlplane/admin_server.h):
//
//   lodectl [--socket PATH] [--json] status
//   lodectl ... certs list [NAME]
//   lodectl ... ocsp status|refresh [NAME]
//   lodectl ... tickets rotate
//   lodectl ... routes reload [--dry-run]
//   lodectl ... routes diff CONFIG
//   lodectl ... routes rollback
//
// The socket: --socket, else $LODESTONE_ADMIN_SOCKET, else
// /run/lodestone/admin.sock. Human output by default, the API's JSON line
// with --json. Exit codes scripts can trust: below. How long lodectl waits
// for the answer: command_kind() below, or --timeout SECONDS.
#pragma once

#include <chrono>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

namespace lode::tools {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;  // the daemon refused (bad config, unknown name, ...)
inline constexpr int kExitUsage = 2;
inline constexpr int kExitDown = 3;    // Lodestone is not running (no socket, refused)
inline constexpr int kExitDenied = 4;  // permission denied
// Asked, but no answer in time: Lodestone runs, and a command that changes
// state may still be applied (check before repeating it).
inline constexpr int kExitNoAnswer = 5;


// What a command (the API's "cmd") does to the running Lodestone, and so how
// long lodectl waits for its answer: 5 s for what only reads; 120 s for what
// changes state (reload, rollback and certs add|replace answer once the
// generation is in service on every worker, after validating every
// certificate: 22 s for 100,000 of them) or validates a whole configuration
// (routes diff, routes reload --dry-run).
struct CommandKind {
  std::chrono::seconds timeout;
  bool changes_state = false;
};
inline constexpr std::chrono::seconds kReadTimeout{5};
inline constexpr std::chrono::seconds kChangeTimeout{120};
CommandKind command_kind(std::string_view cmd, bool dry_run);

// One request to the admin socket and its one-line JSON answer; exit_code
// non-zero (kExitDown, kExitDenied, kExitUsage, kExitNoAnswer) with `error`
// when the daemon could not be asked or did not answer within `timeout`.
struct AdminCall {
  int exit_code = 0;
  std::string reply;
  std::string error;
};
AdminCall admin_call(const std::string& socket_path, const std::string& request,
                     std::chrono::milliseconds timeout = kReadTimeout);
// --socket's value when given, else $LODESTONE_ADMIN_SOCKET, else the default.
std::string admin_socket_path(const std::string& flag);

bool is_admin_command(const std::string& cmd);
int admin_main(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err);

}  // namespace lode::tools

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
// with --json. Exit codes scripts can trust: below.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace lode::tools {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;  // the daemon refused (bad config, unknown name, ...)
inline constexpr int kExitUsage = 2;
inline constexpr int kExitDown = 3;    // Lodestone is not running (no socket, refused)
inline constexpr int kExitDenied = 4;  // permission denied

// One request to the admin socket and its one-line JSON answer; exit_code
// non-zero (kExitDown, kExitDenied, kExitUsage) with `error` when the daemon
// could not be asked.
struct AdminCall {
  int exit_code = 0;
  std::string reply;
  std::string error;
};
AdminCall admin_call(const std::string& socket_path, const std::string& request);
// --socket's value when given, else $LODESTONE_ADMIN_SOCKET, else the default.
std::string admin_socket_path(const std::string& flag);

bool is_admin_command(const std::string& cmd);
int admin_main(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err);

}  // namespace lode::tools

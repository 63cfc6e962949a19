// systemd's service readiness protocol (sd_notify(3), "Type=notify"), spoken
// directly: one datagram of "KEY=VALUE" lines to the AF_UNIX socket named by
// $NOTIFY_SOCKET. The protocol is a documented stable interface, so the
// dataplane needs no libsystemd for four messages, and a Lodestone started by
// anything else (no NOTIFY_SOCKET) sends nothing.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <string>
#include <string_view>

#include "lodestone/result.h"

namespace lode::app {

class ServiceNotifier {
 public:
  // From $NOTIFY_SOCKET ("/path" or "@abstract"), which it then removes from
  // the environment: the control plane (a child) must not speak for the
  // service. Not set: a notifier that sends nothing. Set but unusable (a
  // relative path, vsock, too long): an error naming it.
  static Result<ServiceNotifier, std::string> from_environment();

  bool enabled() const noexcept { return len_ != 0; }
  // Workers listen and the first snapshot is in service (or the reload
  // asked for by SIGHUP is over: applied or refused).
  Result<void, std::string> ready() const { return send("READY=1"); }
  // SIGHUP taken: RELOADING=1 with the CLOCK_MONOTONIC time systemd matches
  // it by (Type=notify-reload wants it; older systemd ignores it).
  Result<void, std::string> reloading() const;
  Result<void, std::string> stopping() const { return send("STOPPING=1"); }
  // One datagram; nothing when not enabled.
  Result<void, std::string> send(std::string_view state) const;

  // The parsing alone, for callers that hold the value already.
  static Result<ServiceNotifier, std::string> for_socket(std::string_view notify_socket);

 private:
  sockaddr_un addr_{};
  socklen_t len_ = 0;  // 0: disabled
};

}  // namespace lode::app

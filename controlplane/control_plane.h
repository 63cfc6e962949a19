// The control-plane process: it owns the configuration, the certificates and
// their keys, OCSP responses and session ticket keys, and publishes them to
// the dataplane as snapshot segments (include/lodestone/snapshot.h) over the
// control channel (include/lodestone/control_channel.h).
//
// Started by `lodestone run` (the dataplane) as `lodestone controlplane
// CONFIG --socket PATH`, restarted by it when it dies. On every connection it
// publishes a full segment, then deltas: one certificate file changed on disk
// (inotify) is one certificate record; a refreshed OCSP response is one
// staple record; a ticket-key rotation is one record. SIGHUP re-reads the
// configuration and every certificate and publishes what changed.
//
// Certificates are validated before they are published (controlplane/
// cert_bundle.h); an invalid one is refused with a message and the one in
// service stays. OCSP (controlplane/ocsp.h): before the first publication
// every certificate with an OCSP URL gets a response (from the disk cache
// when it is still good, else fetched, for at most [ocsp] startup_wait_ms),
// so the first handshake after a start is stapled; responses are refreshed in
// the background before nextUpdate, with backoff on failure, and written to
// the disk cache. Policy: lenient staples when it can; strict (or a
// must-staple certificate) is withheld without a valid staple; a revoked
// certificate is withheld by default ([ocsp] on_revoked = "serve" keeps it,
// unstapled) and logged as an error event every time it is seen.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lodestone/result.h"

namespace lode::cp {

struct ControlPlaneOptions {
  std::string config_path;
  std::string socket_path;
  std::string admin_socket;  // the admin API (lodectl); empty: none
  // One JSON object per line (stderr in the process).
  std::function<void(const std::string&)> event;
};

class ControlPlane {
 public:
  // Loads the configuration, the certificates, the ticket keys and the
  // startup OCSP responses; every error is a complete message.
  static Result<std::unique_ptr<ControlPlane>, std::vector<std::string>> load(ControlPlaneOptions opt);
  ~ControlPlane();
  ControlPlane(const ControlPlane&) = delete;
  ControlPlane& operator=(const ControlPlane&) = delete;

  // Connects to the dataplane and serves until SIGTERM/SIGINT or until the
  // dataplane goes away. Returns the process exit status.
  int run();

  struct Impl;

 private:
  explicit ControlPlane(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lode::cp

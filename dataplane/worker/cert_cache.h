// A worker's certificates from the control plane's snapshot: the entry a
// terminate route's binding names, and the SSL_CTX built from its PEM bytes.
//
// SSL_CTXs are built lazily, on the first handshake that needs one, and kept
// per worker by record key with the entry's version and the TLS settings'
// version: an update of one certificate rebuilds that one SSL_CTX (on its next
// use), never the others, and 100,000 loaded certificates cost nothing until
// they are served. Connections keep their SSL_CTX alive (OpenSSL reference
// counts), so dropping a cached one never pulls it from under a handshake.
//
// OCSP: every SSL_CTX built here answers status_request through a callback
// that staples the current response of the entry the connection was routed
// to (StapleState, attached to the SSL), if it is good and not past its
// nextUpdate at that moment; TLS 1.2 gets a CertificateStatus message, TLS
// 1.3 the certificate entry's status_request extension.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "dataplane/control/snapshot_state.h"
#include "dataplane/worker/runtime.h"
#include "lodestone/result.h"

namespace lode::worker {

// Per connection, from routing to the end of the handshake.
struct StapleState {
  control::CertEntryPtr entry;  // keeps the staple's mapping alive
  bool requested = false;       // the client sent status_request
  bool stapled = false;         // a response went out
};

// The entry for a route's binding and the routed host name: a named
// certificate, or the directory's exact file for the host, else its
// wildcard file for the parent domain. nullptr when there is none.
struct FoundCert {
  const control::CertEntryPtr* entry = nullptr;
  std::string key;
};
FoundCert find_cert(const control::Snapshot& snap, const CertBinding& binding, std::string_view host);

class CertCache {
 public:
  // The SSL_CTX for `entry` (stored under `key`), built if missing or stale.
  // A version that failed to build fails again without another attempt
  // until the entry (or the TLS settings) change.
  Result<SSL_CTX*, std::string> get(std::string_view key, const control::CertEntry& entry, const Runtime& rt);
  // Drops cached contexts whose key left the snapshot or whose version moved.
  void sweep(const control::Snapshot& snap);
  size_t size() const noexcept { return map_.size(); }
  uint64_t builds() const noexcept { return builds_; }

 private:
  struct Cached {
    uint64_t version = 0;
    uint64_t tls_version = 0;
    tls::SslCtxPtr ctx;  // null: the build failed with `error`
    std::string error;
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, Cached, Hash, std::equal_to<>> map_;
  uint64_t builds_ = 0;
};

// Attaches the connection's staple state to its SSL (before the handshake).
void attach_staple_state(SSL* ssl, StapleState* state) noexcept;

}  // namespace lode::worker

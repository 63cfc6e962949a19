// Per-worker counters: written by their worker only (relaxed atomics, one
// cache line block per worker), summed by whoever reads them.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

namespace lode::worker {

#define LODE_WORKER_COUNTERS(X)                                                  \
  X(accepted, "connections accepted")                                          \
  X(refused_over_limit, "connections refused: worker at its connection cap")  \
  X(accept_errors, "accept errors (EMFILE, ENFILE, ...)")                       \
  X(active, "connections open now")                                             \
  X(hello_done, "ClientHellos parsed")                                          \
  X(hello_errors, "ClientHellos refused as malformed")                          \
  X(hello_not_tls, "connections that were not TLS (HTTP, SSLv2, other)")       \
  X(hello_timeouts, "connections cut at the hello timeout")                     \
  X(sni_ip_literal, "hellos with an IP literal as SNI (treated as no SNI)")     \
  X(proxy_errors, "malformed PROXY protocol headers")                          \
  X(routed_terminate, "connections routed to terminate")                        \
  X(routed_passthrough, "connections routed to passthrough")                    \
  X(routed_reject, "connections rejected by a route")                           \
  X(no_route, "connections with no matching route and no default")            \
  X(no_certificate, "terminate routes with no certificate for the name")       \
  X(cert_withheld, "handshakes refused: the control plane withholds the certificate") \
  X(cert_ctx_builds, "certificate SSL_CTXs built from the snapshot")           \
  X(cert_ctx_errors, "certificate SSL_CTXs that failed to build")              \
  X(staples_requested, "handshakes whose client asked for an OCSP staple")     \
  X(staples_sent, "handshakes that got an OCSP staple")                        \
  X(handshakes, "TLS handshakes completed (client side)")                      \
  X(handshakes_resumed, "of which resumed")                                    \
  X(handshake_errors, "TLS handshakes that failed")                            \
  X(backend_connects, "backend connections established")                       \
  X(backend_connect_errors, "backend connect failures")                        \
  X(backend_retries, "connects retried on another backend")                    \
  X(backend_tls_errors, "backend TLS handshakes or verifications that failed") \
  X(idle_timeouts, "connections closed by the idle timeout")                   \
  X(resets, "connections aborted by an error or a reset")                      \
  X(ktls_unavailable, "kTLS offers declined: the kernel has no tls ULP")       \
  X(splice_relays, "passthrough relays moved by splice (no copy to user space)") \
  X(splice_fallbacks, "passthrough relays copied in user space: no pipes")    \
  X(bytes_client_in, "bytes received from clients")                            \
  X(bytes_client_out, "bytes sent to clients")                                 \
  X(bytes_backend_in, "bytes received from backends")                          \
  X(bytes_backend_out, "bytes sent to backends")

struct alignas(64) WorkerStats {
#define LODE_DECLARE(name, help) std::atomic<uint64_t> name{0};
  LODE_WORKER_COUNTERS(LODE_DECLARE)
#undef LODE_DECLARE
};

inline void bump(std::atomic<uint64_t>& c, uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
inline void drop(std::atomic<uint64_t>& c, uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
}

}  // namespace lode::worker

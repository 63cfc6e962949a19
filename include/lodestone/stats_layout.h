// The dataplane's counters in shared memory, for the control plane (the
// admin API, `lodectl status`, Prometheus /metrics) to read.
//
// The dataplane creates one memfd (mode 0600) at start: a StatsHeader, then
// one cache-aligned block per worker holding the counters below as 64-bit
// atomics, each written only by its worker (relaxed stores, no shared writes
// on the hot path). It passes the memfd to every control plane that attaches
// (control channel message kStats); the control plane maps it read-only,
// checks the header once (magic, layout version, sizes against the file
// size) and sums the blocks whenever it is asked.
//
// The counter list is the contract: its order is the layout. New counters go
// at the end and bump kStatsLayoutVersion.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

namespace lode::stats {

// X(name, kind, help): kind is counter (only grows) or gauge.
#define LODE_WORKER_COUNTERS(X)                                                                    \
  X(accepted, counter, "connections accepted")                                                    \
  X(refused_over_limit, counter, "connections refused: worker at its connection cap")             \
  X(accept_errors, counter, "accept errors (EMFILE, ENFILE, ...)")                                \
  X(active, gauge, "connections open now")                                                        \
  X(hello_done, counter, "ClientHellos parsed")                                                   \
  X(hello_errors, counter, "ClientHellos refused as malformed")                                   \
  X(hello_not_tls, counter, "connections that were not TLS (HTTP, SSLv2, other)")                 \
  X(hello_timeouts, counter, "connections cut at the hello timeout")                              \
  X(sni_ip_literal, counter, "hellos with an IP literal as SNI (treated as no SNI)")              \
  X(proxy_errors, counter, "malformed PROXY protocol headers")                                    \
  X(routed_terminate, counter, "connections routed to terminate")                                 \
  X(routed_passthrough, counter, "connections routed to passthrough")                             \
  X(routed_reject, counter, "connections rejected by a route")                                    \
  X(no_route, counter, "connections with no matching route and no default")                      \
  X(no_certificate, counter, "terminate routes with no certificate for the name")                 \
  X(cert_withheld, counter, "handshakes refused: the control plane withholds the certificate")    \
  X(cert_ctx_builds, counter, "certificate SSL_CTXs built from the snapshot")                     \
  X(cert_ctx_errors, counter, "certificate SSL_CTXs that failed to build")                        \
  X(staples_requested, counter, "handshakes whose client asked for an OCSP staple")               \
  X(staples_sent, counter, "handshakes that got an OCSP staple")                                  \
  X(handshakes, counter, "TLS handshakes completed (client side)")                                \
  X(handshakes_resumed, counter, "of which resumed")                                              \
  X(handshake_errors, counter, "TLS handshakes that failed")                                      \
  X(backend_connects, counter, "backend connections established")                                \
  X(backend_connect_errors, counter, "backend connect failures")                                  \
  X(backend_retries, counter, "connects retried on another backend")                              \
  X(backend_tls_errors, counter, "backend TLS handshakes or verifications that failed")           \
  X(idle_timeouts, counter, "connections closed by the idle timeout")                             \
  X(resets, counter, "connections aborted by an error or a reset")                                \
  X(ktls_unavailable, counter, "kTLS offers declined: the kernel has no tls ULP")                 \
  X(splice_relays, counter, "passthrough relays moved by splice (no copy to user space)")         \
  X(splice_fallbacks, counter, "passthrough relays copied in user space: no pipes")               \
  X(bytes_client_in, counter, "bytes received from clients")                                      \
  X(bytes_client_out, counter, "bytes sent to clients")                                           \
  X(bytes_backend_in, counter, "bytes received from backends")                                    \
  X(bytes_backend_out, counter, "bytes sent to backends")                                        \
  X(ktls_tx, counter, "client connections whose TLS records the kernel encrypts (kTLS TX)")       \
  X(ktls_rx, counter, "client connections whose TLS records the kernel decrypts (kTLS RX)")       \
  X(ktls_declined, counter, "kTLS hand-overs declined or refused (busy socket, setsockopt error)") \
  X(ktls_key_updates, counter, "kTLS connections ended by a TLS 1.3 KeyUpdate the kernel cannot follow")

// One worker's block.
struct alignas(64) WorkerStats {
#define LODE_DECLARE(name, kind, help) std::atomic<uint64_t> name{0};
  LODE_WORKER_COUNTERS(LODE_DECLARE)
#undef LODE_DECLARE
};
static_assert(std::atomic<uint64_t>::is_always_lock_free, "counters are read from another process");

struct CounterInfo {
  std::string_view name;
  bool gauge;
  std::string_view help;
};
inline constexpr std::array kCounters = {
#define LODE_INFO(name, kind, help) CounterInfo{#name, std::string_view(#kind) == "gauge", help},
    LODE_WORKER_COUNTERS(LODE_INFO)
#undef LODE_INFO
};
inline constexpr size_t kCounterCount = kCounters.size();
static_assert(sizeof(WorkerStats) >= kCounterCount * 8);

inline constexpr std::array<char, 8> kStatsMagic = {'L', 'O', 'D', 'E', 'S', 'T', 'A', 'T'};
inline constexpr uint32_t kStatsLayoutVersion = 2;
inline constexpr uint32_t kMaxWorkers = 4096;

struct StatsHeader {
  std::array<char, 8> magic;
  uint32_t layout_version;
  uint32_t header_size;   // offset of the first worker block (multiple of 64)
  uint32_t workers;
  uint32_t counters;      // kCounterCount of the writer
  uint32_t block_size;    // sizeof(WorkerStats) of the writer
  uint32_t reserved;
  uint64_t started_unix_ms;
  uint64_t pid;
};
static_assert(sizeof(StatsHeader) <= 64);
inline constexpr size_t kStatsHeaderSize = 64;

inline size_t stats_size(uint32_t workers) noexcept { return kStatsHeaderSize + size_t{workers} * sizeof(WorkerStats); }

// A validated read-only view of a stats segment.
class StatsView {
 public:
  StatsView() = default;
  static bool open(std::span<const std::byte> bytes, StatsView& out) noexcept {
    StatsHeader h;
    if (bytes.size() < kStatsHeaderSize) return false;
    std::memcpy(&h, bytes.data(), sizeof h);
    if (h.magic != kStatsMagic || h.layout_version != kStatsLayoutVersion || h.header_size != kStatsHeaderSize ||
        h.counters != kCounterCount || h.block_size != sizeof(WorkerStats) || h.workers > kMaxWorkers ||
        stats_size(h.workers) > bytes.size()) {
      return false;
    }
    out.bytes_ = bytes;
    out.header_ = h;
    return true;
  }
  uint32_t workers() const noexcept { return header_.workers; }
  const StatsHeader& header() const noexcept { return header_; }
  // Counter `c` (index into kCounters) of worker `w`.
  uint64_t value(uint32_t w, size_t c) const noexcept {
    const auto* block = reinterpret_cast<const std::atomic<uint64_t>*>(bytes_.data() + kStatsHeaderSize +
                                                                       size_t{w} * sizeof(WorkerStats));
    return block[c].load(std::memory_order_relaxed);
  }
  uint64_t total(size_t c) const noexcept {
    uint64_t t = 0;
    for (uint32_t w = 0; w < header_.workers; ++w) t += value(w, c);
    return t;
  }

 private:
  std::span<const std::byte> bytes_;
  StatsHeader header_{};
};

}  // namespace lode::stats

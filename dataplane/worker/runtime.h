// What the workers serve: an immutable generation of listeners' route tables,
// backend pools and certificates. A new generation replaces the old one
// atomically (a new configuration, or new backend states from the snapshot);
// connections keep the generation they started with until they close.
// Copyable: a generation that only changes backend states shares the route
// tables, certificate bindings and TLS contexts of the one before.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/control/generation_slot.h"
#include "dataplane/route/backend_pool.h"
#include "dataplane/tls/backend_tls.h"
#include "dataplane/tls/tls_context.h"
#include "lodestone/route_table.h"
#include "lodestone/socket_address.h"

namespace lode::worker {

enum class ProxyAccept : uint8_t { kNone, kV1, kV2, kAny };

struct ListenerRuntime {
  std::string name;
  std::vector<SocketAddress> addresses;
  ProxyAccept proxy = ProxyAccept::kNone;
  uint32_t max_hello_bytes = 64 * 1024;
  bool defer_accept = false;  // TCP_DEFER_ACCEPT on its sockets (set when they are opened)
  // IPv4 address (host order) that alone may connect (the dpdk front's end
  // of its exception link, whose PROXY v2 headers are trusted); 0: anyone.
  uint32_t only_from_v4 = 0;
  // [listener] proxy_from: who may send the PROXY header; a peer outside is
  // cut at accept. Empty: anyone.
  std::vector<AddressPrefix> proxy_from;
  // The flat route table, shared by the generations built from one
  // configuration (a backend-state change copies the Runtime, not the table).
  std::shared_ptr<const std::vector<std::byte>> table_bytes;
  route::RouteTableView table;  // views *table_bytes
  // Stats series slot of each route (by route index; include/lodestone/
  // stats_layout.h); empty: not counted per route (no stats segment).
  std::vector<uint32_t> route_slots;
  // [[route]] max_connections by route index (0: no cap); empty: none.
  std::vector<uint32_t> route_caps;
};

// How a terminate route finds its certificate: a named certificate, or the
// host name looked up in a certificate directory (stone's %n pattern).
struct CertBinding {
  std::string name;        // certificate name, or directory id
  bool directory = false;
};

struct PoolRuntime {
  std::string name;
  // Built from `configured` with the control plane's backend states applied.
  std::shared_ptr<const route::BackendPool> pool;
  route::PoolSpec configured;  // as the configuration says (no state applied)
  bool send_proxy_v2 = false;
  std::shared_ptr<tls::BackendTlsContext> backend_tls;  // null: plaintext to the backend
  std::vector<uint32_t> backend_slots;  // stats series slot by backend index; empty: not counted
};

struct Timeouts {
  uint32_t hello_ms = 10'000;
  uint32_t connect_ms = 5'000;
  uint32_t idle_ms = 300'000;
  uint32_t drain_ms = 10'000;
  // Quiet allowed once one direction of a relayed connection has ended;
  // 0: the connection ends with its first direction.
  uint32_t half_closed_ms = 300'000;
};

struct Limits {
  uint32_t connections_per_worker = 16'384;
  uint32_t connect_retries = 2;
  uint64_t memory_per_worker = 1024ull << 20;  // bytes of connection buffers
  // Open connections of one client address (IPv4, IPv6 /64) over all
  // workers; 0: no limit.
  uint32_t connections_per_client = 0;
};

struct Runtime {
  uint64_t generation = 0;
  std::vector<ListenerRuntime> listeners;
  std::vector<PoolRuntime> pools;
  std::vector<CertBinding> certs;   // indexed by a route's cert index
  // What a worker builds a certificate's SSL_CTX with, from the snapshot.
  tls::TlsSettings tls;
  uint64_t tls_version = 0;  // changes when `tls` does: cached SSL_CTXs are rebuilt
  std::shared_ptr<tls::TicketKeys> ticket_keys;
  Timeouts timeouts;
  Limits limits;
  // The snapshot generation whose configuration this was built from (what
  // `lodectl routes reload` answers): the access log's "generation".
  uint64_t config_generation = 0;
  // The snapshot's config_version this was built from: a route's certificate
  // names mean what that configuration says, so they are looked up only in
  // a snapshot of the same configuration (a reload may give a name another
  // file).
  uint64_t config_version = 0;
  double log_sample = 1.0;  // [log] sample: the fraction of successful connections logged
};

// The process-wide current generation (see GenerationSlot).
using RuntimeSlot = control::GenerationSlot<Runtime>;

}  // namespace lode::worker

// A TLS worker: one thread, one io_uring, one SO_REUSEPORT listener per
// listen address. It reads each connection's ClientHello, routes it by SNI,
// then terminates TLS and relays to a backend, passes the bytes through, or
// rejects. The same worker serves the kernel front and (later) the dpdk
// front's exception interface.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/control/snapshot_state.h"
#include "dataplane/worker/client_counts.h"
#include "dataplane/worker/runtime.h"
#include "dataplane/worker/stats.h"
#include "lodestone/result.h"

namespace lode::worker {

struct WorkerOptions {
  uint32_t index = 0;
  int cpu = -1;                 // pin to this CPU; -1: not pinned
  unsigned ring_entries = 1024;
  unsigned recv_buffers = 1024;  // provided buffers (power of two)
  // 64 KiB, a loopback/TSO segment: a quarter of the receives (and the
  // window updates they send) of 16 KiB ones in bulk; about a quarter less CPU
  // per MB relayed. Mapped, not touched: a small receive uses a page.
  unsigned recv_buffer_size = 64 * 1024;
  size_t relay_cap = 256 * 1024;  // bytes queued per direction before reads pause
  // A passthrough direction is copied through the ring (recv/send: no system
  // call) until it has carried this many bytes, then spliced (no copy, but
  // two splice calls and a poll per chunk): a TLS handshake and small
  // exchanges go the cheap way, bulk the zero-copy one. 0: splice at once.
  uint64_t splice_after = 64 * 1024;
  // A spliced direction's pipe grows to this many bytes (F_SETPIPE_SZ) once
  // a splice fills its 64 KiB: bulk moves in up to this much per pair of
  // splice calls. What a slow receiver leaves in the pipe is bounded by it.
  // 64 KiB or less: pipes stay as the kernel makes them.
  uint32_t splice_pipe_max = 1024 * 1024;
  // The growth all of this worker's pipes may hold at once (bytes beyond
  // 64 KiB each): 8 MiB, eight bulk directions at 1 MiB. The kernel counts
  // pipe capacity against the user (fs.pipe-user-pages-soft).
  uint64_t splice_grow_budget = 8ull << 20;
  // Certificates and staples from the control plane (required to terminate
  // TLS; without it every terminate route answers no_certificate).
  const control::SnapshotSlot* snapshots = nullptr;
  // Where the counters live (the dataplane's shared stats segment); null:
  // inside the worker.
  WorkerStats* stats = nullptr;
  // This worker's per-route and per-backend series (indexed by the slots in
  // the runtime); null: not counted.
  stats::RouteSeries* route_series = nullptr;
  // Open connections per client address, shared by every worker of the
  // process ([limits] connections_per_client); null: the worker's own,
  // made when a limit is first configured.
  ClientCounts* client_counts = nullptr;
  stats::BackendSeries* backend_series = nullptr;
  // Every worker's route series (this one's included), read to enforce a
  // route's max_connections over all workers: the sum of their open gauges
  // (relaxed loads; each still written by its own worker only). Empty: the
  // cap counts this worker's connections alone.
  std::vector<const stats::RouteSeries*> all_route_series;
  // false: close and setsockopt as direct system calls even where the
  // io_uring could run them (tests: the paths an older kernel takes).
  bool ring_calls = true;
  // Our record layer, TLS 1.3: after this many records under one send key we
  // change it (KeyUpdate, update_not_requested). RFC 8446 5.5 bounds
  // AES-GCM at 2^24.5 full records per key; 2^24 leaves a margin and is
  // below ChaCha20-Poly1305's bound too. Tests make it small.
  uint64_t key_update_after = uint64_t{1} << 24;
};

// The access log: one JSON line per finished connection. A worker hands over
// its lines in batches ("line\nline\n"), at most every tick (100 ms) or
// every 16 KiB, from its own thread: no lock or write per connection.
using AccessLog = std::function<void(uint32_t worker, const std::string& lines)>;

class Worker {
 public:
  Worker(WorkerOptions opt, const RuntimeSlot& slot, AccessLog log);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Opens the listeners of the current runtime (SO_REUSEPORT).
  Result<void, std::string> open();
  // Starts the worker's thread, which creates its io_uring and runs the loop.
  Result<void, std::string> start();
  void wake();    // a new runtime generation is published
  void stop();    // stop accepting, drain up to the drain timeout, exit
  void join();

  const WorkerStats& stats() const noexcept;
  // The snapshot generation this worker has picked up (for "live on every
  // worker" checks).
  uint64_t snapshot_generation() const noexcept;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
};

// Whether the running kernel offers the TLS ULP (kTLS); probed once.
bool kernel_has_tls_ulp() noexcept;

}  // namespace lode::worker

// The dpdk front's process side: EAL, one port, one RX/TX queue pair and one
// FlowEngine per worker lcore (RSS spreads flows over the queues; each lcore
// owns its flow table, nothing is shared between lcores but the read-only
// runtime). No DPDK type appears here, so the rest of the process builds
// without DPDK's flags.
//
// Configuration ([dpdk] in the TOML file, see controlplane/config.h): the EAL
// arguments (vdevs such as net_tap / net_af_packet / net_ring in tests, PCI
// devices in production, --no-huge --no-pci where needed), the port, the flow
// table size. The EAL must be given at least two lcores: the main lcore stays
// with the caller; every other lcore polls one queue.
//
// The exception port (terminate): a second vdev whose other side is a kernel
// interface of this host (net_tap in tests; virtio_user over /dev/vhost-net
// in production, the kernel's vhost thread then moves the frames without a
// system call per burst). The front addresses that interface itself
// (kernel_address/prefix_len, up) and speaks on the link from `address`;
// the TLS workers listen on kernel_address (see handoff.h). Each lcore polls
// its queue of it beside its queue of the wire.
//
// Several lcores: the NIC's RSS (or the kernel, for a tap) picks the queue of
// a backend's or a worker's segment, not we; one that lands on an lcore
// that does not hold its flow is moved (the mbuf, no copy) to the lcore its
// local port names, through a single-producer/single-consumer ring per
// (from, to) pair, drained in the owner's poll loop (flow_engine_lcores.cc).
// On a NIC whose RSS is Toeplitz (a known driver, see toeplitz_driver in
// dpdk_front.cc) the port is configured with our own random key, its RETA
// read back, and the engines take local ports whose backend segments hash to
// their own queue, so those segments need no ring (EngineConfig::rss).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/front/flow_engine.h"
#include "lodestone/result.h"
#include "lodestone/stats_layout.h"

namespace lode::front {

struct DpdkSettings {
  std::vector<std::string> eal_args;  // without argv[0]
  uint16_t port = 0;
  uint32_t max_flows = 65536;         // per lcore
  uint16_t rx_ring = 1024, tx_ring = 1024;
  uint32_t mbufs = 8191;
  struct Exception {
    std::string vdev;       // empty: no exception port (terminate flows are reset)
    std::string interface;  // the kernel side the vdev creates
    uint32_t kernel_address = 0, address = 0;  // IPv4, host order
    uint32_t prefix_len = 30;
    uint16_t first_port = 0;
    uint16_t workers = 1;   // TLS workers listening behind it
  } exception;
  // Where the lcores publish their counters (the shared stats segment, for
  // /metrics); null: an area of the front's own.
  stats::FrontArea* stats = nullptr;
  // Lcore l's row of the per-route and per-backend series (entry l, when
  // there is one; the stats segment's rows after the workers'): the flows
  // the front routes itself.
  std::vector<stats::RouteSeries*> route_series;
  std::vector<stats::BackendSeries*> backend_series;
  // The passthrough backends' next hops ([dpdk] networks, gateway, gateway6).
  NextHops next_hops;
  // The SYN cookies' master secret ([dpdk] cookie_secret_file,
  // cookie_secret.h); none: a random one for this process.
  std::optional<std::array<uint8_t, 16>> cookie_secret;
};

class DpdkFront {
 public:
  // Initializes the EAL and the port and launches the lcores.
  static Result<std::unique_ptr<DpdkFront>, std::string> start(const DpdkSettings& s,
                                                               std::shared_ptr<const worker::Runtime> rt);
  ~DpdkFront();  // stop()s
  DpdkFront(const DpdkFront&) = delete;
  DpdkFront& operator=(const DpdkFront&) = delete;

  // A new routing generation for every lcore (picked up between bursts).
  void set_runtime(std::shared_ptr<const worker::Runtime> rt);
  // A new master secret for the SYN cookies (a reload): picked up with the
  // runtime; the previous one stays valid for a cookie's life.
  void set_cookie_secret(const std::array<uint8_t, 16>& secret);
  // Stops the lcores, the port and the EAL.
  void stop();

  // The sum over the lcores (each lcore's counters are its own; the sum may
  // lag a burst).
  FrontStats stats() const;
  size_t lcores() const;
  std::string port_name() const;
  MacAddr mac() const;
  // The exception port's driver name; empty without one.
  std::string exception_name() const;
  // How backend legs' local ports are chosen: "toeplitz, ..." when the
  // port's RSS is worked out in software (EngineConfig::rss), else
  // "port rule (why)"; "port rule for new legs (...)" once the NIC's own
  // hashes disagreed with ours (FlowEngine::check_nic_hash, any thread may ask).
  std::string rss_steering() const;

  struct Impl;

 private:
  explicit DpdkFront(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lode::front

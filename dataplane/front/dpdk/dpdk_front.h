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
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/front/flow_engine.h"
#include "lodestone/result.h"

namespace lode::front {

struct DpdkSettings {
  std::vector<std::string> eal_args;  // without argv[0]
  uint16_t port = 0;
  uint32_t max_flows = 65536;         // per lcore
  uint16_t rx_ring = 1024, tx_ring = 1024;
  uint32_t mbufs = 8191;
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
  // Stops the lcores, the port and the EAL.
  void stop();

  // The sum over the lcores (each lcore's counters are its own; the sum may
  // lag a burst).
  FrontStats stats() const;
  size_t lcores() const;
  std::string port_name() const;
  MacAddr mac() const;

  struct Impl;

 private:
  explicit DpdkFront(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lode::front

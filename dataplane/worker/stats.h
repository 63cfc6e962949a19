// Per-worker counters (the layout is the contract in
// include/lodestone/stats_layout.h: the control plane reads them from shared
// memory). Written by their worker only, with relaxed stores.
#pragma once

#include <atomic>
#include <cstdint>

#include "lodestone/stats_layout.h"

namespace lode::worker {

using stats::WorkerStats;

inline void bump(std::atomic<uint64_t>& c, uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
inline void drop(std::atomic<uint64_t>& c, uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
}

}  // namespace lode::worker

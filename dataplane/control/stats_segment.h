// The dataplane's counters in a memfd (include/lodestone/stats_layout.h):
// created at start with one block per worker, handed to each control plane
// that attaches (ControlLink), mapped read-only there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "lodestone/result.h"
#include "lodestone/stats_layout.h"

namespace lode::control {

class StatsSegment {
 public:
  static Result<StatsSegment, std::string> create(uint32_t workers);
  StatsSegment(StatsSegment&& o) noexcept;
  StatsSegment& operator=(StatsSegment&&) = delete;
  StatsSegment(const StatsSegment&) = delete;
  ~StatsSegment();

  stats::WorkerStats* worker(uint32_t i) noexcept;
  int fd() const noexcept { return fd_; }
  uint32_t workers() const noexcept { return workers_; }

 private:
  StatsSegment() = default;
  int fd_ = -1;
  void* base_ = nullptr;
  size_t size_ = 0;
  uint32_t workers_ = 0;
};

}  // namespace lode::control

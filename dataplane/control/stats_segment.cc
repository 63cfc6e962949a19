#include "dataplane/control/stats_segment.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <new>

namespace lode::control {

Result<StatsSegment, std::string> StatsSegment::create(uint32_t workers) {
  if (workers == 0 || workers > stats::kMaxWorkers) return unexpected(std::string("stats segment: bad worker count"));
  StatsSegment s;
  s.workers_ = workers;
  s.size_ = stats::stats_size(workers);
  s.fd_ = memfd_create("lodestone-stats", MFD_CLOEXEC);
  if (s.fd_ < 0) return unexpected(std::string("stats segment: memfd_create: ") + std::strerror(errno));
  fchmod(s.fd_, 0600);
  if (ftruncate(s.fd_, static_cast<off_t>(s.size_)) != 0) {
    return unexpected(std::string("stats segment: ftruncate: ") + std::strerror(errno));
  }
  s.base_ = mmap(nullptr, s.size_, PROT_READ | PROT_WRITE, MAP_SHARED, s.fd_, 0);
  if (s.base_ == MAP_FAILED) {
    s.base_ = nullptr;
    return unexpected(std::string("stats segment: mmap: ") + std::strerror(errno));
  }
  stats::StatsHeader h{};
  h.magic = stats::kStatsMagic;
  h.layout_version = stats::kStatsLayoutVersion;
  h.header_size = stats::kStatsHeaderSize;
  h.workers = workers;
  h.counters = static_cast<uint32_t>(stats::kCounterCount);
  h.block_size = sizeof(stats::WorkerStats);
  h.started_unix_ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count());
  h.pid = static_cast<uint64_t>(getpid());
  std::memcpy(s.base_, &h, sizeof h);
  for (uint32_t i = 0; i < workers; ++i) new (s.worker(i)) stats::WorkerStats();
  return s;
}

StatsSegment::StatsSegment(StatsSegment&& o) noexcept
    : fd_(o.fd_), base_(o.base_), size_(o.size_), workers_(o.workers_) {
  o.fd_ = -1;
  o.base_ = nullptr;
}

StatsSegment::~StatsSegment() {
  if (base_ != nullptr) munmap(base_, size_);
  if (fd_ >= 0) close(fd_);
}

stats::WorkerStats* StatsSegment::worker(uint32_t i) noexcept {
  return reinterpret_cast<stats::WorkerStats*>(static_cast<std::byte*>(base_) + stats::kStatsHeaderSize +
                                               size_t{i} * sizeof(stats::WorkerStats));
}

}  // namespace lode::control

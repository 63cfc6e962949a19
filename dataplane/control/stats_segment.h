// The dataplane's counters in a memfd (include/lodestone/stats_layout.h):
// created at start with one block per worker and the per-route and
// per-backend series, handed to each control plane that attaches
// (ControlLink), mapped read-only there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lodestone/result.h"
#include "lodestone/stats_layout.h"

namespace lode::control {

// Whether a stats memfd received from the other process has a size that
// cannot change (F_SEAL_SHRINK and F_SEAL_GROW): only then is a mapping of
// it safe to read (a shrunk memfd turns the next access into SIGBUS).
bool stats_size_sealed(int fd) noexcept;

class StatsSegment {
 public:
  // front_rows: series rows for the dpdk front's lcores (routes(workers + l)
  // is lcore l's); 0 with the kernel front.
  static Result<StatsSegment, std::string> create(uint32_t workers, uint32_t route_slots = stats::kRouteSlots,
                                                  uint32_t backend_slots = stats::kBackendSlots,
                                                  uint32_t front_rows = 0);
  StatsSegment(StatsSegment&& o) noexcept;
  StatsSegment& operator=(StatsSegment&&) = delete;
  StatsSegment(const StatsSegment&) = delete;
  ~StatsSegment();

  stats::WorkerStats* worker(uint32_t i) noexcept;
  // The dpdk front's lcores' counters.
  stats::FrontArea* front() noexcept;
  // Row i's series arrays, indexed by slot: worker i's (i < workers), or
  // the front's lcore i - workers.
  stats::RouteSeries* routes(uint32_t i) noexcept;
  stats::BackendSeries* backends(uint32_t i) noexcept;
  // Sealed (stats_size_sealed, and against new writable mappings and
  // writes where the kernel has F_SEAL_FUTURE_WRITE): the process it is
  // handed to can read it, never resize or write it.
  int fd() const noexcept { return fd_; }
  // One more reload asked by SIGHUP (stats::kReloadsAskedOffset): returns
  // its number, which the control plane's answer carries. One writer (the
  // main thread).
  uint64_t ask_reload() noexcept;
  uint32_t workers() const noexcept { return workers_; }
  uint32_t front_rows() const noexcept { return front_rows_; }

  // Series slots (one writer thread: the one that publishes runtimes).
  // A name seen before keeps its slot. `epoch` is the configuration
  // generation being applied: names not slotted in an epoch are retired by
  // retire_unseen(epoch). With every slot taken (live in this epoch, or
  // retired but reused already), kOtherSlot.
  uint32_t route_slot(std::string_view listener, std::string_view route, uint64_t epoch);
  uint32_t backend_slot(std::string_view pool, std::string_view backend, uint64_t epoch);
  void retire_unseen(uint64_t epoch);

 private:
  struct Kind {
    stats::SeriesKind kind;
    uint32_t base = 0;   // first directory entry
    uint32_t slots = 0;
    uint32_t next_fresh = 1;                           // slot 0 is "(other)"
    std::unordered_map<std::string, uint32_t> by_name;  // key: a '\0' b
    std::vector<std::string> name_of;                  // by slot
    std::vector<uint64_t> seen;                        // epoch last slotted
    std::vector<uint64_t> retired_at;                  // epoch retired, 0 = live
  };
  StatsSegment() = default;
  uint32_t slot(Kind& k, std::string_view a, std::string_view b, uint64_t epoch);
  void write_name(const Kind& k, uint32_t slot, std::string_view a, std::string_view b, bool retired);

  int fd_ = -1;
  void* base_ = nullptr;
  size_t size_ = 0;
  uint32_t workers_ = 0;
  uint32_t front_rows_ = 0;
  stats::SegmentLayout layout_{};
  Kind routes_{stats::SeriesKind::kRoute, 0, 0, 1, {}, {}, {}, {}};
  Kind backends_{stats::SeriesKind::kBackend, 0, 0, 1, {}, {}, {}, {}};
};

}  // namespace lode::control

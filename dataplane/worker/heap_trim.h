// Gives the allocator's free pages back to the system once the workers have
// gone quiet after a burst.
//
// A burst of handshakes leaves holes in the worker's malloc arena: each
// handshake's transient buffers (OpenSSL's ~17 KB record buffers, its
// handshake buffer, the flights in our queues) were freed between the
// allocations that live on with the connection (its SSL). glibc returns
// memory to the system only from the top of a heap, so those free pages stay
// resident: measured, 1,000 idle TLS connections opened 100 at a time held
// 3.2 MB free inside the worker's arena (14.9 MB in use), 2.1 MB of it in
// whole pages that malloc_trim(0) gives back (17.9 -> 15.5 KB of RSS per
// connection, the bench's idle test). The trim walks every arena (~0.7 ms for a 30 MB heap with
// something to give back, ~0.1 ms without), so it runs only once the
// workers' counters have stood still for half a second after they moved:
// never under steady load, once after each burst (at most twice a second
// under sporadic traffic: ~1.5 ms of one CPU per second at worst). Pages
// given back are mapped again (zeroed) by the next allocations that reach
// them.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "dataplane/worker/stats.h"

namespace lode::worker {

class HeapTrimmer {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kDefaultQuiet{500};

  explicit HeapTrimmer(std::chrono::milliseconds quiet = kDefaultQuiet) noexcept : quiet_(quiet) {}

  // `activity` changes whenever the workers did something that frees or
  // allocates memory (see heap_activity()). True when the caller should trim
  // now: it changed since the last trim and has not for `quiet`.
  [[nodiscard]] bool observe(uint64_t activity, Clock::time_point now) noexcept {
    if (!seen_ || activity != last_) {
      seen_ = true;
      last_ = activity;
      changed_at_ = now;
      pending_ = true;
      return false;
    }
    if (!pending_ || now - changed_at_ < quiet_) return false;
    pending_ = false;
    return true;
  }

 private:
  std::chrono::milliseconds quiet_;
  bool seen_ = false;
  bool pending_ = false;
  uint64_t last_ = 0;
  Clock::time_point changed_at_{};
};

// Folds one worker's counters that move with its memory (connections
// accepted and open, handshakes, bytes relayed, buffered bytes) into `seed`.
[[nodiscard]] uint64_t heap_activity(const WorkerStats& s, uint64_t seed = 0) noexcept;

// malloc_trim(0): every arena's free pages go back to the system. Returns
// whether anything was given back.
bool trim_heap() noexcept;

}  // namespace lode::worker

// The calling thread's CPU time, for bench programs that time one side of a
// conversation both sides of which run in the same thread (openssl_ceiling)
// or that must not count time the thread spent preempted by other work on a
// shared machine (crypto_bound).
#pragma once

#include <time.h>

#include <cstdint>

namespace lode::bench {

inline int64_t thread_cpu_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// What one timed window [thread_cpu_ns(), thread_cpu_ns()] around nothing
// reads: the clock's own cost as seen from inside a window (the thread CPU
// clock is a system call, about 1 µs on a VM with page-table isolation), to
// subtract once per window. The minimum of a few batches, so that a batch
// hit by an interrupt does not inflate it.
inline double thread_cpu_clock_overhead_ns() noexcept {
  constexpr int kBatches = 20;
  constexpr int kPerBatch = 2000;
  double best = 1e18;
  for (int b = 0; b < kBatches; ++b) {
    int64_t sum = 0;
    for (int i = 0; i < kPerBatch; ++i) {
      const int64_t t0 = thread_cpu_ns();
      sum += thread_cpu_ns() - t0;
    }
    const double per = static_cast<double>(sum) / kPerBatch;
    if (per < best) best = per;
  }
  return best;
}

}  // namespace lode::bench

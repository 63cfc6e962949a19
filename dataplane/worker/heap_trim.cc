#include "dataplane/worker/heap_trim.h"

#include <malloc.h>

#include <atomic>

namespace lode::worker {

uint64_t heap_activity(const WorkerStats& s, uint64_t seed) noexcept {
  uint64_t h = seed;
  for (const std::atomic<uint64_t>* c : {&s.accepted, &s.active, &s.handshakes, &s.bytes_client_in,
                                         &s.bytes_client_out, &s.buffered_bytes}) {
    h = (h ^ c->load(std::memory_order_relaxed)) * 0x100000001b3ULL;  // FNV-1a step, per counter
  }
  return h;
}

bool trim_heap() noexcept {
  return malloc_trim(0) == 1;
}

}  // namespace lode::worker

// One io_uring per worker: submission batching, a provided-buffer ring for
// receives (an idle connection holds no receive buffer), and the encoding of
// completions back to (connection, operation).
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "lodestone/result.h"

namespace lode::worker {

// user_data: | slot (32) | generation (24) | op (8) |
enum class Op : uint8_t {
  kAccept = 1,     // multishot accept on a listener (slot = listener index)
  kClientRecv,     // multishot recv from the client, provided buffers
  kClientSend,
  kBackendConnect,
  kBackendRecv,    // multishot recv from the backend, provided buffers
  kBackendSend,
  kSpliceIn,       // passthrough: socket -> pipe
  kSpliceOut,      // passthrough: pipe -> socket
  kCancel,
  kTick,           // the worker's periodic timer
  kWake,           // eventfd: reload or stop requested
  kShutdown,
};

constexpr uint64_t encode(uint32_t slot, uint32_t gen, Op op) noexcept {
  return static_cast<uint64_t>(slot) << 32 | static_cast<uint64_t>(gen & 0xffffff) << 8 | static_cast<uint8_t>(op);
}
constexpr uint32_t slot_of(uint64_t ud) noexcept { return static_cast<uint32_t>(ud >> 32); }
constexpr uint32_t gen_of(uint64_t ud) noexcept { return static_cast<uint32_t>(ud >> 8) & 0xffffff; }
constexpr Op op_of(uint64_t ud) noexcept { return static_cast<Op>(ud & 0xff); }

class Ring {
 public:
  Ring() = default;
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // entries: SQ size; buffers of buf_size bytes in the provided ring.
  Result<void, std::string> init(unsigned entries, unsigned buf_count, unsigned buf_size);

  // Never returns null: submits to make room when the SQ is full.
  io_uring_sqe* sqe() noexcept;
  int submit() noexcept { return io_uring_submit(&ring_); }
  // Submits pending SQEs and waits for at least one completion (or timeout).
  int submit_and_wait(unsigned n) noexcept { return io_uring_submit_and_wait(&ring_, n); }
  io_uring* raw() noexcept { return &ring_; }

  // The provided buffers: group id, a buffer by id, and giving one back.
  static constexpr uint16_t kBufGroup = 1;
  uint8_t* buffer(uint16_t bid) const noexcept { return bufs_ + static_cast<size_t>(bid) * buf_size_; }
  unsigned buffer_size() const noexcept { return buf_size_; }
  void recycle(uint16_t bid) noexcept;
  unsigned buffers_out() const noexcept { return out_; }
  void note_taken() noexcept { ++out_; }

 private:
  io_uring ring_{};
  bool ready_ = false;
  io_uring_buf_ring* br_ = nullptr;
  size_t br_bytes_ = 0;
  uint8_t* bufs_ = nullptr;
  size_t bufs_bytes_ = 0;
  unsigned buf_count_ = 0;
  unsigned buf_size_ = 0;
  unsigned out_ = 0;  // buffers handed to us and not yet recycled
};

}  // namespace lode::worker

#include "dataplane/worker/uring.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

namespace lode::worker {

Ring::~Ring() {
  if (ready_) {
    if (br_ != nullptr) io_uring_unregister_buf_ring(&ring_, kBufGroup);
    io_uring_queue_exit(&ring_);
  }
  if (br_ != nullptr) munmap(br_, br_bytes_);
  if (bufs_ != nullptr) munmap(bufs_, bufs_bytes_);
}

Result<void, std::string> Ring::init(unsigned entries, unsigned buf_count, unsigned buf_size) {
  if (buf_count == 0 || (buf_count & (buf_count - 1)) != 0 || buf_count > 32768) {
    return unexpected(std::string("buffer count must be a power of two <= 32768"));
  }
  io_uring_params p{};
  // The ring is created by the thread that opens the worker and driven by the
  // worker's own thread, so no IORING_SETUP_SINGLE_ISSUER.
  p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
  int rc = io_uring_queue_init_params(entries, &ring_, &p);
  if (rc == -EINVAL) {  // older kernels: plain ring
    p = io_uring_params{};
    rc = io_uring_queue_init_params(entries, &ring_, &p);
  }
  if (rc < 0) return unexpected("io_uring_queue_init: " + std::string(std::strerror(-rc)));
  ready_ = true;

  buf_count_ = buf_count;
  buf_size_ = buf_size;
  br_bytes_ = sizeof(io_uring_buf) * buf_count;
  void* br = mmap(nullptr, br_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (br == MAP_FAILED) return unexpected(std::string("mmap of the buffer ring failed"));
  br_ = static_cast<io_uring_buf_ring*>(br);
  bufs_bytes_ = static_cast<size_t>(buf_count) * buf_size;
  void* bufs = mmap(nullptr, bufs_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (bufs == MAP_FAILED) return unexpected(std::string("mmap of the receive buffers failed"));
  bufs_ = static_cast<uint8_t*>(bufs);

  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(br_);
  reg.ring_entries = buf_count;
  reg.bgid = kBufGroup;
  rc = io_uring_register_buf_ring(&ring_, &reg, 0);
  if (rc < 0) return unexpected("io_uring_register_buf_ring: " + std::string(std::strerror(-rc)));
  io_uring_buf_ring_init(br_);
  // Lowest ids on top: posted first.
  spare_.reserve(buf_count);
  for (unsigned i = buf_count; i > 0; --i) spare_.push_back(static_cast<uint16_t>(i - 1));
  window_ = buf_count < kInitialWindow ? buf_count : kInitialWindow;
  refill();
  return {};
}

io_uring_sqe* Ring::sqe() noexcept {
  io_uring_sqe* s = io_uring_get_sqe(&ring_);
  while (s == nullptr) {
    ++sq_full_;
    const int rc = io_uring_submit(&ring_);
    if (rc == -EBUSY || rc == -EAGAIN) {
      ++cq_overflows_;
      stash_completions();
    }
    s = io_uring_get_sqe(&ring_);
  }
  return s;
}

// Moves the ready completions out of the ring; then asks the kernel to flush
// its overflow list into the room made (io_uring_get_events), and moves those
// too. The backlog's memory is kept between uses: it grows only under this
// pressure, never per operation.
void Ring::stash_completions() {
  for (int round = 0; round < 2; ++round) {
    io_uring_cqe* cqe = nullptr;
    while (io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe != nullptr) {
      backlog_.push_back(*cqe);
      io_uring_cqe_seen(&ring_, cqe);
    }
    if (round == 0) io_uring_get_events(&ring_);
  }
}

// Posts spare buffers, the most recently given back first, until the window
// is full. spare_ never grows past buf_count_ (reserved in init), so this
// does not allocate.
void Ring::refill() noexcept {
  const int mask = io_uring_buf_ring_mask(buf_count_);
  int added = 0;
  while (posted_ < window_ && !spare_.empty()) {
    const uint16_t bid = spare_.back();
    spare_.pop_back();
    io_uring_buf_ring_add(br_, buffer(bid), buf_size_, bid, mask, added);
    ++added;
    ++posted_;
  }
  if (added > 0) io_uring_buf_ring_advance(br_, added);
}

void Ring::recycle(uint16_t bid) noexcept {
  spare_.push_back(bid);
  --out_;
  refill();
}

// One more buffer per receive that found none: the window grows by what the
// bursts actually lacked (several such receives often complete together;
// doubling on each would soon post every buffer).
void Ring::on_no_buffers() noexcept {
  if (window_ < buf_count_) ++window_;
  refill();
}

}  // namespace lode::worker

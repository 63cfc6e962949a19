// One io_uring per worker: submission batching, a provided-buffer ring for
// receives (an idle connection holds no receive buffer), and the encoding of
// completions back to (connection, operation).
//
// The provided ring is consumed in order, so a ring holding every buffer
// would have the kernel write into each of them in turn, and the process
// would keep all their pages (buffer count x size) once enough receives had
// passed, however few were ever out at once. Only a window of the buffers is
// posted instead, refilled with the most recently given back first: the
// pages in use stay those of the receives in flight together. The window
// grows by one (up to every buffer) for each receive that finds it empty
// (-ENOBUFS).
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

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
  kClose,          // a descriptor closed through the ring (slot = the fd); no
                   // completion unless it failed (IOSQE_CQE_SKIP_SUCCESS)
  kSockopt,        // a setsockopt through the ring (slot = the fd); the same
  kSocket,         // a backend socket made ahead (slot = the family's stock)
};

// The op byte's top bit marks a quiet send (Ring::make_quiet).
constexpr uint64_t kQuietTag = 0x80;

constexpr uint64_t encode(uint32_t slot, uint32_t gen, Op op) noexcept {
  return static_cast<uint64_t>(slot) << 32 | static_cast<uint64_t>(gen & 0xffffff) << 8 | static_cast<uint8_t>(op);
}
constexpr uint32_t slot_of(uint64_t ud) noexcept { return static_cast<uint32_t>(ud >> 32); }
constexpr uint32_t gen_of(uint64_t ud) noexcept { return static_cast<uint32_t>(ud >> 8) & 0xffffff; }
constexpr Op op_of(uint64_t ud) noexcept { return static_cast<Op>(ud & 0x7f); }
constexpr bool is_quiet(uint64_t ud) noexcept { return (ud & kQuietTag) != 0; }

class Ring {
 public:
  Ring() = default;
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // entries: SQ size; buffers of buf_size bytes in the provided ring.
  // ring_calls = false: close and setsockopt are direct system calls even
  // where the kernel could run them in the ring (tests run the fallbacks an
  // older kernel would take this way). shutdown(2) is always direct:
  // IORING_OP_SHUTDOWN never runs inline (the kernel hands every one to an
  // io-wq thread: a thread switch per half-close, measured with perf).
  Result<void, std::string> init(unsigned entries, unsigned buf_count, unsigned buf_size, bool ring_calls = true);

  // Never returns null: submits to make room when the SQ is full. When the
  // kernel refuses that submission because the completion ring is full
  // (-EBUSY, IORING_FEAT_NODROP with completions waiting in its overflow
  // list), the ready completions are moved to a backlog that
  // for_each_completion() hands out first, and the submission is retried.
  io_uring_sqe* sqe() noexcept;
  int submit() noexcept {
    const int rc = io_uring_submit(&ring_);
    settle_quiet();
    return rc;
  }
  // Submits pending SQEs and waits for at least one completion (or timeout).
  int submit_and_wait(unsigned n) noexcept {
    const int rc = io_uring_submit_and_wait(&ring_, n);
    settle_quiet();
    return rc;
  }
  io_uring* raw() noexcept { return &ring_; }
  // Whether a close can go through the ring with no completion on success
  // (IORING_OP_CLOSE with IOSQE_CQE_SKIP_SUCCESS, Linux 5.17).
  bool can_close() const noexcept { return ring_calls_ && (features_ & IORING_FEAT_CQE_SKIP) != 0; }
  // Queues close(fd) into the next submission. The caller must have no
  // operation on fd in flight and forget the number now: it stays open (so
  // no new descriptor takes it) until that submission runs the close.
  void close(int fd) noexcept;
  // The ring failed: the closes queued since the last submission are done
  // directly (their numbers were already forgotten by the caller) and the
  // rest of what was queued is dropped. The worker calls it when its last
  // submission fails, so no descriptor outlives the worker.
  void close_unsubmitted() noexcept;
  // Whether setsockopt() can go through the ring (IORING_OP_URING_CMD,
  // SOCKET_URING_OP_SETSOCKOPT, Linux 6.7): tried once on a socket by init().
  bool can_setsockopt() const noexcept { return sockopt_ok_; }
  // Fills s with setsockopt(fd, level, optname, val, sizeof(int)), posting
  // no completion on success. *val is read when the SQE is issued: it must
  // outlive the submission (a static constant).
  static void prep_setsockopt(io_uring_sqe* s, int fd, int level, int optname, const int* val) noexcept;

  // Quiet sends: a send that would only wake the worker to say it is done
  // (the common case: the socket had room) makes no completion and no wake.
  // MSG_DONTWAIT makes the kernel run it within the submission that carries
  // it (never parked waiting for room), IOSQE_CQE_SKIP_SUCCESS keeps a whole
  // success silent, and MSG_WAITALL makes a short one a failure, which
  // posts: what needs an answer (a short send, -EAGAIN, an error) still
  // wakes the wait, and a success is handed out by for_each_completion after
  // the submission as a completion {user_data, res = the length}, so callers
  // see every send complete as before. Saves the io_uring_enter that would
  // only collect it (about four per proxied TLS handshake).
  // init() checks on a socket pair that the kernel does all this (Linux
  // 6.18 does: success silent, short and -EAGAIN posted, all before the
  // submission returns); where it does not, or with ring_calls = false, no
  // send is quiet. Not for kTLS sockets (their sendmsg refuses MSG_WAITALL).
  bool can_send_quietly() const noexcept { return quiet_ok_; }
  // Recvs that wait first (IORING_RECVSEND_POLL_FIRST, Linux 5.19): a recv
  // armed on a socket that its last recv emptied (no
  // IORING_CQE_F_SOCK_NONEMPTY) skips the attempt that would find nothing
  // and goes straight to waiting; the recv runs once bytes are there. Saves
  // a receive call per armed recv on request/response traffic (measured on
  // a passthrough connection: 17.3 -> 10.9 socket receives). init() checks
  // on a socket pair that such a recv waits and then takes the bytes; not
  // with ring_calls = false.
  bool can_poll_first() const noexcept { return poll_first_ok_; }
  // Makes s, a send just prepared (the last SQE taken, user_data set), quiet;
  // false (s unchanged) where sends cannot be. Its completion carries
  // kQuietTag.
  bool make_quiet(io_uring_sqe* s) noexcept;
  uint64_t quiet_sends() const noexcept { return quiet_sends_; }

  // Hands every ready completion to f (the backlog first), each one copied
  // and marked seen before f runs, so f may take SQEs (and so submit) freely;
  // completions that arrive meanwhile are handed out in the same call.
  // Returns how many.
  template <class F>
  unsigned for_each_completion(F&& f) {
    unsigned n = 0;
    while (true) {
      // The quiet sends a submission ran completed within it: before what
      // the wait brought (a handler may want the send over: kTLS takes a
      // socket only with no send in flight).
      if (!done_.empty() && settle_failures()) {
        n += hand_out_quiet(f);
        continue;
      }
      if (!backlog_.empty()) {
        // f may add to the backlog: by index, and swapped out first.
        std::vector<io_uring_cqe> batch;
        batch.swap(backlog_);
        for (const io_uring_cqe& c : batch) {
          if (is_quiet(c.user_data)) forget_quiet(c.user_data);
          f(&c);
          ++n;
        }
        batch.clear();
        if (backlog_.empty()) backlog_.swap(batch);  // keep the capacity
        continue;
      }
      io_uring_cqe* cqe = nullptr;
      if (io_uring_peek_cqe(&ring_, &cqe) != 0 || cqe == nullptr) {
        // Every completion the submissions posted has been seen (a quiet
        // send's failure among them): the quiet sends left succeeded whole.
        if (done_.empty()) break;
        n += hand_out_quiet(f);
        continue;
      }
      const io_uring_cqe copy = *cqe;
      io_uring_cqe_seen(&ring_, cqe);
      if (is_quiet(copy.user_data)) forget_quiet(copy.user_data);
      f(&copy);
      ++n;
    }
    return n;
  }

  // Pressure seen (each handled, nothing dropped): SQE requests that found
  // the submission queue full, and submissions refused for a full
  // completion ring (its overflow then moved to the backlog).
  uint64_t sq_full() const noexcept { return sq_full_; }
  uint64_t cq_overflows() const noexcept { return cq_overflows_; }

  // The provided buffers: group id, a buffer by id, and giving one back.
  static constexpr uint16_t kBufGroup = 1;
  static constexpr unsigned kInitialWindow = 64;  // buffers posted at first
  uint8_t* buffer(uint16_t bid) const noexcept { return bufs_ + static_cast<size_t>(bid) * buf_size_; }
  unsigned buffer_size() const noexcept { return buf_size_; }
  void recycle(uint16_t bid) noexcept;
  unsigned buffers_out() const noexcept { return out_; }
  void note_taken() noexcept {
    ++out_;
    if (posted_ > 0) --posted_;
  }
  // A receive found no buffer posted (-ENOBUFS): post more from now on.
  void on_no_buffers() noexcept;
  unsigned buffers_posted() const noexcept { return posted_; }
  unsigned window() const noexcept { return window_; }

 private:
  io_uring ring_{};
  bool ready_ = false;
  bool ring_calls_ = true;
  unsigned features_ = 0;
  bool sockopt_ok_ = false;
  io_uring_buf_ring* br_ = nullptr;
  size_t br_bytes_ = 0;
  uint8_t* bufs_ = nullptr;
  size_t bufs_bytes_ = 0;
  unsigned buf_count_ = 0;
  unsigned buf_size_ = 0;
  unsigned out_ = 0;  // buffers handed to us and not yet recycled
  unsigned posted_ = 0;  // in the kernel's ring, not yet taken
  unsigned window_ = 0;  // how many to keep posted
  std::vector<uint16_t> spare_;  // neither posted nor out; the last given back at the end
  std::vector<io_uring_cqe> backlog_;  // completions taken out to free the CQ ring
  uint64_t sq_full_ = 0, cq_overflows_ = 0;
  // Hands out the quiet sends in done_ as whole successes.
  template <class F>
  unsigned hand_out_quiet(F& f) {
    std::vector<Quiet> batch;
    batch.swap(done_);
    for (const Quiet& q : batch) {
      io_uring_cqe c{};
      c.user_data = q.user_data;
      c.res = static_cast<int32_t>(q.len);
      f(&c);
    }
    const auto handed = static_cast<unsigned>(batch.size());
    batch.clear();
    if (done_.empty()) done_.swap(batch);  // keep the capacity
    return handed;
  }
  // Quiet sends: queued (not yet taken by the kernel: sq_index is the SQE's
  // place in the SQ's running count), and run (taken by a submission).
  struct Quiet {
    uint64_t user_data;
    uint32_t len;
    unsigned sq_index;
  };
  bool quiet_ok_ = false;
  bool poll_first_ok_ = false;
  std::vector<Quiet> queued_, done_;
  uint64_t quiet_sends_ = 0;

  void stash_completions();
  bool probe_setsockopt() noexcept;
  bool probe_poll_first() noexcept;
  bool probe_quiet_sends() noexcept;
  // After a submission: the quiet sends it took have run.
  void settle_quiet() noexcept;
  // A quiet send posted (failed or short): no success to hand out for it.
  void forget_quiet(uint64_t user_data) noexcept;
  // Takes out of done_ the quiet sends whose completion (a failure) is in
  // the CQ or the backlog, not yet handed out: what is left succeeded
  // whole. False when the kernel's overflow list may hold some (then the
  // successes wait until every completion has been seen).
  bool settle_failures() noexcept;
  void refill() noexcept;
};

}  // namespace lode::worker

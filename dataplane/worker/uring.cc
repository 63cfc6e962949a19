#include "dataplane/worker/uring.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace lode::worker {

Ring::~Ring() {
  if (ready_) {
    // From another thread than the worker's this fails (-EEXIST: a
    // SINGLE_ISSUER ring takes registrations from its submitter only) and
    // changes nothing: queue_exit below tears the buffer ring down with the
    // ring, and the kernel holds its pages until then.
    if (br_ != nullptr) io_uring_unregister_buf_ring(&ring_, kBufGroup);
    io_uring_queue_exit(&ring_);
  }
  if (br_ != nullptr) munmap(br_, br_bytes_);
  if (bufs_ != nullptr) munmap(bufs_, bufs_bytes_);
}

Result<void, std::string> Ring::init(unsigned entries, unsigned buf_count, unsigned buf_size, bool ring_calls) {
  if (buf_count == 0 || (buf_count & (buf_count - 1)) != 0 || buf_count > 32768) {
    return unexpected(std::string("buffer count must be a power of two <= 32768"));
  }
  // The ring is created and driven by one thread (the worker's own), so
  // SINGLE_ISSUER (Linux 6.0); older kernels refuse it: fewer flags.
  // Not DEFER_TASKRUN: it runs the completion work only inside
  // io_uring_enter, where with COOP_TASKRUN any system call's return runs
  // it; measured (bench/compare_nginx.sh, strace), it cost ~1.2 more
  // io_uring_enter per passthrough connection and saved none elsewhere.
  static constexpr unsigned kFlags[] = {
      IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER,
      IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
      0,
  };
  io_uring_params p{};
  int rc = -EINVAL;
  for (unsigned flags : kFlags) {
    p = io_uring_params{};
    p.flags = flags;
    rc = io_uring_queue_init_params(entries, &ring_, &p);
    if (rc != -EINVAL) break;
  }
  if (rc < 0) return unexpected("io_uring_queue_init: " + std::string(std::strerror(-rc)));
  ready_ = true;
  features_ = p.features;
  ring_calls_ = ring_calls;
  sockopt_ok_ = ring_calls && probe_setsockopt();
  quiet_ok_ = ring_calls && probe_quiet_sends();
  poll_first_ok_ = ring_calls && probe_poll_first();
  // At most an SQ's worth is queued at once; run ones wait for the next
  // completion pass (more only when the SQ filled and was submitted early).
  queued_.reserve(p.sq_entries);
  done_.reserve(p.sq_entries);

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
    settle_quiet();
    if (rc == -EBUSY || rc == -EAGAIN) {
      ++cq_overflows_;
      stash_completions();
    }
    s = io_uring_get_sqe(&ring_);
  }
  return s;
}

void Ring::close(int fd) noexcept {
  if (!can_close()) {
    ::close(fd);
    return;
  }
  io_uring_sqe* s = sqe();
  io_uring_prep_close(s, fd);
  s->flags |= IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data64(s, encode(static_cast<uint32_t>(fd), 0, Op::kClose));
}

void Ring::close_unsubmitted() noexcept {
  io_uring_sq& sq = ring_.sq;
  for (unsigned i = sq.sqe_head; i != sq.sqe_tail; ++i) {
    io_uring_sqe& s = sq.sqes[i & sq.ring_mask];
    if (s.opcode == IORING_OP_CLOSE) ::close(s.fd);
    io_uring_prep_nop(&s);  // nothing left that a later submission could run
  }
  queued_.clear();
}

bool Ring::make_quiet(io_uring_sqe* s) noexcept {
  if (!quiet_ok_ || s->opcode != IORING_OP_SEND) return false;
  const unsigned index = ring_.sq.sqe_tail - 1;
  if (&ring_.sq.sqes[index & ring_.sq.ring_mask] != s) return false;  // not the last SQE taken
  s->msg_flags |= MSG_DONTWAIT | MSG_WAITALL;
  s->flags |= IOSQE_CQE_SKIP_SUCCESS;
  s->user_data |= kQuietTag;
  queued_.push_back(Quiet{s->user_data, s->len, index});
  ++quiet_sends_;
  return true;
}

void Ring::settle_quiet() noexcept {
  if (queued_.empty()) return;
  // The kernel's SQ head counts the SQEs it has taken, in sqe_tail's numbering.
  const unsigned head = io_uring_smp_load_acquire(ring_.sq.khead);
  size_t keep = 0;
  for (const Quiet& q : queued_) {
    if (static_cast<int>(head - q.sq_index) > 0) {
      done_.push_back(q);
    } else {
      queued_[keep++] = q;
    }
  }
  queued_.resize(keep);
}

bool Ring::settle_failures() noexcept {
  if ((IO_URING_READ_ONCE(*ring_.sq.kflags) & IORING_SQ_CQ_OVERFLOW) != 0) return false;
  for (const io_uring_cqe& c : backlog_) {
    if (is_quiet(c.user_data)) forget_quiet(c.user_data);
  }
  const io_uring_cq& cq = ring_.cq;
  const unsigned tail = io_uring_smp_load_acquire(cq.ktail);
  for (unsigned i = *cq.khead; i != tail; ++i) {
    const io_uring_cqe& c = cq.cqes[i & cq.ring_mask];
    if (is_quiet(c.user_data)) forget_quiet(c.user_data);
  }
  return true;
}

void Ring::forget_quiet(uint64_t user_data) noexcept {
  for (size_t i = 0; i < done_.size(); ++i) {
    if (done_[i].user_data == user_data) {
      done_.erase(done_.begin() + static_cast<std::ptrdiff_t>(i));
      return;
    }
  }
}

// SOCKET_URING_OP_SETSOCKOPT (include/uapi/linux/io_uring.h, Linux 6.7; not
// in liburing 2.3's header, nor are the SQE fields' names for it: level and
// optname share `addr`, optlen is `splice_fd_in`, optval is `addr3`).
constexpr uint32_t kSocketUringOpSetsockopt = 3;

void Ring::prep_setsockopt(io_uring_sqe* s, int fd, int level, int optname, const int* val) noexcept {
  io_uring_prep_rw(IORING_OP_URING_CMD, s, fd, nullptr, 0, 0);
  s->cmd_op = kSocketUringOpSetsockopt;
  s->addr = static_cast<uint64_t>(static_cast<uint32_t>(level)) | static_cast<uint64_t>(static_cast<uint32_t>(optname)) << 32;
  s->splice_fd_in = sizeof(int);
  s->addr3 = reinterpret_cast<uint64_t>(val);
  s->flags |= IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data64(s, encode(static_cast<uint32_t>(fd), 0, Op::kSockopt));
}

// Sets TCP_NODELAY on a scratch socket through the ring and reads it back.
// Runs before anything else is queued (init), so the only completion is its.
bool Ring::probe_setsockopt() noexcept {
  if ((features_ & IORING_FEAT_CQE_SKIP) == 0) return false;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  static const int kOne = 1;
  io_uring_sqe* s = io_uring_get_sqe(&ring_);
  bool ok = false;
  if (s != nullptr) {
    prep_setsockopt(s, fd, IPPROTO_TCP, TCP_NODELAY, &kOne);
    s->flags &= static_cast<uint8_t>(~IOSQE_CQE_SKIP_SUCCESS);  // the answer is wanted here
    if (io_uring_submit_and_wait(&ring_, 1) >= 0) {
      io_uring_cqe* cqe = nullptr;
      if (io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe != nullptr) {
        int v = 0;
        socklen_t len = sizeof v;
        ok = cqe->res == 0 && ::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len) == 0 && v != 0;
        io_uring_cqe_seen(&ring_, cqe);
      }
    }
  }
  ::close(fd);
  return ok;
}

// A recv with IORING_RECVSEND_POLL_FIRST on an empty socket pair: it must
// neither complete nor fail before a byte is written to the peer, then
// complete with that byte. A kernel without the flag refuses the recv at
// once (-EINVAL). Runs before anything else is queued (init).
bool Ring::probe_poll_first() noexcept {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) return false;
  uint8_t got = 0;
  bool ok = false;
  io_uring_sqe* s = io_uring_get_sqe(&ring_);
  if (s != nullptr) {
    io_uring_prep_recv(s, sv[0], &got, 1, 0);
    s->ioprio |= IORING_RECVSEND_POLL_FIRST;
    io_uring_sqe_set_data64(s, 1);
    io_uring_cqe* cqe = nullptr;
    if (io_uring_submit(&ring_) == 1) {
      const bool early = io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe != nullptr;
      if (early) {
        io_uring_cqe_seen(&ring_, cqe);  // refused (or done with nothing sent): not usable
      } else {
        static constexpr uint8_t kByte = 0xa5;
        __kernel_timespec ts{1, 0};
        if (::write(sv[1], &kByte, 1) == 1 && io_uring_wait_cqe_timeout(&ring_, &cqe, &ts) == 0 && cqe != nullptr) {
          ok = cqe->res == 1 && got == kByte;
          io_uring_cqe_seen(&ring_, cqe);
        } else {
          // No answer within a second: take the recv back before the pair goes.
          io_uring_sqe* c = io_uring_get_sqe(&ring_);
          if (c != nullptr) {
            io_uring_prep_cancel64(c, 1, 0);
            io_uring_sqe_set_data64(c, 2);
            io_uring_submit(&ring_);
            for (int n = 0; n < 2 && io_uring_wait_cqe_timeout(&ring_, &cqe, &ts) == 0 && cqe != nullptr; ++n) {
              io_uring_cqe_seen(&ring_, cqe);
            }
          }
        }
      }
    }
  }
  ::close(sv[0]);
  ::close(sv[1]);
  return ok;
}

// Checks on a socket pair (no network needed: a worker may run where no
// interface is up) that a quiet send runs within its submission: one larger
// than the socket takes posts its short count, and exactly that many bytes
// are at the peer when the submission returns; one into the full socket
// posts -EAGAIN; once the peer has read, a small one posts nothing and its
// bytes are there. Runs before anything else is queued (init).
bool Ring::probe_quiet_sends() noexcept {
  if ((features_ & IORING_FEAT_CQE_SKIP) == 0) return false;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) return false;
  static constexpr int kSndBuf = 4096;
  ::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &kSndBuf, sizeof kSndBuf);
  static constexpr size_t kBig = 256 * 1024;
  std::vector<uint8_t> buf(kBig, 0x5a);
  constexpr int kNone = 1;  // no completion (a send's res is never 1 here: see the lengths)
  // One quiet send of len bytes, alone in a submission: its completion's
  // res as the submission left it, or kNone.
  auto send_one = [&](size_t len) -> int {
    io_uring_sqe* s = io_uring_get_sqe(&ring_);
    if (s == nullptr) return -EBUSY;
    io_uring_prep_send(s, sv[0], buf.data(), len, MSG_NOSIGNAL | MSG_DONTWAIT | MSG_WAITALL);
    s->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(s, 0);
    if (io_uring_submit(&ring_) != 1) return -EIO;
    io_uring_cqe* cqe = nullptr;
    int res = kNone;
    if (io_uring_cq_ready(&ring_) > 0 && io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe != nullptr) {
      res = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
    }
    return res;
  };
  auto drain = [&]() -> long {
    long got = 0;
    uint8_t tmp[16384];
    ssize_t n;
    while ((n = ::recv(sv[1], tmp, sizeof tmp, MSG_DONTWAIT)) > 0) got += n;
    return got;
  };
  const int short_count = send_one(kBig);
  bool ok = short_count > kNone && static_cast<size_t>(short_count) < kBig;
  ok = ok && send_one(kBig) == -EAGAIN;
  ok = ok && drain() == short_count;
  ok = ok && send_one(100) == kNone && drain() == 100;
  ::close(sv[0]);
  ::close(sv[1]);
  // Nothing of the probe may be left for the worker to see.
  io_uring_cqe* cqe = nullptr;
  while (io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe != nullptr) {
    ok = false;
    io_uring_cqe_seen(&ring_, cqe);
  }
  return ok;
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

// The worker's io_uring wrapper under pressure: a ring far smaller than the
// work in flight. No SQE request may fail, no completion may be lost or
// handed out twice, whether the kernel keeps the excess in its overflow list
// or refuses submissions (-EBUSY) until the completion ring is read.
#include "dataplane/worker/uring.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace lode::worker {
namespace {

TEST(Ring, ManyMoreOperationsThanEntriesLoseNoCompletion) {
  Ring ring;
  ASSERT_TRUE(ring.init(2, 2, 64).has_value());  // 2 SQ entries, 4 CQ entries
  constexpr unsigned kOps = 500;
  for (unsigned i = 0; i < kOps; ++i) {
    io_uring_sqe* s = ring.sqe();  // never null: submits when the SQ is full
    ASSERT_NE(s, nullptr);
    io_uring_prep_nop(s);
    io_uring_sqe_set_data64(s, i);
  }
  ASSERT_GE(ring.submit(), 0);
  EXPECT_GT(ring.sq_full(), 0u);
  std::vector<unsigned> seen;
  for (int pass = 0; pass < 1000 && seen.size() < kOps; ++pass) {
    ring.for_each_completion([&](const io_uring_cqe* c) {
      EXPECT_EQ(c->res, 0);
      seen.push_back(static_cast<unsigned>(c->user_data));
    });
    if (seen.size() < kOps) io_uring_get_events(ring.raw());  // flush the kernel's overflow list
  }
  ASSERT_EQ(seen.size(), kOps);
  EXPECT_EQ(std::set<unsigned>(seen.begin(), seen.end()).size(), kOps) << "a completion was handed out twice";
}

TEST(Ring, SubmittingWhileHandlingCompletionsKeepsEveryOne) {
  // Each handled completion submits another operation (as a worker does: a
  // recv completion arms a send), with the SQ and CQ both tiny.
  Ring ring;
  ASSERT_TRUE(ring.init(2, 2, 64).has_value());
  constexpr unsigned kChains = 16, kLength = 40;
  for (unsigned i = 0; i < kChains; ++i) {
    io_uring_sqe* s = ring.sqe();
    io_uring_prep_nop(s);
    io_uring_sqe_set_data64(s, static_cast<uint64_t>(i) << 16);
  }
  std::vector<unsigned> steps(kChains, 0);
  unsigned handled = 0;
  for (int pass = 0; pass < 10000 && handled < kChains * kLength; ++pass) {
    ASSERT_GE(ring.submit_and_wait(1), 0);
    ring.for_each_completion([&](const io_uring_cqe* c) {
      const unsigned chain = static_cast<unsigned>(c->user_data >> 16);
      const unsigned step = static_cast<unsigned>(c->user_data & 0xffff);
      ASSERT_LT(chain, kChains);
      EXPECT_EQ(step, steps[chain]) << "chain " << chain << ": a step lost or repeated";
      steps[chain] = step + 1;
      ++handled;
      if (step + 1 < kLength) {
        io_uring_sqe* s = ring.sqe();
        io_uring_prep_nop(s);
        io_uring_sqe_set_data64(s, static_cast<uint64_t>(chain) << 16 | (step + 1));
      }
    });
  }
  EXPECT_EQ(handled, kChains * kLength);
  for (unsigned i = 0; i < kChains; ++i) EXPECT_EQ(steps[i], kLength) << "chain " << i;
}

// One receive with a provided buffer on `fd`; returns the completion.
io_uring_cqe recv_one(Ring& ring, int fd, uint64_t tag) {
  io_uring_sqe* s = ring.sqe();
  io_uring_prep_recv(s, fd, nullptr, ring.buffer_size(), 0);
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = Ring::kBufGroup;
  io_uring_sqe_set_data64(s, tag);
  io_uring_cqe got{};
  io_uring_cqe* out = &got;  // (clang: a struct with a flexible array member is not captured)
  bool have = false;
  for (int pass = 0; pass < 1000 && !have; ++pass) {
    EXPECT_GE(ring.submit_and_wait(1), 0);
    ring.for_each_completion([out, &have](const io_uring_cqe* c) {
      *out = *c;
      have = true;
    });
  }
  EXPECT_TRUE(have);
  return got;
}

// Receives one at a time, each buffer given back at once, touch only the
// window's buffers, not every buffer of the ring in turn (whose pages the
// process would then all keep).
TEST(Ring, BuffersGivenBackAreReusedWithinTheWindow) {
  Ring ring;
  ASSERT_TRUE(ring.init(8, 1024, 4096).has_value());
  EXPECT_EQ(ring.buffers_posted(), Ring::kInitialWindow);
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  std::set<uint16_t> used;
  for (int i = 0; i < 300; ++i) {
    ASSERT_EQ(write(sv[0], "0123456789", 10), 10);
    const io_uring_cqe c = recv_one(ring, sv[1], static_cast<uint64_t>(i));
    ASSERT_EQ(c.res, 10);
    ASSERT_TRUE(c.flags & IORING_CQE_F_BUFFER);
    ring.note_taken();
    const auto bid = static_cast<uint16_t>(c.flags >> IORING_CQE_BUFFER_SHIFT);
    EXPECT_EQ(std::memcmp(ring.buffer(bid), "0123456789", 10), 0);
    used.insert(bid);
    ring.recycle(bid);
  }
  EXPECT_LE(used.size(), Ring::kInitialWindow);
  EXPECT_EQ(ring.buffers_out(), 0u);
  EXPECT_EQ(ring.buffers_posted(), Ring::kInitialWindow);
  close(sv[0]);
  close(sv[1]);
}

// More receives at once than the window: those that find no buffer fail with
// -ENOBUFS, the window grows by one for each, and their retries succeed.
TEST(Ring, AnEmptyWindowGrowsByWhatWasMissing) {
  Ring ring;
  ASSERT_TRUE(ring.init(8, 1024, 4096).has_value());
  constexpr unsigned kConns = Ring::kInitialWindow + 6;
  std::vector<std::array<int, 2>> pairs(kConns);
  for (auto& p : pairs) {
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, p.data()), 0);
    ASSERT_EQ(write(p[0], "x", 1), 1);
  }
  // All submitted together: the kernel hands out the window, then has none.
  for (unsigned i = 0; i < kConns; ++i) {
    io_uring_sqe* s = ring.sqe();
    io_uring_prep_recv(s, pairs[i][1], nullptr, ring.buffer_size(), 0);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = Ring::kBufGroup;
    io_uring_sqe_set_data64(s, i);
  }
  std::vector<uint16_t> held;
  unsigned no_buffers = 0, done = 0;
  std::vector<unsigned> retry;
  for (int pass = 0; pass < 1000 && done < kConns; ++pass) {
    ASSERT_GE(ring.submit_and_wait(1), 0);
    ring.for_each_completion([&](const io_uring_cqe* c) {
      ++done;
      if (c->res == -ENOBUFS) {
        ++no_buffers;
        retry.push_back(static_cast<unsigned>(c->user_data));
        return;
      }
      EXPECT_EQ(c->res, 1);
      EXPECT_TRUE(c->flags & IORING_CQE_F_BUFFER);
      ring.note_taken();
      held.push_back(static_cast<uint16_t>(c->flags >> IORING_CQE_BUFFER_SHIFT));  // kept: not given back
    });
  }
  ASSERT_EQ(done, kConns);
  for (unsigned k = 0; k < no_buffers; ++k) ring.on_no_buffers();
  EXPECT_EQ(no_buffers, kConns - Ring::kInitialWindow);
  EXPECT_EQ(ring.window(), kConns);
  for (unsigned i : retry) {
    const io_uring_cqe c = recv_one(ring, pairs[i][1], i);
    ASSERT_EQ(c.res, 1) << "retry " << i;
    ring.note_taken();
    held.push_back(static_cast<uint16_t>(c.flags >> IORING_CQE_BUFFER_SHIFT));
  }
  EXPECT_EQ(std::set<uint16_t>(held.begin(), held.end()).size(), kConns) << "a buffer handed out twice";
  for (uint16_t b : held) ring.recycle(b);
  EXPECT_EQ(ring.buffers_out(), 0u);
  for (auto& p : pairs) {
    close(p[0]);
    close(p[1]);
  }
}

// Issue 8: a close goes into the next submission (no system call of its
// own) and, when it succeeds, posts no completion; the descriptor stays open
// (its number taken) until that submission runs it.
TEST(Ring, ClosesNeverSubmittedAreDoneDirectlyWhenTheRingFails) {
  Ring ring;
  ASSERT_TRUE(ring.init(8, 2, 64).has_value());
  if (!ring.can_close()) GTEST_SKIP() << "closes are direct on this kernel";
  int p[2], q[2];
  ASSERT_EQ(pipe(p), 0);
  ASSERT_EQ(pipe(q), 0);
  ring.close(p[0]);
  io_uring_prep_nop(ring.sqe());  // something else queued beside them
  ring.close(q[1]);
  EXPECT_EQ(fcntl(p[0], F_GETFD), 0) << "queued, not closed yet";
  ring.close_unsubmitted();
  for (const int fd : {p[0], q[1]}) {
    errno = 0;
    EXPECT_EQ(fcntl(fd, F_GETFD), -1) << fd;
    EXPECT_EQ(errno, EBADF);
  }
  EXPECT_EQ(fcntl(p[1], F_GETFD), 0) << "only the queued ones";
  // What was queued is gone: the next submission runs no stale close on the
  // numbers new descriptors take (p[0]'s and q[1]'s, free again).
  int r[2];
  ASSERT_EQ(pipe(r), 0);
  ASSERT_GE(ring.submit(), 0);
  EXPECT_EQ(fcntl(r[0], F_GETFD), 0) << "a reused number closed by a stale queued close";
  EXPECT_EQ(fcntl(r[1], F_GETFD), 0);
  for (const int fd : {p[1], q[0], r[0], r[1]}) close(fd);
}

TEST(Ring, CloseRunsWithTheNextSubmissionAndPostsNoCompletion) {
  Ring ring;
  ASSERT_TRUE(ring.init(8, 2, 64).has_value());
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  ring.close(p[0]);
  if (ring.can_close()) {
    EXPECT_EQ(io_uring_sq_ready(ring.raw()), 1u) << "the close is queued";
    EXPECT_EQ(fcntl(p[0], F_GETFD), 0) << "closed before the submission";
    ASSERT_GE(ring.submit(), 0);
  }
  errno = 0;
  EXPECT_EQ(fcntl(p[0], F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
  io_uring_get_events(ring.raw());
  unsigned completions = ring.for_each_completion([](const io_uring_cqe*) {});
  EXPECT_EQ(completions, 0u) << "a successful close posted a completion";
  // A failed close does complete (EBADF), tagged kClose.
  ring.close(p[0]);
  ASSERT_GE(ring.submit(), 0);
  io_uring_get_events(ring.raw());
  int res = 0;
  completions = ring.for_each_completion([&](const io_uring_cqe* c) {
    EXPECT_EQ(op_of(c->user_data), Op::kClose);
    res = c->res;
  });
  if (ring.can_close()) {
    EXPECT_EQ(completions, 1u);
    EXPECT_EQ(res, -EBADF);
  }
  close(p[1]);
}

// ring_calls = false (init's last argument): close and setsockopt are not
// run by the ring even where the kernel could, as on a kernel without
// IORING_FEAT_CQE_SKIP (5.17) or SOCKET_URING_OP_SETSOCKOPT (6.7). The
// worker's fallbacks rest on what this checks: a close is done when close()
// returns, and nothing waits in the submission queue to run later on a
// number that a new descriptor may have taken by then.
TEST(Ring, WithoutRingCallsACloseIsDoneAtOnceAndNothingIsQueued) {
  Ring ring;
  ASSERT_TRUE(ring.init(8, 2, 64, false).has_value());
  EXPECT_FALSE(ring.can_close());
  EXPECT_FALSE(ring.can_setsockopt());
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  ring.close(p[0]);
  errno = 0;
  EXPECT_EQ(fcntl(p[0], F_GETFD), -1) << "still open after close() returned";
  EXPECT_EQ(errno, EBADF);
  EXPECT_EQ(io_uring_sq_ready(ring.raw()), 0u) << "a close was queued for the next submission";
  EXPECT_EQ(fcntl(p[1], F_GETFD), 0) << "only the one asked for";
  // A failed direct close is ignored (as the ring's kClose completion is):
  // nothing queued, no completion to hand out.
  ring.close(-1);
  EXPECT_EQ(io_uring_sq_ready(ring.raw()), 0u);
  ASSERT_GE(ring.submit(), 0);
  io_uring_get_events(ring.raw());
  EXPECT_EQ(ring.for_each_completion([](const io_uring_cqe*) {}), 0u);
  // The ring failing later has no close left to do: a descriptor that took
  // the closed number stays open.
  int r[2];
  ASSERT_EQ(pipe(r), 0);
  ring.close_unsubmitted();
  EXPECT_EQ(fcntl(r[0], F_GETFD), 0);
  EXPECT_EQ(fcntl(r[1], F_GETFD), 0);
  for (const int fd : {p[1], r[0], r[1]}) close(fd);
}

// A setsockopt through the ring (when the kernel has it: Linux 6.7) takes
// effect with the submission and posts no completion on success.
TEST(Ring, SetsockoptThroughTheRingTakesEffect) {
  Ring ring;
  ASSERT_TRUE(ring.init(8, 2, 64).has_value());
  if (!ring.can_setsockopt()) {
    // The worker then calls setsockopt() itself; nothing to check here but
    // that the probe left no completion behind.
    EXPECT_EQ(ring.for_each_completion([](const io_uring_cqe*) {}), 0u);
    return;
  }
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  int v = -1;
  socklen_t len = sizeof v;
  ASSERT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len), 0);
  EXPECT_EQ(v, 0);
  static const int kOne = 1;
  Ring::prep_setsockopt(ring.sqe(), fd, IPPROTO_TCP, TCP_NODELAY, &kOne);
  ASSERT_GE(ring.submit(), 0);
  len = sizeof v;
  ASSERT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len), 0);
  EXPECT_NE(v, 0);
  io_uring_get_events(ring.raw());
  EXPECT_EQ(ring.for_each_completion([](const io_uring_cqe*) {}), 0u);
  // A failure completes, tagged kSockopt.
  Ring::prep_setsockopt(ring.sqe(), fd, IPPROTO_TCP, 0x7fff, &kOne);
  ASSERT_GE(ring.submit(), 0);
  io_uring_get_events(ring.raw());
  int res = 0;
  EXPECT_EQ(ring.for_each_completion([&](const io_uring_cqe* c) {
    EXPECT_EQ(op_of(c->user_data), Op::kSockopt);
    res = c->res;
  }), 1u);
  EXPECT_LT(res, 0);
  close(fd);
}

// Quiet sends (Ring::make_quiet). This kernel (as CI's) runs them: the
// probe in init() must say so, or the worker would wait on every send again.
namespace quiet {

struct Pair {
  int fd[2] = {-1, -1};
  explicit Pair(int sndbuf = 0) {
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fd), 0);
    if (sndbuf > 0) setsockopt(fd[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  }
  ~Pair() {
    for (int f : fd) close(f);
  }
  std::string drain() const {
    std::string got;
    char buf[16384];
    ssize_t n;
    while ((n = recv(fd[1], buf, sizeof buf, MSG_DONTWAIT)) > 0) got.append(buf, static_cast<size_t>(n));
    return got;
  }
};

// A send of `bytes` on fd, tagged (slot, kClientSend), made quiet.
bool quiet_send(Ring& ring, int fd, const std::string& bytes, uint32_t slot) {
  io_uring_sqe* s = ring.sqe();
  io_uring_prep_send(s, fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  io_uring_sqe_set_data64(s, encode(slot, 1, Op::kClientSend));
  return ring.make_quiet(s);
}

std::vector<io_uring_cqe> completions(Ring& ring) {
  std::vector<io_uring_cqe> got;
  ring.for_each_completion([&](const io_uring_cqe* c) { got.push_back(*c); });
  return got;
}

}  // namespace quiet

TEST(Ring, AQuietSendThatFitsPostsNothingAndIsHandedOutAfterItsSubmission) {
  Ring ring;
  ASSERT_TRUE(ring.init(8, 2, 64).has_value());
  ASSERT_TRUE(ring.can_send_quietly()) << "the kernel no longer runs MSG_DONTWAIT sends within their submission";
  quiet::Pair p;
  const std::string bytes(1000, 'q');
  ASSERT_TRUE(quiet::quiet_send(ring, p.fd[0], bytes, 7));
  EXPECT_EQ(p.drain(), "") << "sent before its submission";
  ASSERT_GE(ring.submit(), 0);
  EXPECT_EQ(io_uring_cq_ready(ring.raw()), 0u) << "a whole success posted a completion";
  EXPECT_EQ(p.drain(), bytes) << "not all there when the submission returned";
  const auto got = quiet::completions(ring);
  ASSERT_EQ(got.size(), 1u) << "its success is handed out once";
  EXPECT_EQ(slot_of(got[0].user_data), 7u);
  EXPECT_EQ(op_of(got[0].user_data), Op::kClientSend);
  EXPECT_TRUE(is_quiet(got[0].user_data));
  EXPECT_EQ(got[0].res, 1000);
  EXPECT_TRUE(quiet::completions(ring).empty()) << "handed out twice";
  EXPECT_EQ(ring.quiet_sends(), 1u);
}

// What the quiet send is for: a wait is not woken by it. A plain send would
// end submit_and_wait(1) at once with its own completion, the timeout
// still running; a quiet one leaves the wait to the timeout, and its
// success is handed out ahead of the timeout's completion.
TEST(Ring, AWaitIsNotWokenByAQuietSend) {
  Ring ring;
  ASSERT_TRUE(ring.init(8, 2, 64).has_value());
  ASSERT_TRUE(ring.can_send_quietly());
  quiet::Pair p;
  const std::string bytes(500, 'w');
  ASSERT_TRUE(quiet::quiet_send(ring, p.fd[0], bytes, 3));
  __kernel_timespec ts{0, 50'000'000};
  io_uring_sqe* t = ring.sqe();
  io_uring_prep_timeout(t, &ts, 0, 0);
  io_uring_sqe_set_data64(t, encode(0, 0, Op::kTick));
  ASSERT_GE(ring.submit_and_wait(1), 0);
  const auto got = quiet::completions(ring);
  ASSERT_EQ(got.size(), 2u) << "the wait ended before the timeout";
  // The send, done within the submission, comes first: before what the
  // wait brought (the worker's kTLS hand-over wants a socket with no send
  // in flight when the client's next flight is handled).
  EXPECT_EQ(op_of(got[0].user_data), Op::kClientSend);
  EXPECT_EQ(got[0].res, 500);
  EXPECT_EQ(op_of(got[1].user_data), Op::kTick);
  EXPECT_EQ(got[1].res, -ETIME);
  EXPECT_EQ(p.drain(), bytes);
}

// A quiet send that finds too little room posts (MSG_WAITALL makes a short
// count a failure) with the count, and one into a full socket posts
// -EAGAIN: each handed out once, with what the kernel said, never also as a
// whole success; exactly the counted bytes are at the peer.
TEST(Ring, AQuietSendShortOfRoomPostsItsCountAndOneIntoAFullSocketEagain) {
  Ring ring;
  ASSERT_TRUE(ring.init(8, 2, 64).has_value());
  ASSERT_TRUE(ring.can_send_quietly());
  quiet::Pair p(4096);
  std::string big(512 * 1024, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + i / 251);
  ASSERT_TRUE(quiet::quiet_send(ring, p.fd[0], big, 1));
  ASSERT_GE(ring.submit(), 0);
  auto got = quiet::completions(ring);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(slot_of(got[0].user_data), 1u);
  ASSERT_GT(got[0].res, 0);
  ASSERT_LT(got[0].res, static_cast<int>(big.size()));
  const size_t sent = static_cast<size_t>(got[0].res);
  ASSERT_TRUE(quiet::quiet_send(ring, p.fd[0], big, 2));
  ASSERT_GE(ring.submit(), 0);
  got = quiet::completions(ring);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(slot_of(got[0].user_data), 2u);
  EXPECT_EQ(got[0].res, -EAGAIN);
  EXPECT_EQ(p.drain(), big.substr(0, sent));
}

// Several quiet sends and other operations in one submission, some short
// of room: every one handed out exactly once, the posted ones with their
// own result, the silent ones whole.
TEST(Ring, QuietSendsAmongOtherOperationsAreEachHandedOutOnce) {
  Ring ring;
  ASSERT_TRUE(ring.init(16, 2, 64).has_value());
  ASSERT_TRUE(ring.can_send_quietly());
  quiet::Pair roomy, tight(4096);
  const std::string small(100, 's');
  const std::string big(512 * 1024, 'b');
  ASSERT_TRUE(quiet::quiet_send(ring, roomy.fd[0], small, 10));
  io_uring_prep_nop(ring.sqe());
  ring.raw()->sq.sqes[(ring.raw()->sq.sqe_tail - 1) & ring.raw()->sq.ring_mask].user_data = encode(11, 1, Op::kCancel);
  ASSERT_TRUE(quiet::quiet_send(ring, tight.fd[0], big, 12));
  ASSERT_TRUE(quiet::quiet_send(ring, roomy.fd[0], small, 13));
  ASSERT_TRUE(quiet::quiet_send(ring, tight.fd[0], big, 14));
  ASSERT_GE(ring.submit(), 0);
  std::map<uint32_t, int> res;
  for (const io_uring_cqe& c : quiet::completions(ring)) {
    EXPECT_TRUE(res.emplace(slot_of(c.user_data), c.res).second) << "slot " << slot_of(c.user_data) << " twice";
  }
  ASSERT_EQ(res.size(), 5u);
  EXPECT_EQ(res[10], 100);
  EXPECT_EQ(res[11], 0);  // the nop
  EXPECT_GT(res[12], 0);
  EXPECT_LT(res[12], static_cast<int>(big.size()));
  EXPECT_EQ(res[13], 100);
  EXPECT_EQ(res[14], -EAGAIN);
  EXPECT_EQ(roomy.drain(), small + small);
  EXPECT_EQ(tight.drain().size(), static_cast<size_t>(res[12]));
}

// A tiny SQ fills and is submitted early by sqe(): the quiet sends that
// submission ran are handed out too, once each.
TEST(Ring, QuietSendsSubmittedEarlyForAFullQueueAreHandedOut) {
  Ring ring;
  ASSERT_TRUE(ring.init(2, 2, 64).has_value());
  ASSERT_TRUE(ring.can_send_quietly());
  quiet::Pair p;
  const std::string bytes(64, 'e');
  constexpr uint32_t kSends = 9;
  for (uint32_t i = 0; i < kSends; ++i) ASSERT_TRUE(quiet::quiet_send(ring, p.fd[0], bytes, i));
  EXPECT_GT(ring.sq_full(), 0u);
  ASSERT_GE(ring.submit(), 0);
  std::set<uint32_t> slots;
  for (const io_uring_cqe& c : quiet::completions(ring)) {
    EXPECT_EQ(c.res, 64);
    EXPECT_TRUE(slots.insert(slot_of(c.user_data)).second);
  }
  EXPECT_EQ(slots.size(), kSends);
  EXPECT_EQ(p.drain().size(), kSends * bytes.size());
}

// ring_calls = false, or a send that is not the last SQE taken: nothing is
// made quiet, the SQE is left as it was.
TEST(Ring, NoSendIsQuietWithoutRingCallsOrOutOfOrder) {
  Ring direct;
  ASSERT_TRUE(direct.init(8, 2, 64, false).has_value());
  EXPECT_FALSE(direct.can_send_quietly());
  quiet::Pair p;
  const std::string bytes(10, 'd');
  EXPECT_FALSE(quiet::quiet_send(direct, p.fd[0], bytes, 1));
  Ring ring;
  ASSERT_TRUE(ring.init(8, 2, 64).has_value());
  io_uring_sqe* s = ring.sqe();
  io_uring_prep_send(s, p.fd[0], bytes.data(), bytes.size(), MSG_NOSIGNAL);
  io_uring_prep_nop(ring.sqe());
  EXPECT_FALSE(ring.make_quiet(s));
  EXPECT_EQ(s->msg_flags, static_cast<uint32_t>(MSG_NOSIGNAL));
  EXPECT_EQ(s->flags & IOSQE_CQE_SKIP_SUCCESS, 0);
  io_uring_prep_nop(ring.sqe());
  EXPECT_FALSE(ring.make_quiet(ring.raw()->sq.sqes + ((ring.raw()->sq.sqe_tail - 1) & ring.raw()->sq.ring_mask)))
      << "not a send";
  ASSERT_GE(ring.submit(), 0);
  io_uring_get_events(ring.raw());
  EXPECT_EQ(quiet::completions(ring).size(), 3u);
  EXPECT_EQ(ring.quiet_sends(), 0u);
}

// Recvs that wait first (IORING_RECVSEND_POLL_FIRST): this kernel (as
// CI's) takes them, and the probe in init() must say so. Such a recv on an
// empty socket completes only once bytes come, and on a socket with bytes
// waiting takes them; a TCP recv that leaves bytes behind says so
// (IORING_CQE_F_SOCK_NONEMPTY) and one that empties the socket does not —
// what the worker decides the next recv's kind by. Not with ring_calls =
// false.
TEST(Ring, ARecvThatWaitsFirstTakesBytesThatComeLaterOrWereAlreadyThere) {
  Ring direct;
  ASSERT_TRUE(direct.init(8, 2, 64, false).has_value());
  EXPECT_FALSE(direct.can_poll_first());
  Ring ring;
  ASSERT_TRUE(ring.init(8, 4, 64).has_value());
  ASSERT_TRUE(ring.can_poll_first()) << "the kernel refused IORING_RECVSEND_POLL_FIRST";
  const int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(l, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof a;
  ASSERT_EQ(bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(l, 1), 0);
  ASSERT_EQ(getsockname(l, reinterpret_cast<sockaddr*>(&a), &alen), 0);
  const int tx = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(connect(tx, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  const int rx = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(rx, 0);
  auto arm = [&] {
    io_uring_sqe* s = ring.sqe();
    io_uring_prep_recv(s, rx, nullptr, 64, 0);
    s->ioprio |= IORING_RECVSEND_POLL_FIRST;
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = Ring::kBufGroup;
    io_uring_sqe_set_data64(s, encode(1, 1, Op::kClientRecv));
  };
  // One completion, waited for up to a second: its bytes, and its flags.
  auto take = [&](std::string& got) -> uint32_t {
    __kernel_timespec ts{1, 0};
    io_uring_cqe* c = nullptr;
    if (io_uring_wait_cqe_timeout(ring.raw(), &c, &ts) != 0) return ~0u;
    uint32_t flags = 0;
    ring.for_each_completion([&](const io_uring_cqe* q) {
      flags = q->flags;
      EXPECT_EQ(op_of(q->user_data), Op::kClientRecv);
      if (q->res > 0 && (q->flags & IORING_CQE_F_BUFFER)) {
        const auto bid = static_cast<uint16_t>(q->flags >> IORING_CQE_BUFFER_SHIFT);
        got.append(reinterpret_cast<const char*>(ring.buffer(bid)), static_cast<size_t>(q->res));
        ring.note_taken();
        ring.recycle(bid);
      }
    });
    return flags;
  };
  arm();
  ASSERT_GE(ring.submit(), 0);
  usleep(50'000);
  io_uring_get_events(ring.raw());
  EXPECT_EQ(ring.for_each_completion([](const io_uring_cqe*) {}), 0u) << "completed on an empty socket";
  const std::string bytes(100, 'p');
  ASSERT_EQ(send(tx, bytes.data(), bytes.size(), 0), 100);
  std::string got;
  uint32_t flags = take(got);
  ASSERT_NE(flags, ~0u) << "the bytes that came were never taken";
  EXPECT_EQ(got, std::string(64, 'p'));
  EXPECT_NE(flags & IORING_CQE_F_SOCK_NONEMPTY, 0u) << "36 bytes were left";
  arm();  // bytes already there
  ASSERT_GE(ring.submit(), 0);
  got.clear();
  flags = take(got);
  ASSERT_NE(flags, ~0u);
  EXPECT_EQ(got, std::string(36, 'p'));
  EXPECT_EQ(flags & IORING_CQE_F_SOCK_NONEMPTY, 0u) << "the socket was emptied";
  close(tx);
  close(rx);
  close(l);
}

}  // namespace
}  // namespace lode::worker

// The worker's io_uring wrapper under pressure: a ring far smaller than the
// work in flight. No SQE request may fail, no completion may be lost or
// handed out twice, whether the kernel keeps the excess in its overflow list
// or refuses submissions (-EBUSY) until the completion ring is read.
#include "dataplane/worker/uring.h"

#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <set>
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

}  // namespace
}  // namespace lode::worker

// The worker's io_uring wrapper under pressure: a ring far smaller than the
// work in flight. No SQE request may fail, no completion may be lost or
// handed out twice, whether the kernel keeps the excess in its overflow list
// or refuses submissions (-EBUSY) until the completion ring is read.
#include "dataplane/worker/uring.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace lode::worker

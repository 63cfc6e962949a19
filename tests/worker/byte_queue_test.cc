#include "dataplane/worker/byte_queue.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace lode::worker {
namespace {

std::string contents(const ByteQueue& q) {
  const auto f = q.front();
  return {reinterpret_cast<const char*>(f.data()), f.size()};
}

TEST(ByteQueue, PrepareCommitKeepsOnlyWhatWasWritten) {
  uint64_t account = 0;
  ByteQueue q;
  q.set_account(&account);
  q.append({reinterpret_cast<const uint8_t*>("ab"), 2});
  uint8_t* p = q.prepare(100);
  std::memcpy(p, "cde", 3);
  q.commit(3);
  EXPECT_EQ(contents(q), "abcde");
  q.prepare(50);
  q.commit(0);  // nothing written (a read that found nothing)
  EXPECT_EQ(contents(q), "abcde");
  EXPECT_EQ(account, q.capacity());
  uint8_t out[4];
  EXPECT_EQ(q.read(out, 4), 4u);
  EXPECT_EQ(contents(q), "e");
  q.consume(1);
  EXPECT_TRUE(q.empty());
  EXPECT_GT(q.capacity(), 0u);  // drained storage is kept until release()
  q.release();
  EXPECT_EQ(q.capacity(), 0u);
  EXPECT_EQ(account, 0u);
}

TEST(ByteQueue, GrowsGeometricallyAndKeepsBytes) {
  ByteQueue q;
  std::string want;
  for (int i = 0; i < 100; ++i) {
    const std::string chunk(1000 + i, static_cast<char>('a' + i % 26));
    q.append({reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size()});
    want += chunk;
  }
  EXPECT_EQ(contents(q), want);
  EXPECT_LT(q.capacity(), 2 * want.size() + 4096);
}

}  // namespace
}  // namespace lode::worker

// HelloCollector: segments in any order, duplicates, overlapping retransmits
// whose bytes differ (the first bytes held win), the cap, the gap limit and
// sequence numbers that wrap.
#include "dataplane/front/hello_collector.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace lode::front {
namespace {

std::span<const uint8_t> bytes(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }
std::string str(std::span<const uint8_t> s) { return {reinterpret_cast<const char*>(s.data()), s.size()}; }

class CollectorTest : public ::testing::Test {
 protected:
  void SetUp() override { c.reset(start, buf); }
  HelloCollector::Add add(size_t offset, const std::string& s) { return c.add(start + static_cast<uint32_t>(offset), bytes(s)); }
  uint32_t start = 1000;
  std::vector<uint8_t> buf = std::vector<uint8_t>(64);
  HelloCollector c;
};

TEST_F(CollectorTest, InOrderSegmentsJoin) {
  EXPECT_EQ(add(0, "hello "), HelloCollector::Add::kAdded);
  EXPECT_EQ(add(6, "world"), HelloCollector::Add::kAdded);
  EXPECT_EQ(str(c.contiguous()), "hello world");
  EXPECT_EQ(c.next_seq(), start + 11);
  EXPECT_FALSE(c.has_gap());
}

TEST_F(CollectorTest, OutOfOrderWaitsForTheGap) {
  EXPECT_EQ(add(6, "world"), HelloCollector::Add::kAdded);
  EXPECT_TRUE(c.contiguous().empty());
  EXPECT_TRUE(c.has_gap());
  EXPECT_EQ(c.next_seq(), start);
  EXPECT_EQ(add(0, "hello "), HelloCollector::Add::kAdded);
  EXPECT_EQ(str(c.contiguous()), "hello world");
  EXPECT_FALSE(c.has_gap());
}

TEST_F(CollectorTest, DuplicatesChangeNothing) {
  ASSERT_EQ(add(0, "abcdef"), HelloCollector::Add::kAdded);
  EXPECT_EQ(add(0, "abcdef"), HelloCollector::Add::kDuplicate);
  EXPECT_EQ(add(2, "cd"), HelloCollector::Add::kDuplicate);
  EXPECT_EQ(str(c.contiguous()), "abcdef");
}

TEST_F(CollectorTest, OverlappingRetransmitWithOtherBytesKeepsTheFirst) {
  ASSERT_EQ(add(0, "AAAA"), HelloCollector::Add::kAdded);
  ASSERT_EQ(add(8, "CCCC"), HelloCollector::Add::kAdded);
  // Covers both held pieces and the gap, with different bytes everywhere.
  EXPECT_EQ(add(2, "xxxxxxxxxxxx"), HelloCollector::Add::kAdded);
  EXPECT_EQ(str(c.contiguous()), "AAAAxxxxCCCCxx");
  EXPECT_FALSE(c.has_gap());
}

TEST_F(CollectorTest, BytesBeforeTheStartAreTrimmed) {
  EXPECT_EQ(c.add(start - 3, bytes("zzzabc")), HelloCollector::Add::kAdded);
  EXPECT_EQ(str(c.contiguous()), "abc");
  EXPECT_EQ(c.add(start - 10, bytes("0123456789")), HelloCollector::Add::kDuplicate);
}

// Nothing past the room is held: a segment starting beyond it is refused;
// one across its end keeps the part inside (a hello's tail with early data
// behind it was dropped whole, every retransmission, until hello_ms).
TEST_F(CollectorTest, TheCapIsHardAPieceAcrossItIsTrimmed) {
  EXPECT_EQ(add(64, "1"), HelloCollector::Add::kBeyondCap);
  EXPECT_EQ(add(1u << 30, "x"), HelloCollector::Add::kBeyondCap);
  EXPECT_EQ(add(60, "12345"), HelloCollector::Add::kAdded);  // bytes 60..63 kept
  EXPECT_EQ(add(60, "1234"), HelloCollector::Add::kDuplicate);
  EXPECT_EQ(add(59, "012345"), HelloCollector::Add::kAdded);  // byte 59 is new
  EXPECT_EQ(add(0, std::string(59, 'h')), HelloCollector::Add::kAdded);
  EXPECT_EQ(str(c.contiguous()), std::string(59, 'h') + "01234");
}

TEST_F(CollectorTest, TooManyGapsDropsTheSegmentUntilTheyClose) {
  for (size_t i = 0; i < HelloCollector::kMaxRanges; ++i) ASSERT_EQ(add(2 + 4 * i, "x"), HelloCollector::Add::kAdded);
  EXPECT_EQ(add(40, "y"), HelloCollector::Add::kTooManyGaps);
  // Filling a gap (merging two pieces) is always possible.
  EXPECT_EQ(add(3, "yyy"), HelloCollector::Add::kAdded);
  EXPECT_EQ(add(40, "y"), HelloCollector::Add::kAdded);
  EXPECT_EQ(add(0, "zz"), HelloCollector::Add::kAdded);
  EXPECT_EQ(str(c.contiguous()), "zzxyyyx");
}

TEST_F(CollectorTest, SequenceNumbersWrap) {
  start = 0xfffffffa;
  c.reset(start, buf);
  EXPECT_EQ(c.add(0x00000002, bytes("89")), HelloCollector::Add::kAdded);  // offset 8
  EXPECT_EQ(c.add(0xfffffffa, bytes("01234567")), HelloCollector::Add::kAdded);
  EXPECT_EQ(str(c.contiguous()), "0123456789");
  EXPECT_EQ(c.next_seq(), 0x00000004u);
}

TEST_F(CollectorTest, EverySegmentOrderGivesTheSameBytes) {
  const std::string text = "The quick brown fox jumps over the lazy dog, twice!";
  std::vector<std::pair<size_t, size_t>> pieces = {{0, 7}, {7, 13}, {13, 20}, {20, 31}, {31, text.size()}};
  std::vector<int> order = {0, 1, 2, 3, 4};
  do {
    c.reset(start, buf);
    for (int i : order) {
      (void)add(pieces[i].first, text.substr(pieces[i].first, pieces[i].second - pieces[i].first));
    }
    ASSERT_EQ(str(c.contiguous()), text);
  } while (std::next_permutation(order.begin(), order.end()));
}

}  // namespace
}  // namespace lode::front

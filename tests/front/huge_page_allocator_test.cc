// The flow engine's tables on huge pages (dataplane/front/huge_page_allocator.h):
// a table of 2 MiB or more is its own mapping, 2 MiB aligned and marked
// MADV_HUGEPAGE; smaller ones come from operator new; contents survive growth.
#include "dataplane/front/huge_page_allocator.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace lode::front {
namespace {

// The VmFlags line of the mapping in /proc/self/smaps that holds `p`.
std::string vm_flags_of(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto at = reinterpret_cast<uintptr_t>(p);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find('-') < line.find(' ')) {
      inside = at >= lo && at < hi;
      continue;
    }
    if (inside && line.rfind("VmFlags:", 0) == 0) return line;
  }
  return "";
}

bool kernel_has_thp() { return std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled").good(); }

TEST(HugePageAllocator, LargeTablesAreAlignedMappingsMarkedForHugePages) {
  std::vector<uint64_t, HugePageAllocator<uint64_t>> big(600'000, 7);  // 4.8 MB
  EXPECT_EQ(reinterpret_cast<uintptr_t>(big.data()) % kHugePageBytes, 0u);
  const std::string flags = vm_flags_of(big.data());
  ASSERT_FALSE(flags.empty()) << "no mapping holds the table";
  if (kernel_has_thp()) EXPECT_NE(flags.find(" hg"), std::string::npos) << flags;
  EXPECT_EQ(big.front(), 7u);
  EXPECT_EQ(big.back(), 7u);
  // Growing moves the contents into a new mapping, the old one given back.
  const uint64_t* old = big.data();
  big.resize(1'200'000, 9);
  EXPECT_NE(big.data(), old);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(big.data()) % kHugePageBytes, 0u);
  EXPECT_EQ(big[599'999], 7u);
  EXPECT_EQ(big[600'000], 9u);
}

TEST(HugePageAllocator, SmallTablesComeFromTheHeap) {
  std::vector<uint32_t, HugePageAllocator<uint32_t>> small(1000, 3);
  EXPECT_EQ(small[999], 3u);
  if (kernel_has_thp()) EXPECT_EQ(vm_flags_of(small.data()).find(" hg"), std::string::npos) << "not madvised";
  struct alignas(64) Wide {
    uint8_t b[64];
  };
  std::vector<Wide, HugePageAllocator<Wide>> wide(3);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(wide.data()) % 64, 0u);
}

}  // namespace
}  // namespace lode::front

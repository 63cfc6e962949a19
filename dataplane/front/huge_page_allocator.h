// Memory for the flow engine's large tables (the flow slots and the two
// indexes): a table of 2 MiB or more gets its own mapping, 2 MiB aligned and
// marked MADV_HUGEPAGE, so that where the kernel has transparent huge pages
// (`always` or `madvise` in /sys/kernel/mm/transparent_hugepage/enabled) it
// is mapped by 2 MiB pages. At 100,000 flows the slots alone are about 50 MB:
// with 4 KiB pages nearly every lookup of a random flow misses the TLB
// (bench/dpdk_ring_forward_bench --flows). Smaller tables come from operator
// new. Without huge pages (the kernel says `never`, or has none free) the
// mapping is ordinary memory: nothing fails for want of them.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <new>

namespace lode::front {

inline constexpr size_t kHugePageBytes = size_t{2} << 20;

template <typename T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() noexcept = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) noexcept {}  // NOLINT: rebinding, as std::allocator

  T* allocate(size_t n) {
    if (n > SIZE_MAX / sizeof(T)) throw std::bad_array_new_length();
    const size_t bytes = n * sizeof(T);
    if (bytes < kHugePageBytes) return static_cast<T*>(::operator new(bytes, std::align_val_t{alignof(T)}));
    const size_t len = mapped_bytes(bytes);
    // One page more than needed, then the unaligned ends given back.
    void* raw = mmap(nullptr, len + kHugePageBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) throw std::bad_alloc();
    const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
    const uintptr_t aligned = (start + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
    if (aligned > start) munmap(raw, aligned - start);
    const uintptr_t end = start + len + kHugePageBytes;
    if (end > aligned + len) munmap(reinterpret_cast<void*>(aligned + len), end - (aligned + len));
    (void)madvise(reinterpret_cast<void*>(aligned), len, MADV_HUGEPAGE);  // EINVAL without THP: 4 KiB pages
    return reinterpret_cast<T*>(aligned);
  }

  void deallocate(T* p, size_t n) noexcept {
    const size_t bytes = n * sizeof(T);
    if (bytes < kHugePageBytes) {
      ::operator delete(p, std::align_val_t{alignof(T)});
      return;
    }
    munmap(p, mapped_bytes(bytes));
  }

  template <typename U>
  bool operator==(const HugePageAllocator<U>&) const noexcept {
    return true;
  }

 private:
  static size_t mapped_bytes(size_t bytes) noexcept { return (bytes + kHugePageBytes - 1) & ~(kHugePageBytes - 1); }
};

}  // namespace lode::front

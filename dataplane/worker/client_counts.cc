#include "dataplane/worker/client_counts.h"

#include <netinet/in.h>
#include <openssl/rand.h>
#include <sys/mman.h>

#include <cstring>
#include <new>
#include <span>

#include "dataplane/front/syn_cookie.h"

namespace lode::worker {

namespace {

std::array<uint8_t, 16> random_key() {
  std::array<uint8_t, 16> k{};
  if (RAND_bytes(k.data(), static_cast<int>(k.size())) != 1) {
    // No randomness: a fixed key only makes collisions predictable; the
    // limit still holds for everyone.
    k.fill(0x5a);
  }
  return k;
}

constexpr size_t kMaxSlots = size_t{1} << 26;

size_t round_up_pow2(size_t n) {
  size_t p = 2;
  while (p < n && p < kMaxSlots) p <<= 1;
  return p;
}

}  // namespace

ClientCounts::ClientCounts(size_t slots) : ClientCounts(slots, random_key()) {}

ClientCounts::ClientCounts(size_t slots, const std::array<uint8_t, 16>& key)
    : mask_(round_up_pow2(slots) - 1), key_(key), bytes_(2 * (mask_ + 1) * sizeof(uint32_t)) {
  // Zeros the kernel hands out on first touch: a table for a million
  // connections costs nothing until the limit is on and counting.
  void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  // Counters touched one here, one there: no 2 MiB page for each.
  madvise(p, bytes_, MADV_NOHUGEPAGE);
  rows_ = static_cast<uint32_t*>(p);
}

ClientCounts::~ClientCounts() { munmap(rows_, bytes_); }

size_t ClientCounts::slots_for(uint64_t connections) noexcept {
  const uint64_t want = connections > kMaxSlots / 32 ? kMaxSlots : connections * 32;
  return round_up_pow2(want < (size_t{1} << 12) ? (size_t{1} << 12) : static_cast<size_t>(want));
}

bool ClientCounts::slots_of(const sockaddr* sa, socklen_t len, uint32_t& a, uint32_t& b) const noexcept {
  // The family tag first, so an IPv4 address and an IPv6 prefix with the
  // same bytes are different clients.
  uint8_t msg[9] = {};
  size_t n = 0;
  if (sa == nullptr) return false;
  if (sa->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    msg[0] = 4;
    std::memcpy(msg + 1, &in->sin_addr, 4);
    n = 5;
  } else if (sa->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    const uint8_t* bytes = in6->sin6_addr.s6_addr;
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(bytes, kMapped, sizeof kMapped) == 0) {  // an IPv4 client of a dual-stack socket
      msg[0] = 4;
      std::memcpy(msg + 1, bytes + 12, 4);
      n = 5;
    } else {
      msg[0] = 6;
      std::memcpy(msg + 1, bytes, 8);  // the /64
      n = 9;
    }
  } else {
    return false;
  }
  const uint64_t h = front::siphash24(key_, std::span<const uint8_t>(msg, n));
  a = static_cast<uint32_t>(h & mask_);
  b = static_cast<uint32_t>((h >> 32) & mask_);
  return true;
}

bool ClientCounts::admit(const sockaddr* sa, socklen_t len, uint32_t limit, Hold& h) noexcept {
  h = Hold{};
  uint32_t a = 0, b = 0;
  if (!slots_of(sa, len, a, b)) return true;
  const std::atomic_ref<uint32_t> ra = at(0, a);
  const std::atomic_ref<uint32_t> rb = at(1, b);
  // Both counters are read again after both increments (sequentially
  // consistent): of the connections held at any moment, the one admitted
  // last read both counters after every other one had added to both, so it
  // saw them all. (The values the increments return would not do: two
  // workers could each see the other's increment on one counter only.)
  ra.fetch_add(1, std::memory_order_seq_cst);
  rb.fetch_add(1, std::memory_order_seq_cst);
  const uint32_t na = ra.load(std::memory_order_seq_cst);
  const uint32_t nb = rb.load(std::memory_order_seq_cst);
  if ((na < nb ? na : nb) > limit) {
    ra.fetch_sub(1, std::memory_order_relaxed);
    rb.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  h = Hold{a, b, true};
  return true;
}

void ClientCounts::release(Hold& h) noexcept {
  if (!h.held) return;
  at(0, h.a).fetch_sub(1, std::memory_order_relaxed);
  at(1, h.b).fetch_sub(1, std::memory_order_relaxed);
  h = Hold{};
}

uint32_t ClientCounts::count(const sockaddr* sa, socklen_t len) const noexcept {
  uint32_t a = 0, b = 0;
  if (!slots_of(sa, len, a, b)) return 0;
  const uint32_t na = at(0, a).load(std::memory_order_relaxed);
  const uint32_t nb = at(1, b).load(std::memory_order_relaxed);
  return na < nb ? na : nb;
}

}  // namespace lode::worker

// The queue a NIC's receive-side scaling (RSS) puts a TCP segment on, worked
// out in software: the Toeplitz hash of the segment's addresses and ports
// under the NIC's key, its low bits an index into the redirection table
// (RETA), whose entry is the queue.
//
// The dpdk front uses it to pick, for a flow's backend side, a local port
// whose return segments the NIC delivers to the lcore that holds the flow
// (flow_engine_lcores.cc). The hash input is what the NIC reads, in its
// order, from the segment as received (the backend -> us direction):
//
//   source address | destination address | source port | destination port
//   (4 or 16 bytes)  (4 or 16 bytes)        (2 bytes)     (2 bytes)
//
// all in network byte order (Microsoft's "RSS hashing functions";
// "Verifying the RSS Hash Calculation" gives the test vectors).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "dataplane/front/flow_key.h"

namespace lode::front {

// The 4-tuple a NIC hashes for a received frame when it hashes TCP by its
// ports (RTE_ETH_RSS_NONFRAG_IPV4_TCP / _IPV6_TCP): the segment's own
// addresses and ports, src the sender. Only the plain shapes, which such a
// NIC hashes by those four fields whatever else it does:
//
//   Ethernet II (at most one 802.1Q tag) | IPv4, IHL 5, not a fragment,
//   protocol 6 | TCP header (20 bytes at least)
//   Ethernet II (at most one 802.1Q tag) | IPv6, next header 6 | TCP header
//
// with the IP length within the frame. None for anything else: fragments
// are hashed by their addresses alone, IPv4 options and IPv6 extension
// headers by other inputs on some NICs (RTE_ETH_RSS_IPV6_TCP_EX), and a
// truncated frame has no trustworthy tuple. Reads nothing past the span.
std::optional<FlowKey> rss_tcp_tuple(std::span<const uint8_t> frame) noexcept;

// The Toeplitz hash of `input` under `key`: for every bit of the input that
// is set (most significant bit of the first byte first), the 32 key bits
// starting at that bit's position are XORed into the result. The key needs
// at least input.size() + 4 bytes (missing key bits count as zero).
uint32_t toeplitz_hash(std::span<const uint8_t> key, std::span<const uint8_t> input) noexcept;

// One NIC port's RSS for TCP over IPv4 and IPv6: its key and its RETA.
class RssHash {
 public:
  // Keys of 40 bytes (most NICs) and 52 (some Intel ones); an IPv6 4-tuple
  // (36 bytes) needs 40.
  static constexpr size_t kMinKey = 40, kMaxKey = 52;
  static constexpr size_t kMaxReta = 4096;

  // None when the key is shorter than kMinKey or longer than kMaxKey, or the
  // RETA is empty, longer than kMaxReta or not a power of two in size.
  static std::optional<RssHash> make(std::span<const uint8_t> key, std::vector<uint16_t> reta);

  // The hash of a TCP segment with these addresses and ports (src: the
  // sender, as in the segment; host byte order ports).
  uint32_t hash(const FlowKey& k) const noexcept { return hash_without_dport(k) ^ dport_part(k.dst.family, k.dport); }
  // The queue the NIC puts it on.
  uint16_t queue_of(const FlowKey& k) const noexcept { return queue_of_hash(hash(k)); }
  uint16_t queue_of_hash(uint32_t h) const noexcept { return reta_[h & reta_mask_]; }

  // The hash is linear in its input bits: hash(k) ==
  // hash_without_dport(k) ^ dport_part(family, k.dport), the second from two
  // tables, so trying many destination ports for one peer costs two loads
  // and an XOR each.
  uint32_t hash_without_dport(const FlowKey& k) const noexcept;
  uint32_t dport_part(uint8_t family, uint16_t port) const noexcept {
    const auto& t = dport_[family == 6 ? 1 : 0];
    return t[0][port >> 8] ^ t[1][port & 0xff];
  }

  // A destination port for `k` (its dport ignored) in first..last, tried
  // from first + start (wrapping) for at most `attempts` ports, such that
  // the segment hashes to `queue` and usable(port) says yes; 0 when none.
  template <typename Usable>
  uint16_t find_dport(const FlowKey& k, uint16_t queue, uint16_t first, uint16_t last, uint32_t start,
                      uint32_t attempts, Usable&& usable) const noexcept {
    const uint32_t span = uint32_t{last} - first + 1;
    const uint32_t base = hash_without_dport(k);
    uint32_t at = start % span;
    for (uint32_t tries = 0; tries < attempts; ++tries, at = at + 1 == span ? 0 : at + 1) {
      const auto port = static_cast<uint16_t>(first + at);
      if (queue_of_hash(base ^ dport_part(k.dst.family, port)) == queue && usable(port)) return port;
    }
    return 0;
  }

  std::span<const uint8_t> key() const noexcept { return {key_.data(), key_len_}; }
  std::span<const uint16_t> reta() const noexcept { return reta_; }

 private:
  RssHash() = default;
  std::array<uint8_t, kMaxKey> key_{};
  size_t key_len_ = 0;
  std::vector<uint16_t> reta_;
  uint32_t reta_mask_ = 0;
  // [IPv4, IPv6][high byte, low byte of the port][byte value]
  std::array<std::array<std::array<uint32_t, 256>, 2>, 2> dport_{};
};

}  // namespace lode::front

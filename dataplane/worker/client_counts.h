// [limits] connections_per_client: the open connections of each client
// address over all workers of the process, so that one address cannot take
// the slots every other client needs (nginx's `limit_conn` on
// $binary_remote_addr, HAProxy's `src_conn_cur`).
//
// A counting sketch, not a table of addresses: two rows of atomic counters;
// a client (its IPv4 address, or the /64 of its IPv6 address, which one host
// usually holds whole) is hashed with a random per-process SipHash key into
// one counter of each row, and its count is the smaller of the two. Another
// client sharing both counters can only make the count larger, never
// smaller: the limit is never exceeded, and an innocent client is refused
// only when two heavy clients' hashes cover both of its counters (the key is
// secret, so an attacker cannot aim at a victim's counters). Fixed memory
// (2 x 2^17 x 4 bytes by default), no lock, no allocation per connection.
// Admission increments both counters, reads both again and takes its
// increments back when the count is over the limit, so workers admitting at
// once may refuse more than needed, never admit past the limit.
#pragma once

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace lode::worker {

class ClientCounts {
 public:
  // rows of `slots` counters each (a power of two); a random key.
  explicit ClientCounts(size_t slots = size_t{1} << 17);
  // The same with a given key (tests).
  ClientCounts(size_t slots, const std::array<uint8_t, 16>& key);

  // What a connection holds: its two counters, taken back by release().
  struct Hold {
    uint32_t a = 0, b = 0;
    bool held = false;
  };
  // One more connection of the client at `sa`: true, and `h` holds its
  // counters, if its count stays within `limit`; false (nothing held) when
  // it would pass it. An address of another family than IPv4/IPv6 (a unix
  // socket's) is always admitted, holding nothing.
  bool admit(const sockaddr* sa, socklen_t len, uint32_t limit, Hold& h) noexcept;
  void release(Hold& h) noexcept;
  // The client's count (an upper bound of its open connections).
  uint32_t count(const sockaddr* sa, socklen_t len) const noexcept;

 private:
  bool slots_of(const sockaddr* sa, socklen_t len, uint32_t& a, uint32_t& b) const noexcept;

  size_t mask_;
  std::array<uint8_t, 16> key_;
  std::unique_ptr<std::atomic<uint32_t>[]> rows_;  // row 0, then row 1
};

}  // namespace lode::worker

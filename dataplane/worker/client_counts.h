// [limits] connections_per_client: the open connections of each client
// address over all workers of the process, so that one address cannot take
// the slots every other client needs (nginx's `limit_conn` on
// $binary_remote_addr, HAProxy's `src_conn_cur`).
//
// A counting sketch, not a table of addresses: two rows of atomic counters;
// a client (its IPv4 address, or the /64 of its IPv6 address, which one host
// usually holds whole) is hashed with a random per-process SipHash key into
// one counter of each row, and its count is the smaller of the two. Other
// clients sharing both counters can only make the count larger, never
// smaller: the limit is never exceeded. A client is refused wrongly when
// the connections of others raise both of its counters: each row holds 32
// to 64 counters per connection the process can hold (slots_for(): a power
// of two; fewer beyond 2^21 connections, the ceiling), so a counter carries
// at most 1/32 of another client's connection on average; with
// every connection slot of the process taken, a client one below its limit
// is refused early about once in 1,000 attempts (both counters carrying
// another: (1 - e^(-1/32))^2), at a tenth of capacity once in 100,000. The
// key is secret: an attacker cannot aim at a victim's counters. Memory:
// 2 rows x 4 bytes x the slots (256 to 512 bytes per connection slot), mapped
// untouched and touched only by counting (the limit on); no lock, no
// allocation per connection.
// Admission increments both counters, reads both again and takes its
// increments back when the count is over the limit, so workers admitting at
// once may refuse more than needed, never admit past the limit.
#pragma once

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace lode::worker {

class ClientCounts {
 public:
  // Rows of at least `slots` counters each (a power of two, 2^26 at most);
  // a random key.
  explicit ClientCounts(size_t slots = size_t{1} << 17);
  // The same with a given key (tests).
  ClientCounts(size_t slots, const std::array<uint8_t, 16>& key);
  ~ClientCounts();
  ClientCounts(const ClientCounts&) = delete;
  ClientCounts& operator=(const ClientCounts&) = delete;
  // The slots per row for a process that holds at most `connections`.
  static size_t slots_for(uint64_t connections) noexcept;

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

  std::atomic_ref<uint32_t> at(size_t row, uint32_t i) const noexcept {
    return std::atomic_ref<uint32_t>(rows_[row * (mask_ + 1) + i]);
  }

  size_t mask_;
  std::array<uint8_t, 16> key_;
  uint32_t* rows_ = nullptr;  // row 0, then row 1: an anonymous mapping (zeros until counted)
  size_t bytes_ = 0;
};

}  // namespace lode::worker

// SYN cookies for the dpdk front: the SYN-ACK's initial sequence number
// encodes and authenticates what the dataplane must remember about a new
// flow, so a SYN costs no state and a flood of them costs nothing but the
// answer.
//
// Unlike DPVS's cookie (an MD5-derived value keyed by 32 bits, about 1.4e-4
// chance to forge one by guessing) or Linux's (options only with timestamps),
// the cookie here is a keyed MAC (SipHash-2-4, 128-bit key) over the 4-tuple,
// the client's ISN, a coarse time counter and the encoded options, and it
// carries the options themselves: MSS (an index into a table of common
// values, rounded down), window scale (0..14 or none) and SACK-permitted. So
// window scaling and SACK survive without TCP timestamps.
//
// Time: a counter of kSlotSeconds-long slots; a cookie made in slot t is
// accepted in slots t and t + 1 (so it lives between kSlotSeconds and
// 2 * kSlotSeconds). Keys rotate (rotate()): the previous key is kept and
// still accepted for cookies made before the rotation, within the same time
// window.
//
// Layout of the 32-bit cookie (high to low): 23 bits of MAC, 1 bit of
// SACK-permitted, 1 bit of slot parity, 3 bits of MSS index, 4 bits of window
// scale (15 = none) — see syn_cookie.cc for the exact encoding. SACK takes
// one bit from the MAC: the window-scale nibble has no unused value to fold
// it into (15 shifts and "none"), and the MSS index and parity use all of
// theirs. The MAC covers every other bit (and the whole slot
// counter), so one forged ACK passes with probability 2^-23 (about 1.2e-7)
// while one key is held and 2 * 2^-23 = 2^-22 (about 2.4e-7) in the window
// after rotate(), when the previous key is tried too (the flow engine
// rotates every 10-minute key period and passes the period's start: 2^-22
// for the first two slots of a period, 2^-23 after them).
// The caller passes the
// time in; nothing here reads a clock or allocates.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>

#include "dataplane/front/flow_key.h"

namespace lode::front {

// What a SYN asked for and the cookie preserves.
struct SynOptions {
  uint16_t mss = 536;  // the client's MSS (536 when the SYN had none)
  // The client's window scale 0..14, -1 = not offered. Any other value is an
  // offered shift above 14 and is capped at 14 (RFC 7323 2.3), negative ones
  // included: they are option bytes 128..254 narrowed into int8_t. (A byte
  // 255 narrows to -1 and cannot be told from "not offered": the parser must
  // cap before narrowing.)
  int8_t wscale = -1;
  bool sack_ok = false;

  friend bool operator==(const SynOptions&, const SynOptions&) = default;
};

// SipHash-2-4 (Aumasson and Bernstein) of `data` under a 128-bit key.
uint64_t siphash24(const std::array<uint8_t, 16>& key, std::span<const uint8_t> data) noexcept;

class SynCookies {
 public:
  static constexpr uint32_t kSlotSeconds = 64;
  // The MSS values a cookie can carry; a SYN's MSS is rounded down to one.
  static constexpr std::array<uint16_t, 8> kMssTable = {216,  536,  1200, 1360,
                                                        1400, 1440, 1460, 8960};

  explicit SynCookies(const std::array<uint8_t, 16>& key) noexcept;

  // A new key; cookies made with the one before stay valid for their time.
  // `from_s`: when the new key took over (seconds, make()'s clock): the
  // previous key is then tried only for slots that began before it, so a
  // forged ACK passes at 2^-23 again two slots after a rotation (2^-22 in
  // those two); the default tries it for every slot.
  void rotate(const std::array<uint8_t, 16>& key, uint64_t from_s = UINT64_MAX) noexcept;

  // The ISN for our SYN-ACK answering a SYN with sequence number client_isn,
  // at time now_s (seconds, any epoch, monotonic). `opt` is what the SYN
  // offered; the encoded (rounded) options are what check() will return.
  [[nodiscard]] uint32_t make(const FlowKey& key, uint32_t client_isn, const SynOptions& opt,
                              uint64_t now_s) const noexcept;

  // The options of a valid cookie, for an ACK whose ack number is cookie + 1
  // and sequence number client_isn + 1; empty for anything else (forged,
  // expired, another flow's).
  [[nodiscard]] std::optional<SynOptions> check(const FlowKey& key, uint32_t client_isn,
                                                uint32_t cookie, uint64_t now_s) const noexcept;

  // What make() encodes for these options (the MSS rounded down, wscale
  // capped at 14).
  [[nodiscard]] static SynOptions encodable(const SynOptions& opt) noexcept;

 private:
  std::array<uint8_t, 16> key_;
  std::array<uint8_t, 16> prev_key_;
  bool have_prev_ = false;
  uint64_t prev_until_s_ = UINT64_MAX;  // slots starting before this may be the previous key's
};

}  // namespace lode::front

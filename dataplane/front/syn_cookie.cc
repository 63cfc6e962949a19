#include "dataplane/front/syn_cookie.h"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>

namespace lode::front {

// --- SipHash-2-4 -------------------------------------------------------------
//
// From the description in Aumasson and Bernstein, "SipHash: a fast short-input
// PRF" (2012), section 2: four 64-bit words of state initialised from the key
// k0 || k1 (little-endian) and four constants; each 8-byte little-endian
// message word m is absorbed as v3 ^= m, c = 2 SipRounds, v0 ^= m; the last
// word holds the message's tail bytes with its length mod 256 in the top byte;
// then v2 ^= 0xff, d = 4 SipRounds, and the output is v0 ^ v1 ^ v2 ^ v3.

namespace {

uint64_t load_le64(const uint8_t* p) noexcept {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

struct SipState {
  uint64_t v0, v1, v2, v3;

  SipState(uint64_t k0, uint64_t k1) noexcept
      : v0(k0 ^ 0x736f6d6570736575),
        v1(k1 ^ 0x646f72616e646f6d),
        v2(k0 ^ 0x6c7967656e657261),
        v3(k1 ^ 0x7465646279746573) {}

  void round() noexcept {
    v0 += v1;
    v1 = std::rotl(v1, 13);
    v1 ^= v0;
    v0 = std::rotl(v0, 32);
    v2 += v3;
    v3 = std::rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = std::rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = std::rotl(v1, 17);
    v1 ^= v2;
    v2 = std::rotl(v2, 32);
  }

  void absorb(uint64_t m) noexcept {
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  }

  uint64_t finish() noexcept {
    v2 ^= 0xff;
    for (int i = 0; i < 4; ++i) round();
    return v0 ^ v1 ^ v2 ^ v3;
  }
};

}  // namespace

uint64_t siphash24(const std::array<uint8_t, 16>& key, std::span<const uint8_t> data) noexcept {
  SipState s(load_le64(key.data()), load_le64(key.data() + 8));
  const size_t full = data.size() / 8 * 8;
  for (size_t i = 0; i < full; i += 8) s.absorb(load_le64(data.data() + i));
  uint8_t tail[8] = {};
  std::copy(data.begin() + static_cast<std::ptrdiff_t>(full), data.end(), tail);
  tail[7] = static_cast<uint8_t>(data.size());
  s.absorb(load_le64(tail));
  return s.finish();
}

// --- The cookie --------------------------------------------------------------
//
//   bit  31 ........ 9    8      7       6..4       3..0
//        MAC (23 bits)   SACK   slot    MSS index  window scale
//                               parity  (kMssTable) (0..14, 15 = none)
//
// The low 9 bits are the "options": make() writes them in the clear and the
// MAC authenticates them. The MAC is the low 23 bits of SipHash-2-4 under the
// current (or previous) key of the 52-byte message
//
//   src family (1) | src address (16) | dst family (1) | dst address (16) |
//   sport (2) | dport (2) | client ISN (4) | slot counter (8) | options (2)
//
// multi-byte fields big-endian, an IPv4 address in the first 4 of its 16
// bytes and zeros after them (whatever the FlowKey holds there: FlowKey's ==
// ignores those bytes, so equal keys make equal cookies). The family byte
// keeps 1.2.3.4 apart from the IPv6 address 0102:0304::.
//
// Forgery: the options and parity are free for an attacker to choose, but
// each value of them selects one message (the parity selects one slot), so a
// guessed cookie is one 23-bit MAC compared per key held: it passes with
// probability 2^-23, or 2^-22 while rotate()'s previous key is still tried.

namespace {

constexpr uint32_t kWscaleMask = 0xf;
constexpr uint32_t kWscaleNone = 15;
constexpr uint32_t kMaxWscale = 14;  // RFC 7323 2.3
constexpr int kMssShift = 4;
constexpr uint32_t kMssMask = 0x7;
constexpr uint32_t kParityBit = 1u << 7;
constexpr uint32_t kSackBit = 1u << 8;
constexpr int kOptionBits = 9;
constexpr uint32_t kOptionMask = (1u << kOptionBits) - 1;

static_assert(SynCookies::kMssTable.size() == kMssMask + 1);
static_assert(std::is_sorted(SynCookies::kMssTable.begin(), SynCookies::kMssTable.end()));

using MacInput = std::array<uint8_t, 52>;

uint8_t* put_addr(uint8_t* p, const IpAddr& a) noexcept {
  *p++ = a.family;
  std::memset(p, 0, 16);
  std::memcpy(p, a.bytes, a.size());
  return p + 16;
}

uint8_t* put_be(uint8_t* p, uint64_t v, int bytes) noexcept {
  for (int i = bytes - 1; i >= 0; --i) *p++ = static_cast<uint8_t>(v >> (8 * i));
  return p;
}

MacInput mac_input(const FlowKey& flow, uint32_t client_isn, uint64_t slot,
                   uint32_t options) noexcept {
  MacInput in;
  uint8_t* p = put_addr(in.data(), flow.src);
  p = put_addr(p, flow.dst);
  p = put_be(p, flow.sport, 2);
  p = put_be(p, flow.dport, 2);
  p = put_be(p, client_isn, 4);
  p = put_be(p, slot, 8);
  put_be(p, options, 2);
  return in;
}

uint32_t mac(const std::array<uint8_t, 16>& key, const MacInput& in) noexcept {
  return static_cast<uint32_t>(siphash24(key, in)) & (~0u >> kOptionBits);
}

// The options bits (all but the parity) for what a SYN offered.
uint32_t encode(const SynOptions& opt) noexcept {
  uint32_t mss = 0;  // below the table's first entry: its first entry
  for (uint32_t i = 1; i < SynCookies::kMssTable.size(); ++i) {
    if (SynCookies::kMssTable[i] <= opt.mss) mss = i;
  }
  uint32_t wscale = kWscaleNone;
  if (opt.wscale != -1) wscale = std::min(static_cast<uint32_t>(opt.wscale), kMaxWscale);
  return (opt.sack_ok ? kSackBit : 0) | mss << kMssShift | wscale;
}

SynOptions decode(uint32_t options) noexcept {
  SynOptions opt;
  opt.mss = SynCookies::kMssTable[options >> kMssShift & kMssMask];
  const uint32_t wscale = options & kWscaleMask;
  opt.wscale = wscale == kWscaleNone ? int8_t{-1} : static_cast<int8_t>(wscale);
  opt.sack_ok = (options & kSackBit) != 0;
  return opt;
}

uint32_t parity(uint64_t slot) noexcept {
  return (slot & 1) != 0 ? kParityBit : 0;
}

}  // namespace

SynCookies::SynCookies(const std::array<uint8_t, 16>& key) noexcept : key_(key), prev_key_{} {}

void SynCookies::rotate(const std::array<uint8_t, 16>& key, uint64_t from_s) noexcept {
  prev_key_ = key_;
  key_ = key;
  have_prev_ = true;
  prev_until_s_ = from_s;
}

uint32_t SynCookies::make(const FlowKey& key, uint32_t client_isn, const SynOptions& opt,
                          uint64_t now_s) const noexcept {
  const uint64_t slot = now_s / kSlotSeconds;
  const uint32_t options = encode(opt) | parity(slot);
  return mac(key_, mac_input(key, client_isn, slot, options)) << kOptionBits | options;
}

std::optional<SynOptions> SynCookies::check(const FlowKey& key, uint32_t client_isn,
                                            uint32_t cookie, uint64_t now_s) const noexcept {
  const uint32_t options = cookie & kOptionMask;
  uint64_t slot = now_s / kSlotSeconds;
  if ((options & kParityBit) != parity(slot)) {
    if (slot == 0) return std::nullopt;  // no slot before the first
    --slot;
  }
  const MacInput in = mac_input(key, client_isn, slot, options);
  const uint32_t tag = cookie >> kOptionBits;
  const bool prev_possible = have_prev_ && slot * kSlotSeconds < prev_until_s_;
  if (mac(key_, in) == tag || (prev_possible && mac(prev_key_, in) == tag)) return decode(options);
  return std::nullopt;
}

SynOptions SynCookies::encodable(const SynOptions& opt) noexcept {
  return decode(encode(opt));
}

}  // namespace lode::front

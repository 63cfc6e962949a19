#include "dataplane/front/toeplitz.h"

#include <algorithm>
#include <bit>

namespace lode::front {
namespace {

// The key bits [8 * pos, 8 * pos + 64) as a big-endian 64-bit value (zero
// past the key's end).
uint64_t key_window(std::span<const uint8_t> key, size_t pos) noexcept {
  uint64_t w = 0;
  for (size_t j = 0; j < 8; ++j) {
    w = w << 8 | (pos + j < key.size() ? key[pos + j] : 0);
  }
  return w;
}

// What input byte `v` at offset `pos` adds to the hash.
uint32_t byte_part(std::span<const uint8_t> key, size_t pos, uint8_t v) noexcept {
  const uint64_t w = key_window(key, pos);
  uint32_t h = 0;
  for (unsigned b = 0; b < 8; ++b) {
    if (v & (0x80u >> b)) h ^= static_cast<uint32_t>(w >> (32 - b));
  }
  return h;
}

// The hash input of a TCP segment (see toeplitz.h): its length.
size_t tuple_bytes(const FlowKey& k, uint16_t dport, uint8_t (&out)[36]) noexcept {
  const size_t a = k.dst.family == 6 ? 16 : 4;
  std::copy_n(k.src.bytes, a, out);
  std::copy_n(k.dst.bytes, a, out + a);
  out[2 * a] = static_cast<uint8_t>(k.sport >> 8);
  out[2 * a + 1] = static_cast<uint8_t>(k.sport);
  out[2 * a + 2] = static_cast<uint8_t>(dport >> 8);
  out[2 * a + 3] = static_cast<uint8_t>(dport);
  return 2 * a + 4;
}

}  // namespace

uint32_t toeplitz_hash(std::span<const uint8_t> key, std::span<const uint8_t> input) noexcept {
  // w: the key bits [8 * i, 8 * i + 64), slid one byte per input byte.
  uint64_t w = key_window(key, 0);
  uint32_t h = 0;
  for (size_t i = 0; i < input.size(); ++i) {
    for (unsigned v = input[i]; v != 0; v &= v - 1) {
      const unsigned b = 7 - static_cast<unsigned>(std::countr_zero(v));  // 0: the top bit
      h ^= static_cast<uint32_t>(w >> (32 - b));
    }
    w = w << 8 | (i + 8 < key.size() ? key[i + 8] : 0);
  }
  return h;
}

std::optional<RssHash> RssHash::make(std::span<const uint8_t> key, std::vector<uint16_t> reta) {
  if (key.size() < kMinKey || key.size() > kMaxKey) return std::nullopt;
  if (reta.empty() || reta.size() > kMaxReta || !std::has_single_bit(reta.size())) return std::nullopt;
  RssHash r;
  std::copy(key.begin(), key.end(), r.key_.begin());
  r.key_len_ = key.size();
  r.reta_mask_ = static_cast<uint32_t>(reta.size() - 1);
  r.reta_ = std::move(reta);
  // The destination port's bytes: offsets 10 and 11 (IPv4), 34 and 35 (IPv6).
  for (size_t f = 0; f < 2; ++f) {
    const size_t at = f == 0 ? 10 : 34;
    for (unsigned v = 0; v < 256; ++v) {
      r.dport_[f][0][v] = byte_part(r.key(), at, static_cast<uint8_t>(v));
      r.dport_[f][1][v] = byte_part(r.key(), at + 1, static_cast<uint8_t>(v));
    }
  }
  return r;
}

uint32_t RssHash::hash_without_dport(const FlowKey& k) const noexcept {
  uint8_t in[36];
  const size_t n = tuple_bytes(k, 0, in);
  return toeplitz_hash(key(), {in, n});
}

}  // namespace lode::front

// The server names a run sends, each with a weight: from repeated --sni
// options or a --sni-file ("name [weight]" per line). A connection's name is
// drawn by weight from the run's deterministic generator.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lodestone/result.h"
#include "tools/lodeload/prng.h"

namespace lode::load {

struct SniEntry {
  std::string name;
  uint64_t weight = 1;
};

// Parses a --sni-file: one name per line, optionally followed by whitespace
// and a positive integer weight (default 1); blank lines and lines starting
// with '#' are skipped. The message names `label`, the line and what was
// expected.
[[nodiscard]] Result<std::vector<SniEntry>, std::string> parse_sni_file(std::string_view text,
                                                                        std::string_view label);

// A name as --sni takes it: 1..255 bytes, no whitespace or control characters.
[[nodiscard]] bool valid_sni(std::string_view name) noexcept;

class SniList {
 public:
  SniList() = default;
  explicit SniList(const std::vector<SniEntry>& entries);

  size_t size() const noexcept { return names_.size(); }
  const std::string& name(size_t i) const noexcept { return names_[i]; }
  // An index drawn by weight; 0 when the list is empty (no SNI is sent then).
  size_t pick(Prng& rng) const noexcept;

 private:
  std::vector<std::string> names_;
  std::vector<uint64_t> cumulative_;  // running sums of the weights
};

}  // namespace lode::load

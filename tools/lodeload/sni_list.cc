#include "tools/lodeload/sni_list.h"

#include <algorithm>
#include <charconv>

namespace lode::load {

namespace {

constexpr uint64_t kMaxWeight = 1'000'000;

bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\r';
}

// Splits off the next whitespace-separated word of `line`.
std::string_view next_word(std::string_view& line) noexcept {
  size_t i = 0;
  while (i < line.size() && is_space(line[i])) ++i;
  size_t j = i;
  while (j < line.size() && !is_space(line[j])) ++j;
  const std::string_view word = line.substr(i, j - i);
  line.remove_prefix(j);
  return word;
}

}  // namespace

bool valid_sni(std::string_view name) noexcept {
  if (name.empty() || name.size() > 255) return false;
  return std::none_of(name.begin(), name.end(),
                      [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; });
}

Result<std::vector<SniEntry>, std::string> parse_sni_file(std::string_view text,
                                                          std::string_view label) {
  std::vector<SniEntry> out;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    const std::string where = std::string(label) + ":" + std::to_string(line_no) + ": ";
    const std::string_view name = next_word(line);
    if (name.empty() || name.front() == '#') continue;
    if (!valid_sni(name)) return unexpected(where + "a server name is 1..255 printable bytes");
    SniEntry e{std::string(name), 1};
    if (const std::string_view w = next_word(line); !w.empty()) {
      const auto [end, ec] = std::from_chars(w.data(), w.data() + w.size(), e.weight);
      if (ec != std::errc() || end != w.data() + w.size() || e.weight == 0 ||
          e.weight > kMaxWeight) {
        return unexpected(where + "the weight after the name must be an integer 1.." +
                          std::to_string(kMaxWeight) + ", got '" + std::string(w) + "'");
      }
    }
    if (!next_word(line).empty())
      return unexpected(where + "expected 'NAME [WEIGHT]', found more words");
    out.push_back(std::move(e));
  }
  if (out.empty()) return unexpected(std::string(label) + ": no server names in the file");
  return out;
}

SniList::SniList(const std::vector<SniEntry>& entries) {
  uint64_t sum = 0;
  for (const auto& e : entries) {
    names_.push_back(e.name);
    sum += e.weight;
    cumulative_.push_back(sum);
  }
}

size_t SniList::pick(Prng& rng) const noexcept {
  if (names_.size() <= 1) return 0;
  const uint64_t r = rng.below(cumulative_.back());
  return static_cast<size_t>(std::upper_bound(cumulative_.begin(), cumulative_.end(), r) -
                             cumulative_.begin());
}

}  // namespace lode::load

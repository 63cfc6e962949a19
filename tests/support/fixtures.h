// Reads the committed test fixtures (tests/fixtures/...).
#pragma once

#include <cstdint>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef LODE_FIXTURE_DIR
#error "LODE_FIXTURE_DIR must point at tests/fixtures"
#endif

namespace lode::test {

inline std::string fixture_path(const std::string& rel) { return std::string(LODE_FIXTURE_DIR) + "/" + rel; }

inline std::vector<uint8_t> read_fixture(const std::string& rel) {
  std::ifstream in(fixture_path(rel), std::ios::binary);
  if (!in) throw std::runtime_error("missing fixture " + fixture_path(rel));
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// NAME.segments: one TCP segment payload length per line.
inline std::vector<size_t> read_segments(const std::string& rel) {
  std::ifstream in(fixture_path(rel));
  if (!in) throw std::runtime_error("missing fixture " + fixture_path(rel));
  std::vector<size_t> out;
  size_t n;
  while (in >> n) out.push_back(n);
  return out;
}

}  // namespace lode::test

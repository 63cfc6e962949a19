// The three answers of every incremental parser in Lodestone (ClientHello,
// PROXY protocol): "need more bytes" is a state, not an error.
#pragma once

#include <cstdint>
#include <string_view>

namespace lode {

enum class ParseStatus : uint8_t {
  kNeedMore,  // the bytes so far are a valid prefix; call again with more
  kDone,      // a complete message was parsed; the result is available
  kError,     // the input can never become valid; the error is available
};

constexpr std::string_view to_string(ParseStatus s) noexcept {
  switch (s) {
    case ParseStatus::kNeedMore: return "need_more";
    case ParseStatus::kDone: return "done";
    case ParseStatus::kError: return "error";
  }
  return "unknown";
}

}  // namespace lode

// The SYN cookies' master secret from a file ([dpdk] cookie_secret_file), so
// every node of an ECMP group validates the cookies the others made: a SYN
// answered by node A whose ACK lands on node B (the group changed between
// them) still completes.
//
// The file: 32 to 128 hex digits (16 to 64 bytes; `openssl rand -hex 32`),
// whitespace before and after ignored, nothing else. A regular file that
// other users can neither read nor write and its group cannot write (0600 or
// 0640). The engine's 16-byte master key (EngineConfig::cookie_key) is the
// first 16 bytes of SHA-256("lodestone syn cookie secret" || bytes): the same
// on every node given the same file. Errors name the file and what was
// expected, never a byte of the secret; the buffers that held it are
// cleansed.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "lodestone/result.h"

namespace lode::front {

using CookieSecret = std::array<uint8_t, 16>;

// The master key from the file's text (no file name in the error: the
// caller adds it).
[[nodiscard]] Result<CookieSecret, std::string> parse_cookie_secret(std::string_view text);

// Reads and checks `path` (type, permissions, at most 4 KiB), then parses it.
[[nodiscard]] Result<CookieSecret, std::string> load_cookie_secret(const std::string& path);

}  // namespace lode::front

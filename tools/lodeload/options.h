// lodeload's command line: what a run does (mode, target, names, TLS
// settings, load shape, limits) as plain data, parsed from argv with errors
// that name the option and what it expected.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lodestone/result.h"
#include "lodestone/socket_address.h"
#include "tools/lodeload/sni_list.h"

namespace lode::load {

enum class Mode { kHandshakes, kRequests, kBulk, kIdle };

const char* to_string(Mode m) noexcept;

struct Options {
  Mode mode = Mode::kHandshakes;
  SocketAddress target;
  std::string target_text;  // as given, for the report

  // Names: empty = no SNI (the certificate is then checked against the
  // target's IP address).
  std::vector<SniEntry> snis;
  std::string ca_file;  // trusted roots; empty = the system's default store
  bool insecure = false;
  int tls_version = 0;       // 0 = TLS 1.2 or 1.3; else TLS1_2_VERSION / TLS1_3_VERSION
  std::string cipher_list;   // TLS 1.2 (OpenSSL syntax); empty = OpenSSL's default
  std::string ciphersuites;  // TLS 1.3; empty = OpenSSL's default
  std::vector<std::string> alpn;

  // Load shape.
  double rate = 0;           // new connections (handshakes) or requests per second; 0 = no limit
  uint32_t concurrency = 0;  // open connections at most; 0 = the mode's default
  std::optional<uint64_t> duration_ms;
  std::optional<uint64_t> count;  // handshakes: connections; requests: requests
  uint64_t request_bytes = 0;
  std::optional<uint64_t> response_bytes;  // nullopt = wait for the echo of the request
  uint64_t bulk_bytes = 10'000'000;
  uint64_t hold_ms = 10'000;
  bool resume = false;

  uint64_t timeout_ms = 5000;
  uint64_t seed = 1;
  bool quiet = false;

  // Set by a signal handler to end the run early (connections are closed,
  // the report still comes). Not owned; may be null.
  const std::atomic<bool>* stop = nullptr;
};

// The mode's default concurrency: handshakes and requests 8, bulk 1, idle 100.
uint32_t default_concurrency(Mode m) noexcept;

// Parses the arguments after the program name. "--help" is reported as the
// error kHelpRequested so the caller can print usage() and exit 0.
inline constexpr const char* kHelpRequested = "help requested";
[[nodiscard]] Result<Options, std::string> parse_options(const std::vector<std::string>& args);

const char* usage() noexcept;

}  // namespace lode::load

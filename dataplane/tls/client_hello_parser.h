// Incremental TLS ClientHello parser: pure, no I/O, no allocation unless the
// hello spans several TLS records.
//
// The caller keeps every byte received so far in one contiguous buffer (it
// must replay them to OpenSSL or a backend anyway) and calls parse() again
// with the longer buffer each time bytes arrive. The buffer may move between
// calls but must hold the same prefix. Each call costs O(1) until a record is
// complete, so a hello fed one byte per segment is parsed in linear time.
//
// Fast path: a hello that fits in its first record is parsed in place; the
// views in ClientHelloInfo point into the caller's buffer. A hello spread
// over several records is reassembled into a buffer owned by the parser
// (allocated once, at most max_hello_len bytes).
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "lodestone/client_hello_info.h"
#include "lodestone/parse_status.h"

namespace lode::tls {

struct ParserLimits {
  uint32_t max_hello_len = 64 * 1024;  // handshake message, 4-byte header included
};

class ClientHelloParser {
 public:
  explicit ClientHelloParser(ParserLimits limits = {}) noexcept : limits_(limits) {}
  ClientHelloParser(const ClientHelloParser&) = delete;
  ClientHelloParser& operator=(const ClientHelloParser&) = delete;

  // Feeds the whole stream received so far. After kDone or kError the parser
  // keeps answering the same until reset().
  [[nodiscard]] ParseStatus parse(std::span<const uint8_t> stream) noexcept;

  const ClientHelloInfo& info() const noexcept { return info_; }        // after kDone
  const HelloParseError& error() const noexcept { return error_; }      // after kError
  // After kError with kBadHostName: the raw bytes the client sent as its host
  // name (attacker-chosen; at most 255 bytes), else empty.
  std::string_view rejected_host_name() const noexcept {
    return status_ == ParseStatus::kError && error_.code == HelloError::kBadHostName ? info_.sni() : std::string_view();
  }
  ParseStatus status() const noexcept { return status_; }
  const ParserLimits& limits() const noexcept { return limits_; }
  void reset() noexcept;

 private:
  ParseStatus fail(HelloError code, TlsAlert alert, uint32_t offset, bool in_message = false) noexcept;
  ParseStatus classify_start(std::span<const uint8_t> stream) noexcept;
  ParseStatus take_record(std::span<const uint8_t> stream, uint32_t rec_len) noexcept;
  ParseStatus finish(std::span<const uint8_t> msg) noexcept;

  ParserLimits limits_;
  ParseStatus status_ = ParseStatus::kNeedMore;
  bool started_ = false;     // the first byte was seen to be a handshake record
  uint32_t pos_ = 0;         // stream offset of the next record header
  uint32_t records_ = 0;     // complete records consumed
  uint32_t msg_len_ = 0;     // handshake message length with header, 0 until known
  uint32_t have_ = 0;        // message bytes reassembled so far
  uint8_t header_[4] = {};   // the handshake header, which may itself be split
  std::unique_ptr<uint8_t[]> reassembly_;  // kept across reset()
  uint32_t reassembly_cap_ = 0;
  ClientHelloInfo info_;
  HelloParseError error_;
};

// Parses one ClientHello from a complete buffer; a convenience for tools and
// tests. Returns kNeedMore if the buffer ends before the hello does.
[[nodiscard]] ParseStatus parse_client_hello(std::span<const uint8_t> bytes, ClientHelloParser& parser) noexcept;

}  // namespace lode::tls

// TLS alert descriptions (RFC 8446 section 6) that Lodestone sends.
#pragma once

#include <cstdint>
#include <string_view>

namespace lode {

enum class TlsAlert : uint8_t {
  kCloseNotify = 0,
  kUnexpectedMessage = 10,
  kRecordOverflow = 22,
  kHandshakeFailure = 40,
  kIllegalParameter = 47,
  kDecodeError = 50,
  kProtocolVersion = 70,
  kInternalError = 80,
  kUnrecognizedName = 112,
  kNoApplicationProtocol = 120,
};

constexpr std::string_view to_string(TlsAlert a) noexcept {
  switch (a) {
    case TlsAlert::kCloseNotify: return "close_notify";
    case TlsAlert::kUnexpectedMessage: return "unexpected_message";
    case TlsAlert::kRecordOverflow: return "record_overflow";
    case TlsAlert::kHandshakeFailure: return "handshake_failure";
    case TlsAlert::kIllegalParameter: return "illegal_parameter";
    case TlsAlert::kDecodeError: return "decode_error";
    case TlsAlert::kProtocolVersion: return "protocol_version";
    case TlsAlert::kInternalError: return "internal_error";
    case TlsAlert::kUnrecognizedName: return "unrecognized_name";
    case TlsAlert::kNoApplicationProtocol: return "no_application_protocol";
  }
  return "unknown";
}

// A fatal alert record as it goes on the wire: type 21, TLS 1.2 record
// version, length 2, level fatal (2), description.
struct AlertRecord {
  uint8_t bytes[7];
};
constexpr AlertRecord fatal_alert_record(TlsAlert a) noexcept {
  return AlertRecord{{21, 3, 3, 0, 2, 2, static_cast<uint8_t>(a)}};
}

}  // namespace lode

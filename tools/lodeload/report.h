// What a run measured: counts, errors by kind, closes, TLS parameters seen,
// bulk digests and latency histograms; written as one JSON object (stdout)
// and a short table for people (stderr).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tools/lodeload/histogram.h"
#include "tools/lodeload/options.h"

namespace lode::load {

// Error kinds, the keys of Report::errors. A TLS alert from the server is
// counted as "tls_alert_<n>" (RFC 8446 AlertDescription n).
namespace err {
inline constexpr const char* kConnectRefused = "connect_refused";  // ECONNREFUSED
inline constexpr const char* kConnectFailed =
    "connect_failed";  // other connect errors (unreachable, ...)
inline constexpr const char* kConnectTimeout = "connect_timeout";
inline constexpr const char* kSocket =
    "socket_error";  // socket() failed (EMFILE, ...), an unexpected errno
inline constexpr const char* kReset = "reset";  // ECONNRESET / EPIPE
inline constexpr const char* kHandshakeTimeout = "handshake_timeout";
inline constexpr const char* kResponseTimeout =
    "response_timeout";                                  // a response or bulk echo stalled
inline constexpr const char* kVerify = "verify_failed";  // the certificate did not verify
inline constexpr const char* kTls = "tls_error";         // any other TLS failure (garbage, ...)
inline constexpr const char* kEofInHandshake =
    "eof_in_handshake";                                  // the server closed during the handshake
inline constexpr const char* kShortRead = "short_read";  // closed before the whole response/echo
inline constexpr const char* kClosedEarly = "closed_early";  // closed while idle / between requests
inline constexpr const char* kResponseMismatch =
    "response_mismatch";  // the echo differs, or more bytes came than expected
}  // namespace err

struct BulkStream {
  uint64_t index =
      0;  // in the order the handshakes completed; the data is Prng(seed + index * 2^32)'s
  std::string sent_sha256;      // hex
  std::string received_sha256;  // hex
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  bool equal = false;  // same digest and as many bytes as asked for
};

struct Report {
  Mode mode = Mode::kHandshakes;
  std::string target;
  double elapsed_s = 0;

  uint64_t connections_started = 0;
  uint64_t connections_ok = 0;       // did everything the mode asked of them
  uint64_t connections_failed = 0;   // counted under errors
  uint64_t connections_aborted = 0;  // ended by a stop request, not counted as errors
  uint64_t peak_open = 0;
  uint64_t handshakes_full = 0;
  uint64_t handshakes_resumed = 0;
  uint64_t resumptions_refused = 0;  // --resume: a ticket offered, a full handshake done
  uint64_t tickets_received = 0;
  uint64_t requests = 0;
  uint64_t idle_held = 0;       // idle: connections held for the whole --hold
  uint64_t bytes_sent = 0;      // application data
  uint64_t bytes_received = 0;  // application data

  std::map<std::string, uint64_t> errors;            // kind -> count
  std::map<std::string, std::string> error_samples;  // kind -> the first message seen
  // How connections that finished their work closed: the server answered our
  // close (clean), reset it, or did not close within the timeout.
  uint64_t close_clean = 0;
  uint64_t close_reset = 0;
  uint64_t close_timeout = 0;

  std::map<std::string, uint64_t> versions;  // "TLSv1.3" -> handshakes
  std::map<std::string, uint64_t> ciphers;
  std::map<std::string, uint64_t> alpn;  // negotiated protocol ("" not counted)
  std::map<std::string, uint64_t> sni;   // connections started per name

  std::vector<BulkStream> bulk;

  Histogram connect_us;    // TCP connect
  Histogram handshake_us;  // TCP connected -> TLS handshake done
  Histogram ttfb_us;       // request written -> first response byte
  Histogram response_us;   // request written -> last response byte

  uint64_t error_total() const noexcept;
  // Bulk: every stream complete with equal digests.
  bool bulk_ok() const noexcept;
};

std::string report_json(const Report& r);
std::string report_table(const Report& r);

}  // namespace lode::load

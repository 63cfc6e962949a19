// Kernel TLS for the workers: the record-protection state the kernel takes
// (Linux's struct tls12_crypto_info_*), where it comes from, and the socket
// calls that hand it over.
//
// Send direction: OpenSSL 3.0 offers it through BIO_CTRL_SET_KTLS when it
// installs the application write key (TLS 1.2 and 1.3); the worker's BIO
// installs it with setsockopt(SOL_TLS, TLS_TX) once every byte written before
// is on the wire.
//
// Receive direction: the worker takes it over itself after the handshake, at
// a record boundary, so that no byte is lost or read twice:
// - TLS 1.2: OpenSSL offers the read state at the client's ChangeCipherSpec,
//   before the client's Finished, which (with whatever followed it) may already
//   sit in user space. RxHandover keeps that state, the BIO declines, and
//   OpenSSL decrypts on in user space;
// - TLS 1.3: OpenSSL 3.0 never offers it. RxHandover derives key and IV from
//   the client application traffic secret (RFC 8446 7.3: HKDF-Expand-Label
//   "key" / "iv"), which OpenSSL reports through its key-log callback, and
//   again from the next secret when the client sends a KeyUpdate.
// In both cases RxHandover counts the records OpenSSL consumes under that
// state (OpenSSL reads exactly one record at a time: read-ahead is off), so
// the record sequence number is known at any record boundary; the worker
// installs TLS_RX when user space holds no unread byte and no partial record.
//
// Secrets and keys live in CryptoState only, are cleansed when it goes, and
// never reach a log or an error message.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace lode::worker::ktls {

// TLS record content types.
inline constexpr uint8_t kChangeCipherSpec = 20;
inline constexpr uint8_t kAlert = 21;
inline constexpr uint8_t kHandshake = 22;
inline constexpr uint8_t kApplicationData = 23;
// Handshake message types the relay cares about after the handshake.
inline constexpr uint8_t kNewSessionTicket = 4;
inline constexpr uint8_t kKeyUpdate = 24;

// One direction's record protection, in the kernel's terms.
struct CryptoState {
  uint16_t version = 0;  // 0x0303 TLS 1.2, 0x0304 TLS 1.3
  uint16_t cipher = 0;   // TLS_CIPHER_AES_GCM_128, _AES_GCM_256, _CHACHA20_POLY1305
  uint8_t key[32] = {};
  uint8_t salt[4] = {};  // the implicit nonce part (AES-GCM)
  uint8_t iv[12] = {};   // AES-GCM: 8 bytes; ChaCha20-Poly1305: the whole 12-byte IV
  uint64_t seq = 0;      // the sequence number of the next record

  CryptoState() = default;
  CryptoState(const CryptoState&) = default;
  CryptoState& operator=(const CryptoState&) = default;
  ~CryptoState();

  size_t key_len() const noexcept;
  size_t salt_len() const noexcept;
  size_t iv_len() const noexcept;
  // The 12-byte per-record nonce base (salt || iv for AES-GCM).
  void nonce_base(uint8_t out[12]) const noexcept;
  void cleanse() noexcept;
};

// Reads the state OpenSSL passes with BIO_CTRL_SET_KTLS (its struct
// tls_crypto_info_all starts with the kernel's struct). Empty for a version or
// cipher the kernel path does not take.
std::optional<CryptoState> from_openssl(const void* crypto_info) noexcept;

// TLS 1.3: one direction's key and IV from its traffic secret. Empty for a
// cipher suite the kernel path does not take (only the AES-GCM and
// ChaCha20-Poly1305 suites are).
std::optional<CryptoState> from_tls13_secret(const SSL_CIPHER* cipher, std::span<const uint8_t> secret,
                                             uint64_t seq) noexcept;

// TLS 1.3 KeyUpdate (RFC 8446 7.2): the next traffic secret,
// HKDF-Expand-Label(secret, "traffic upd", "", Hash.length), into `out`
// (room for the suite's hash). False for a secret of the wrong length.
bool next_tls13_secret(const SSL_CIPHER* cipher, std::span<const uint8_t> secret, std::span<uint8_t> out) noexcept;

// A KeyUpdate applied to one direction: `secret` becomes the next traffic
// secret (in place), and its key and IV are returned (sequence number 0).
// Empty when it cannot be derived (the secret is then unchanged).
std::optional<CryptoState> update_tls13_secret(const SSL_CIPHER* cipher, std::span<uint8_t> secret) noexcept;

// A key-log line "LABEL <client random> <secret>", both hex: when LABEL is
// `label`, the secret into `out` (up to out.size() bytes); returns its length,
// 0 otherwise.
size_t keylog_secret(std::string_view line, std::string_view label, std::span<uint8_t> out) noexcept;

// Installs the state on a connected TCP socket (attaching the tls ULP first
// if it is not yet). Returns 0 or an errno value.
int install(int fd, bool tx, const CryptoState& state) noexcept;

// Sends one record of `type` on a socket with TLS_TX (non-blocking). Returns
// the bytes taken, or -1 with errno.
ssize_t send_record(int fd, uint8_t type, std::span<const uint8_t> data) noexcept;

// Reads one record on a socket with TLS_RX (non-blocking): its content type
// and plaintext. n < 0: errno value negated.
struct Received {
  ssize_t n = 0;
  uint8_t type = 0;
};
Received recv_record(int fd, std::span<uint8_t> buf) noexcept;

// Counts whole TLS records in a byte stream fed in any pieces.
class RecordCounter {
 public:
  void feed(std::span<const uint8_t> bytes) noexcept;
  uint64_t records() const noexcept { return records_; }
  bool at_boundary() const noexcept { return header_have_ == 0 && body_left_ == 0; }
  void reset() noexcept { *this = RecordCounter{}; }

 private:
  uint64_t records_ = 0;
  uint8_t header_[5] = {};
  uint8_t header_have_ = 0;
  size_t body_left_ = 0;
};

// The receive side of one TLS connection, tracked from OpenSSL's callbacks
// until the worker can give it to the kernel.
class RxHandover {
 public:
  // BIO_CTRL_SET_KTLS with is_tx = 0 (TLS 1.2, at the client's CCS).
  void on_openssl_offer(const void* crypto_info) noexcept;
  // A key-log line (TLS 1.3 client traffic secrets, CLIENT_TRAFFIC_SECRET_0
  // and _N) for the connection's SSL.
  void on_keylog(const SSL* ssl, std::string_view line) noexcept;
  // Bytes OpenSSL consumed from the connection (its BIO read).
  void on_consumed(std::span<const uint8_t> bytes) noexcept;
  // The handshake finished (TLS 1.3: the client's Finished was the last
  // record read under the handshake keys).
  void on_handshake_done(const SSL* ssl) noexcept;

  // The state for the next record, when OpenSSL has consumed whole records
  // only. Empty when unknown (not offered, unsupported cipher) or mid-record.
  std::optional<CryptoState> state_now() const noexcept;
  bool known() const noexcept { return have_; }
  // Cleanses the state (after the kernel took it, or when it never will).
  void forget() noexcept {
    base_.cleanse();
    have_ = false;
    counting_ = false;
  }

 private:
  CryptoState base_;   // the state at the start of the counted records
  bool have_ = false;  // base_ is valid
  bool counting_ = false;
  bool tls13_ = false;
  bool pending_tls13_ = false;  // the secret is known, the handshake not yet done
  RecordCounter counter_;
};

}  // namespace lode::worker::ktls

// Lodestone's own TLS record layer for a terminated client connection, after
// its handshake: what the kernel does under kTLS, done in user space where
// the kernel cannot (no `tls` ULP). OpenSSL runs the handshake; its
// application keys come the way kTLS gets them (ktls.h: the send state
// offered through BIO_CTRL_SET_KTLS, the receive state handed over at a
// record boundary); then the worker seals and opens the records itself and
// frees the connection's SSL, about 14 KB of OpenSSL state per connection.
//
// AEAD suites only, as under kTLS: TLS 1.2 and 1.3 with AES-128-GCM,
// AES-256-GCM and ChaCha20-Poly1305 (RFC 5288, 7905, 8446). Records:
// - TLS 1.3: header (23, 3 3, length) || AEAD(data || type), nonce = iv XOR
//   seq, additional data = the header;
// - TLS 1.2 AES-GCM: header (type, 3 3, length) || explicit nonce (8) ||
//   AEAD(data), nonce = salt || explicit, additional data = seq || type ||
//   3 3 || data length; the explicit nonce we send is the sequence number
//   (unique under the key: OpenSSL sealed nothing with it, it hands over at
//   the ChangeCipherSpec);
// - TLS 1.2 ChaCha20-Poly1305: as AES-GCM without the explicit nonce, nonce =
//   iv XOR seq.
// Keys live in Keys only (cleansed when they go) and in the thread's cipher
// contexts; they never reach a log.
#pragma once

#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "dataplane/worker/ktls.h"

namespace lode::worker::records {

inline constexpr size_t kHeader = 5;
inline constexpr size_t kTag = 16;
inline constexpr size_t kMaxPlaintext = 16384;             // 2^14
inline constexpr size_t kMaxCiphertext13 = kMaxPlaintext + 256;   // RFC 8446 5.2
inline constexpr size_t kMaxCiphertext12 = kMaxPlaintext + 2048;  // RFC 5246 6.2.3

// Alert descriptions this layer sends.
inline constexpr uint8_t kAlertCloseNotify = 0;
inline constexpr uint8_t kAlertUnexpectedMessage = 10;
inline constexpr uint8_t kAlertBadRecordMac = 20;
inline constexpr uint8_t kAlertRecordOverflow = 22;
inline constexpr uint8_t kAlertDecodeError = 50;
inline constexpr uint8_t kAlertProtocolVersion = 70;
inline constexpr uint8_t kAlertInternalError = 80;

// One direction's record protection: the state (key, IV, next sequence
// number) and an id naming this key in the thread's cipher contexts.
struct Keys {
  ktls::CryptoState state;
  uint64_t id = 0;  // 0: no key

  // Takes a key; the id is new for every key taken.
  void set(const ktls::CryptoState& s) noexcept;
  bool valid() const noexcept { return id != 0; }
  bool tls13() const noexcept;
  void clear() noexcept {
    state.cleanse();
    id = 0;
  }
};

// The calling thread's cipher contexts, one per cipher and direction, keyed
// anew only when a record under another key comes (a relay moving bulk data
// re-keys once, not per record). Freed with the thread.
class Contexts {
 public:
  Contexts() = default;
  ~Contexts();
  Contexts(const Contexts&) = delete;
  Contexts& operator=(const Contexts&) = delete;
  // The context for `k` sealing (or opening), its key loaded; null on failure.
  EVP_CIPHER_CTX* get(const Keys& k, bool seal) noexcept;
  static Contexts& for_thread() noexcept;

 private:
  struct Slot {
    EVP_CIPHER_CTX* ctx = nullptr;
    uint64_t id = 0;
  };
  Slot slots_[3][2];
};

// Bytes a record adds to its plaintext.
size_t overhead(const ktls::CryptoState& s) noexcept;

// Seals `plain` (at most kMaxPlaintext bytes) as one record of `type` at
// `out`, which has room for plain.size() + overhead(). Returns the record's
// size; 0 when it cannot (no key, a cipher failure, the sequence number
// exhausted). Advances the sequence number.
size_t seal(Keys& k, uint8_t type, std::span<const uint8_t> plain, uint8_t* out) noexcept;

// Seals `data` of `type` as as many records as it takes, appending them
// through `room(n)` (returns a pointer to n writable bytes) and `commit(k)`.
// False when a record could not be sealed.
template <typename Room, typename Commit>
bool seal_all(Keys& k, uint8_t type, std::span<const uint8_t> data, Room&& room, Commit&& commit) {
  const size_t extra = overhead(k.state);
  do {
    const size_t n = data.size() < kMaxPlaintext ? data.size() : kMaxPlaintext;
    uint8_t* out = room(n + extra);
    const size_t w = seal(k, type, data.first(n), out);
    commit(w);
    if (w == 0) return false;
    data = data.subspan(n);
  } while (!data.empty());
  return true;
}

// What open() found at the front of the input.
struct Opened {
  enum class Status : uint8_t {
    kNeedMore,  // no whole record yet
    kRecord,    // one record opened: `type`, `len` plaintext bytes at out
    kError,     // a fatal error: send `alert` and close
  };
  Status status = Status::kNeedMore;
  size_t consumed = 0;  // input bytes the record took (header and body)
  uint8_t type = 0;     // the content type (TLS 1.3: the inner one)
  size_t len = 0;       // plaintext bytes written at out
  uint8_t alert = 0;
  // Bytes of room open() needs at out to open the record at the front
  // (kNeedMore with a whole header: known before the body is there).
  size_t room = 0;
};

// Opens the record at the front of `in` into `out` (out_room bytes; a record
// needs at most its ciphertext's length, see Opened::room; out may not
// overlap in). Checks the header (version 3,3: TLS 1.2's additional data
// takes the version from the connection, not the header, so a header saying
// otherwise is refused here as OpenSSL does; length within the
// protocol's limit, a content type the protocol allows), the tag, and the
// plaintext's length; advances the sequence number. Never reads past `in`.
Opened open(Keys& k, std::span<const uint8_t> in, uint8_t* out, size_t out_room) noexcept;

}  // namespace lode::worker::records

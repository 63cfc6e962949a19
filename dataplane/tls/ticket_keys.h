// Session ticket keys shared by every worker of the process, so a ticket
// issued on one worker resumes on any other, and rotated: the current key
// encrypts new tickets; a few previous keys still decrypt (a ticket opened with
// a previous key is renewed under the current one).
//
// Tickets are stateless (RFC 5077 layout, as OpenSSL writes it): a 16-byte key
// name, a 16-byte IV, the session encrypted with AES-256-CBC and an
// HMAC-SHA256 over all of it. Used for TLS 1.2 and TLS 1.3 alike.
//
// Readers (the OpenSSL ticket callback, once per handshake, on any worker
// thread) load the current immutable key set with one atomic shared_ptr load
// and never wait for a writer: rotate() and set_keys() build a new set and
// swap it in. Key bytes live in OpenSSL's secure heap when the process has
// initialised one (CRYPTO_secure_malloc_init), in ordinary memory otherwise;
// they are cleansed when freed and never logged.
#pragma once

#include <openssl/evp.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "lodestone/result.h"

namespace lode::tls {

// One ticket key: 80 bytes in nginx's ssl_session_ticket_key file layout
// (16-byte name, 32-byte HMAC key, 32-byte AES key).
class TicketKey {
 public:
  static constexpr size_t kNameLen = 16;
  static constexpr size_t kHmacKeyLen = 32;
  static constexpr size_t kAesKeyLen = 32;
  static constexpr size_t kSize = kNameLen + kHmacKeyLen + kAesKeyLen;
  using Name = std::array<uint8_t, kNameLen>;

  // A fresh key from RAND_priv_bytes (the name from RAND_bytes).
  [[nodiscard]] static Result<TicketKey, std::string> random();
  // From the 80-byte layout above (e.g. a key pushed by the control plane).
  [[nodiscard]] static Result<TicketKey, std::string> from_bytes(std::span<const uint8_t> bytes);

  TicketKey(const TicketKey&) = default;
  TicketKey& operator=(const TicketKey&) = default;
  ~TicketKey();

  // The name travels in clear at the start of every ticket; it is not secret.
  const Name& name() const noexcept { return name_; }
  std::span<const uint8_t, kHmacKeyLen> hmac_key() const noexcept { return hmac_key_; }
  std::span<const uint8_t, kAesKeyLen> aes_key() const noexcept { return aes_key_; }

 private:
  TicketKey() = default;
  Name name_{};
  std::array<uint8_t, kHmacKeyLen> hmac_key_{};
  std::array<uint8_t, kAesKeyLen> aes_key_{};
};

class TicketKeys {
 public:
  // An empty set: no ticket is issued until rotate() or set_keys().
  // `keep_previous`: how many previous keys rotate() keeps for decryption.
  explicit TicketKeys(size_t keep_previous = 1);
  ~TicketKeys();
  TicketKeys(const TicketKeys&) = delete;
  TicketKeys& operator=(const TicketKeys&) = delete;

  // A shared set with one fresh random key.
  [[nodiscard]] static Result<std::shared_ptr<TicketKeys>, std::string> create(
      size_t keep_previous = 1);

  // A fresh random key becomes current; the old current becomes the newest
  // previous key; previous keys beyond keep_previous are dropped.
  [[nodiscard]] Result<void, std::string> rotate();
  // Installs keys from outside: keys[0] encrypts, the others only decrypt (in
  // that order). Refused when empty or when two keys share a name.
  [[nodiscard]] Result<void, std::string> set_keys(std::span<const TicketKey> keys);

  size_t key_count() const noexcept;
  // The name of the current key (all zero when there is none).
  TicketKey::Name current_name() const noexcept;

  // The body of OpenSSL's SSL_CTX_set_tlsext_ticket_key_evp_cb callback (the
  // server SSL_CTX made by tls_context.h calls it and keeps the keys alive), with
  // its return convention: encrypting, 1 = ticket issued, 0 = no ticket, -1 =
  // error; decrypting, 0 = unknown key (full handshake), 1 = ok, 2 = ok and
  // renew, -1 = error.
  int ticket_callback(unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                      EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int enc) const noexcept;

 private:
  struct KeySet;
  static Result<std::shared_ptr<const KeySet>, std::string> make_set(
      std::span<const TicketKey> keys);

  const size_t keep_previous_;
  EVP_CIPHER* cipher_ = nullptr;  // AES-256-CBC, fetched once
  std::mutex writer_mu_;          // writers only; readers never take it
  std::atomic<std::shared_ptr<const KeySet>> keys_;
};

}  // namespace lode::tls

#include "dataplane/tls/ticket_keys.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <cstring>
#include <new>

namespace lode::tls {

namespace {

constexpr size_t kIvLen = 16;  // AES-256-CBC
constexpr char kDigest[] = "SHA256";

// The key bytes as they sit in the (secure) heap.
struct RawKey {
  uint8_t name[TicketKey::kNameLen];
  uint8_t hmac[TicketKey::kHmacKeyLen];
  uint8_t aes[TicketKey::kAesKeyLen];
};

}  // namespace

// An immutable key set: keys[0] encrypts, all of them decrypt.
struct TicketKeys::KeySet {
  RawKey* keys = nullptr;  // OPENSSL_secure_zalloc'd
  size_t count = 0;
};

// --- TicketKey ---------------------------------------------------------------

TicketKey::~TicketKey() {
  OPENSSL_cleanse(hmac_key_.data(), hmac_key_.size());
  OPENSSL_cleanse(aes_key_.data(), aes_key_.size());
}

Result<TicketKey, std::string> TicketKey::random() {
  TicketKey k;
  if (RAND_bytes(k.name_.data(), static_cast<int>(k.name_.size())) != 1 ||
      RAND_priv_bytes(k.hmac_key_.data(), static_cast<int>(k.hmac_key_.size())) != 1 ||
      RAND_priv_bytes(k.aes_key_.data(), static_cast<int>(k.aes_key_.size())) != 1) {
    ERR_clear_error();
    return unexpected(std::string("ticket keys: the random generator failed"));
  }
  return k;
}

Result<TicketKey, std::string> TicketKey::from_bytes(std::span<const uint8_t> bytes) {
  if (bytes.size() != kSize) {
    return unexpected("ticket keys: a key must be " + std::to_string(kSize) + " bytes (got " +
                      std::to_string(bytes.size()) + ")");
  }
  TicketKey k;
  std::memcpy(k.name_.data(), bytes.data(), kNameLen);
  std::memcpy(k.hmac_key_.data(), bytes.data() + kNameLen, kHmacKeyLen);
  std::memcpy(k.aes_key_.data(), bytes.data() + kNameLen + kHmacKeyLen, kAesKeyLen);
  return k;
}

// --- TicketKeys --------------------------------------------------------------

TicketKeys::TicketKeys(size_t keep_previous)
    : keep_previous_(keep_previous), cipher_(EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr)) {}

TicketKeys::~TicketKeys() {
  keys_.store(nullptr);
  EVP_CIPHER_free(cipher_);
}

Result<std::shared_ptr<TicketKeys>, std::string> TicketKeys::create(size_t keep_previous) {
  auto keys = std::make_shared<TicketKeys>(keep_previous);
  if (auto r = keys->rotate(); !r) return unexpected(r.error());
  return keys;
}

Result<std::shared_ptr<const TicketKeys::KeySet>, std::string> TicketKeys::make_set(
    std::span<const TicketKey> keys) {
  if (keys.empty()) return unexpected(std::string("ticket keys: no key given"));
  for (size_t i = 0; i < keys.size(); ++i) {
    for (size_t j = i + 1; j < keys.size(); ++j) {
      if (keys[i].name() == keys[j].name()) {
        return unexpected("ticket keys: keys #" + std::to_string(i) + " and #" + std::to_string(j) +
                          " have the same name");
      }
    }
  }
  auto* raw = static_cast<RawKey*>(OPENSSL_secure_zalloc(sizeof(RawKey) * keys.size()));
  if (raw == nullptr) return unexpected(std::string("ticket keys: out of memory"));
  for (size_t i = 0; i < keys.size(); ++i) {
    std::memcpy(raw[i].name, keys[i].name().data(), TicketKey::kNameLen);
    std::memcpy(raw[i].hmac, keys[i].hmac_key().data(), TicketKey::kHmacKeyLen);
    std::memcpy(raw[i].aes, keys[i].aes_key().data(), TicketKey::kAesKeyLen);
  }
  auto* set = new (std::nothrow) KeySet{raw, keys.size()};
  if (set == nullptr) {
    OPENSSL_secure_clear_free(raw, sizeof(RawKey) * keys.size());
    return unexpected(std::string("ticket keys: out of memory"));
  }
  return std::shared_ptr<const KeySet>(set, [](const KeySet* s) {
    OPENSSL_secure_clear_free(s->keys, sizeof(RawKey) * s->count);
    delete s;
  });
}

Result<void, std::string> TicketKeys::set_keys(std::span<const TicketKey> keys) {
  auto set = make_set(keys);
  if (!set) return unexpected(set.error());
  std::lock_guard lock(writer_mu_);
  keys_.store(std::move(*set));
  return {};
}

Result<void, std::string> TicketKeys::rotate() {
  auto fresh = TicketKey::random();
  if (!fresh) return unexpected(fresh.error());
  std::lock_guard lock(writer_mu_);
  std::vector<TicketKey> next;
  next.reserve(keep_previous_ + 1);
  next.push_back(*fresh);
  if (auto old = keys_.load()) {
    for (size_t i = 0; i < old->count && next.size() < keep_previous_ + 1; ++i) {
      auto k = TicketKey::from_bytes(std::span<const uint8_t>(
          reinterpret_cast<const uint8_t*>(&old->keys[i]), sizeof(RawKey)));
      if (!k) return unexpected(k.error());
      if (k->name() == fresh->name()) continue;  // a 2^-128 event; never two keys of one name
      next.push_back(*k);
    }
  }
  auto set = make_set(next);
  if (!set) return unexpected(set.error());
  keys_.store(std::move(*set));
  return {};
}

size_t TicketKeys::key_count() const noexcept {
  auto set = keys_.load();
  return set ? set->count : 0;
}

TicketKey::Name TicketKeys::current_name() const noexcept {
  TicketKey::Name name{};
  if (auto set = keys_.load(); set && set->count > 0) {
    std::memcpy(name.data(), set->keys[0].name, name.size());
  }
  return name;
}

namespace {

bool set_mac_key(EVP_MAC_CTX* mac, const uint8_t* key) noexcept {
  OSSL_PARAM params[3];
  params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, const_cast<uint8_t*>(key),
                                                TicketKey::kHmacKeyLen);
  params[1] =
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>(kDigest), 0);
  params[2] = OSSL_PARAM_construct_end();
  return EVP_MAC_CTX_set_params(mac, params) == 1;
}

}  // namespace

int TicketKeys::ticket_callback(unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                                EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int enc) const noexcept {
  if (cipher_ == nullptr) return -1;
  const std::shared_ptr<const KeySet> set = keys_.load();
  if (enc == 1) {
    if (!set || set->count == 0) return 0;  // no key yet: no ticket, not an error
    const RawKey& k = set->keys[0];
    if (RAND_bytes(iv, static_cast<int>(kIvLen)) != 1) return -1;
    std::memcpy(key_name, k.name, TicketKey::kNameLen);
    if (EVP_EncryptInit_ex2(cipher, cipher_, k.aes, iv, nullptr) != 1) return -1;
    if (!set_mac_key(mac, k.hmac)) return -1;
    return 1;
  }
  if (!set) return 0;
  for (size_t i = 0; i < set->count; ++i) {
    const RawKey& k = set->keys[i];
    if (CRYPTO_memcmp(key_name, k.name, TicketKey::kNameLen) != 0) continue;
    if (!set_mac_key(mac, k.hmac)) return -1;
    if (EVP_DecryptInit_ex2(cipher, cipher_, k.aes, iv, nullptr) != 1) return -1;
    return i == 0 ? 1 : 2;  // opened with a previous key: issue a fresh ticket
  }
  return 0;
}

}  // namespace lode::tls

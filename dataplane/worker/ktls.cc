#include "dataplane/worker/ktls.h"

#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

namespace lode::worker::ktls {
namespace {

template <typename Info>
void fill(Info& k, const CryptoState& s) noexcept {
  k.info.version = s.version;
  k.info.cipher_type = s.cipher;
  static_assert(sizeof k.rec_seq == 8);
  std::memcpy(k.key, s.key, sizeof k.key);
  std::memcpy(k.iv, s.iv, sizeof k.iv);
  if constexpr (sizeof k.salt > 0) std::memcpy(k.salt, s.salt, sizeof k.salt);
  for (int i = 0; i < 8; ++i) k.rec_seq[i] = static_cast<uint8_t>(s.seq >> (56 - 8 * i));
}

template <typename Info>
void read(CryptoState& s, const Info& k) noexcept {
  std::memcpy(s.key, k.key, sizeof k.key);
  std::memcpy(s.iv, k.iv, sizeof k.iv);
  if constexpr (sizeof k.salt > 0) std::memcpy(s.salt, k.salt, sizeof k.salt);
  s.seq = 0;
  for (int i = 0; i < 8; ++i) s.seq = s.seq << 8 | k.rec_seq[i];
}

// Calls fn with a zeroed kernel struct of the cipher's type; false for a
// cipher the kernel path does not take.
template <typename Fn>
bool for_cipher(uint16_t cipher, Fn&& fn) noexcept {
  switch (cipher) {
    case TLS_CIPHER_AES_GCM_128: fn(tls12_crypto_info_aes_gcm_128{}); return true;
    case TLS_CIPHER_AES_GCM_256: fn(tls12_crypto_info_aes_gcm_256{}); return true;
    case TLS_CIPHER_CHACHA20_POLY1305: fn(tls12_crypto_info_chacha20_poly1305{}); return true;
    default: return false;
  }
}

// HKDF-Expand-Label(secret, label, "", out.size()) with the suite's hash.
bool expand_label(const EVP_MD* md, std::span<const uint8_t> secret, std::string_view label,
                  std::span<uint8_t> out) noexcept {
  uint8_t info[2 + 1 + 255 + 1];
  static constexpr std::string_view kPrefix = "tls13 ";
  const size_t full = kPrefix.size() + label.size();
  if (full > 255 || out.size() > 0xffff) return false;
  size_t n = 0;
  info[n++] = static_cast<uint8_t>(out.size() >> 8);
  info[n++] = static_cast<uint8_t>(out.size());
  info[n++] = static_cast<uint8_t>(full);
  std::memcpy(info + n, kPrefix.data(), kPrefix.size());
  n += kPrefix.size();
  std::memcpy(info + n, label.data(), label.size());
  n += label.size();
  info[n++] = 0;  // empty context
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (kdf == nullptr) return false;
  EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(kdf);
  EVP_KDF_free(kdf);
  if (ctx == nullptr) return false;
  int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>(EVP_MD_get0_name(md)), 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(secret.data()), secret.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, n),
      OSSL_PARAM_construct_end(),
  };
  const bool ok = EVP_KDF_derive(ctx, out.data(), out.size(), params) == 1;
  EVP_KDF_CTX_free(ctx);
  return ok;
}

int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

CryptoState::~CryptoState() { cleanse(); }

void CryptoState::cleanse() noexcept { OPENSSL_cleanse(this, sizeof *this); }

size_t CryptoState::key_len() const noexcept { return cipher == TLS_CIPHER_AES_GCM_128 ? 16 : 32; }
size_t CryptoState::salt_len() const noexcept { return cipher == TLS_CIPHER_CHACHA20_POLY1305 ? 0 : 4; }
size_t CryptoState::iv_len() const noexcept { return cipher == TLS_CIPHER_CHACHA20_POLY1305 ? 12 : 8; }

void CryptoState::nonce_base(uint8_t out[12]) const noexcept {
  std::memcpy(out, salt, salt_len());
  std::memcpy(out + salt_len(), iv, iv_len());
}

std::optional<CryptoState> from_openssl(const void* crypto_info) noexcept {
  if (crypto_info == nullptr) return std::nullopt;
  tls_crypto_info head;
  std::memcpy(&head, crypto_info, sizeof head);
  if (head.version != TLS_1_2_VERSION && head.version != TLS_1_3_VERSION) return std::nullopt;
  CryptoState s;
  s.version = head.version;
  s.cipher = head.cipher_type;
  const bool known = for_cipher(head.cipher_type, [&](auto k) {
    std::memcpy(&k, crypto_info, sizeof k);
    read(s, k);
    OPENSSL_cleanse(&k, sizeof k);
  });
  if (!known) return std::nullopt;
  return s;
}

std::optional<CryptoState> from_tls13_secret(const SSL_CIPHER* cipher, std::span<const uint8_t> secret,
                                             uint64_t seq) noexcept {
  if (cipher == nullptr) return std::nullopt;
  CryptoState s;
  s.version = TLS_1_3_VERSION;
  switch (SSL_CIPHER_get_protocol_id(cipher)) {
    case 0x1301: s.cipher = TLS_CIPHER_AES_GCM_128; break;
    case 0x1302: s.cipher = TLS_CIPHER_AES_GCM_256; break;
    case 0x1303: s.cipher = TLS_CIPHER_CHACHA20_POLY1305; break;
    default: return std::nullopt;
  }
  const EVP_MD* md = SSL_CIPHER_get_handshake_digest(cipher);
  if (md == nullptr || static_cast<size_t>(EVP_MD_get_size(md)) != secret.size()) return std::nullopt;
  uint8_t iv[12];
  if (!expand_label(md, secret, "key", {s.key, s.key_len()}) || !expand_label(md, secret, "iv", iv)) {
    OPENSSL_cleanse(iv, sizeof iv);
    return std::nullopt;
  }
  std::memcpy(s.salt, iv, s.salt_len());
  std::memcpy(s.iv, iv + s.salt_len(), s.iv_len());
  OPENSSL_cleanse(iv, sizeof iv);
  s.seq = seq;
  return s;
}

bool next_tls13_secret(const SSL_CIPHER* cipher, std::span<const uint8_t> secret, std::span<uint8_t> out) noexcept {
  if (cipher == nullptr) return false;
  const EVP_MD* md = SSL_CIPHER_get_handshake_digest(cipher);
  if (md == nullptr) return false;
  const auto len = static_cast<size_t>(EVP_MD_get_size(md));
  if (secret.size() != len || out.size() < len) return false;
  return expand_label(md, secret, "traffic upd", out.first(len));
}

std::optional<CryptoState> update_tls13_secret(const SSL_CIPHER* cipher, std::span<uint8_t> secret) noexcept {
  uint8_t next[EVP_MAX_MD_SIZE];
  std::optional<CryptoState> s;
  if (next_tls13_secret(cipher, secret, next)) s = from_tls13_secret(cipher, {next, secret.size()}, 0);
  if (s) std::memcpy(secret.data(), next, secret.size());
  OPENSSL_cleanse(next, sizeof next);
  return s;
}

size_t keylog_secret(std::string_view line, std::string_view label, std::span<uint8_t> out) noexcept {
  if (line.size() <= label.size() || line.substr(0, label.size()) != label || line[label.size()] != ' ') return 0;
  const size_t sp = line.rfind(' ');
  const std::string_view hex = line.substr(sp + 1);
  if (hex.empty() || hex.size() % 2 != 0 || hex.size() / 2 > out.size()) return 0;
  for (size_t i = 0; i < hex.size() / 2; ++i) {
    const int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      OPENSSL_cleanse(out.data(), out.size());
      return 0;
    }
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return hex.size() / 2;
}

int install(int fd, bool tx, const CryptoState& state) noexcept {
  if (setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof "tls") != 0 && errno != EEXIST) return errno;
  int err = EINVAL;
  for_cipher(state.cipher, [&](auto k) {
    fill(k, state);
    err = setsockopt(fd, SOL_TLS, tx ? TLS_TX : TLS_RX, &k, sizeof k) == 0 ? 0 : errno;
    OPENSSL_cleanse(&k, sizeof k);
  });
  return err;
}

ssize_t send_record(int fd, uint8_t type, std::span<const uint8_t> data) noexcept {
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(uint8_t))] = {};
  iovec iov{const_cast<uint8_t*>(data.data()), data.size()};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_TLS;
  c->cmsg_type = TLS_SET_RECORD_TYPE;
  c->cmsg_len = CMSG_LEN(sizeof(uint8_t));
  *CMSG_DATA(c) = type;
  return sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
}

Received recv_record(int fd, std::span<uint8_t> buf) noexcept {
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(uint8_t))] = {};
  iovec iov{buf.data(), buf.size()};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  Received r;
  r.n = recvmsg(fd, &m, MSG_DONTWAIT);
  if (r.n < 0) {
    r.n = -errno;
    return r;
  }
  r.type = kApplicationData;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level == SOL_TLS && c->cmsg_type == TLS_GET_RECORD_TYPE) r.type = *CMSG_DATA(c);
  }
  return r;
}

void RecordCounter::feed(std::span<const uint8_t> bytes) noexcept {
  size_t i = 0;
  while (i < bytes.size()) {
    if (body_left_ > 0) {
      const size_t take = std::min(body_left_, bytes.size() - i);
      body_left_ -= take;
      i += take;
      if (body_left_ == 0) ++records_;
      continue;
    }
    header_[header_have_++] = bytes[i++];
    if (header_have_ == sizeof header_) {
      header_have_ = 0;
      body_left_ = size_t{header_[3]} << 8 | header_[4];
      if (body_left_ == 0) ++records_;
    }
  }
}

void RxHandover::on_openssl_offer(const void* crypto_info) noexcept {
  auto s = from_openssl(crypto_info);
  have_ = s.has_value();
  if (s) base_ = *s;
  tls13_ = false;
  counter_.reset();
  counting_ = true;
}

void RxHandover::on_keylog(const SSL* ssl, std::string_view line) noexcept {
  uint8_t secret[EVP_MAX_MD_SIZE];
  size_t len = keylog_secret(line, "CLIENT_TRAFFIC_SECRET_0", secret);
  const bool first = len > 0;
  if (!first) len = keylog_secret(line, "CLIENT_TRAFFIC_SECRET_N", secret);
  if (len == 0) {
    // A client secret line we cannot read: no hand-over from here on.
    if (line.starts_with("CLIENT_TRAFFIC_SECRET_")) have_ = false;
    return;
  }
  std::optional<CryptoState> s = from_tls13_secret(SSL_get_current_cipher(ssl), {secret, len}, 0);
  OPENSSL_cleanse(secret, sizeof secret);
  tls13_ = true;
  have_ = s.has_value();
  if (s) base_ = *s;
  if (first) {
    // The key applies from the record after the client's Finished; the
    // count starts when the handshake is done (whenever OpenSSL logs it).
    pending_tls13_ = true;
    counting_ = false;
  } else {
    // A KeyUpdate was just read: the new key applies from the next record.
    counter_.reset();
    counting_ = true;
  }
}

void RxHandover::on_consumed(std::span<const uint8_t> bytes) noexcept {
  if (counting_) counter_.feed(bytes);
}

void RxHandover::on_handshake_done(const SSL* ssl) noexcept {
  (void)ssl;
  if (tls13_ && pending_tls13_) {
    pending_tls13_ = false;
    counter_.reset();
    counting_ = true;
  }
}

std::optional<CryptoState> RxHandover::state_now() const noexcept {
  if (!have_ || !counting_ || !counter_.at_boundary()) return std::nullopt;
  CryptoState s = base_;
  s.seq += counter_.records();
  return s;
}

}  // namespace lode::worker::ktls

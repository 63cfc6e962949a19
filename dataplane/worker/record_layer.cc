#include "dataplane/worker/record_layer.h"

#include <linux/tls.h>
#include <openssl/crypto.h>

#include <atomic>
#include <climits>
#include <cstring>

namespace lode::worker::records {
namespace {

std::atomic<uint64_t> next_key_id{1};

int cipher_index(uint16_t cipher) noexcept {
  switch (cipher) {
    case TLS_CIPHER_AES_GCM_128: return 0;
    case TLS_CIPHER_AES_GCM_256: return 1;
    case TLS_CIPHER_CHACHA20_POLY1305: return 2;
    default: return -1;
  }
}

const EVP_CIPHER* fetched(int index) noexcept {
  // Fetched once per process (an implicit fetch per key load otherwise).
  static EVP_CIPHER* const ciphers[3] = {
      EVP_CIPHER_fetch(nullptr, "AES-128-GCM", nullptr),
      EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr),
      EVP_CIPHER_fetch(nullptr, "ChaCha20-Poly1305", nullptr),
  };
  return ciphers[index];
}

bool explicit_nonce(const ktls::CryptoState& s) noexcept {
  return s.version == TLS_1_2_VERSION && s.cipher != TLS_CIPHER_CHACHA20_POLY1305;
}

void put64(uint8_t* p, uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (56 - 8 * i));
}

// One record's nonce and additional data, the same for sealing and opening.
// `header`: the record's 5 bytes (TLS 1.3's additional data); `type` and
// `plain_len`: TLS 1.2's (seq || type || 3 3 || length); `explicit_part`:
// TLS 1.2 AES-GCM's 8 explicit nonce bytes (the nonce is salt || them),
// else the nonce is the IV XOR the sequence number.
struct RecordAead {
  uint8_t nonce[12];
  uint8_t aad12[13];
  const uint8_t* ad = nullptr;
  int ad_len = 0;

  RecordAead(const ktls::CryptoState& s, const uint8_t* header, uint8_t type, size_t plain_len,
             const uint8_t* explicit_part) noexcept {
    s.nonce_base(nonce);
    if (explicit_part != nullptr) {
      std::memcpy(nonce + 4, explicit_part, 8);
    } else {
      uint8_t seq[8];
      put64(seq, s.seq);
      for (int i = 0; i < 8; ++i) nonce[4 + i] ^= seq[i];
    }
    if (s.version == TLS_1_3_VERSION) {
      ad = header;
      ad_len = kHeader;
      return;
    }
    put64(aad12, s.seq);
    aad12[8] = type;
    aad12[9] = 3;
    aad12[10] = 3;
    aad12[11] = static_cast<uint8_t>(plain_len >> 8);
    aad12[12] = static_cast<uint8_t>(plain_len);
    ad = aad12;
    ad_len = sizeof aad12;
  }
  ~RecordAead() { OPENSSL_cleanse(nonce, sizeof nonce); }
  RecordAead(const RecordAead&) = delete;
  RecordAead& operator=(const RecordAead&) = delete;
};

Opened error(uint8_t alert) noexcept {
  Opened o;
  o.status = Opened::Status::kError;
  o.alert = alert;
  return o;
}

}  // namespace

void Keys::set(const ktls::CryptoState& s) noexcept {
  state = s;
  id = next_key_id.fetch_add(1, std::memory_order_relaxed);
}

bool Keys::tls13() const noexcept { return state.version == TLS_1_3_VERSION; }

Contexts::~Contexts() {
  for (auto& row : slots_) {
    for (Slot& s : row) EVP_CIPHER_CTX_free(s.ctx);  // cleanses the key schedule
  }
}

Contexts& Contexts::for_thread() noexcept {
  thread_local Contexts contexts;
  return contexts;
}

EVP_CIPHER_CTX* Contexts::get(const Keys& k, bool seal) noexcept {
  const int index = cipher_index(k.state.cipher);
  if (index < 0 || !k.valid()) return nullptr;
  Slot& slot = slots_[index][seal ? 1 : 0];
  if (slot.ctx != nullptr && slot.id == k.id) return slot.ctx;
  if (slot.ctx == nullptr) {
    const EVP_CIPHER* cipher = fetched(index);
    slot.ctx = cipher != nullptr ? EVP_CIPHER_CTX_new() : nullptr;
    if (slot.ctx == nullptr) return nullptr;
    if (EVP_CipherInit_ex(slot.ctx, cipher, nullptr, nullptr, nullptr, seal ? 1 : 0) != 1) {
      EVP_CIPHER_CTX_free(slot.ctx);
      slot.ctx = nullptr;
      return nullptr;
    }
  }
  slot.id = 0;
  if (EVP_CipherInit_ex(slot.ctx, nullptr, nullptr, k.state.key, nullptr, seal ? 1 : 0) != 1) return nullptr;
  slot.id = k.id;
  return slot.ctx;
}

size_t overhead(const ktls::CryptoState& s) noexcept {
  if (s.version == TLS_1_3_VERSION) return kHeader + 1 + kTag;
  return kHeader + (explicit_nonce(s) ? 8 : 0) + kTag;
}

size_t seal(Keys& k, uint8_t type, std::span<const uint8_t> plain, uint8_t* out) noexcept {
  if (plain.size() > kMaxPlaintext || k.state.seq == UINT64_MAX) return 0;
  EVP_CIPHER_CTX* ctx = Contexts::for_thread().get(k, true);
  if (ctx == nullptr) return 0;
  const ktls::CryptoState& s = k.state;
  const bool tls13 = s.version == TLS_1_3_VERSION;
  const size_t body = overhead(s) - kHeader + plain.size();
  out[0] = tls13 ? ktls::kApplicationData : type;
  out[1] = 3;
  out[2] = 3;
  out[3] = static_cast<uint8_t>(body >> 8);
  out[4] = static_cast<uint8_t>(body);
  uint8_t* ct = out + kHeader;
  if (explicit_nonce(s)) {
    put64(ct, s.seq);  // the explicit nonce we send: the sequence number
    ct += 8;
  }
  const RecordAead aead(s, out, type, plain.size(), explicit_nonce(s) ? out + kHeader : nullptr);
  int n = 0;
  size_t done = 0;
  bool ok = EVP_CipherInit_ex(ctx, nullptr, nullptr, nullptr, aead.nonce, 1) == 1 &&
            EVP_EncryptUpdate(ctx, nullptr, &n, aead.ad, aead.ad_len) == 1;
  if (ok && !plain.empty()) {
    ok = EVP_EncryptUpdate(ctx, ct, &n, plain.data(), static_cast<int>(plain.size())) == 1;
    done = static_cast<size_t>(n);
  }
  if (ok && tls13) {
    ok = EVP_EncryptUpdate(ctx, ct + done, &n, &type, 1) == 1;
    done += static_cast<size_t>(n);
  }
  ok = ok && EVP_EncryptFinal_ex(ctx, ct + done, &n) == 1;
  done += ok ? static_cast<size_t>(n) : 0;
  ok = ok && done == plain.size() + (tls13 ? 1 : 0) &&
       EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kTag, ct + done) == 1;
  if (!ok) return 0;
  ++k.state.seq;
  return kHeader + body;
}

Opened open(Keys& k, std::span<const uint8_t> in, uint8_t* out, size_t out_room) noexcept {
  if (in.size() < kHeader) return Opened{};
  const ktls::CryptoState& s = k.state;
  const bool tls13 = s.version == TLS_1_3_VERSION;
  const uint8_t outer = in[0];
  if (in[1] != 3 || in[2] != 3) return error(kAlertProtocolVersion);
  const size_t len = size_t{in[3]} << 8 | in[4];
  if (len > (tls13 ? kMaxCiphertext13 : kMaxCiphertext12)) return error(kAlertRecordOverflow);
  // After the handshake: TLS 1.3 protects every record as application data
  // (a ChangeCipherSpec or a plaintext alert now is unexpected); TLS 1.2
  // carries alerts, handshake messages (a renegotiation) and data.
  if (tls13 ? outer != ktls::kApplicationData
            : outer != ktls::kApplicationData && outer != ktls::kAlert && outer != ktls::kHandshake) {
    return error(kAlertUnexpectedMessage);
  }
  const size_t nonce_len = explicit_nonce(s) ? 8 : 0;
  if (len < nonce_len + kTag + (tls13 ? 1 : 0)) return error(kAlertBadRecordMac);
  Opened o;
  o.room = len;
  if (in.size() < kHeader + len) return o;  // kNeedMore
  if (out_room < len - nonce_len - kTag || k.state.seq == UINT64_MAX) return error(kAlertInternalError);
  EVP_CIPHER_CTX* ctx = Contexts::for_thread().get(k, false);
  if (ctx == nullptr) return error(kAlertInternalError);
  const uint8_t* body = in.data() + kHeader;
  const size_t ct_len = len - nonce_len - kTag;
  const RecordAead aead(s, in.data(), outer, ct_len, nonce_len > 0 ? body : nullptr);
  uint8_t tag[kTag];
  std::memcpy(tag, body + nonce_len + ct_len, kTag);
  int n = 0;
  size_t done = 0;
  bool ok = EVP_CipherInit_ex(ctx, nullptr, nullptr, nullptr, aead.nonce, 0) == 1 &&
            EVP_DecryptUpdate(ctx, nullptr, &n, aead.ad, aead.ad_len) == 1;
  if (ok && ct_len > 0) {
    ok = EVP_DecryptUpdate(ctx, out, &n, body + nonce_len, static_cast<int>(ct_len)) == 1;
    done = static_cast<size_t>(n);
  }
  ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, kTag, tag) == 1 &&
       EVP_DecryptFinal_ex(ctx, out + done, &n) == 1;
  if (!ok) {
    OPENSSL_cleanse(out, ct_len);  // nothing unauthenticated stays behind
    return error(kAlertBadRecordMac);
  }
  ++k.state.seq;
  o.status = Opened::Status::kRecord;
  o.consumed = kHeader + len;
  o.type = outer;
  o.len = ct_len;
  if (tls13) {
    // TLSInnerPlaintext: content || type || zero padding.
    size_t i = ct_len;
    while (i > 0 && out[i - 1] == 0) --i;
    if (i == 0) return error(kAlertUnexpectedMessage);
    o.type = out[i - 1];
    o.len = i - 1;
    if (o.type != ktls::kApplicationData && o.type != ktls::kAlert && o.type != ktls::kHandshake) {
      return error(kAlertUnexpectedMessage);
    }
  }
  if (o.len > kMaxPlaintext) return error(kAlertRecordOverflow);
  return o;
}

}  // namespace lode::worker::records

// SipHash-2-4 with a 64-bit output through OpenSSL's EVP_MAC "SIPHASH": an
// implementation written by others, for the unit tests to compare
// lode::front::siphash24 with and for the benchmark's baseline. One MAC
// context, re-keyed on every call, as a caller of the EVP API would use it.
#pragma once

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <span>

namespace lode::test {

class OpenSslSipHash {
 public:
  OpenSslSipHash() {
    mac_ = EVP_MAC_fetch(nullptr, "SIPHASH", nullptr);
    ctx_ = mac_ != nullptr ? EVP_MAC_CTX_new(mac_) : nullptr;
    if (ctx_ == nullptr) std::abort();
  }
  ~OpenSslSipHash() {
    EVP_MAC_CTX_free(ctx_);
    EVP_MAC_free(mac_);
  }
  OpenSslSipHash(const OpenSslSipHash&) = delete;
  OpenSslSipHash& operator=(const OpenSslSipHash&) = delete;

  // The 8 output bytes read little-endian, as the reference implementation's
  // vectors are written and lode::front::siphash24 returns them.
  uint64_t operator()(const std::array<uint8_t, 16>& key, std::span<const uint8_t> data) {
    size_t size = 8;  // OpenSSL's default output is SipHash-2-4-128
    OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
                           OSSL_PARAM_construct_end()};
    static constexpr uint8_t kNone = 0;  // a valid pointer for an empty message
    uint8_t out[8];
    size_t out_len = 0;
    if (EVP_MAC_init(ctx_, key.data(), key.size(), params) != 1 ||
        EVP_MAC_update(ctx_, data.empty() ? &kNone : data.data(), data.size()) != 1 ||
        EVP_MAC_final(ctx_, out, &out_len, sizeof(out)) != 1 || out_len != sizeof(out)) {
      std::abort();
    }
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = v << 8 | out[i];
    return v;
  }

 private:
  EVP_MAC* mac_ = nullptr;
  EVP_MAC_CTX* ctx_ = nullptr;
};

}  // namespace lode::test

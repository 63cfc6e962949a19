// crypto_bound: the public-key and record crypto a TLS 1.3 server cannot avoid,
// timed alone with libcrypto's EVP API on this CPU — the floor under any
// server's CPU per operation in bench/compare_nginx.sh:
//   full ECDSA handshake = one ECDSA P-256 signature (CertificateVerify)
//                          + one X25519 key generation and one derivation;
//   full RSA handshake   = one RSA-2048 PSS signature + the same X25519 work;
//   resumed (psk_dhe_ke) = the X25519 work alone;
//   bulk, per MiB moved  = AES-256-GCM over one MiB in 16 KiB records, the
//                          mean of sealing and opening (the relay decrypts
//                          what the client sends, encrypts what it gets).
// The keys are the benchmark's own certificate keys. Everything else a
// handshake does (hashing the transcript, HKDF, the handshake records, the
// tickets, the state machine) is left out: that is the difference between
// this bound and bench/openssl_ceiling.
//
//   crypto_bound --ecdsa-key KEY.pem --rsa-key KEY.pem [--min-ms N]
//
// Prints one JSON object: per primitive µs and operations per second (thread
// CPU time, so time spent preempted is not counted), and per test the bound
// in µs. Exits 1 naming what failed.
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/thread_cpu_clock.h"

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "crypto_bound: %s\n", what.c_str());
  ERR_print_errors_fp(stderr);  // OpenSSL's reasons, when it has some
  std::exit(1);
}

EVP_PKEY* read_key(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) die("cannot read " + path);
  EVP_PKEY* k = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (k == nullptr) die(path + ": not a PEM private key");
  return k;
}

struct Timing {
  double us = 0;
  double per_s = 0;
};

// Runs op() until it has used min_ms of thread CPU time (and at least 20
// times); op returns false on failure.
template <class Op>
Timing time_op(const char* name, int64_t min_ms, Op&& op) {
  for (int i = 0; i < 5; ++i)  // warm: first-use fetches and caches
    if (!op()) die(name);
  int64_t n = 0;
  const int64_t t0 = lode::bench::thread_cpu_ns();
  int64_t t = t0;
  while (n < 20 || t - t0 < min_ms * 1'000'000) {
    if (!op()) die(name);
    ++n;
    if (n % 8 == 0) t = lode::bench::thread_cpu_ns();
  }
  t = lode::bench::thread_cpu_ns();
  const double us = static_cast<double>(t - t0) / 1000.0 / static_cast<double>(n);
  return {us, 1e6 / us};
}

// TLS 1.3 CertificateVerify input (RFC 8446 4.4.3): 64 spaces, the context
// string, a zero byte, the transcript hash (SHA-384 for the default suite).
std::vector<unsigned char> certificate_verify_content() {
  std::vector<unsigned char> c(64, 0x20);
  const std::string ctx = "TLS 1.3, server CertificateVerify";
  c.insert(c.end(), ctx.begin(), ctx.end());
  c.push_back(0);
  for (int i = 0; i < 48; ++i) c.push_back(static_cast<unsigned char>(i * 7));
  return c;
}

// One signature as a server signs: hash the content, sign the digest with a
// context prepared once (OpenSSL's per-handshake fetches are libssl's cost).
Timing time_sign(const char* name, EVP_PKEY* key, bool pss, int64_t min_ms) {
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(key, nullptr);
  if (ctx == nullptr || EVP_PKEY_sign_init(ctx) != 1 ||
      EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) != 1)
    die(name);
  if (pss && (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) != 1 ||
              EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) != 1))
    die(name);
  const std::vector<unsigned char> content = certificate_verify_content();
  std::vector<unsigned char> sig(static_cast<size_t>(EVP_PKEY_get_size(key)));
  const Timing t = time_op(name, min_ms, [&] {
    unsigned char md[32];
    unsigned int md_len = 0;
    size_t sig_len = sig.size();
    return EVP_Digest(content.data(), content.size(), md, &md_len, EVP_sha256(), nullptr) == 1 &&
           EVP_PKEY_sign(ctx, sig.data(), &sig_len, md, md_len) == 1;
  });
  EVP_PKEY_CTX_free(ctx);
  return t;
}

// The server's key share: a fresh X25519 key and the shared secret with the
// client's share.
Timing time_x25519(int64_t min_ms) {
  EVP_PKEY_CTX* gen = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nullptr);
  EVP_PKEY* peer = nullptr;
  if (gen == nullptr || EVP_PKEY_keygen_init(gen) != 1 || EVP_PKEY_keygen(gen, &peer) != 1)
    die("x25519 setup");
  const Timing t = time_op("x25519", min_ms, [&] {
    EVP_PKEY* mine = nullptr;
    if (EVP_PKEY_keygen(gen, &mine) != 1) return false;
    EVP_PKEY_CTX* d = EVP_PKEY_CTX_new(mine, nullptr);
    unsigned char secret[32];
    size_t len = sizeof secret;
    const bool ok = d != nullptr && EVP_PKEY_derive_init(d) == 1 &&
                    EVP_PKEY_derive_set_peer(d, peer) == 1 &&
                    EVP_PKEY_derive(d, secret, &len) == 1 && len == 32;
    EVP_PKEY_CTX_free(d);
    EVP_PKEY_free(mine);
    return ok;
  });
  EVP_PKEY_free(peer);
  EVP_PKEY_CTX_free(gen);
  return t;
}

// AES-256-GCM over one MiB as TLS 1.3 records: 16 KiB of data + the content
// type byte, a 5-byte header as additional data, a 16-byte tag; seal, or open
// (tag checked) the records sealed first.
Timing time_aes_gcm_mib(bool open, int64_t min_ms) {
  constexpr size_t kRecord = 16384 + 1;
  constexpr int kRecords = 64;
  std::array<unsigned char, 32> key{};
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<unsigned char>(i);
  const std::array<unsigned char, 5> aad{0x17, 0x03, 0x03, 0x40, 0x11};
  std::vector<unsigned char> plain(kRecord, 0x5a), sealed(kRecords * kRecord), out(kRecord);
  std::vector<std::array<unsigned char, 16>> tags(kRecords);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (ctx == nullptr || EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key.data(), nullptr, 1) != 1)
    die("aes-256-gcm setup");
  auto record = [&](int i, bool decrypt) {
    std::array<unsigned char, 12> iv{};
    iv[11] = static_cast<unsigned char>(i);
    int len = 0;
    const unsigned char* in = decrypt ? &sealed[static_cast<size_t>(i) * kRecord] : plain.data();
    unsigned char* dst = decrypt ? out.data() : &sealed[static_cast<size_t>(i) * kRecord];
    if (EVP_CipherInit_ex(ctx, nullptr, nullptr, nullptr, iv.data(), decrypt ? 0 : 1) != 1 ||
        EVP_CipherUpdate(ctx, nullptr, &len, aad.data(), aad.size()) != 1 ||
        EVP_CipherUpdate(ctx, dst, &len, in, kRecord) != 1)
      return false;
    if (decrypt &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tags[static_cast<size_t>(i)].data()) != 1)
      return false;
    if (EVP_CipherFinal_ex(ctx, dst + len, &len) != 1) return false;  // open: the tag check
    return decrypt ||
           EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tags[static_cast<size_t>(i)].data()) == 1;
  };
  for (int i = 0; i < kRecords; ++i)
    if (!record(i, false)) die("aes-256-gcm seal");
  const Timing t = time_op(open ? "aes-256-gcm open" : "aes-256-gcm seal", min_ms, [&] {
    for (int i = 0; i < kRecords; ++i)
      if (!record(i, open)) return false;
    return true;
  });
  EVP_CIPHER_CTX_free(ctx);
  return t;
}

[[noreturn]] void usage() {
  std::fprintf(stderr, "usage: crypto_bound --ecdsa-key KEY.pem --rsa-key KEY.pem [--min-ms N]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string ecdsa_path, rsa_path;
  int64_t min_ms = 300;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage();
    const std::string v = argv[++i];
    if (a == "--ecdsa-key")
      ecdsa_path = v;
    else if (a == "--rsa-key")
      rsa_path = v;
    else if (a == "--min-ms")
      min_ms = std::atoll(v.c_str());
    else
      usage();
  }
  if (ecdsa_path.empty() || rsa_path.empty() || min_ms < 1 || min_ms > 60'000) usage();
  EVP_PKEY* ecdsa = read_key(ecdsa_path);
  EVP_PKEY* rsa = read_key(rsa_path);
  if (!EVP_PKEY_is_a(ecdsa, "EC") || EVP_PKEY_get_bits(ecdsa) != 256)
    die(ecdsa_path + ": expected an ECDSA P-256 key");
  if (!EVP_PKEY_is_a(rsa, "RSA") || EVP_PKEY_get_bits(rsa) != 2048)
    die(rsa_path + ": expected an RSA-2048 key");

  const Timing ec = time_sign("ecdsa p-256 sign", ecdsa, false, min_ms);
  const Timing rs = time_sign("rsa-2048 pss sign", rsa, true, min_ms);
  const Timing x = time_x25519(min_ms);
  const Timing seal = time_aes_gcm_mib(false, min_ms);
  const Timing open = time_aes_gcm_mib(true, min_ms);
  const double gcm = (seal.us + open.us) / 2;
  std::printf(
      "{\"primitives\": {"
      "\"ecdsa_p256_sign\": {\"us\": %.2f, \"per_s\": %.0f}, "
      "\"rsa2048_pss_sign\": {\"us\": %.2f, \"per_s\": %.0f}, "
      "\"x25519_keygen_derive\": {\"us\": %.2f, \"per_s\": %.0f}, "
      "\"aes256gcm_seal_mib\": {\"us\": %.2f, \"per_s\": %.1f}, "
      "\"aes256gcm_open_mib\": {\"us\": %.2f, \"per_s\": %.1f}}, "
      "\"bound_us\": {\"full\": %.2f, \"full-rsa\": %.2f, \"resumed\": %.2f, \"bulk\": %.2f}}\n",
      ec.us, ec.per_s, rs.us, rs.per_s, x.us, x.per_s, seal.us, seal.per_s, open.us, open.per_s,
      ec.us + x.us, rs.us + x.us, x.us, gcm);
  EVP_PKEY_free(ecdsa);
  EVP_PKEY_free(rsa);
  return 0;
}

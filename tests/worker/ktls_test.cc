// The kTLS hand-over state, without a kernel: HKDF-Expand-Label against RFC
// 8448, our TLS 1.3 send keys against the ones OpenSSL hands to its BIO, and
// the receive state the worker would install after a real OpenSSL client's
// records (including a KeyUpdate) decrypts the client's next record. The
// kernel itself is exercised in the VM (tests/vm/ktls_worker.sh).
#include "dataplane/worker/ktls.h"

#include <gtest/gtest.h>
#include <linux/tls.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <cstring>
#include <string>
#include <vector>

#include "support/test_pki.h"

namespace lode::worker::ktls {
namespace {

std::vector<uint8_t> unhex(std::string_view h) {
  std::vector<uint8_t> out;
  std::string digits;
  for (char c : h) {
    if (c != ' ') digits += c;
  }
  for (size_t i = 0; i + 1 < digits.size(); i += 2) out.push_back(static_cast<uint8_t>(std::stoi(digits.substr(i, 2), nullptr, 16)));
  return out;
}

const SSL_CIPHER* suite(uint16_t id) {
  static SSL_CTX* ctx = SSL_CTX_new(TLS_method());
  static SSL* ssl = SSL_new(ctx);
  const uint8_t wire[2] = {static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id)};
  return SSL_CIPHER_find(ssl, wire);
}

TEST(KtlsKeys, Tls13KeyAndIvMatchRfc8448) {
  // RFC 8448 section 3: client_application_traffic_secret_0 and the
  // application write key and IV derived from it (TLS_AES_128_GCM_SHA256).
  const auto secret = unhex("9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5");
  auto s = from_tls13_secret(suite(0x1301), secret, 7);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->cipher, TLS_CIPHER_AES_GCM_128);
  EXPECT_EQ(s->version, TLS_1_3_VERSION);
  EXPECT_EQ(std::vector<uint8_t>(s->key, s->key + 16), unhex("17422dda596ed5d9acd890e3c63f5051"));
  uint8_t nonce[12];
  s->nonce_base(nonce);
  EXPECT_EQ(std::vector<uint8_t>(nonce, nonce + 12), unhex("5b78923dee08579033e523d9"));
  EXPECT_EQ(s->seq, 7u);
  // The server's: a11af9f0... -> key 9f02283b..., iv cf782b88...
  s = from_tls13_secret(suite(0x1301), unhex("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643"), 0);
  ASSERT_TRUE(s);
  EXPECT_EQ(std::vector<uint8_t>(s->key, s->key + 16), unhex("9f02283b6c9c07efc26bb9f2ac92e356"));
  s->nonce_base(nonce);
  EXPECT_EQ(std::vector<uint8_t>(nonce, nonce + 12), unhex("cf782b88dd83549aadf1e984"));
}

TEST(KtlsKeys, RefusesSecretsOfTheWrongLengthAndOtherSuites) {
  EXPECT_FALSE(from_tls13_secret(suite(0x1301), unhex("0011"), 0));
  EXPECT_FALSE(from_tls13_secret(suite(0x1302), std::vector<uint8_t>(32, 1), 0));  // SHA-384 wants 48
  EXPECT_TRUE(from_tls13_secret(suite(0x1302), std::vector<uint8_t>(48, 1), 0));
  EXPECT_FALSE(from_tls13_secret(suite(0x1304), std::vector<uint8_t>(32, 1), 0));  // AES-CCM: not taken
  EXPECT_FALSE(from_tls13_secret(nullptr, std::vector<uint8_t>(32, 1), 0));
  tls_crypto_info other{TLS_1_2_VERSION, TLS_CIPHER_AES_CCM_128};
  EXPECT_FALSE(from_openssl(&other));
  EXPECT_FALSE(from_openssl(nullptr));
}

TEST(KtlsKeys, KeylogSecretReadsItsOwnLabelAndWholeHexOnly) {
  uint8_t out[4] = {};
  EXPECT_EQ(keylog_secret("CLIENT_TRAFFIC_SECRET_0 aabb 0102fF", "CLIENT_TRAFFIC_SECRET_0", out), 3u);
  EXPECT_EQ(std::vector<uint8_t>(out, out + 3), (std::vector<uint8_t>{1, 2, 0xff}));
  EXPECT_EQ(keylog_secret("SERVER_TRAFFIC_SECRET_0 aabb 0102", "CLIENT_TRAFFIC_SECRET_0", out), 0u);
  EXPECT_EQ(keylog_secret("CLIENT_TRAFFIC_SECRET_0X aabb 0102", "CLIENT_TRAFFIC_SECRET_0", out), 0u);
  EXPECT_EQ(keylog_secret("CLIENT_TRAFFIC_SECRET_0", "CLIENT_TRAFFIC_SECRET_0", out), 0u);
  EXPECT_EQ(keylog_secret("CLIENT_TRAFFIC_SECRET_0 aabb 010", "CLIENT_TRAFFIC_SECRET_0", out), 0u);  // odd
  EXPECT_EQ(keylog_secret("CLIENT_TRAFFIC_SECRET_0 aabb 01zz", "CLIENT_TRAFFIC_SECRET_0", out), 0u);
  EXPECT_EQ(keylog_secret("CLIENT_TRAFFIC_SECRET_0 aabb 0102030405", "CLIENT_TRAFFIC_SECRET_0", out), 0u);  // too long
}

TEST(KtlsKeys, NextTls13SecretWantsTheSuitesHashLength) {
  uint8_t next[48];
  EXPECT_TRUE(next_tls13_secret(suite(0x1301), std::vector<uint8_t>(32, 7), next));
  const std::vector<uint8_t> first(next, next + 32);
  EXPECT_NE(first, std::vector<uint8_t>(32, 7));
  EXPECT_TRUE(next_tls13_secret(suite(0x1301), first, next));
  EXPECT_NE(std::vector<uint8_t>(next, next + 32), first) << "each update moves on";
  EXPECT_FALSE(next_tls13_secret(suite(0x1301), std::vector<uint8_t>(48, 7), next));
  EXPECT_TRUE(next_tls13_secret(suite(0x1302), std::vector<uint8_t>(48, 7), next));
  EXPECT_FALSE(next_tls13_secret(nullptr, std::vector<uint8_t>(32, 7), next));
  EXPECT_FALSE(next_tls13_secret(suite(0x1302), std::vector<uint8_t>(48, 7), std::span<uint8_t>(next, 32)));
}

TEST(KtlsRecordCounter, CountsRecordsFedInAnyPieces) {
  std::vector<uint8_t> stream;
  for (size_t len : {0u, 1u, 300u, 16401u}) {
    stream.insert(stream.end(), {23, 3, 3, static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len)});
    stream.insert(stream.end(), len, 0xaa);
  }
  for (size_t piece : {1u, 3u, 5u, 7u, 4096u, 100000u}) {
    RecordCounter c;
    for (size_t i = 0; i < stream.size(); i += piece) {
      c.feed({stream.data() + i, std::min(piece, stream.size() - i)});
    }
    EXPECT_EQ(c.records(), 4u) << piece;
    EXPECT_TRUE(c.at_boundary()) << piece;
  }
  RecordCounter c;
  c.feed({stream.data(), 7});  // a 0-length record, then 2 bytes of the next header: mid-record
  EXPECT_EQ(c.records(), 1u);
  EXPECT_FALSE(c.at_boundary());
}

// ------------------------------------------------ a server SSL on a test BIO

// What the worker's BIO does for the hand-over, on byte strings.
struct TestSide {
  std::string in, out;
  RxHandover rx;
  std::optional<CryptoState> offered_tx;
  std::vector<uint8_t> server_secret;  // SERVER_TRAFFIC_SECRET_0
};

int test_bio_write(BIO* b, const char* d, size_t n, size_t* w) {
  static_cast<TestSide*>(BIO_get_data(b))->out.append(d, n);
  *w = n;
  return 1;
}
int test_bio_read(BIO* b, char* d, size_t n, size_t* r) {
  auto* s = static_cast<TestSide*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  if (s->in.empty()) {
    BIO_set_retry_read(b);
    return 0;
  }
  *r = std::min(n, s->in.size());
  std::memcpy(d, s->in.data(), *r);
  s->in.erase(0, *r);
  s->rx.on_consumed({reinterpret_cast<const uint8_t*>(d), *r});
  return 1;
}
long test_bio_ctrl(BIO* b, int cmd, long larg, void* parg) {
  auto* s = static_cast<TestSide*>(BIO_get_data(b));
  if (cmd == BIO_CTRL_FLUSH) return 1;
  if (cmd == 72) {  // BIO_CTRL_SET_KTLS: recorded, declined (OpenSSL goes on in user space)
    if (larg != 0) {
      s->offered_tx = from_openssl(parg);
    } else {
      s->rx.on_openssl_offer(parg);
    }
  }
  return 0;
}
BIO_METHOD* test_method() {
  static BIO_METHOD* m = [] {
    BIO_METHOD* meth = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ktls-test");
    BIO_meth_set_write_ex(meth, test_bio_write);
    BIO_meth_set_read_ex(meth, test_bio_read);
    BIO_meth_set_ctrl(meth, test_bio_ctrl);
    BIO_meth_set_create(meth, [](BIO* b) {
      BIO_set_init(b, 1);
      return 1;
    });
    return meth;
  }();
  return m;
}

void keylog(const SSL* ssl, const char* line) {
  auto* s = static_cast<TestSide*>(BIO_get_data(SSL_get_rbio(ssl)));
  s->rx.on_keylog(ssl, line);
  const std::string_view l(line);
  if (l.rfind("SERVER_TRAFFIC_SECRET_0 ", 0) == 0) s->server_secret = unhex(l.substr(l.rfind(' ') + 1));
}

struct Case {
  const char* name;
  int version;
  const char* cipher;  // TLS 1.2 cipher list or TLS 1.3 suite
};

// Decrypts one client record with the hand-over state; returns the plaintext
// and its content type.
std::string open_record(const CryptoState& s, const std::string& rec, uint8_t* type) {
  if (rec.size() < 5 + 16) return "short";
  const auto* p = reinterpret_cast<const uint8_t*>(rec.data());
  const size_t len = size_t{p[3]} << 8 | p[4];
  if (rec.size() != 5 + len) return "length";
  const bool tls13 = s.version == TLS_1_3_VERSION;
  const bool chacha = s.cipher == TLS_CIPHER_CHACHA20_POLY1305;
  uint8_t nonce[12];
  s.nonce_base(nonce);
  size_t body = 5;
  if (!tls13 && !chacha) {  // TLS 1.2 AES-GCM: an explicit nonce leads the record
    std::memcpy(nonce + 4, p + 5, 8);
    body += 8;
  } else {
    for (int i = 0; i < 8; ++i) nonce[4 + i] ^= static_cast<uint8_t>(s.seq >> (56 - 8 * i));
  }
  const size_t ct_len = rec.size() - body - 16;
  std::vector<uint8_t> aad;
  if (tls13) {
    aad.assign(p, p + 5);
  } else {
    for (int i = 0; i < 8; ++i) aad.push_back(static_cast<uint8_t>(s.seq >> (56 - 8 * i)));
    aad.insert(aad.end(), {p[0], p[1], p[2], static_cast<uint8_t>(ct_len >> 8), static_cast<uint8_t>(ct_len)});
  }
  const EVP_CIPHER* c = s.cipher == TLS_CIPHER_AES_GCM_128   ? EVP_aes_128_gcm()
                        : s.cipher == TLS_CIPHER_AES_GCM_256 ? EVP_aes_256_gcm()
                                                             : EVP_chacha20_poly1305();
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  std::string out(ct_len, '\0');
  int n = 0, fin = 0;
  bool ok = EVP_DecryptInit_ex(ctx, c, nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, 12, nullptr) == 1 &&
            EVP_DecryptInit_ex(ctx, nullptr, nullptr, s.key, nonce) == 1 &&
            EVP_DecryptUpdate(ctx, nullptr, &n, aad.data(), static_cast<int>(aad.size())) == 1 &&
            EVP_DecryptUpdate(ctx, reinterpret_cast<uint8_t*>(out.data()), &n, p + body, static_cast<int>(ct_len)) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, const_cast<uint8_t*>(p + body + ct_len)) == 1 &&
            EVP_DecryptFinal_ex(ctx, nullptr, &fin) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) return "decrypt failed";
  *type = p[0];
  if (tls13) {  // inner plaintext: content, type, zero padding
    while (!out.empty() && out.back() == 0) out.pop_back();
    if (out.empty()) return "empty inner plaintext";
    *type = static_cast<uint8_t>(out.back());
    out.pop_back();
  }
  return out;
}

class KtlsHandover : public ::testing::TestWithParam<Case> {};

TEST_P(KtlsHandover, ReceiveStateAfterTheHandshakeAndRecordsDecryptsTheNextRecord) {
  const Case& k = GetParam();
  const bool tls13 = k.version == TLS1_3_VERSION;
  const test::TestPki& pki = test::shared_test_pki();
  const test::TestCert leaf = pki.leaf("ktls.test");
  SSL_CTX* sctx = SSL_CTX_new(TLS_server_method());
  ASSERT_EQ(SSL_CTX_use_certificate(sctx, leaf.cert.get()), 1);
  ASSERT_EQ(SSL_CTX_use_PrivateKey(sctx, leaf.key.get()), 1);
  SSL_CTX_set_options(sctx, SSL_OP_ENABLE_KTLS);
  SSL_CTX_set_keylog_callback(sctx, keylog);
  SSL_CTX* cctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(cctx, k.version);
  SSL_CTX_set_max_proto_version(cctx, k.version);
  if (tls13) {
    ASSERT_EQ(SSL_CTX_set_ciphersuites(cctx, k.cipher), 1);
  } else {
    ASSERT_EQ(SSL_CTX_set_cipher_list(cctx, k.cipher), 1);
  }
  TestSide side;
  SSL* server = SSL_new(sctx);
  BIO* sb = BIO_new(test_method());
  BIO_set_data(sb, &side);
  SSL_set_bio(server, sb, sb);
  SSL_set_accept_state(server);
  SSL* client = SSL_new(cctx);
  BIO* c_in = BIO_new(BIO_s_mem());
  BIO* c_out = BIO_new(BIO_s_mem());
  SSL_set_bio(client, c_in, c_out);
  SSL_set_connect_state(client);
  auto drain_client = [&] {
    char buf[65536];
    int n;
    std::string all;
    while ((n = BIO_read(c_out, buf, sizeof buf)) > 0) all.append(buf, static_cast<size_t>(n));
    return all;
  };
  bool server_done = false;
  for (int round = 0; round < 16 && !server_done; ++round) {
    SSL_do_handshake(client);
    side.in += drain_client();
    if (SSL_do_handshake(server) == 1) server_done = true;
    BIO_write(c_in, side.out.data(), static_cast<int>(side.out.size()));
    side.out.clear();
  }
  ASSERT_TRUE(server_done);
  side.rx.on_handshake_done(server);
  ASSERT_EQ(SSL_do_handshake(client), 1);
  ASSERT_TRUE(side.rx.known());

  // TLS 1.3: OpenSSL's own send state matches ours from the server secret.
  ASSERT_TRUE(side.offered_tx) << "OpenSSL offered no send state";
  if (tls13) {
    auto ours = from_tls13_secret(SSL_get_current_cipher(server), side.server_secret, 0);
    ASSERT_TRUE(ours);
    EXPECT_EQ(ours->cipher, side.offered_tx->cipher);
    EXPECT_EQ(0, std::memcmp(ours->key, side.offered_tx->key, sizeof ours->key));
    EXPECT_EQ(0, std::memcmp(ours->salt, side.offered_tx->salt, sizeof ours->salt));
    EXPECT_EQ(0, std::memcmp(ours->iv, side.offered_tx->iv, sizeof ours->iv));
  }

  // The client sends records; the server reads them in user space, with a
  // KeyUpdate (TLS 1.3) half way.
  char buf[20000];
  for (int i = 0; i < 6; ++i) {
    if (tls13 && i == 3) ASSERT_EQ(SSL_key_update(client, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
    const std::string msg = "record " + std::to_string(i) + std::string(100 * i, 'x');
    ASSERT_EQ(SSL_write(client, msg.data(), static_cast<int>(msg.size())), static_cast<int>(msg.size()));
    side.in += drain_client();
    ASSERT_EQ(SSL_read(server, buf, sizeof buf), static_cast<int>(msg.size()));
    EXPECT_EQ(std::string(buf, msg.size()), msg);
    EXPECT_TRUE(side.in.empty());
  }
  auto state = side.rx.state_now();
  ASSERT_TRUE(state);
  // The next record: only the hand-over state can open it.
  const std::string next = "after the hand-over";
  ASSERT_EQ(SSL_write(client, next.data(), static_cast<int>(next.size())), static_cast<int>(next.size()));
  const std::string rec = drain_client();
  uint8_t type = 0;
  EXPECT_EQ(open_record(*state, rec, &type), next);
  EXPECT_EQ(type, 23);
  // Mid-record there is no state to hand over.
  side.in = rec.substr(0, 9);
  EXPECT_LE(SSL_read(server, buf, sizeof buf), 0);
  EXPECT_FALSE(side.rx.state_now());
  ERR_clear_error();
  SSL_free(server);
  SSL_free(client);
  SSL_CTX_free(sctx);
  SSL_CTX_free(cctx);
}

INSTANTIATE_TEST_SUITE_P(
    Suites, KtlsHandover,
    ::testing::Values(Case{"tls12_aes128", TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256"},
                      Case{"tls12_aes256", TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384"},
                      Case{"tls12_chacha", TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305"},
                      Case{"tls13_aes128", TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256"},
                      Case{"tls13_aes256", TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384"},
                      Case{"tls13_chacha", TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256"}),
    [](const ::testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace lode::worker::ktls

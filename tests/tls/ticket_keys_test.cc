#include "dataplane/tls/ticket_keys.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <atomic>
#include <map>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/tls/tls_context.h"
#include "tests/support/mem_handshake.h"
#include "tests/support/test_pki.h"

namespace lode::tls {
namespace {

using test::MemHandshake;
using test::TempDir;
using test::TestCert;

std::string name_hex(const TicketKey::Name& n) {
  return test::hex(n.data(), n.size());
}

// Two workers: each builds its own SSL_CTXs from the same files, with the
// TicketKeys it is given.
class TicketKeysTest : public ::testing::TestWithParam<int> {
 protected:
  const test::TestPki& pki = test::shared_test_pki();
  TempDir dir;

  void SetUp() override {
    for (const char* name : {"a.test", "b.test"}) {
      const TestCert leaf = pki.leaf(name);
      dir.write(std::string("sites/") + name + ".pem", pki.server_chain_pem(leaf));
      dir.write(std::string("sites/") + name + ".key", leaf.key_pem());
    }
  }

  struct WorkerCerts {
    std::map<std::string, SslCtxPtr> by_host;
    SSL_CTX* find(const std::string& host) const {
      auto it = by_host.find(host);
      return it == by_host.end() ? nullptr : it->second.get();
    }
  };
  WorkerCerts worker_store(const std::shared_ptr<TicketKeys>& keys) {
    WorkerCerts w;
    for (const char* host : {"a.test", "b.test"}) {
      const std::string base = dir.path() + "/sites/" + host;
      auto ctx = make_server_ctx({base + ".pem", base + ".key"}, {}, keys);
      EXPECT_TRUE(ctx) << (ctx ? "" : ctx.error());
      if (ctx) w.by_host.emplace(host, std::move(*ctx));
    }
    return w;
  }

  int version() const { return GetParam(); }

  struct Outcome {
    bool ok = false;
    bool reused = false;
    SslSessionPtr session;  // the client's session after the handshake
  };

  // One connection to `host` served by `store`, resuming `resume` if given.
  Outcome connect(const WorkerCerts& store, const std::string& host, SSL_SESSION* resume = nullptr) {
    auto cctx = test::make_test_client_ctx(
        {.ca_pem = pki.root.cert_pem(), .min_version = version(), .max_version = version()});
    SSL_CTX* sctx = store.find(host);
    EXPECT_NE(sctx, nullptr);
    MemHandshake hs(test::new_test_client(cctx.get(), host, resume), new_server_ssl(sctx, host));
    auto r = hs.run();
    EXPECT_TRUE(r.ok()) << r.client_error << " / " << r.server_error;
    Outcome out;
    out.ok = r.ok();
    out.reused = SSL_session_reused(hs.server()) == 1;
    EXPECT_EQ(out.reused, SSL_session_reused(hs.client()) == 1);
    out.session = hs.client_session();
    return out;
  }
};

std::shared_ptr<TicketKeys> fresh_keys(size_t keep_previous = 1) {
  auto k = TicketKeys::create(keep_previous);
  EXPECT_TRUE(k) << (k ? "" : k.error());
  return k ? *k : nullptr;
}

TEST_P(TicketKeysTest, TicketFromOneWorkerResumesOnAnother) {
  auto keys = fresh_keys();
  WorkerCerts worker0 = worker_store(keys);
  WorkerCerts worker1 = worker_store(keys);
  Outcome first = connect(worker0, "a.test");
  ASSERT_TRUE(first.ok);
  EXPECT_FALSE(first.reused);
  ASSERT_TRUE(SSL_SESSION_has_ticket(first.session.get()));
  EXPECT_EQ(test::ticket_key_name_hex(first.session.get()), name_hex(keys->current_name()));
  Outcome second = connect(worker1, "a.test", first.session.get());
  EXPECT_TRUE(second.reused);
}

// One certificate for two names (m1.test, m2.test). A session of m1.test
// offered under m2.test: a TLS 1.2 session carries its name, and RFC 6066
// section 3 says not to resume it under another, so a full handshake and a
// new ticket (OpenSSL 3.0 resumed it, answering the session's name to the
// SNI check, which then refused the handshake: alert 112). TLS 1.3
// sessions hold no name: resumed. Under its own name either resumes.
TEST_P(TicketKeysTest, ASessionOfAnotherNameOfTheSameCertificate) {
  auto keys = fresh_keys();
  const TestCert leaf = pki.leaf("m1.test", {.dns_names = {"m2.test"}});
  const std::string pem = dir.write("multi.pem", pki.server_chain_pem(leaf));
  const std::string key = dir.write("multi.key", leaf.key_pem());
  WorkerCerts w;
  for (const char* host : {"m1.test", "m2.test"}) {
    auto ctx = make_server_ctx({pem, key}, {}, keys);
    ASSERT_TRUE(ctx) << ctx.error();
    w.by_host.emplace(host, std::move(*ctx));
  }
  Outcome first = connect(w, "m1.test");
  ASSERT_TRUE(first.ok);
  Outcome other = connect(w, "m2.test", first.session.get());
  EXPECT_TRUE(other.ok);
  EXPECT_EQ(other.reused, version() == TLS1_3_VERSION);
  ASSERT_NE(other.session, nullptr);
  EXPECT_TRUE(SSL_SESSION_has_ticket(other.session.get())) << "a new ticket";
  Outcome again = connect(w, "m2.test", other.session.get());
  EXPECT_TRUE(again.reused);
  EXPECT_TRUE(connect(w, "m1.test", first.session.get()).reused);
}

TEST_P(TicketKeysTest, WithoutSharedKeysTicketsStayOnTheirWorker) {
  // OpenSSL's own per-SSL_CTX keys: resumption works on the same SSL_CTX only.
  WorkerCerts worker0 = worker_store(nullptr);
  WorkerCerts worker1 = worker_store(nullptr);
  Outcome first = connect(worker0, "a.test");
  ASSERT_TRUE(first.ok);
  EXPECT_TRUE(connect(worker0, "a.test", first.session.get()).reused);
  EXPECT_FALSE(connect(worker1, "a.test", first.session.get()).reused);
}

TEST_P(TicketKeysTest, TicketFromAnotherKeySetDoesNotResume) {
  WorkerCerts worker0 = worker_store(fresh_keys());
  WorkerCerts stranger = worker_store(fresh_keys());
  Outcome first = connect(worker0, "a.test");
  Outcome second = connect(stranger, "a.test", first.session.get());
  EXPECT_TRUE(second.ok);
  EXPECT_FALSE(second.reused);
}

TEST_P(TicketKeysTest, TicketForAnotherCertificateDoesNotResume) {
  // One key set for all certificates, but sessions are bound to theirs.
  auto keys = fresh_keys();
  WorkerCerts worker0 = worker_store(keys);
  Outcome first = connect(worker0, "a.test");
  Outcome other = connect(worker0, "b.test", first.session.get());
  EXPECT_TRUE(other.ok);
  EXPECT_FALSE(other.reused);
}

TEST_P(TicketKeysTest, AfterRotateOldTicketResumesAndIsRenewed) {
  auto keys = fresh_keys();
  WorkerCerts worker0 = worker_store(keys);
  WorkerCerts worker1 = worker_store(keys);
  Outcome first = connect(worker0, "a.test");
  const std::string old_name = name_hex(keys->current_name());
  ASSERT_TRUE(keys->rotate());
  const std::string new_name = name_hex(keys->current_name());
  ASSERT_NE(old_name, new_name);
  EXPECT_EQ(keys->key_count(), 2u);
  Outcome second = connect(worker1, "a.test", first.session.get());
  EXPECT_TRUE(second.reused);
  // A fresh ticket under the current key came with the resumed handshake.
  ASSERT_TRUE(SSL_SESSION_has_ticket(second.session.get()));
  EXPECT_EQ(test::ticket_key_name_hex(second.session.get()), new_name);
  // And it resumes too.
  EXPECT_TRUE(connect(worker0, "a.test", second.session.get()).reused);
}

TEST_P(TicketKeysTest, AfterTwoRotationsTheOldTicketMeansAFullHandshake) {
  auto keys = fresh_keys(/*keep_previous=*/1);
  WorkerCerts worker0 = worker_store(keys);
  Outcome first = connect(worker0, "a.test");
  ASSERT_TRUE(keys->rotate());
  ASSERT_TRUE(keys->rotate());
  EXPECT_EQ(keys->key_count(), 2u);
  Outcome second = connect(worker0, "a.test", first.session.get());
  EXPECT_TRUE(second.ok);
  EXPECT_FALSE(second.reused);
  // The full handshake issued a ticket under the current key.
  EXPECT_EQ(test::ticket_key_name_hex(second.session.get()), name_hex(keys->current_name()));
}

TEST_P(TicketKeysTest, KeepingTwoPreviousKeysSurvivesTwoRotations) {
  auto keys = fresh_keys(/*keep_previous=*/2);
  WorkerCerts worker0 = worker_store(keys);
  Outcome first = connect(worker0, "a.test");
  ASSERT_TRUE(keys->rotate());
  ASSERT_TRUE(keys->rotate());
  EXPECT_EQ(keys->key_count(), 3u);
  EXPECT_TRUE(connect(worker0, "a.test", first.session.get()).reused);
  ASSERT_TRUE(keys->rotate());
  EXPECT_EQ(keys->key_count(), 3u);
  EXPECT_FALSE(connect(worker0, "a.test", first.session.get()).reused);
}

TEST_P(TicketKeysTest, KeysPushedFromOutsideAreShared) {
  // Two processes (or a restarted one) given the same keys by the control
  // plane resume each other's tickets; the receiving side holds the sender's
  // key as a previous key and renews the ticket.
  auto k1 = TicketKey::random();
  auto k2 = TicketKey::random();
  ASSERT_TRUE(k1 && k2);
  auto sender = std::make_shared<TicketKeys>();
  auto receiver = std::make_shared<TicketKeys>();
  ASSERT_TRUE(sender->set_keys(std::vector<TicketKey>{*k1}));
  ASSERT_TRUE(receiver->set_keys(std::vector<TicketKey>{*k2, *k1}));
  EXPECT_EQ(sender->current_name(), k1->name());
  EXPECT_EQ(receiver->current_name(), k2->name());
  WorkerCerts a = worker_store(sender);
  WorkerCerts b = worker_store(receiver);
  Outcome first = connect(a, "a.test");
  Outcome second = connect(b, "a.test", first.session.get());
  EXPECT_TRUE(second.reused);
  EXPECT_EQ(test::ticket_key_name_hex(second.session.get()), name_hex(k2->name()));
}

TEST_P(TicketKeysTest, NoKeyMeansNoTicketButTheHandshakeWorks) {
  auto empty = std::make_shared<TicketKeys>();
  EXPECT_EQ(empty->key_count(), 0u);
  WorkerCerts worker0 = worker_store(empty);
  Outcome first = connect(worker0, "a.test");
  EXPECT_TRUE(first.ok);
  EXPECT_FALSE(SSL_SESSION_has_ticket(first.session.get()) &&
               SSL_SESSION_is_resumable(first.session.get()));
}

TEST_P(TicketKeysTest, TamperedTicketMeansAFullHandshake) {
  auto keys = fresh_keys();
  WorkerCerts worker0 = worker_store(keys);
  Outcome first = connect(worker0, "a.test");
  // Flip the last byte of the ticket (inside its HMAC) in the serialized session.
  const unsigned char* tick = nullptr;
  size_t tick_len = 0;
  SSL_SESSION_get0_ticket(first.session.get(), &tick, &tick_len);
  ASSERT_GT(tick_len, 48u);
  const std::string ticket(reinterpret_cast<const char*>(tick), tick_len);
  const int der_len = i2d_SSL_SESSION(first.session.get(), nullptr);
  std::string der(static_cast<size_t>(der_len), '\0');
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  ASSERT_EQ(i2d_SSL_SESSION(first.session.get(), &p), der_len);
  const size_t at = der.find(ticket);
  ASSERT_NE(at, std::string::npos);
  der[at + tick_len - 1] = static_cast<char>(der[at + tick_len - 1] ^ 0x01);
  const auto* q = reinterpret_cast<const unsigned char*>(der.data());
  SslSessionPtr tampered(d2i_SSL_SESSION(nullptr, &q, der_len));
  ASSERT_NE(tampered, nullptr);
  Outcome second = connect(worker0, "a.test", tampered.get());
  EXPECT_TRUE(second.ok);
  EXPECT_FALSE(second.reused);
}

INSTANTIATE_TEST_SUITE_P(TicketKeysVersions, TicketKeysTest,
                         ::testing::Values(TLS1_2_VERSION, TLS1_3_VERSION),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return info.param == TLS1_2_VERSION ? std::string("Tls12")
                                                               : std::string("Tls13");
                         });

// --- the key set itself ------------------------------------------------------------

TEST(TicketKeysApiTest, SetKeysRefusesEmptyAndDuplicateNames) {
  TicketKeys keys;
  auto r = keys.set_keys({});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("no key"), std::string::npos);
  auto k = TicketKey::random();
  ASSERT_TRUE(k);
  r = keys.set_keys(std::vector<TicketKey>{*k, *k});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("same name"), std::string::npos);
  EXPECT_EQ(keys.key_count(), 0u);
}

TEST(TicketKeysApiTest, FromBytesNeedsExactlyEightyBytes) {
  std::vector<uint8_t> bytes(TicketKey::kSize);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i);
  auto k = TicketKey::from_bytes(bytes);
  ASSERT_TRUE(k);
  EXPECT_EQ(k->name()[0], 0);
  EXPECT_EQ(k->name()[15], 15);
  EXPECT_EQ(k->hmac_key()[0], 16);  // nginx layout: name, HMAC key, AES key
  EXPECT_EQ(k->aes_key()[0], 48);
  for (size_t n : {size_t{0}, size_t{48}, size_t{79}, size_t{81}}) {
    const std::vector<uint8_t> wrong(n, 0x42);
    auto bad = TicketKey::from_bytes(wrong);
    ASSERT_FALSE(bad) << n;
    EXPECT_NE(bad.error().find("80 bytes"), std::string::npos);
  }
}

TEST(TicketKeysApiTest, RandomKeysDiffer) {
  auto a = TicketKey::random();
  auto b = TicketKey::random();
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->name(), b->name());
  EXPECT_NE(std::memcmp(a->aes_key().data(), b->aes_key().data(), TicketKey::kAesKeyLen), 0);
}

// The callback on worker threads while another thread rotates: every reader
// gets a whole key set (ASan checks that no reader sees freed keys).
TEST(TicketKeysApiTest, ReadersNeverWaitForOrTearWithWriters) {
  auto keys = fresh_keys(1);
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  auto reader = [&] {
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    EVP_CIPHER_CTX* cctx = EVP_CIPHER_CTX_new();
    unsigned char name[16];
    unsigned char iv[EVP_MAX_IV_LENGTH];
    int rounds = 0;
    while (!stop.load(std::memory_order_relaxed) || rounds < 100) {
      EVP_MAC_CTX* hctx = EVP_MAC_CTX_new(mac);
      if (keys->ticket_callback(name, iv, cctx, hctx, 1) != 1) failures++;
      // Decrypting with the name just issued: current or (after a rotation)
      // previous, or dropped after two; never an error.
      const int d = keys->ticket_callback(name, iv, cctx, hctx, 0);
      if (d < 0) failures++;
      EVP_MAC_CTX_free(hctx);
      ++rounds;
    }
    EVP_CIPHER_CTX_free(cctx);
    EVP_MAC_free(mac);
  };
  std::thread r1(reader), r2(reader);
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(keys->rotate());
  stop = true;
  r1.join();
  r2.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(keys->key_count(), 2u);
}

TEST(TicketKeysApiTest, UnknownKeyNameIsAFullHandshakeNotAnError) {
  auto keys = fresh_keys();
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  EVP_MAC_CTX* hctx = EVP_MAC_CTX_new(mac);
  EVP_CIPHER_CTX* cctx = EVP_CIPHER_CTX_new();
  unsigned char name[16] = {1, 2, 3};
  unsigned char iv[EVP_MAX_IV_LENGTH] = {};
  EXPECT_EQ(keys->ticket_callback(name, iv, cctx, hctx, 0), 0);
  TicketKeys empty;
  EXPECT_EQ(empty.ticket_callback(name, iv, cctx, hctx, 0), 0);
  EXPECT_EQ(empty.ticket_callback(name, iv, cctx, hctx, 1), 0);  // no key: no ticket
  EVP_CIPHER_CTX_free(cctx);
  EVP_MAC_CTX_free(hctx);
  EVP_MAC_free(mac);
}

}  // namespace
}  // namespace lode::tls

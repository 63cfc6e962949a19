// dataplane/worker/cert_cache: which snapshot entry a route's binding and
// host name select (find_cert), and the per-worker SSL_CTX cache built from
// the entries' PEM bytes: built once per (key, version, TLS settings
// version), rebuilt only for what changed, swept when entries go, never
// caching a failure. Certificates are real ones from the test PKI, carried in
// snapshots made with the control plane's SegmentBuilder.
#include "dataplane/worker/cert_cache.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "controlplane/snapshot_writer.h"
#include "support/mem_handshake.h"
#include "support/test_pki.h"

namespace lode::worker {
namespace {

using control::Snapshot;
using cp::SegmentBuilder;
using snapshot::CertState;
using snapshot::RecordKind;
using snapshot::StapleStatus;

struct Pem {
  std::string chain, key;
};

Pem pem_for(const std::string& name, int key_slot = 0) {
  const auto& pki = test::shared_test_pki();
  test::CertSpec spec;
  spec.key_slot = key_slot;
  const test::TestCert leaf = pki.leaf(name, spec);
  return {pki.server_chain_pem(leaf), leaf.key_pem()};
}

const Pem& www() {
  static const Pem p = pem_for("www.example.com");
  return p;
}
const Pem& host_a() {
  static const Pem p = pem_for("a.example.com");
  return p;
}
const Pem& wild() {
  static const Pem p = pem_for("*.example.com");
  return p;
}
const Pem& www2() {
  static const Pem p = pem_for("www2.example.com");
  return p;
}

void add_cert(SegmentBuilder& b, const std::string& key, uint64_t version, const Pem& p) {
  b.add_certificate(key, version, CertState::kServe, 2'000'000'000, p.chain, p.key);
}

SegmentBuilder full_builder() {
  SegmentBuilder b;
  b.add_config("config text (not parsed here)", 1);
  std::vector<std::byte> keys(snapshot::kTicketKeySize, std::byte{9});
  b.add_ticket_keys(keys, 1);
  add_cert(b, "name:www", 1, www());
  add_cert(b, "dir:certs/a.example.com", 1, host_a());
  add_cert(b, "dir:certs/*.example.com", 1, wild());
  return b;
}

std::shared_ptr<const Snapshot> apply(const std::shared_ptr<const Snapshot>& cur, const SegmentBuilder& b,
                                      uint64_t gen, uint64_t base) {
  auto seg = control::MappedSegment::from_bytes(b.bytes(gen, base));
  EXPECT_TRUE(seg) << (seg ? "" : seg.error());
  if (!seg) return nullptr;
  auto r = control::apply_segment(cur, *seg);
  EXPECT_TRUE(r);
  return r ? r->snapshot : nullptr;
}

std::shared_ptr<const Snapshot> full_snapshot() { return apply(nullptr, full_builder(), 1, 0); }

Runtime runtime(uint64_t tls_version = 1) {
  Runtime rt;
  rt.tls = tls::TlsSettings{};
  rt.tls_version = tls_version;
  return rt;
}

const control::CertEntry& entry(const Snapshot& s, std::string_view key) {
  const control::CertEntryPtr* e = s.certs.find(key);
  if (e == nullptr) {
    ADD_FAILURE() << "no entry " << key;
    static const control::CertEntry none;
    return none;
  }
  return **e;
}

std::string leaf_cn(SSL_CTX* ctx) {
  X509* leaf = SSL_CTX_get0_certificate(ctx);
  if (leaf == nullptr) return "";
  char buf[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, buf, sizeof buf);
  return buf;
}

// ---------------------------------------------------------------------------
// find_cert

TEST(CertCacheFind, NamedCertificate) {
  const auto snap = full_snapshot();
  const auto f = find_cert(*snap, CertBinding{"www", false}, "anything.example.org");
  ASSERT_NE(f.entry, nullptr);
  EXPECT_EQ(f.key, "name:www");
  EXPECT_EQ((*f.entry)->chain_pem, www().chain);
  // The host does not matter for a named certificate, even when empty.
  EXPECT_NE(find_cert(*snap, CertBinding{"www", false}, "").entry, nullptr);
}

TEST(CertCacheFind, MissingNamedCertificate) {
  const auto snap = full_snapshot();
  const auto f = find_cert(*snap, CertBinding{"nope", false}, "www.example.com");
  EXPECT_EQ(f.entry, nullptr);
  EXPECT_EQ(f.key, "name:nope");
  // A directory of that name does not answer for a named binding.
  EXPECT_EQ(find_cert(*snap, CertBinding{"certs", false}, "a.example.com").entry, nullptr);
}

TEST(CertCacheFind, DirectoryExactFileFirst) {
  const auto snap = full_snapshot();
  const auto f = find_cert(*snap, CertBinding{"certs", true}, "a.example.com");
  ASSERT_NE(f.entry, nullptr);
  EXPECT_EQ(f.key, "dir:certs/a.example.com");
  EXPECT_EQ((*f.entry)->chain_pem, host_a().chain);  // not the wildcard that also matches
}

TEST(CertCacheFind, DirectoryWildcardForOneLabelOnly) {
  const auto snap = full_snapshot();
  const auto b = find_cert(*snap, CertBinding{"certs", true}, "b.example.com");
  ASSERT_NE(b.entry, nullptr);
  EXPECT_EQ(b.key, "dir:certs/*.example.com");
  EXPECT_EQ((*b.entry)->chain_pem, wild().chain);

  // Two labels below the wildcard's parent: no match.
  const auto deep = find_cert(*snap, CertBinding{"certs", true}, "x.b.example.com");
  EXPECT_EQ(deep.entry, nullptr);
  // The wildcard's parent itself: no match (nor "*.com").
  EXPECT_EQ(find_cert(*snap, CertBinding{"certs", true}, "example.com").entry, nullptr);
}

TEST(CertCacheFind, DirectoryMisses) {
  const auto snap = full_snapshot();
  for (const char* host : {"", "localhost", "a.", "b.example.org", "a.example.co"}) {
    EXPECT_EQ(find_cert(*snap, CertBinding{"certs", true}, host).entry, nullptr) << host;
  }
  // Another directory id does not see these files.
  EXPECT_EQ(find_cert(*snap, CertBinding{"other", true}, "a.example.com").entry, nullptr);
  // A named certificate is not a directory file.
  EXPECT_EQ(find_cert(*snap, CertBinding{"www", true}, "www.example.com").entry, nullptr);
}

// ---------------------------------------------------------------------------
// CertCache

TEST(CertCache, BuildsOncePerVersion) {
  const auto snap = full_snapshot();
  const Runtime rt = runtime();
  CertCache cache;
  auto first = cache.get("name:www", entry(*snap, "name:www"), rt);
  ASSERT_TRUE(first) << first.error();
  EXPECT_EQ(leaf_cn(*first), "www.example.com");
  auto again = cache.get("name:www", entry(*snap, "name:www"), rt);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *first);
  EXPECT_EQ(cache.builds(), 1u);
  EXPECT_EQ(cache.size(), 1u);

  auto other = cache.get("dir:certs/a.example.com", entry(*snap, "dir:certs/a.example.com"), rt);
  ASSERT_TRUE(other) << other.error();
  EXPECT_NE(*other, *first);
  EXPECT_EQ(leaf_cn(*other), "a.example.com");
  EXPECT_EQ(cache.builds(), 2u);
  EXPECT_EQ(cache.size(), 2u);
}

TEST(CertCache, NewVersionRebuildsOnlyThatKey) {
  const auto s1 = full_snapshot();
  const Runtime rt = runtime();
  CertCache cache;
  ASSERT_TRUE(cache.get("name:www", entry(*s1, "name:www"), rt));
  auto a1 = cache.get("dir:certs/a.example.com", entry(*s1, "dir:certs/a.example.com"), rt);
  ASSERT_TRUE(a1);
  ASSERT_EQ(cache.builds(), 2u);

  SegmentBuilder d;
  add_cert(d, "name:www", 2, www2());
  const auto s2 = apply(s1, d, 2, 1);
  ASSERT_NE(s2, nullptr);
  auto w2 = cache.get("name:www", entry(*s2, "name:www"), rt);
  ASSERT_TRUE(w2) << w2.error();
  EXPECT_EQ(leaf_cn(*w2), "www2.example.com");
  EXPECT_EQ(cache.builds(), 3u);
  EXPECT_EQ(cache.size(), 2u);
  auto a2 = cache.get("dir:certs/a.example.com", entry(*s2, "dir:certs/a.example.com"), rt);
  ASSERT_TRUE(a2);
  EXPECT_EQ(*a2, *a1);
  EXPECT_EQ(cache.builds(), 3u);
  // Back to the old entry (version 1): rebuilt again, not confused with v2.
  auto back = cache.get("name:www", entry(*s1, "name:www"), rt);
  ASSERT_TRUE(back);
  EXPECT_EQ(leaf_cn(*back), "www.example.com");
  EXPECT_EQ(cache.builds(), 4u);
}

TEST(CertCache, TlsSettingsVersionChangeRebuilds) {
  const auto snap = full_snapshot();
  CertCache cache;
  ASSERT_TRUE(cache.get("name:www", entry(*snap, "name:www"), runtime(1)));
  ASSERT_TRUE(cache.get("name:www", entry(*snap, "name:www"), runtime(1)));
  EXPECT_EQ(cache.builds(), 1u);
  Runtime rt2 = runtime(2);
  rt2.tls.min_version = tls::TlsVersion::kTls13;
  auto rebuilt = cache.get("name:www", entry(*snap, "name:www"), rt2);
  ASSERT_TRUE(rebuilt) << rebuilt.error();
  EXPECT_EQ(cache.builds(), 2u);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(SSL_CTX_get_min_proto_version(*rebuilt), TLS1_3_VERSION);
  ASSERT_TRUE(cache.get("name:www", entry(*snap, "name:www"), rt2));
  EXPECT_EQ(cache.builds(), 2u);
}

TEST(CertCache, SweepDropsRemovedAndChangedKeys) {
  const auto s1 = full_snapshot();
  const Runtime rt = runtime();
  CertCache cache;
  for (const char* k : {"name:www", "dir:certs/a.example.com", "dir:certs/*.example.com"}) {
    ASSERT_TRUE(cache.get(k, entry(*s1, k), rt)) << k;
  }
  ASSERT_EQ(cache.size(), 3u);
  cache.sweep(*s1);
  EXPECT_EQ(cache.size(), 3u);  // nothing changed, nothing dropped

  SegmentBuilder d;
  d.remove(RecordKind::kCertificate, "dir:certs/a.example.com");
  add_cert(d, "name:www", 2, www2());
  const auto s2 = apply(s1, d, 2, 1);
  ASSERT_NE(s2, nullptr);
  cache.sweep(*s2);
  EXPECT_EQ(cache.size(), 1u);
  // The one kept is served without a rebuild.
  const uint64_t builds = cache.builds();
  ASSERT_TRUE(cache.get("dir:certs/*.example.com", entry(*s2, "dir:certs/*.example.com"), rt));
  EXPECT_EQ(cache.builds(), builds);

  // An empty snapshot drops everything.
  cache.sweep(Snapshot{});
  EXPECT_EQ(cache.size(), 0u);
}

TEST(CertCache, CorruptPemIsAnErrorTriedOncePerVersion) {
  SegmentBuilder b = full_builder();
  b.add_certificate("name:garbage", 1, CertState::kServe, 0,
                    "-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n", www().key);
  b.add_certificate("name:notpem", 1, CertState::kServe, 0, "just some bytes", "more bytes");
  b.add_certificate("name:nokey", 1, CertState::kServe, 0, www().chain, "-----BEGIN PRIVATE KEY-----\n");
  const Pem other_key = pem_for("other.example.com", 1);
  b.add_certificate("name:mismatch", 1, CertState::kServe, 0, www().chain, other_key.key);
  const auto snap = apply(nullptr, b, 1, 0);
  ASSERT_NE(snap, nullptr);
  const Runtime rt = runtime();
  CertCache cache;
  for (const char* k : {"name:garbage", "name:notpem", "name:nokey", "name:mismatch"}) {
    auto r = cache.get(k, entry(*snap, k), rt);
    ASSERT_FALSE(r) << k;
    EXPECT_FALSE(r.error().empty()) << k;
    // Asking again fails again, from the remembered failure: no new attempt
    // per handshake for a version that cannot build.
    auto again = cache.get(k, entry(*snap, k), rt);
    ASSERT_FALSE(again) << k;
    EXPECT_EQ(again.error(), r.error()) << k;
  }
  EXPECT_EQ(cache.builds(), 4u) << "one attempt per version, not per handshake";
}

TEST(CertCache, CorruptNewVersionIsNotServedFromTheOldContext) {
  const auto s1 = full_snapshot();
  const Runtime rt = runtime();
  CertCache cache;
  ASSERT_TRUE(cache.get("name:www", entry(*s1, "name:www"), rt));
  SegmentBuilder d;
  d.add_certificate("name:www", 2, CertState::kServe, 0, "-----BEGIN CERTIFICATE-----\n!!\n", www().key);
  const auto s2 = apply(s1, d, 2, 1);
  ASSERT_NE(s2, nullptr);
  EXPECT_FALSE(cache.get("name:www", entry(*s2, "name:www"), rt));
  EXPECT_FALSE(cache.get("name:www", entry(*s2, "name:www"), rt));
  EXPECT_EQ(cache.builds(), 2u) << "the good version, then one attempt at the corrupt one";
}

// ---------------------------------------------------------------------------
// OCSP stapling through a cached context.

struct StapleRun {
  bool handshake = false;
  bool requested = false;
  bool stapled = false;
  std::string client_got;
};

StapleRun staple_handshake(const control::CertEntryPtr& e, SSL_CTX* server_ctx, bool ask) {
  static const auto client_ctx = test::make_test_client_ctx({});
  tls::SslPtr server = tls::new_server_ssl(server_ctx, "www.example.com");
  EXPECT_TRUE(server);
  StapleState st;
  st.entry = e;
  attach_staple_state(server.get(), &st);
  tls::SslPtr client = test::new_test_client(client_ctx.get(), "www.example.com");
  if (ask) SSL_set_tlsext_status_type(client.get(), TLSEXT_STATUSTYPE_ocsp);
  SSL* c = client.get();
  test::MemHandshake hs(std::move(client), std::move(server));
  StapleRun out;
  out.handshake = hs.run().ok();
  out.requested = st.requested;
  out.stapled = st.stapled;
  const unsigned char* p = nullptr;
  const long n = SSL_get_tlsext_status_ocsp_resp(c, &p);
  if (n > 0 && p != nullptr) out.client_got.assign(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
  return out;
}

TEST(CertCacheStaple, FreshGoodStapleIsSentOnlyWhenAsked) {
  const int64_t now = std::time(nullptr);
  SegmentBuilder b = full_builder();
  b.add_staple("name:www", 1, StapleStatus::kGood, now - 60, now + 3600, "OCSP-RESPONSE-BYTES");
  const auto snap = apply(nullptr, b, 1, 0);
  ASSERT_NE(snap, nullptr);
  CertCache cache;
  const control::CertEntryPtr e = *snap->certs.find("name:www");
  auto ctx = cache.get("name:www", *e, runtime());
  ASSERT_TRUE(ctx) << ctx.error();

  const StapleRun asked = staple_handshake(e, *ctx, true);
  EXPECT_TRUE(asked.handshake);
  EXPECT_TRUE(asked.requested);
  EXPECT_TRUE(asked.stapled);
  EXPECT_EQ(asked.client_got, "OCSP-RESPONSE-BYTES");

  const StapleRun silent = staple_handshake(e, *ctx, false);
  EXPECT_TRUE(silent.handshake);
  EXPECT_FALSE(silent.requested);
  EXPECT_FALSE(silent.stapled);
  EXPECT_EQ(silent.client_got, "");
}

TEST(CertCacheStaple, ExpiredRevokedOrMissingStapleIsNotSent) {
  const int64_t now = std::time(nullptr);
  struct Case {
    const char* what;
    StapleStatus status;
    int64_t this_update, next_update;
    bool add;
  };
  for (const Case c : {Case{"past nextUpdate", StapleStatus::kGood, now - 7200, now - 1, true},
                       Case{"revoked", StapleStatus::kRevoked, now - 60, now + 3600, true},
                       Case{"unknown", StapleStatus::kUnknown, now - 60, now + 3600, true},
                       Case{"none", StapleStatus::kGood, 0, 0, false}}) {
    SegmentBuilder b = full_builder();
    if (c.add) b.add_staple("name:www", 1, c.status, c.this_update, c.next_update, "OCSP");
    const auto snap = apply(nullptr, b, 1, 0);
    ASSERT_NE(snap, nullptr) << c.what;
    CertCache cache;
    const control::CertEntryPtr e = *snap->certs.find("name:www");
    auto ctx = cache.get("name:www", *e, runtime());
    ASSERT_TRUE(ctx) << c.what;
    const StapleRun r = staple_handshake(e, *ctx, true);
    EXPECT_TRUE(r.handshake) << c.what;
    EXPECT_TRUE(r.requested) << c.what;
    EXPECT_FALSE(r.stapled) << c.what;
    EXPECT_EQ(r.client_got, "") << c.what;
  }
}

}  // namespace
}  // namespace lode::worker

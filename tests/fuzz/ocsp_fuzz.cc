// libFuzzer target for OCSP response verification (controlplane/ocsp.cc,
// verify_ocsp_response): responses come from responders over plain HTTP, so
// an on-path attacker chooses their bytes. The first input byte picks a mode:
//
// 0. raw: the rest is the DER response, verified for a fixed leaf and issuer;
//    it must be refused (no input here can be signed by the issuer's key).
// 1. built: the rest describes a response, which is built and signed in
//    process (signer: the issuer, a delegated responder with the
//    OCSP-signing EKU, one without it, an unrelated CA, the leaf itself;
//    signer certificate included or not; responder id by name or key; one
//    to three single responses for the leaf or another serial of the issuer,
//    by SHA-1 or SHA-256 CertID, good / revoked / unknown, reason, times
//    around now, nextUpdate or none). An oracle written from the rules (the
//    comment at the top of ocsp.h) says whether it must verify, and a
//    verified response must report exactly the status, times and reason of
//    the single response the rules pick (the first matching by SHA-1 CertID,
//    else by SHA-256).
// 2. built as in 1, then bytes changed at offsets taken from the input: no
//    crash, and anything accepted still names a status.
// Any breach aborts. Also built without libFuzzer as ocsp_fuzz_replay and run
// over the committed corpus by ctest.
#include <openssl/ocsp.h>
#include <openssl/x509.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/ocsp.h"
#include "tests/support/test_pki.h"

namespace {

using lode::cp::OcspStatus;
using lode::cp::sys_seconds;
using lode::test::CertSpec;
using lode::test::TestCert;

#define FUZZ_CHECK(cond)       \
  do {                         \
    if (!(cond)) std::abort(); \
  } while (0)

// The input, read front to back; zeros once it is used up.
class Input {
 public:
  Input(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  uint8_t u8() { return i_ < n_ ? d_[i_++] : 0; }
  uint16_t u16() {
    const uint8_t lo = u8();  // two statements: the order of the reads is fixed
    return static_cast<uint16_t>(lo | u8() << 8);
  }
  int32_t i32() {
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) v |= static_cast<uint32_t>(u8()) << (8 * k);
    return static_cast<int32_t>(v);
  }
  std::string_view rest() const { return {reinterpret_cast<const char*>(d_ + i_), n_ - i_}; }

 private:
  const uint8_t* d_;
  size_t n_;
  size_t i_ = 0;
};

struct Pki {
  TestCert issuer, leaf, other_leaf, responder, responder_no_eku, stranger;
};

const Pki& pki() {
  static const Pki p = [] {
    Pki k;
    k.issuer = lode::test::make_root_ca("OCSP fuzz CA", lode::test::KeyKind::kEcdsaP256, 40);
    CertSpec leaf;
    leaf.cn = "leaf.test";
    leaf.dns_names = {"leaf.test"};
    leaf.key_slot = 41;
    k.leaf = lode::test::issue_cert(k.issuer, leaf);
    leaf.cn = "other.test";
    leaf.dns_names = {"other.test"};
    k.other_leaf = lode::test::issue_cert(k.issuer, leaf);
    CertSpec r;
    r.cn = "OCSP responder";
    r.key_slot = 42;
    r.ext_key_usage = "OCSPSigning";
    k.responder = lode::test::issue_cert(k.issuer, r);
    r.cn = "not a responder";
    r.ext_key_usage = "serverAuth";
    k.responder_no_eku = lode::test::issue_cert(k.issuer, r);
    k.stranger = lode::test::make_root_ca("Stranger CA", lode::test::KeyKind::kEcdsaP256, 43);
    return k;
  }();
  return p;
}

struct Single {
  bool for_leaf = true;
  bool sha256 = false;
  int status = V_OCSP_CERTSTATUS_GOOD;
  int reason = -1;
  int64_t revoked = 0;  // offsets from now, seconds
  int64_t this_update = 0;
  bool has_next = true;
  int64_t next_update = 0;
};

enum class Signer { kIssuer, kResponder, kResponderNoEku, kStranger, kLeaf };

struct Spec {
  bool successful = true;
  Signer signer = Signer::kIssuer;
  bool include_signer = true;
  bool id_by_key = false;
  std::vector<Single> singles;
};

Spec read_spec(Input& in) {
  Spec s;
  s.successful = in.u8() % 16 != 0;
  s.signer = static_cast<Signer>(in.u8() % 5);
  const uint8_t flags = in.u8();
  s.include_signer = (flags & 1) == 0;
  s.id_by_key = (flags & 2) != 0;
  const int n = 1 + in.u8() % 3;
  for (int i = 0; i < n; ++i) {
    Single x;
    const uint8_t f = in.u8();
    x.for_leaf = (f & 1) == 0;
    x.sha256 = (f & 2) != 0;
    x.status = (f >> 2) % 3;  // V_OCSP_CERTSTATUS_GOOD, _REVOKED, _UNKNOWN
    x.has_next = (f & 0x20) == 0;
    const uint8_t r = in.u8();
    x.reason = r % 12 == 11 ? -1 : r % 12 == 7 ? 0 : r % 12;  // 7 is not a CRLReason
    // Small offsets most of the time (the checks' edges), any int32 else.
    auto offset = [&] {
      const uint8_t k = in.u8();
      if (k % 4 == 0) return static_cast<int64_t>(in.i32());
      return static_cast<int64_t>(static_cast<int16_t>(in.u16())) * (k % 4 == 1 ? 1 : k % 4 == 2 ? 60 : 3600);
    };
    x.this_update = offset();
    x.next_update = offset();
    x.revoked = offset();
    s.singles.push_back(x);
  }
  return s;
}

struct Built {
  std::string der;
  sys_seconds now;
};

ASN1_GENERALIZEDTIME* gtime(sys_seconds now, int64_t offset) {
  return ASN1_GENERALIZEDTIME_set(nullptr, static_cast<time_t>(now.time_since_epoch().count() + offset));
}

Built build(const Spec& spec) {
  const Pki& p = pki();
  Built out;
  out.now = std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  OCSP_BASICRESP* bs = OCSP_BASICRESP_new();
  FUZZ_CHECK(bs != nullptr);
  for (const Single& x : spec.singles) {
    OCSP_CERTID* id = OCSP_cert_to_id(x.sha256 ? EVP_sha256() : EVP_sha1(),
                                      (x.for_leaf ? p.leaf : p.other_leaf).cert.get(), p.issuer.cert.get());
    FUZZ_CHECK(id != nullptr);
    ASN1_GENERALIZEDTIME* tu = gtime(out.now, x.this_update);
    ASN1_GENERALIZEDTIME* nu = x.has_next ? gtime(out.now, x.next_update) : nullptr;
    ASN1_GENERALIZEDTIME* rt = x.status == V_OCSP_CERTSTATUS_REVOKED ? gtime(out.now, x.revoked) : nullptr;
    FUZZ_CHECK(OCSP_basic_add1_status(bs, id, x.status, x.status == V_OCSP_CERTSTATUS_REVOKED ? x.reason : -1, rt,
                                      tu, nu) != nullptr);
    ASN1_TIME_free(tu);
    ASN1_TIME_free(nu);
    ASN1_TIME_free(rt);
    OCSP_CERTID_free(id);
  }
  const TestCert* signer = nullptr;
  switch (spec.signer) {
    case Signer::kIssuer: signer = &p.issuer; break;
    case Signer::kResponder: signer = &p.responder; break;
    case Signer::kResponderNoEku: signer = &p.responder_no_eku; break;
    case Signer::kStranger: signer = &p.stranger; break;
    case Signer::kLeaf: signer = &p.leaf; break;
  }
  unsigned long flags = 0;
  if (!spec.include_signer) flags |= OCSP_NOCERTS;
  if (spec.id_by_key) flags |= OCSP_RESPID_KEY;
  FUZZ_CHECK(OCSP_basic_sign(bs, signer->cert.get(), signer->key.get(), EVP_sha256(), nullptr, flags) == 1);
  OCSP_RESPONSE* resp =
      OCSP_response_create(spec.successful ? OCSP_RESPONSE_STATUS_SUCCESSFUL : OCSP_RESPONSE_STATUS_TRYLATER,
                           spec.successful ? bs : nullptr);
  FUZZ_CHECK(resp != nullptr);
  unsigned char* buf = nullptr;
  const int len = i2d_OCSP_RESPONSE(resp, &buf);
  FUZZ_CHECK(len > 0);
  out.der.assign(reinterpret_cast<const char*>(buf), static_cast<size_t>(len));
  OPENSSL_free(buf);
  OCSP_RESPONSE_free(resp);
  OCSP_BASICRESP_free(bs);
  return out;
}

// What the rules say of a built response: verified or not, and if so which
// single response it reports.
const Single* expected(const Spec& spec) {
  if (!spec.successful) return nullptr;
  // The issuer itself (certificate included or not: it is the anchor), or a
  // responder it issued with the OCSP-signing EKU whose certificate is in the
  // response.
  const bool signer_ok = spec.signer == Signer::kIssuer || (spec.signer == Signer::kResponder && spec.include_signer);
  if (!signer_ok) return nullptr;
  const Single* pick = nullptr;
  for (bool sha256 : {false, true}) {
    for (const Single& x : spec.singles) {
      if (x.for_leaf && x.sha256 == sha256) {
        pick = &x;
        break;
      }
    }
    if (pick != nullptr) break;
  }
  if (pick == nullptr) return nullptr;
  const int64_t skew = lode::cp::kDefaultOcspSkew.count();
  if (pick->this_update > skew) return nullptr;
  if (pick->has_next && pick->next_update < pick->this_update) return nullptr;
  const int64_t expires =
      pick->has_next ? pick->next_update : pick->this_update + lode::cp::kOcspMaxAgeWithoutNextUpdate.count();
  if (0 >= expires) return nullptr;
  return pick;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Pki& p = pki();
  Input in(data, size);
  const uint8_t mode = in.u8() % 3;
  if (mode == 0) {
    const auto r = lode::cp::verify_ocsp_response(in.rest(), p.leaf.cert.get(), p.issuer.cert.get(),
                                                  std::chrono::time_point_cast<std::chrono::seconds>(
                                                      std::chrono::system_clock::now()));
    FUZZ_CHECK(!r && !r.error().empty());
    return 0;
  }
  const Spec spec = read_spec(in);
  Built b = build(spec);
  if (mode == 2) {
    const int flips = 1 + in.u8() % 8;
    for (int i = 0; i < flips; ++i) {
      const size_t at = in.u16() % b.der.size();
      b.der[at] = static_cast<char>(b.der[at] ^ (in.u8() | 1));
    }
    const auto r = lode::cp::verify_ocsp_response(b.der, p.leaf.cert.get(), p.issuer.cert.get(), b.now);
    FUZZ_CHECK(r || !r.error().empty());
    return 0;
  }
  const auto r = lode::cp::verify_ocsp_response(b.der, p.leaf.cert.get(), p.issuer.cert.get(), b.now);
  const Single* want = expected(spec);
  FUZZ_CHECK(r.has_value() == (want != nullptr));
  if (!r) {
    FUZZ_CHECK(!r.error().empty());
    return 0;
  }
  const int64_t now = b.now.time_since_epoch().count();
  const auto status = want->status == V_OCSP_CERTSTATUS_GOOD      ? OcspStatus::Cert::kGood
                      : want->status == V_OCSP_CERTSTATUS_REVOKED ? OcspStatus::Cert::kRevoked
                                                                  : OcspStatus::Cert::kUnknown;
  FUZZ_CHECK(r->status == status);
  FUZZ_CHECK(r->this_update.time_since_epoch().count() == now + want->this_update);
  FUZZ_CHECK(r->next_update == (want->has_next ? sys_seconds(std::chrono::seconds(now + want->next_update))
                                               : sys_seconds{}));
  if (want->status == V_OCSP_CERTSTATUS_REVOKED) {
    FUZZ_CHECK(r->revoked_at.time_since_epoch().count() == now + want->revoked);
    FUZZ_CHECK(r->revocation_reason == want->reason);
  }
  FUZZ_CHECK(r->der == b.der);
  return 0;
}
